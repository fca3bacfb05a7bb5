"""The webhook channel: case packets as Standard Webhooks, signed and POSTed to the agency.

``adapter`` sends one packet per request with its ``webhook-id``, timestamp and signature
(``gateway.signing``) and translates the agency's answer into a receipt or a delivery error;
``checks`` validates the agency's signing and verifying keys at start-up. What agencies push
to us arrives at the gateway's own inbound endpoint (``gateway.inbound``), which every
channel shares.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from adapters.webhook.adapter import WebhookAdapter, build_webhook_adapter
    from adapters.webhook.checks import check_webhook_agency

__all__ = ["WebhookAdapter", "build_webhook_adapter", "check_webhook_agency"]

__getattr__ = lazy_exports(
    __name__,
    {
        "WebhookAdapter": "adapters.webhook.adapter",
        "build_webhook_adapter": "adapters.webhook.adapter",
        "check_webhook_agency": "adapters.webhook.checks",
    },
)
