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
from adapters.email.link_service import DocumentLinks
from adapters.email.triage import VouchedReplyReader
from adapters.webhook import WebhookAdapter
from gateway.allocation.placements import PlacementService
from gateway.cases.escalation import EscalationService
from gateway.cases.expiry import ExpiryService
from gateway.cases.holds import CaseService
from gateway.clock import SystemClock, to_datetime
from gateway.complaints.service import ComplaintService
from gateway.complaints.store import DeadlinePolicy
from gateway.concessions.decisions import ConcessionService
from gateway.config.agencies import (
    AgencyConfig,
    EmailAgency,
    EndpointSection,
    RetrySection,
    WebhookAgency,
    load_agencies,
)
from gateway.config.settings import GatewaySettings, load_settings
from gateway.console.read_model import Circuits
from gateway.console.services import ConsoleServices
from gateway.console.sessions import Auth
from gateway.dispatch import outbox
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.documents.fetch import DocumentFetchService
from gateway.documents.prepare import PackPreparer
from gateway.documents.store import DocumentStore, FolderStore
from gateway.errors import ConfigError
from gateway.evaluation.service import EvaluationService
from gateway.evidence.log import EvidenceLog
from gateway.evidence.signed_note import NoteSigner, NoteVerifier
from gateway.inbound.service import InboundService, InboundTrust
from gateway.letters.service import LetterService
from gateway.metrics import Metrics
from gateway.notices.content import NOTICE_SENDER, NoticeTemplates
from gateway.notices.hooks import NoticeHooks
from gateway.notices.scan import NoticeScanner
from gateway.notices.service import NoticeService
from gateway.ports import AdapterContext, ChannelAdapter, Clock, Recipient
from gateway.privacy.debtor_keys import KeyingResult, key_debtors
from gateway.privacy.deletion import SweepResult, request_deletions
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation import columnar_worker
from gateway.reconciliation.engine import ReconEngine
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.register.gate import RegisterGate
from gateway.resolutions.actions import ResolutionService
from gateway.settlement.documents import renderer as statement_renderer
from gateway.settlement.fetch import StatementDocumentFetch
from gateway.settlement.packets import queue_statement
from gateway.settlement.statements import StatementService
from gateway.signing import parse_signing_key, parse_verifying_key
from gateway.store.database import Database
from gateway.verification.service import VerificationService

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
    notices: NoticeService
    """Borrower notices: the scan that queues them, their list and resend (gateway.notices)."""
    verification: VerificationService
    """The public collector-verification checks (gateway.verification)."""
    documents: DocumentStore
    """The lender's document store (``[documents] store``), hashed at intake."""
    document_fetch: DocumentFetchService
    """The webhook agencies' document fetch endpoint (gateway.documents.fetch)."""
    statement_fetch: StatementDocumentFetch
    """The webhook agencies' settlement statement documents (gateway.settlement.fetch)."""
    letters: LetterService | None = None
    """Issues and revokes authorisation letters (None without ``[lender] registration``)."""
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
                documents=self.documents,
                settings=self.settings,
            )
            for agency in self.agencies.values():
                self._adapters[agency.id] = ADAPTERS[agency.channel](agency, context)
            recipients: dict[str, Recipient] = {**self.agencies}
            recipients[NOTICE_SENDER] = notice_recipient(self.settings)
            if self.settings.notices.enabled:
                self._adapters[NOTICE_SENDER] = notice_adapter(self.settings, context)
            self._dispatcher = Dispatcher(
                db=self.db,
                adapters=self._adapters,
                agencies=recipients,
                hooks=NoticeHooks(ReconciliationHooks(agencies=self.agencies)),
                clock=self.clock,
                batch_size=self.settings.dispatch.batch_size,
                lease_seconds=self.settings.dispatch.lease_seconds,
                metrics=self.metrics,
            )
            circuits = self._dispatcher.circuits
            self.metrics.watch_circuits(lambda: circuits)
        return self._dispatcher

    def document_links(self) -> DocumentLinks | None:
        """The handler of law firms' document links (adapters.email.link_service); None when
        no firm has ``[email.links]``."""
        keys = {
            a.id: a.email.links.key.resolve(self.settings.base_dir).encode()
            for a in self.agencies.values()
            if isinstance(a, EmailAgency) and a.email.links is not None
        }
        if not keys:
            return None
        return DocumentLinks(db=self.db, keys=keys, documents=self.documents, clock=self.clock.now)

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

    async def key_debtors(self, *, everything: bool = False) -> KeyingResult:
        """Key the cases without a debtor key, or all of them when the key changed
        (gateway.privacy.debtor_keys); ``serve`` does it on start."""
        return await key_debtors(self.db, self.pii, everything=everything)

    def resolutions(self) -> ResolutionService:
        """The mismatch actions (the console and ``mismatches resolve`` act through it)."""
        return ResolutionService(
            db=self.db,
            placements=self.placements,
            agencies=self.agencies,
            clock=self.clock,
            vouched_replies=VouchedReplyReader(
                base_dir=self.settings.base_dir, arrival=ArrivalPolicy.of(self.settings)
            ),
            four_eyes=self.settings.four_eyes,
        )

    def statements(self) -> StatementService:
        """Monthly settlement statements (``settlement`` commands, the console, inbound
        confirmations); the PDF is signed with the lender's letter key when [lender] has one."""
        signer = None
        if self.letters is not None:
            try:
                signer = self.letters.maker().signer
            except ConfigError:
                log.warning("settlement statements: [lender] signing is not ready; PDFs unsigned")
        return StatementService(
            self.db,
            self.agencies,
            self.clock,
            legal_tier=self.settings.allocation.legal_tier,
            renderer=statement_renderer(signer),
            sender=queue_statement,
        )

    def complaints(self) -> ComplaintService:
        """Complaints about collection (``complaints`` commands, the console, the lender's
        complaint webhook), with ``[complaints]`` deadlines in the lender's time zone."""
        section = self.settings.complaints
        return ComplaintService(
            db=self.db,
            clock=self.clock,
            pii=self.pii,
            cases=self.cases,
            policy=DeadlinePolicy.of(section, ZoneInfo(self.settings.reconciliation.timezone)),
            hold_on_open=section.hold_on_open,
        )

    def evaluations(self) -> EvaluationService:
        """Annual agency evaluations (``evaluation`` commands, the console, the demo); the
        PDFs are signed with the lender's letter key when [lender] has one."""
        signer = None
        if self.letters is not None:
            try:
                signer = self.letters.maker().signer
            except ConfigError:
                log.warning("annual evaluations: [lender] signing is not ready; PDFs unsigned")
        return EvaluationService(
            self.db,
            rules=self.settings.evaluation,
            four_eyes=self.settings.four_eyes,
            signer=signer,
            agencies=self.agencies,
        )

    def concessions(self) -> ConcessionService:
        """Decisions on agencies' waiver, instalment and pause requests (``requests``
        commands, the console)."""
        return ConcessionService(
            db=self.db,
            clock=self.clock,
            agencies=self.agencies,
            concessions=self.settings.concessions,
            four_eyes=self.settings.four_eyes,
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
            four_eyes=self.settings.four_eyes,
            statements=self.statements(),
            evaluations=self.evaluations(),
            concessions=self.concessions(),
            complaints=self.complaints(),
            scorecards=self.settings.scorecards,
            register=self.settings.agency_register,
        )

    async def aclose(self) -> None:
        await self.inbound.aclose()
        for adapter in self._adapters.values():
            await adapter.aclose()
        if self._session is not None:
            await self._session.close()
        if self.letters is not None:
            self.letters.close()
        columnar_worker.shutdown()  # reconciliation's worker process, if it was started
        await self.db.dispose()


