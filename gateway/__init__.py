"""agency-gateway: hand overdue cases to agencies, prove what was sent, reconcile what returns."""

__version__ = "0.1.0"

__all__ = ["__version__"]
