"""The composition root: the one place that reads secrets, builds engines, sessions, adapters
and services from configuration. Nothing else opens a connection or reads a key.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

from adapters import ADAPTERS, check_agency
from adapters.email.triage import VouchedReplyReader
from gateway.allocation.placements import PlacementService
from gateway.cases.escalation import EscalationService
from gateway.cases.expiry import ExpiryService
from gateway.cases.holds import CaseService
from gateway.clock import SystemClock, to_datetime
from gateway.config.agencies import AgencyConfig, WebhookAgency, load_agencies
from gateway.config.settings import GatewaySettings, load_settings
from gateway.console.read_model import Circuits
from gateway.console.services import ConsoleServices
from gateway.console.sessions import Auth
from gateway.dispatch import outbox
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.errors import ConfigError
from gateway.evidence.log import EvidenceLog
from gateway.evidence.signed_note import NoteSigner, NoteVerifier
from gateway.inbound.service import InboundService, InboundTrust
from gateway.metrics import Metrics
from gateway.ports import AdapterContext, ChannelAdapter, Clock
from gateway.privacy.deletion import SweepResult, request_deletions
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation.engine import ReconEngine
from gateway.resolutions.actions import ResolutionService
from gateway.signing import parse_verifying_key
from gateway.store.database import Database

log = logging.getLogger(__name__)


@dataclass
class Gateway:
    """Every long-lived object of one gateway process."""

    settings: GatewaySettings
    agencies: dict[str, AgencyConfig]
    db: Database
    clock: Clock
    metrics: Metrics
    pii: PiiKeyRing
    evidence: EvidenceLog
    note_verifier: NoteVerifier
    placements: PlacementService
    inbound: InboundService
    cases: CaseService
    """Ops actions on cases: hold, release, reopen (the CLI and the console)."""
    expiry: ExpiryService
    """Placement expiry: warnings, automatic recalls and renewals."""
    escalations: EscalationService
    """Escalation of placed cases that crossed the legal threshold to the legal tier."""
    _dispatcher: Dispatcher | None = None
    _session: aiohttp.ClientSession | None = None
    _adapters: dict[str, ChannelAdapter] = field(default_factory=dict)

    async def dispatcher(self) -> Dispatcher:
        """The dispatcher, with its HTTP session and adapters built on first use."""
        if self._dispatcher is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=64)
            )
            context = AdapterContext(
                base_dir=self.settings.base_dir,
                http=self._session,
                clock=self.clock.now,
                db=self.db,
            )
            for agency in self.agencies.values():
                self._adapters[agency.id] = ADAPTERS[agency.channel](agency, context)
            self._dispatcher = Dispatcher(
                db=self.db,
                adapters=self._adapters,
                agencies=self.agencies,
                hooks=ReconciliationHooks(agencies=self.agencies),
                clock=self.clock,
                batch_size=self.settings.dispatch.batch_size,
                lease_seconds=self.settings.dispatch.lease_seconds,
            )
        return self._dispatcher

    def recon_engine(self) -> ReconEngine:
        """The reconciliation engine (``reconcile`` and ``serve``'s timer run the same)."""
        return ReconEngine(
            db=self.db,
            agencies=self.agencies,
            settings=self.settings.reconciliation,
            clock=self.clock,
            evidence=self.evidence,
        )

    async def request_deletions(self) -> SweepResult:
        """Ask agencies to delete the data of ended placements (gateway.privacy.deletion); nothing
        when ``[privacy] request_deletion`` is off."""
        privacy = self.settings.privacy
        if not privacy.request_deletion:
            return SweepResult()
        async with self.db.transaction() as conn:
            return await request_deletions(
                conn,
                self.agencies,
                days=privacy.deletion_days,
                now=to_datetime(self.clock.now()),
            )

    async def purge_packets(self) -> int:
        """Purge the bytes of packets delivered longer ago than ``[privacy]
        packet_retention_days`` (gateway.dispatch.outbox.purge_payloads); how many."""
        days = self.settings.privacy.packet_retention_days
        if not days:
            return 0
        now = to_datetime(self.clock.now())
        async with self.db.transaction() as conn:
            return await outbox.purge_payloads(
                conn, delivered_before=now - timedelta(days=days), now=now
            )

    def resolutions(self) -> ResolutionService:
        """The mismatch actions (the console and ``mismatches resolve`` act through it)."""
        return ResolutionService(
            db=self.db,
            placements=self.placements,
            agencies=self.agencies,
            clock=self.clock,
            vouched_replies=VouchedReplyReader(base_dir=self.settings.base_dir),
        )

    def console_services(self) -> ConsoleServices:
        """What the ops console needs from this gateway."""

        def circuits() -> Circuits | None:
            # The dispatcher is built lazily by run_workers; until then there is no circuit state.
            return self._dispatcher.circuits if self._dispatcher is not None else None

        settings = self.settings.console
        return ConsoleServices(
            db=self.db,
            agencies=self.agencies,
            pii=self.pii,
            resolutions=self.resolutions(),
            settings=settings,
            clock=self.clock,
            auth=Auth(db=self.db, settings=settings, clock=self.clock),
            circuits=circuits,
            evidence=self.evidence,
            note_verifier=self.note_verifier,
            cases=self.cases,
            expiry=self.expiry,
            escalations=self.escalations,
            zone=ZoneInfo(self.settings.reconciliation.timezone),
        )

    async def aclose(self) -> None:
        await self.inbound.aclose()
        for adapter in self._adapters.values():
            await adapter.aclose()
        if self._session is not None:
            await self._session.close()
        await self.db.dispose()


def load_config(
    config_path: Path, *, base_dir: Path | None = None
) -> tuple[GatewaySettings, dict[str, AgencyConfig]]:
    """Read gateway.toml and every agency file; raise ConfigError listing all problems."""
    settings = load_settings(config_path, base_dir=base_dir)
    agencies = load_agencies(settings.agencies_path())
    tiers = settings.allocation.tiers
    unknown = [
        f"{a.source or a.id}: tier: {a.tier!r} is not one of [allocation] tiers {list(tiers)}"
        for a in agencies.values()
        if a.tier not in tiers
    ]
    if unknown:
        raise ConfigError(unknown)
    return settings, agencies


def check_all_secrets(settings: GatewaySettings, agencies: dict[str, AgencyConfig]) -> list[str]:
    """Resolve and parse every key the gateway needs; return the problems found."""
    problems: list[str] = []
    source = str(settings.config_path or "gateway.toml")
    checks = (
        ("secrets.pii_keys", settings.secrets.pii_keys, PiiKeyRing.parse),
        (
            "secrets.evidence_signing_key",
            settings.secrets.evidence_signing_key,
            NoteSigner.from_text,
        ),
    )
    for key, ref, parse in checks:
        try:
            parse(ref.resolve(settings.base_dir))
        except ConfigError as exc:
            problems.append(f"{source}: {key} ({ref.describe()}): {exc}")
    for agency in agencies.values():
        problems.extend(check_agency(agency, settings.base_dir))
    return problems


def build(
    settings: GatewaySettings,
    agencies: dict[str, AgencyConfig],
    *,
    clock: Clock | None = None,
) -> Gateway:
    """Build a gateway from validated config. Raises ConfigError if a secret is unusable."""
    problems = check_all_secrets(settings, agencies)
    if problems:
        raise ConfigError(problems)
    base = settings.base_dir
    clock = clock or SystemClock()
    pii = PiiKeyRing.parse(settings.secrets.pii_keys.resolve(base))
    db = Database(
        settings.database.url,
        base_dir=base,
        pool_size=settings.database.pool_size,
        echo=settings.database.echo,
        sealer=pii,  # packets carry personal data: sealed at rest (gateway.dispatch.outbox)
    )
    signer = NoteSigner.from_text(settings.secrets.evidence_signing_key.resolve(base))
    metrics = Metrics()
    trust = {
        a.id: InboundTrust(
            agency_id=a.id,
            keys=tuple(
                parse_verifying_key(a.inbound.scheme, ref.resolve(base)) for ref in a.inbound.keys
            ),
            tolerance_seconds=a.inbound.tolerance_seconds
            or settings.server.signature_tolerance_seconds,
        )
        for a in agencies.values()
        if isinstance(a, WebhookAgency)
    }
    placements = PlacementService(
        db=db, agencies=agencies, pii=pii, settings=settings.allocation, clock=clock
    )
    return Gateway(
        settings=settings,
        agencies=agencies,
        db=db,
        clock=clock,
        metrics=metrics,
        pii=pii,
        evidence=EvidenceLog(db, signer, settings.secrets.evidence_origin),
        note_verifier=signer.verifier(),
        placements=placements,
        inbound=InboundService(
            db=db,
            trust=trust,
            clock=clock,
            metrics=metrics,
            max_body_bytes=settings.server.max_body_bytes,
        ),
        cases=CaseService(db=db, placements=placements, clock=clock),
        expiry=ExpiryService(
            db=db,
            agencies=agencies,
            placements=placements,
            settings=settings.allocation,
            clock=clock,
        ),
        escalations=EscalationService(
            db=db,
            agencies=agencies,
            placements=placements,
            settings=settings.allocation,
            clock=clock,
        ),
    )


__all__ = ["Gateway", "build", "check_all_secrets", "load_config"]