@dataclass(frozen=True, slots=True)
class NoticeRecipient:
    """The lender's messaging service as the dispatcher sees it (``gateway.ports.Recipient``).
    Always known to the dispatcher, so notices queued while ``[notices]`` was on wait (and
    are never claimed) while it is off."""

    id: str
    retry: RetrySection


def notice_recipient(settings: GatewaySettings) -> NoticeRecipient:
    r = settings.notices.retry
    return NoticeRecipient(
        NOTICE_SENDER,
        RetrySection(
            max_attempts=r.max_attempts,
            base_seconds=r.base_seconds,
            cap_seconds=r.cap_seconds,
            concurrency=r.concurrency,
            max_retry_after_seconds=r.max_retry_after_seconds,
        ),
    )


def notice_adapter(settings: GatewaySettings, context: AdapterContext) -> WebhookAdapter:
    """The signed webhook to the lender's messaging service (``[notices]``)."""
    notices = settings.notices
    if notices.url is None:
        raise ConfigError("[notices] url is required when notices are enabled")
    return WebhookAdapter(
        recipient=NOTICE_SENDER,
        endpoint=EndpointSection(
            url=notices.url,
            timeout_seconds=notices.timeout_seconds,
            connect_timeout_seconds=notices.connect_timeout_seconds,
            allow_plain_http=notices.allow_plain_http,
        ),
        keys=[
            parse_signing_key(notices.scheme, ref.resolve(settings.base_dir))
            for ref in notices.keys
        ],
        session=context.http,
        clock=context.clock,
    )


