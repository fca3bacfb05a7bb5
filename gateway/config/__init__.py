"""Configuration: ``config/gateway.toml`` and one file per agency, validated whole at start-up.

Pure pydantic models, every channel's sections included (``sftp``, ``layouts``, ``email``), so
an agency file is checked in full without importing its channel; secrets are references to an
environment variable or a key file, never values (``secrets``). The channels check their own
key and certificate files (``adapters.check_agency``).
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.config.agencies import (
        AgencyConfig,
        EmailAgency,
        SftpAgency,
        WebhookAgency,
        load_agencies,
    )
    from gateway.config.settings import GatewaySettings, load_settings

__all__ = [
    "AgencyConfig",
    "EmailAgency",
    "GatewaySettings",
    "SftpAgency",
    "WebhookAgency",
    "load_agencies",
    "load_settings",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AgencyConfig": "gateway.config.agencies",
        "EmailAgency": "gateway.config.agencies",
        "GatewaySettings": "gateway.config.settings",
        "SftpAgency": "gateway.config.agencies",
        "WebhookAgency": "gateway.config.agencies",
        "load_agencies": "gateway.config.agencies",
        "load_settings": "gateway.config.settings",
    },
)
