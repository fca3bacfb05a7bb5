"""Channel adapters, one package per agency protocol: ``webhook`` (signed JSON over HTTPS),
``sftp`` (file drops and result files) and ``email`` (law-firm mail and replies).

Each package holds everything of its channel: rendering to the agency's format, the transport,
reading what the agency sends back and checking the channel's files at start-up. The packages
are independent of each other and speak to the core only through ``gateway.ports``.

``ADAPTERS`` maps the ``channel`` of an agency's config to the factory that builds its adapter,
and ``CHECKS`` to the function that checks its keys, certificates and templates; the
composition root (``gateway.bootstrap``) is the only caller of either.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adapters.email import EmailAdapter, build_email_adapter, check_email_agency
from adapters.sftp import SftpAdapter, build_sftp_adapter, check_sftp_agency
from adapters.webhook import WebhookAdapter, build_webhook_adapter, check_webhook_agency
from gateway.config.agencies import AgencyConfig
from gateway.ports import AdapterContext, ChannelAdapter

AdapterFactory = Callable[[AgencyConfig, AdapterContext], ChannelAdapter]
AgencyCheck = Callable[[Any, Path, Mapping[str, str] | None], list[str]]

ADAPTERS: dict[str, AdapterFactory] = {
    "webhook": build_webhook_adapter,
    "email": build_email_adapter,
    "sftp": build_sftp_adapter,
}

CHECKS: dict[str, AgencyCheck] = {
    "webhook": check_webhook_agency,
    "email": check_email_agency,
    "sftp": check_sftp_agency,
}


def check_agency(
    agency: AgencyConfig, base_dir: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Resolve and parse every key, certificate and template the agency's channel needs;
    return the problems as ``file: key: reason`` lines."""
    return CHECKS[agency.channel](agency, base_dir, environ)


__all__ = [
    "ADAPTERS",
    "CHECKS",
    "AdapterFactory",
    "AgencyCheck",
    "EmailAdapter",
    "SftpAdapter",
    "WebhookAdapter",
    "check_agency",
]
