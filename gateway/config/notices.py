"""``[notices]`` (borrower notices sent through the lender's messaging service) and
``[verification]`` (the public collector-verification page and API).

Pure pydantic, like the rest of ``gateway.config``. The only secrets are the keys notices are
signed with (``SecretRef``s).
"""

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config.secrets import SecretRef

NoticeLanguage = Literal["zh-CN", "en"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoticeRetry(_Section):
    """How hard the outbox tries the messaging service (the fields of an agency's
    ``[retry]``; ``gateway.config.agencies`` imports this module's neighbours, so it is
    restated here rather than imported)."""

    max_attempts: int = Field(default=8, ge=1, le=50)
    base_seconds: float = Field(default=5, gt=0)
    cap_seconds: float = Field(default=3600, gt=0)
    concurrency: int = Field(default=8, ge=1, le=256)
    max_retry_after_seconds: float = Field(default=3600, gt=0)


class NoticesSection(_Section):
    """``[notices]``: a notice to the borrower when a case is placed, moved or recalled.

    Each notice is a Standard-Webhooks-signed POST to the lender's messaging service (``url``),
    queued in the outbox like a packet; the lender's system sends the SMS, app message or
    letter. Off by default: nothing is queued until ``enabled`` and ``url`` are set.
    """

    enabled: bool = False
    url: str | None = Field(default=None, pattern=r"^https?://")
    allow_plain_http: bool = Field(
        default=False, description="Permit http:// (a loopback sandbox only)"
    )
    scheme: Literal["v1", "v1a"] = "v1"
    keys: tuple[SecretRef, ...] = Field(
        default=(SecretRef(file="var/keys/notices.whsec"),), min_length=1, max_length=4
    )
    """Our signing keys (``whsec_`` for v1, ``whsk_`` for v1a); all of them sign each POST."""
    timeout_seconds: float = Field(default=15, gt=0, le=120)
    connect_timeout_seconds: float = Field(default=5, gt=0, le=60)
    retry: NoticeRetry = NoticeRetry()
    languages: tuple[NoticeLanguage, ...] = Field(default=("zh-CN",), min_length=1)
    """The notice's text in each of these languages; the first is the borrower's default."""
    purpose: str = Field(
        default="collection",
        pattern=r"^[a-z_]{1,32}$",
        description="why the data was provided (a template key: collection)",
    )
    contact: str | None = Field(
        default=None,
        max_length=200,
        description="the lender's personal-information contact (default: its registered phone)",
    )
    templates_dir: str | None = Field(
        default=None,
        description="the lender's own notice templates (<kind>.<language>.txt); "
        "a file there replaces the packaged one",
    )
    scan_every_seconds: float = Field(
        default=60, ge=0, description="how often serve looks for placements without their notice"
    )

    @model_validator(mode="after")
    def _url_when_enabled(self) -> "NoticesSection":
        if self.enabled and self.url is None:
            raise ValueError("[notices] enabled = true needs url (the messaging service)")
        if self.url is not None and self.url.startswith("http://"):
            host = urlsplit(self.url).hostname or ""
            if not self.allow_plain_http or not _is_loopback(host):
                raise ValueError(
                    "[notices] url must be https:// (allow_plain_http is for a sandbox on "
                    "this machine only: a loopback host)"
                )
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class VerificationSection(_Section):
    """``[verification]``: the public page and API where anyone checks a collector's letter.

    Checks are limited per client (its address, kept only as a hash keyed with the PII key
    ring's MAC key) and per letter
    number in fixed windows kept in the database, so every process shares them.
    """

    enabled: bool = True
    window_seconds: int = Field(default=600, ge=10, le=86_400)
    max_per_client: int = Field(default=20, ge=1, le=10_000)
    max_per_letter: int = Field(default=10, ge=1, le=10_000)
    trust_forwarded: bool = Field(
        default=False,
        description="take the client address from X-Forwarded-For (only behind a proxy)",
    )
    alert_failed_per_hour: int = Field(
        default=50, ge=1, description="failed checks in an hour that the console flags"
    )


__all__ = ["NoticeLanguage", "NoticeRetry", "NoticesSection", "VerificationSection"]
