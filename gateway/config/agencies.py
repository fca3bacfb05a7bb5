"""One TOML file per contracted agency in ``config/agencies/``, validated at startup.

``agency-gateway check-config`` loads every file and reports each problem as
``file: key: reason``; the process refuses to start on any of them.
"""

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config.commission import CommissionSection
from gateway.config.email import EmailSection
from gateway.config.lender import Registration
from gateway.config.secrets import SecretRef
from gateway.config.settings import BUCKET_NAMES, format_validation_error, read_toml
from gateway.config.sftp import SftpSection
from gateway.errors import ConfigError

DEBTOR_FIELDS = frozenset(
    {"debtor.name", "debtor.national_id", "debtor.phones", "debtor.address", "debtor.region"}
)
"""Personal fields an agency may be allowed to receive. Anything else is never sent."""

BUCKETS = BUCKET_NAMES


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EndpointSection(_Section):
    url: str = Field(pattern=r"^https?://")
    timeout_seconds: float = Field(default=15, gt=0, le=120)
    connect_timeout_seconds: float = Field(default=5, gt=0, le=60)
    allow_plain_http: bool = Field(
        default=False, description="Permit http:// (loopback sandboxes only)"
    )

    @model_validator(mode="after")
    def _https(self) -> "EndpointSection":
        if self.url.startswith("http://") and not self.allow_plain_http:
            raise ValueError("endpoint must be https:// (set allow_plain_http only for a sandbox)")
        if self.allow_plain_http and not _is_loopback(urlsplit(self.url).hostname):
            raise ValueError(
                "allow_plain_http is for sandboxes on this machine only: the endpoint's host "
                "must be loopback (127.0.0.0/8, ::1 or localhost); use https:// for an agency"
            )
        return self


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SigningSection(_Section):
    """Outbound: how we sign packets to this agency. Several keys sign during rotation."""

    scheme: Literal["v1", "v1a"] = "v1"
    keys: tuple[SecretRef, ...] = Field(min_length=1, max_length=4)


class InboundSection(_Section):
    """Inbound: the keys this agency signs its events with (our trust list)."""

    scheme: Literal["v1", "v1a"] = "v1"
    keys: tuple[SecretRef, ...] = Field(min_length=1, max_length=4)
    tolerance_seconds: int | None = Field(default=None, ge=1, le=86_400)


class EligibilitySection(_Section):
    buckets: tuple[str, ...] = Field(min_length=1)
    min_balance_minor: int = Field(default=0, ge=0)
    max_balance_minor: int | None = Field(default=None, ge=0)
    regions: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ("CNY",)

    @model_validator(mode="after")
    def _known_buckets(self) -> "EligibilitySection":
        unknown = [b for b in self.buckets if b not in BUCKETS]
        if unknown:
            raise ValueError(f"unknown bucket(s) {unknown}; known: {list(BUCKETS)}")
        return self


class CapacitySection(_Section):
    max_open_placements: int = Field(ge=0)
    weight: float = Field(default=1.0, gt=0)


class RetrySection(_Section):
    max_attempts: int = Field(default=8, ge=1, le=50)
    base_seconds: float = Field(default=5, gt=0)
    cap_seconds: float = Field(default=3600, gt=0)
    concurrency: int = Field(default=8, ge=1, le=256)
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_reset_seconds: float = Field(default=30, gt=0)
    max_retry_after_seconds: float = Field(default=3600, gt=0)


class SlaSection(_Section):
    ack_hours: float = Field(default=24, gt=0)
    first_activity_hours: float = Field(default=72, gt=0)


class SettlementSection(_Section):
    """How the agency's collections reach the lender (the contract's money terms)."""

    commission_bps: int = Field(
        default=0, ge=0, le=10_000, description="agency's fee on each collection, basis points"
    )
    remittance: Literal["net", "gross"] = Field(
        default="net", description="net: the agency keeps its commission out of each remittance"
    )
    report_days: int = Field(
        default=3, ge=0, le=90, description="days a payment may take to appear on the other side"
    )
    statement_period: Literal["none", "weekly", "monthly"] = "none"
    statement_due_days: int = Field(default=5, ge=0, le=60)
    money_model: Literal["lender_collects", "agency_remits"] = Field(
        default="lender_collects",
        description="lender_collects: the debtor repays the lender, the agency reports "
        "activity and is paid commission on attributed receipts (a direct pay is no break); "
        "agency_remits: the agency collects and remits, every receipt must be reported",
    )
    grace_days: int = Field(
        default=0,
        ge=0,
        le=180,
        description="days after this agency loses a case (recall, expiry, return) in which "
        "a lender receipt still counts for it (gateway.settlement.attribution)",
    )
    grace_rule: Literal["old", "shared"] = Field(
        default="old",
        description="old: a receipt in the grace window goes wholly to this agency; shared: "
        "split with the case's new holder by grace_share_bps",
    )
    grace_share_bps: int = Field(
        default=5_000,
        ge=0,
        le=10_000,
        description="this agency's share of a receipt in its grace window under "
        "grace_rule = shared, basis points (the new holder gets the rest)",
    )


