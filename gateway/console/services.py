"""What the console's handlers share: the services they call, and how a request's query or
form becomes a mismatch filter, a case filter or an action request (the same for pages and
the JSON API).
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDict, MultiMapping

from gateway.cases.escalation import EscalationService
from gateway.cases.expiry import ExpiryService
from gateway.cases.holds import CaseService
from gateway.cases.views import DEFAULT_LIMIT, CaseFilter
from gateway.complaints.service import ComplaintService
from gateway.concessions.decisions import ConcessionService
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import (
    ConsoleSection,
    FourEyesSection,
    RegisterSection,
    ScorecardsSection,
)
from gateway.console.i18n import SHANGHAI
from gateway.console.read_model import Circuits
from gateway.console.sessions import Auth
from gateway.errors import GatewayError
from gateway.evaluation.service import EvaluationService
from gateway.evidence.log import EvidenceLog
from gateway.evidence.signed_note import NoteVerifier
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import DEFAULT_RECALL_CODE, ActionRequest, MismatchFilter
from gateway.settlement.statements import StatementService
from gateway.store.database import Database

ALL: Final = "all"
UNASSIGNED: Final = "-"
_INT = re.compile(r"^\d{1,12}$")


@dataclass(frozen=True)
class ConsoleServices:
    """Everything the console needs from one gateway process.

    ``circuits`` returns the dispatcher's circuit breakers when this process runs one (their
    state lives in memory), or None.
    """

    db: Database
    agencies: Mapping[str, AgencyConfig]
    pii: PiiKeyRing
    resolutions: ResolutionService
    settings: ConsoleSection
    clock: Clock
    auth: Auth
    circuits: Callable[[], Circuits | None] = field(default=lambda: None)
    evidence: EvidenceLog | None = None
    """The evidence log and the key that verifies its checkpoints, for case bundles."""
    note_verifier: NoteVerifier | None = None
    cases: CaseService | None = None
    """Holds, releases and reopenings (the case page's actions); so are the next two."""
    expiry: ExpiryService | None = None
    escalations: EscalationService | None = None
    zone: ZoneInfo = SHANGHAI
    """The lender's time zone (``reconciliation.timezone``): the console shows times in it."""
    four_eyes: FourEyesSection = field(default_factory=FourEyesSection)
    """Who may approve what (``[four_eyes]``): claim batches and approvals pages."""
    statements: StatementService | None = None
    """Monthly settlement statements (gateway.console.settlement_pages)."""
    evaluations: EvaluationService | None = None
    """Annual agency evaluations (gateway.console.evaluation_pages)."""
    concessions: ConcessionService | None = None
    """Agencies' waiver, instalment and pause requests (gateway.console.request_pages)."""
    complaints: ComplaintService | None = None
    """Complaints about collection (gateway.console.complaint_pages)."""
    scorecards: ScorecardsSection = field(default_factory=ScorecardsSection)
    """Strata and intervals of the fair scorecards (gateway.console.scorecard_pages)."""
    register: RegisterSection = field(default_factory=RegisterSection)
    """``[register]``: enforcement and reminder days (gateway.console.register_pages)."""

    def may_reveal(self, role: str) -> bool:
        return role in self.settings.pii_reveal_roles


CONSOLE_KEY = web.AppKey("console", ConsoleServices)


async def read_form(request: web.Request) -> MultiDict[str]:
    """The request's form fields that are text (uploads are ignored)."""
    form = await request.post()
    return MultiDict((k, v) for k, v in form.items() if isinstance(v, str))


def _values(query: MultiMapping[str], name: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in query.getall(name, ()) if v.strip())


def _days(query: MultiMapping[str], name: str) -> int | None:
    text = query.get(name, "").strip()
    if not text:
        return None
    if not _INT.match(text):
        raise GatewayError(f"{name}: {text!r} is not a number of days; write it like 7")
    return int(text)


def _amount(query: MultiMapping[str], name: str) -> int | None:
    text = query.get(name, "").strip()
    return minor_units(text) if text else None


def filter_from(query: MultiMapping[str], *, now: datetime | None = None) -> MismatchFilter:
    """``state`` (repeatable; ``all`` for every state; default open and investigating),
    ``kind``, ``agency``, ``severity`` (repeatable), ``assignee`` (``-`` for unassigned),
    ``q`` (placement or case id prefix), ``id`` (repeatable), ``upto`` (the highest id a
    page counted), ``older_than`` and ``newer_than`` (days before ``now``), ``min_amount``
    and ``max_amount`` (the size of the difference, like 1234.56)."""
    states = _values(query, "state")
    assignee = query.get("assignee", "").strip()
    older, newer = _days(query, "older_than"), _days(query, "newer_than")
    return MismatchFilter(
        older_than_days=older,
        newer_than_days=newer,
        as_of=(now or datetime.now(UTC)) if older is not None or newer is not None else None,
        min_amount_minor=_amount(query, "min_amount"),
        max_amount_minor=_amount(query, "max_amount"),
        states=() if ALL in states else (states or ("open", "investigating")),
        kinds=_values(query, "kind"),
        agencies=_values(query, "agency"),
        severities=_values(query, "severity"),
        assignee=None if not assignee else ("" if assignee == UNASSIGNED else assignee),
        search=query.get("q", "").strip() or None,
        ids=tuple(int(v) for v in _values(query, "id") if _INT.match(v)),
        upto_id=int(upto) if _INT.match(upto := query.get("upto", "").strip()) else None,
    )


def filter_query(target: MismatchFilter) -> list[tuple[str, str]]:
    """The query parameters that ``filter_from`` turns back into ``target``."""
    params = [("state", s) for s in target.states] or [("state", ALL)]
    params += [("kind", k) for k in target.kinds] + [("agency", a) for a in target.agencies]
    params += [("severity", s) for s in target.severities]
    if target.assignee is not None:
        params.append(("assignee", target.assignee or UNASSIGNED))
    if target.search:
        params.append(("q", target.search))
    for name, days in (
        ("older_than", target.older_than_days),
        ("newer_than", target.newer_than_days),
    ):
        if days is not None:
            params.append((name, str(days)))
    for name, minor in (
        ("min_amount", target.min_amount_minor),
        ("max_amount", target.max_amount_minor),
    ):
        if minor is not None:
            params.append((name, str(Decimal(minor).scaleb(-2))))
    return params


def _flag(query: MultiMapping[str], name: str) -> bool | None:
    value = query.get(name, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise GatewayError(f"{name}: {value!r} is neither true nor false")


_DEBTOR_KEY = re.compile(r"^[0-9a-f]{64}$")


def debtor_keys(text: str, ring: PiiKeyRing) -> tuple[str, ...]:
    """The debtor keys of the spellings a search tries for ``text`` (as typed, upper, lower)."""
    text = text.strip()
    return tuple(sorted({ring.debtor_key(t) for t in (text, text.upper(), text.lower())}))


def case_filter_from(query: MultiMapping[str], ring: PiiKeyRing) -> CaseFilter:
    """``status``, ``bucket``, ``agency``, ``tier``, ``hold`` (hold code; all repeatable),
    ``held`` and ``unallocated`` (true or false), ``debtor_key`` (one debtor's keyed hash, as
    the search and the case pages link it) and ``q`` (any id: case, placement, the agency's
    case reference, or a debtor id, found by its key). A debtor id in clear (``debtor``) is
    refused: it would sit in URLs and access logs."""
    if query.get("debtor", "").strip():
        raise GatewayError(
            "debtor: the console does not take a debtor id in a URL; type it in the search "
            "box, which links to the debtor's cases by its key (debtor_key)"
        )
    debtor_key = query.get("debtor_key", "").strip().lower() or None
    if debtor_key is not None and not _DEBTOR_KEY.match(debtor_key):
        raise GatewayError("debtor_key: expected 64 hex digits, as the search links it")
    search = query.get("q", "").strip() or None
    return CaseFilter(
        statuses=_values(query, "status"),
        buckets=_values(query, "bucket"),
        agencies=_values(query, "agency"),
        tiers=_values(query, "tier"),
        held=_flag(query, "held"),
        hold_codes=_values(query, "hold"),
        debtor_key=debtor_key,
        unallocated=_flag(query, "unallocated"),
        search=search,
        search_keys=debtor_keys(search, ring) if search else (),
    )


def case_filter_query(target: CaseFilter) -> list[tuple[str, str]]:
    """The query parameters that ``case_filter_from`` turns back into ``target``."""
    params = [("status", s) for s in target.statuses] + [("bucket", b) for b in target.buckets]
    params += [("agency", a) for a in target.agencies] + [("tier", t) for t in target.tiers]
    params += [("hold", h) for h in target.hold_codes]
    for name, flag in (("held", target.held), ("unallocated", target.unallocated)):
        if flag is not None:
            params.append((name, "true" if flag else "false"))
    if target.debtor_key:
        params.append(("debtor_key", target.debtor_key))
    if target.search:
        params.append(("q", target.search))
    return params


def page_limit(query: MultiMapping[str], name: str = "limit") -> int:
    """A positive page size from the query (the reader caps it), or the default."""
    text = query.get(name, "").strip()
    return int(text) if _INT.match(text) and int(text) > 0 else DEFAULT_LIMIT


def minor_units(text: str) -> int:
    """``1234.56`` → 123456 (exact decimal arithmetic; at most two decimals)."""
    try:
        value = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise GatewayError(f"{text!r} is not an amount; write it like 1234.56") from None
    minor = value * 100
    if minor != minor.to_integral_value():
        raise GatewayError(f"{text!r} has more than two decimals")
    return int(minor)


def action_request(form: MultiMapping[str], actor: str) -> ActionRequest:
    """An action request from a console form or API body (strings)."""
    balance = form.get("balance", "").strip()
    balance_minor = form.get("balance_minor", "").strip()
    return ActionRequest(
        action=form.get("action", "").strip(),
        actor=actor,
        reason=form.get("reason", "").strip(),
        assignee=form.get("assignee"),
        balance_minor=(
            int(balance_minor)
            if balance_minor.lstrip("-").isdigit()
            else (minor_units(balance) if balance else None)
        ),
        recall_code=form.get("recall_code", "").strip() or DEFAULT_RECALL_CODE,
        approval_id=int(approval)
        if (approval := str(form.get("approval_id", "")).strip()).isdigit()
        else None,
    )


__all__ = [
    "ALL",
    "CONSOLE_KEY",
    "UNASSIGNED",
    "ConsoleServices",
    "action_request",
    "case_filter_from",
    "case_filter_query",
    "debtor_keys",
    "filter_from",
    "filter_query",
    "minor_units",
    "page_limit",
    "read_form",
]