def notice_service(
    settings: GatewaySettings, agencies: dict[str, AgencyConfig], db: Database, clock: Clock
) -> NoticeService:
    """The notice service; its scanner only while ``[notices]`` is on."""
    notices = settings.notices
    scanner = None
    if notices.enabled:
        override = settings.base_dir / notices.templates_dir if notices.templates_dir else None
        scanner = NoticeScanner(
            agencies=agencies,
            lender=settings.lender,
            settings=notices,
            templates=NoticeTemplates(notices.languages, override_dir=override),
            lender_id=settings.gateway.lender_id,
            zone=ZoneInfo(settings.reconciliation.timezone),
        )
    return NoticeService(db=db, scanner=scanner, clock=clock)


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
    notices = settings.notices
    if notices.enabled:
        for i, ref in enumerate(notices.keys):
            try:
                parse_signing_key(notices.scheme, ref.resolve(settings.base_dir))
            except ConfigError as exc:
                problems.append(f"{source}: notices.keys[{i}] ({ref.describe()}): {exc}")
        if settings.lender.registration is None:
            problems.append(
                f"{source}: [notices] enabled needs [lender.registration] (every notice "
                "names the lender)"
            )
    for agency in agencies.values():
        problems.extend(check_agency(agency, settings.base_dir))
    return problems


def check_letters(settings: GatewaySettings, agencies: dict[str, AgencyConfig]) -> list[str]:
    """What would stop allocation issuing authorisation letters (``[documents] letters =
    "required"``): the lender's registration, the signing certificate and key, the font, and
    every enabled agency's registration. Empty when letters are off or ready."""
    source = str(settings.config_path or "gateway.toml")
    if settings.documents.letters != "required":
        return []
    if settings.lender.registration is None:
        return [
            f'{source}: [lender] registration: missing; [documents] letters = "required" '
            "refuses to place cases without it (README 'Authorisation letters')"
        ]
    try:
        pii = PiiKeyRing.parse(settings.secrets.pii_keys.resolve(settings.base_dir))
    except ConfigError:
        return []  # reported by check_all_secrets
    service = LetterService(
        lender=settings.lender,
        agencies=agencies,
        pii=pii,
        base_dir=settings.base_dir,
        config_file=source,
        zone=ZoneInfo(settings.reconciliation.timezone),
        workers=1,
    )
    try:
        return service.problems(a.id for a in agencies.values() if a.enabled)
    finally:
        service.close()


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
    channels = {a.id: a.channel for a in agencies.values()}
    metrics = Metrics(channels={**channels, NOTICE_SENDER: "webhook"}, clock=clock.now)
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
    store_path = Path(settings.documents.store)
    documents = FolderStore(store_path if store_path.is_absolute() else base / store_path)
    # The letter service (gateway.letters) exists once the lender's registration is
    # configured (a missing signing certificate or agency registration is a ConfigError when
    # a letter is issued); without it, [documents] letters = "required" refuses to place
    # cases (gateway.documents.prepare.LettersUnavailable).
    letters = (
        LetterService(
            lender=settings.lender,
            agencies=agencies,
            pii=pii,
            base_dir=base,
            config_file=str(settings.config_path or "gateway.toml"),
            zone=ZoneInfo(settings.reconciliation.timezone),
            workers=settings.lender.letter_workers,
        )
        if settings.lender.registration is not None
        else None
    )
    placements = PlacementService(
        db=db,
        agencies=agencies,
        pii=pii,
        settings=settings.allocation,
        clock=clock,
        packs=PackPreparer(
            # "off": placements carry no letter, even where the lender could issue one.
            letters=letters if settings.documents.letters == "required" else None,
            require_letters=settings.documents.letters == "required",
            statements=settings.documents.statements,
            verify_url=settings.lender.verify_url,
        ),
        register=RegisterGate(
            enforce=settings.agency_register.enforce,
            zone=ZoneInfo(settings.reconciliation.timezone),
        ),
    )
    return Gateway(
        settings=settings,
        agencies=agencies,
        letters=letters,
        db=db,
        clock=clock,
        metrics=metrics,
        pii=pii,
        evidence=EvidenceLog(db, signer, settings.secrets.evidence_origin),
        note_verifier=signer.verifier(),
        notices=notice_service(settings, agencies, db, clock),
        verification=VerificationService(
            db=db,
            pii=pii,
            agencies=agencies,
            settings=settings.verification,
            zone=ZoneInfo(settings.reconciliation.timezone),
            clock=clock,
            metrics=metrics,
        ),
        placements=placements,
        inbound=InboundService(
            db=db,
            trust=trust,
            clock=clock,
            metrics=metrics,
            max_body_bytes=settings.server.max_body_bytes,
            arrival=ArrivalPolicy.of(settings),
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
        documents=documents,
        document_fetch=DocumentFetchService(db=db, trust=trust, store=documents, clock=clock),
        statement_fetch=StatementDocumentFetch(db=db, trust=trust, clock=clock),
    )


__all__ = ["Gateway", "build", "check_all_secrets", "load_config"]
