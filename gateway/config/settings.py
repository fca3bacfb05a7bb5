"""Gateway settings: ``config/gateway.toml``, validated into one frozen model.

Every key is documented in README.md ("Configuration"). Environment variables override two
keys for deployment convenience: ``GATEWAY_DATABASE_URL`` and ``GATEWAY_LISTEN`` (host:port).
"""

import os
import tomllib
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.config.cluster import ClusterSection
from gateway.config.documents import DocumentsSection
from gateway.config.lender import LenderSection
from gateway.config.notices import NoticesSection, VerificationSection
from gateway.config.secrets import SecretRef
from gateway.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GatewaySection(_Section):
    lender_id: str = Field(default="LENDER", pattern=r"^[A-Z0-9_]{2,32}$")


class DatabaseSection(_Section):
    url: str = "sqlite+aiosqlite:///var/gateway.db"
    pool_size: int = Field(default=5, ge=1, le=100)
    echo: bool = False


class ServerSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8088, ge=0, le=65535)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    signature_tolerance_seconds: int = Field(default=300, ge=1, le=86_400)


class SecretsSection(_Section):
    pii_keys: SecretRef = SecretRef(file="var/keys/pii.keyring")
    evidence_signing_key: SecretRef = SecretRef(file="var/keys/evidence.key")
    evidence_origin: str = "agency-gateway.local/evidence"


class DispatchSection(_Section):
    batch_size: int = Field(default=50, ge=1, le=1000)
    lease_seconds: int = Field(default=60, ge=5, le=3600)
    poll_interval_seconds: float = Field(default=0.5, gt=0, le=60)


MAX_DPD = 3650
"""The most days past due an intake row may carry (schemas.account.IntakeAccount.dpd)."""

BUCKET_NAMES = ("M1", "M2", "M3", "M4-6", "M6+", "LEGAL")


class BucketRule(_Section):
    """One bucket of ``[[allocation.buckets]]``: the cases with these days past due (and,
    optionally, balance, grades and products) belong to ``name``."""

    name: Literal["M1", "M2", "M3", "M4-6", "M6+"]
    min_dpd: int = Field(default=0, ge=0, le=3650)
    max_dpd: int | None = Field(default=None, ge=0, le=3650)
    min_balance_minor: int = Field(default=0, ge=0)
    max_balance_minor: int | None = Field(default=None, ge=0)
    grades: tuple[str, ...] = ()
    products: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> "BucketRule":
        if self.max_dpd is not None and self.max_dpd < self.min_dpd:
            raise ValueError(f"max_dpd {self.max_dpd} is below min_dpd {self.min_dpd}")
        return self


DEFAULT_BUCKETS: tuple[BucketRule, ...] = (
    BucketRule(name="M1", min_dpd=0, max_dpd=30),
    BucketRule(name="M2", min_dpd=31, max_dpd=60),
    BucketRule(name="M3", min_dpd=61, max_dpd=90),
    BucketRule(name="M4-6", min_dpd=91, max_dpd=180),
    BucketRule(name="M6+", min_dpd=181),
)