class AgencyBase(_Section):
    """What every contracted agency or law firm has, whatever its channel."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")
    name: str = Field(min_length=1)
    enabled: bool = True
    tier: str = Field(
        default="primary",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="the allocation tier (one of [allocation] tiers)",
    )
    placement_days: int | None = Field(
        default=None,
        ge=1,
        le=730,
        description="the contract's placement term in days (default [allocation] placement_days)",
    )
    expiry_warning: bool = Field(
        default=False,
        description="the agency takes placement.expiring packets before a placement ends",
    )
    fields: tuple[str, ...] = ()
    registration: Registration | None = Field(
        default=None,
        description="the agency's legal entity, printed on its authorisation letters and on "
        "borrower notices (required before it can be sent a placement with a letter)",
    )
    eligibility: EligibilitySection
    capacity: CapacitySection
    retry: RetrySection = RetrySection()
    sla: SlaSection = SlaSection()
    settlement: SettlementSection = SettlementSection()
    commission: CommissionSection = CommissionSection()
    source: str = Field(default="", exclude=True)

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - DEBTOR_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; allowed: {sorted(DEBTOR_FIELDS)}")
        return value


class WebhookAgency(AgencyBase):
    """An agency reached by signed JSON webhooks, both ways."""

    channel: Literal["webhook"]
    endpoint: EndpointSection
    signing: SigningSection
    inbound: InboundSection


class SftpAgency(AgencyBase):
    """An agency that exchanges placement and result files on its SFTP server."""

    channel: Literal["sftp"]
    sftp: SftpSection

    @model_validator(mode="after")
    def _one_currency_per_trailer(self) -> "SftpAgency":
        currencies = self.eligibility.currencies
        if self.sftp.layout.trailer and len(set(currencies)) > 1:
            raise ValueError(
                f"sftp.layout.trailer has one control total, which cannot add amounts in "
                f"{', '.join(currencies)}: set eligibility.currencies to one currency, or "
                "sftp.layout.trailer = false"
            )
        return self


class EmailAgency(AgencyBase):
    """A law firm that receives referral mail and replies by email."""

    channel: Literal["email"]
    email: EmailSection


AgencyConfig = Annotated[WebhookAgency | SftpAgency | EmailAgency, Field(discriminator="channel")]
"""Any agency, by the ``channel`` key of its file."""

AGENCY_ADAPTER: TypeAdapter[AgencyConfig] = TypeAdapter(AgencyConfig)


def parse_agency(raw: Mapping[str, object]) -> AgencyConfig:
    """Validate one agency's settings (raises pydantic's ValidationError)."""
    return AGENCY_ADAPTER.validate_python(raw)


CHANNELS: dict[str, type[AgencyBase]] = {
    "webhook": WebhookAgency,
    "sftp": SftpAgency,
    "email": EmailAgency,
}


def _untagged_problems(path: Path, raw: Mapping[str, object]) -> list[str]:
    """Without a valid ``channel`` pydantic cannot say more; we name the channel and any
    key that no channel knows (a typo of ``channel`` is the usual cause)."""
    channel = raw.get("channel")
    choices = ", ".join(CHANNELS)
    problems = [
        f"{path}: channel: missing; use one of {choices}"
        if channel is None
        else f"{path}: channel: unknown channel {channel!r}; use one of {choices}"
    ]
    known = {name for model in CHANNELS.values() for name in model.model_fields}
    problems += [
        f"{path}: {key}: unknown key (check the spelling; see README 'Configuration')"
        for key in raw
        if key not in known
    ]
    return problems


def load_agency(path: Path) -> AgencyConfig:
    raw = read_toml(path)
    raw["source"] = str(path)
    if raw.get("channel") not in CHANNELS:
        raise ConfigError(_untagged_problems(path, raw))
    try:
        return parse_agency(raw)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(str(path), exc, union_tag=raw.get("channel"))
        ) from None


def load_agencies(directory: Path) -> dict[str, AgencyConfig]:
    """Load every ``*.toml`` in the directory; collect all problems before raising."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: agencies directory not found")
    agencies: dict[str, AgencyConfig] = {}
    problems: list[str] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            agency = load_agency(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if agency.id in agencies:
            problems.append(
                f"{path}: id: agency {agency.id} is already defined in {agencies[agency.id].source}"
            )
            continue
        agencies[agency.id] = agency
    if not agencies and not problems:
        problems.append(f"{directory}: no agency files (*.toml)")
    if problems:
        raise ConfigError(problems)
    return agencies


__all__ = [
    "AGENCY_ADAPTER",
    "BUCKETS",
    "CHANNELS",
    "DEBTOR_FIELDS",
    "AgencyBase",
    "AgencyConfig",
    "EmailAgency",
    "SettlementSection",
    "SftpAgency",
    "WebhookAgency",
    "load_agencies",
    "load_agency",
    "parse_agency",
]
