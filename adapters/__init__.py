"""Channel adapters, one module per agency protocol.

``ADAPTERS`` maps the ``channel`` of an agency's config to the factory that builds its adapter;
the composition root (``gateway.bootstrap``) is the only caller.
"""

from collections.abc import Callable

from adapters.email import EmailAdapter, build_email_adapter
from adapters.sftp import SftpAdapter, build_sftp_adapter
from adapters.webhook import WebhookAdapter, build_webhook_adapter
from gateway.agency_config import AgencyConfig
from gateway.ports import AdapterContext, ChannelAdapter

AdapterFactory = Callable[[AgencyConfig, AdapterContext], ChannelAdapter]

ADAPTERS: dict[str, AdapterFactory] = {
    "webhook": build_webhook_adapter,
    "email": build_email_adapter,
    "sftp": build_sftp_adapter,
}

__all__ = ["ADAPTERS", "AdapterFactory", "EmailAdapter", "SftpAdapter", "WebhookAdapter"]