class AllocationSection(_Section):
    seed: int = 20260101
    placement_days: int = Field(default=180, ge=1, le=730)
    legal_min_dpd: int = Field(default=360, ge=1)
    legal_min_balance_minor: int = Field(default=5_000_000, ge=0)
    performance_weighting: bool = Field(
        default=False, description="champion draws weigh agencies by recent recovery"
    )
    performance_days: int = Field(default=90, ge=7, le=730)
    performance_min_placements: int = Field(default=50, ge=1)
    performance_floor: float = Field(default=0.5, gt=0, le=1)
    performance_cap: float = Field(default=2.0, ge=1, le=10)
    challenger_share: float = Field(
        default=0.0, ge=0, le=0.5, description="debtor groups drawn by contract weights alone"
    )
    tiers: tuple[str, ...] = Field(
        default=("primary", "secondary", "legal"),
        min_length=1,
        description="agency tiers in the order a case moves through them",
    )
    legal_tier: str = Field(
        default="legal",
        description="the tier of law firms: placing there makes a case legal, and "
        "escalation goes there (empty: no legal tier)",
    )
    cool_off_days: int = Field(
        default=7,
        ge=0,
        le=365,
        description="days a returned or expired case waits before the next tier takes it",
    )
    mixed_debtors: Literal["worst", "split"] = Field(
        default="worst",
        description="worst: a debtor's worst account decides the agency for all; "
        "split: each bucket is placed on its own, the reason recorded",
    )
    expiry_grace_days: int = Field(
        default=0, ge=0, le=30, description="days after return_by before the automatic recall"
    )
    expiry_warning_days: int = Field(
        default=14, ge=0, le=90, description="days before return_by to send placement.expiring"
    )
    escalation: Literal["off", "auto", "approval"] = Field(
        default="approval",
        description="a placed case that crosses the legal threshold: leave it, recall it for "
        "the legal tier at once, or propose the recall for ops to approve",
    )
    buckets: tuple[BucketRule, ...] = Field(
        default=DEFAULT_BUCKETS,
        min_length=1,
        description="classification below the legal threshold; the first rule that matches wins",
    )

    @model_validator(mode="after")
    def _tiers(self) -> "AllocationSection":
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers: each tier may appear only once, got {list(self.tiers)}")
        covered = sorted(
            (r.min_dpd, r.max_dpd if r.max_dpd is not None else MAX_DPD)
            for r in self.buckets
            if r.min_balance_minor == 0
            and r.max_balance_minor is None
            and not r.grades
            and not r.products
        )
        reach = -1
        for low, high in covered:
            if low > reach + 1:
                break
            reach = max(reach, high)
        if reach < MAX_DPD:
            raise ValueError(
                f"buckets: the rules without balance, grade or product conditions must cover "
                f"every dpd from 0 to {MAX_DPD}; dpd {reach + 1} has no bucket"
            )
        if self.legal_tier and self.legal_tier not in self.tiers:
            raise ValueError(
                f"legal_tier {self.legal_tier!r} is not one of tiers {list(self.tiers)}"
            )
        return self


class SchedulesSection(_Section):
    """What ``serve`` runs on timers besides the dispatcher and the pollers."""

    reconcile_every_seconds: float = Field(default=60, gt=0)
    checkpoint_every_seconds: float = Field(default=30, gt=0)
    engine_every_seconds: float = Field(
        default=900, ge=0, description="full reconciliation runs; 0 leaves them to the CLI"
    )
    expiry_every_seconds: float = Field(
        default=3600,
        ge=0,
        description="placement expiry (warnings, recalls) and the escalation scan; 0 leaves "
        "them to the CLI",
    )


class ConsoleSection(_Section):
    """The ops console (web UI and JSON API). See README "Ops console"."""

    enabled: bool = True
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)
    login_max_failures: int = Field(default=5, ge=1, le=1000)
    login_window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    pii_reveal_roles: tuple[Literal["viewer", "operator", "admin"], ...] = ("admin",)
    language: Literal["zh-CN", "en"] = Field(
        default="zh-CN",
        description="the console's language unless a user picks another in the page header",
    )


