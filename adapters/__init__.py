"""Channel adapters, one module per agency protocol.

``ADAPTERS`` maps the ``channel`` of an agency's config to its adapter class; the composition
root (``gateway.bootstrap``) is the only place that builds them.
"""

from adapters.webhook import WebhookAdapter

ADAPTERS: dict[str, type[WebhookAdapter]] = {"webhook": WebhookAdapter}

__all__ = ["ADAPTERS", "WebhookAdapter"]
