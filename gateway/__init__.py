"""agency-gateway: hand overdue loan cases to agencies, prove what was sent, reconcile what comes back."""

__version__ = "0.1.0"

__all__ = ["__version__"]