class ReconciliationSection(_Section):
    """Batch reconciliation (``agency-gateway reconcile``): tolerances and contact rules.
    See README "Reconciliation engine"."""

    timezone: str = Field(default="Asia/Shanghai", description="lender's local time zone")
    quiet_hours_start: str = Field(default="22:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    quiet_hours_end: str = Field(default="08:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    max_effective_calls_per_day: int = Field(default=3, ge=0)
    max_calls_per_7_days: int | None = Field(default=None, ge=0)
    amount_tolerance_minor: int = Field(default=0, ge=0)
    amount_tolerance_bps: int = Field(default=0, ge=0, le=10_000)
    date_window_days: int = Field(default=3, ge=0, le=366)
    statement_tolerance_minor: int = Field(default=0, ge=0)
    statement_tolerance_bps: int = Field(default=0, ge=0, le=10_000)
    batch_events: int = Field(default=200_000, ge=1_000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value


class PrivacySection(_Section):
    """Deletion on placement end (gateway.privacy.deletion)."""

    request_deletion: bool = Field(
        default=True, description="ask the agency to delete a case's data when it ends"
    )
    deletion_days: int = Field(default=30, ge=1, le=365)
    packet_retention_days: int = Field(
        default=365,
        ge=0,
        le=3650,
        description="purge a delivered packet's bytes (sealed at rest) this many days after "
        "delivery; its SHA-256 and evidence leaf stay. 0 keeps them",
    )


Role = Literal["viewer", "operator", "admin"]


class ClaimsSection(_Section):
    """Claim confirmation (债权确认) of each intake file (gateway.claims)."""

    confirmation: Literal["four_eyes", "off"] = Field(
        default="four_eyes",
        description="four_eyes: a second person approves each intake's batch before its "
        "cases are allocated; off: batches are recorded and approved by 'system' at once",
    )


class FourEyesRule(_Section):
    """When an action needs a second person, and who may be that person."""

    enabled: bool = True
    above: int = Field(
        default=0,
        ge=0,
        description="cases (allocation_round, bulk_recall) or minor units (write_off, "
        "accept_agency_figure) beyond which a second person must approve; 0: always",
    )
    checker_roles: tuple[Role, ...] = Field(default=("operator", "admin"), min_length=1)


class FourEyesSection(_Section):
    """Actions that need a second person (gateway.approvals). The maker is never the checker."""

    claim_confirmation: FourEyesRule = FourEyesRule()
    allocation_round: FourEyesRule = FourEyesRule(above=1000)
    bulk_recall: FourEyesRule = FourEyesRule(above=20)
    write_off: FourEyesRule = FourEyesRule(above=1_000_000)
    accept_agency_figure: FourEyesRule = FourEyesRule(above=1_000_000)
    concession_approval: FourEyesRule = FourEyesRule(above=500_000)
    """A waiver (minor units waived) or instalment plan (its total) above ``above``."""
    evaluation_decision: FourEyesRule = FourEyesRule(checker_roles=("admin",))
    """An annual evaluation's decision (renew, reduce share, terminate): always two people."""


class ConcessionLimit(_Section):
    """What one role may approve alone (gateway.concessions.rules). 0 means nothing."""

    max_waiver_minor: int = Field(default=0, ge=0, description="largest waiver, minor units")
    max_waiver_bps: int = Field(
        default=0, ge=0, le=10_000, description="largest waiver as a share of the balance"
    )
    max_instalments: int = Field(default=0, ge=0, le=120)
    max_instalment_months: int = Field(
        default=0, ge=0, le=120, description="last instalment at most this many months out"
    )
    max_pause_days: int = Field(default=0, ge=0, le=366)


_LIMITS: dict[Role, ConcessionLimit] = {
    "operator": ConcessionLimit(
        max_waiver_minor=200_000,
        max_waiver_bps=2_000,
        max_instalments=12,
        max_instalment_months=12,
        max_pause_days=30,
    ),
    "admin": ConcessionLimit(
        max_waiver_minor=5_000_000,
        max_waiver_bps=5_000,
        max_instalments=36,
        max_instalment_months=36,
        max_pause_days=90,
    ),
}
"""Default ``[concessions.limits]``: a viewer approves nothing."""


class ConcessionsSection(_Section):
    """Waiver, instalment and pause requests from agencies (gateway.concessions): the limits
    each role may approve, and how long an approval stands."""

    limits: dict[Role, ConcessionLimit] = Field(default_factory=lambda: dict(_LIMITS))
    valid_days: int = Field(
        default=30, ge=1, le=365, description="an approval lapses unless used within this"
    )


class ScorecardsSection(_Section):
    """The fair scorecards (gateway.reporting.stratified): how placements are stratified and
    how sure an interval is."""

    balance_bands_minor: list[int] = Field(
        default_factory=lambda: [500_000, 2_000_000, 5_000_000],
        description="placed-balance cuts of the balance bands (minor units, ascending)",
    )
    min_stratum_placements: int = Field(
        default=5, ge=2, description="fewer placements on a side: the stratum is too small"
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1, description="level of the intervals and of the C/C test"
    )

    @field_validator("balance_bands_minor")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in pairwise(value)) or any(v <= 0 for v in value):
            raise ValueError("balance bands must be positive and strictly ascending")
        return value


class EvaluationSection(_Section):
    """The annual evaluation of each agency (gateway.evaluation): when it is generated before
    the contract ends, and the thresholds of its recommendation."""

    before_contract_end_days: int = Field(
        default=60, ge=1, le=365, description="generate the report this many days before"
    )
    check_every_seconds: float = Field(
        default=86_400,
        ge=0,
        description="how often serve looks for contracts ending soon; 0 leaves it to the CLI",
    )
    terminate_high_violations: int = Field(
        default=10, ge=1, description="high-severity violations in the year → terminate"
    )
    reduce_high_violations: int = Field(
        default=3, ge=1, description="high-severity violations in the year → reduce share"
    )
    reduce_upheld_per_10k: int = Field(
        default=50, ge=0, description="upheld complaints per 10,000 placements → reduce share"
    )
    terminate_upheld_per_10k: int = Field(
        default=200, ge=0, description="upheld complaints per 10,000 placements → terminate"
    )
    reduce_relative_bps: int = Field(
        default=7_000,
        ge=0,
        le=10_000,
        description="recovery below this share of its peers' in the same strata → reduce",
    )
    reduce_share_bps: int = Field(
        default=5_000, ge=0, le=10_000, description="the share factor a reduce-share proposes"
    )
    min_sla_bps: int = Field(
        default=8_000, ge=0, le=10_000, description="SLA on-time rate below this → reduce"
    )


class ComplaintsSection(_Section):
    """Complaints about collection (gateway.complaints): how long the lender has to answer
    each, the one extension it may take, and whether opening one holds the case at once.

    The answer is due by the end of the day (lender's time zone) ``answer_days`` after the
    complaint was received (the Chinese consumer-protection rule is 15 days, with an
    extension for a complex case); ``by_channel`` overrides it for a channel (e.g. a
    regulator's referral), ``by_category`` for a category; the shorter wins."""

    answer_days: int = Field(default=15, ge=1, le=90, description="days to answer")
    extension_days: int = Field(
        default=15, ge=0, le=90, description="days one extension adds (0: none allowed)"
    )
    by_channel: dict[str, int] = Field(
        default_factory=dict, description="channel → days to answer, overriding answer_days"
    )
    by_category: dict[str, int] = Field(
        default_factory=dict, description="category → days to answer, overriding answer_days"
    )
    hold_on_open: bool = Field(
        default=False,
        description="hold the case (code COMPLAINT) whenever ops or the lender's channel "
        "opens a complaint; otherwise a person decides per complaint",
    )


class RegisterSection(_Section):
    """The agency register (gateway.register), README "Agency register": whether allocation
    requires an entry, when to remind before expiries, and what a lapse does."""

    enforce: bool = Field(
        default=True,
        description="allocation refuses agencies with no register entry (entries always gate)",
    )
    file: str | None = Field(
        default=None, description="the register file `register import` reads by default"
    )
    reminder_days: tuple[int, ...] = Field(
        default=(60, 30, 7),
        description="remind this many days before a contract or qualification ends",
    )
    on_lapse: Literal["recall", "none"] = Field(
        default="recall", description="what the register job does with a lapsed agency's cases"
    )
    recall_grace_days: int = Field(
        default=0, ge=0, le=365, description="days after a lapse before its cases are recalled"
    )
    check_every_seconds: float = Field(
        default=3600, ge=0, description="the register job (reminders, lapses); 0: CLI only"
    )


class ConductSection(_Section):
    """Collector conduct (gateway.conduct), README "Collector conduct": the monthly QA
    sample of call recordings per agency. The contact rules themselves (quiet hours, caps)
    are in ``[reconciliation]``."""

    qa_sample_size: int = Field(
        default=20, ge=1, le=1000, description="recordings drawn per agency per month"
    )


class GatewaySettings(_Section):
    """All process-wide settings. ``base_dir`` anchors relative paths (key files, SQLite)."""

    gateway: GatewaySection = GatewaySection()
    database: DatabaseSection = DatabaseSection()
    server: ServerSection = ServerSection()
    secrets: SecretsSection = SecretsSection()
    dispatch: DispatchSection = DispatchSection()
    allocation: AllocationSection = AllocationSection()
    schedules: SchedulesSection = SchedulesSection()
    reconciliation: ReconciliationSection = ReconciliationSection()
    console: ConsoleSection = ConsoleSection()
    privacy: PrivacySection = PrivacySection()
    claims: ClaimsSection = ClaimsSection()
    four_eyes: FourEyesSection = FourEyesSection()
    evaluation: EvaluationSection = EvaluationSection()
    scorecards: ScorecardsSection = ScorecardsSection()
    concessions: ConcessionsSection = ConcessionsSection()
    # "register" would shadow ABCMeta.register: the field has another name, the key is the same.
    agency_register: RegisterSection = Field(default=RegisterSection(), alias="register")
    complaints: ComplaintsSection = ComplaintsSection()
    conduct: ConductSection = ConductSection()
    lender: LenderSection = LenderSection()
    documents: DocumentsSection = DocumentsSection()
    notices: NoticesSection = NoticesSection()
    verification: VerificationSection = VerificationSection()
    cluster: ClusterSection = ClusterSection()
    agencies_dir: str = "config/agencies"
    base_dir: Path = Path(".")
    config_path: Path | None = None

    def agencies_path(self) -> Path:
        path = Path(self.agencies_dir)
        return path if path.is_absolute() else self.base_dir / path


def format_validation_error(
    source: str, exc: ValidationError, *, union_tag: object = None
) -> list[str]:
    """Turn pydantic errors into ``file: key: reason`` lines.

    ``union_tag`` is the discriminator value of a tagged union (e.g. an agency's channel),
    which pydantic puts first in every location; it is not a key of the file.
    """
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        if union_tag is not None and loc and loc[0] == union_tag:
            loc = loc[1:]
        key = ".".join(str(p) for p in loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see README 'Configuration')"
        lines.append(f"{source}: {key}: {msg}")
    return lines


def read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def load_settings(
    path: Path, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> GatewaySettings:
    """Read and validate ``gateway.toml``; raise ConfigError listing every problem."""
    env = os.environ if environ is None else environ
    raw = read_toml(path)
    raw.setdefault("base_dir", str(base_dir or Path.cwd()))
    raw["config_path"] = str(path)
    if url := env.get("GATEWAY_DATABASE_URL"):
        raw.setdefault("database", {})
        assert isinstance(raw["database"], dict)
        raw["database"]["url"] = url
    if listen := env.get("GATEWAY_LISTEN"):
        host, _, port = listen.rpartition(":")
        raw.setdefault("server", {})
        assert isinstance(raw["server"], dict)
        raw["server"].update(host=host or "127.0.0.1", port=int(port))
    try:
        return GatewaySettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None


Channel = Literal["webhook", "sftp", "email"]

__all__ = [
    "BUCKET_NAMES",
    "DEFAULT_BUCKETS",
    "BucketRule",
    "Channel",
    "ClaimsSection",
    "ComplaintsSection",
    "ConcessionLimit",
    "ConcessionsSection",
    "ConductSection",
    "FourEyesRule",
    "FourEyesSection",
    "GatewaySettings",
    "RegisterSection",
    "format_validation_error",
    "load_settings",
    "read_toml",
]
