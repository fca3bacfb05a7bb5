"""The ``concession_requests`` table: requests stored as they arrive, read back for ops, and
the checks of later events against approved terms.

``on_arrival`` runs inside the inbound transaction (gateway.reconciliation.recorder calls it
after the event rules): each applied ``*.requested`` event becomes a ``pending`` request (the
same request id again from the same agency is a harmless repeat), and each applied
``promise.made`` or ``case.closed`` (reason ``settled``) is checked against the placement's
approved terms (gateway.concessions.rules): ``unapproved_terms`` and ``unapproved_waiver``,
with the event's dedupe key ``<kind>:event:<event id>``.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.concessions.rules import (
    KIND_OF_EVENT,
    Instalment,
    RequestKind,
    Terms,
    promise_within_terms,
    settlement_within_terms,
    terms_of,
)
from gateway.errors import NotFound
from gateway.reconciliation.kinds import MismatchDraft, PlacementView
from gateway.store.concession_tables import ConcessionRequest
from gateway.store.database import dialect_insert
from schemas.base import money_text
from schemas.events import (
    AgencyEvent,
    CaseClosed,
    InstalmentRequested,
    PauseRequested,
    PromiseMade,
    WaiverRequested,
)

REQUESTS = ConcessionRequest.__table__  # type: ignore[attr-defined]
R = REQUESTS.c
_CHUNK = 500

MismatchRow = tuple[str, MismatchDraft, str, int | None, int | None]
"""(dedupe key, draft, agency id, event id, run id): what recorder.insert_mismatches takes."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    id: int
    agency_id: str
    request_id: str
    placement_id: str
    case_id: str
    kind: RequestKind
    state: str
    terms: Terms
    reason: str
    evidence_ref: str | None
    requested_at: datetime
    first_by: str | None
    approval_id: int | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    valid_until: date | None
    lifted_at: datetime | None

    @property
    def ref(self) -> str:
        """How people name it: ``AGENCY/REQUEST_ID``."""
        return f"{self.agency_id}/{self.request_id}"

    def as_dict(self) -> dict[str, object]:
        t = self.terms
        return {
            "id": self.id,
            "agency_id": self.agency_id,
            "request_id": self.request_id,
            "placement_id": self.placement_id,
            "case_id": self.case_id,
            "kind": self.kind,
            "state": self.state,
            "currency": t.currency,
            "balance_minor": t.balance_minor,
            "waive_minor": t.waive_minor if t.kind == "waiver" else None,
            "settle_minor": t.settle_minor,
            "total_minor": t.total_minor,
            "schedule": [[i.due_date.isoformat(), i.amount_minor] for i in t.schedule] or None,
            "pause_from": None if t.pause_from is None else t.pause_from.isoformat(),
            "pause_until": None if t.pause_until is None else t.pause_until.isoformat(),
            "problems": list(t.problems),
            "reason": self.reason,
            "evidence_ref": self.evidence_ref,
            "requested_at": self.requested_at.isoformat(),
            "first_by": self.first_by,
            "approval_id": self.approval_id,
            "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "decision_reason": self.decision_reason,
            "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
            "lifted_at": None if self.lifted_at is None else self.lifted_at.isoformat(),
        }


def schedule_json(schedule: Sequence[Instalment]) -> str | None:
    if not schedule:
        return None
    return json.dumps([[i.due_date.isoformat(), i.amount_minor] for i in schedule])


def _schedule(text: str | None) -> tuple[Instalment, ...]:
    if not text:
        return ()
    return tuple(Instalment(date.fromisoformat(d), int(a)) for d, a in json.loads(text))


def terms_of_row(row: Any) -> Terms:
    return Terms(
        row.kind,
        row.currency,
        row.balance_minor,
        waive_minor=row.waive_minor or 0,
        settle_minor=row.settle_minor,
        schedule=_schedule(row.schedule),
        total_minor=row.total_minor,
        pause_from=row.pause_from,
        pause_until=row.pause_until,
        problems=tuple(p for p in (row.problems or "").split("\n") if p),
    )


def record_of(row: Any) -> RequestRecord:
    return RequestRecord(
        id=row.id,
        agency_id=row.agency_id,
        request_id=row.request_id,
        placement_id=row.placement_id,
        case_id=row.case_id,
        kind=row.kind,
        state=row.state,
        terms=terms_of_row(row),
        reason=row.reason,
        evidence_ref=row.evidence_ref,
        requested_at=row.requested_at,
        first_by=row.first_by,
        approval_id=row.approval_id,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_reason=row.decision_reason,
        valid_until=row.valid_until,
        lifted_at=row.lifted_at,
    )


def request_row(
    agency_id: str,
    event: WaiverRequested | InstalmentRequested | PauseRequested,
    placement: PlacementView,
    event_id: int,
    now: datetime,
) -> dict[str, object]:
    terms = terms_of(
        event,
        balance_minor=placement.balance_minor,
        currency=placement.currency,
        today=now.date(),
    )
    data = event.data
    return {
        "agency_id": agency_id,
        "request_id": data.request_id,
        "placement_id": placement.id,
        "case_id": placement.case_id,
        "kind": KIND_OF_EVENT[event.type],
        "state": "pending",
        "currency": placement.currency,
        "balance_minor": placement.balance_minor,
        "waive_minor": terms.waive_minor if terms.kind == "waiver" else None,
        "settle_minor": terms.settle_minor,
        "total_minor": terms.total_minor,
        "schedule": schedule_json(terms.schedule),
        "pause_from": terms.pause_from,
        "pause_until": terms.pause_until,
        "reason": data.reason[:500],
        "evidence_ref": getattr(data, "evidence_ref", None),
        "problems": "\n".join(terms.problems)[:1000] or None,
        "event_id": event_id,
        "requested_at": event.timestamp,
    }


async def approved_terms(
    conn: AsyncConnection, placement_ids: Iterable[str]
) -> dict[str, list[tuple[Terms, date | None]]]:
    """placement id → the waiver and plan terms approved on it, with their ``valid_until``
    (whether a promise falls within it is the rules' call)."""
    found: dict[str, list[tuple[Terms, date | None]]] = {}
    ids = sorted(set(placement_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            sa.select(REQUESTS)
            .where(R.placement_id.in_(ids[start : start + _CHUNK]), R.state == "approved")
            .order_by(R.id)
        )
        for row in rows:
            if row.kind != "pause":
                found.setdefault(row.placement_id, []).append((terms_of_row(row), row.valid_until))
    return found


def term_mismatches(
    checks: Sequence[tuple[str, int, AgencyEvent, PlacementView]],
    approved: Mapping[str, list[tuple[Terms, date | None]]],
) -> list[MismatchRow]:
    """The mismatches of promises and settled closes against approved terms (pure): each
    check is (agency id, event id, event, the placement before the event)."""
    found: list[MismatchRow] = []
    for agency_id, event_id, event, before in checks:
        terms = approved.get(before.id, [])
        outstanding = before.balance_minor - before.collected_minor
        ours: dict[str, object] = {
            "balance": money_text(before.balance_minor, before.currency),
            "collected": money_text(before.collected_minor, before.currency),
            "approved_terms": len(terms),
        }
        if isinstance(event, PromiseMade):
            amount = event.data.amount.amount_minor
            if promise_within_terms(
                amount,
                event.data.promised_date,
                outstanding_minor=outstanding,
                collected_minor=before.collected_minor,
                approved=terms,
            ):
                continue
            draft = MismatchDraft(
                "unapproved_terms",
                before.id,
                f"{agency_id} recorded promise {event.data.promise_id} of "
                f"{event.data.amount} by {event.data.promised_date} on {before.id}, below the "
                f"{money_text(outstanding, before.currency)} outstanding and matching no approved "
                "waiver or instalment plan",
                ours,
                {
                    "type": event.type,
                    "promise_id": event.data.promise_id,
                    "amount": str(event.data.amount),
                    "promised_date": event.data.promised_date.isoformat(),
                },
                amount - outstanding,
            )
        elif isinstance(event, CaseClosed):
            if settlement_within_terms(
                balance_minor=before.balance_minor,
                collected_minor=before.collected_minor,
                approved=[t for t, _ in terms],
            ):
                continue
            draft = MismatchDraft(
                "unapproved_waiver",
                before.id,
                f"{agency_id} closed {before.id} as settled with "
                f"{money_text(before.collected_minor, before.currency)} of "
                f"{money_text(before.balance_minor, before.currency)} collected, and no approved "
                "waiver covers the difference",
                ours,
                {"type": event.type, "reason": event.data.reason},
                before.collected_minor - before.balance_minor,
            )
        else:
            continue
        found.append((f"{draft.kind}:event:{event_id}", draft, agency_id, event_id, None))
    return found


async def on_arrival(
    conn: AsyncConnection,
    arrived: Sequence[tuple[str, int, AgencyEvent, PlacementView | None, bool]],
    *,
    now: datetime,
) -> list[MismatchRow]:
    """Store requests and check promises and settled closes (see the module docstring).
    ``arrived`` is (agency id, event id, event, placement before it, applied) per event;
    returns the mismatches for the caller to insert."""
    rows = []
    checks: list[tuple[str, int, AgencyEvent, PlacementView]] = []
    for agency_id, event_id, event, before, applied in arrived:
        if not applied or before is None:
            continue
        if isinstance(event, WaiverRequested | InstalmentRequested | PauseRequested):
            rows.append(request_row(agency_id, event, before, event_id, now))
        elif isinstance(event, PromiseMade) or (
            isinstance(event, CaseClosed) and event.data.reason == "settled"
        ):
            checks.append((agency_id, event_id, event, before))
    if rows:
        await conn.execute(
            dialect_insert(conn, REQUESTS).on_conflict_do_nothing(
                index_elements=["agency_id", "request_id"]
            ),
            rows,
        )
    if not checks:
        return []
    approved = await approved_terms(conn, (c[3].id for c in checks))
    return term_mismatches(checks, approved)


async def get_request(conn: AsyncConnection, ref: str | int) -> RequestRecord:
    """A request by its row id or ``AGENCY/REQUEST_ID``; NotFound naming how to list them."""
    query = sa.select(REQUESTS)
    if isinstance(ref, int) or str(ref).isdigit():
        query = query.where(R.id == int(ref))
    elif "/" in str(ref):
        agency, request_id = str(ref).split("/", 1)
        query = query.where(R.agency_id == agency, R.request_id == request_id)
    else:
        raise NotFound(f"{ref!r}: name a request by its id or AGENCY/REQUEST_ID (`requests list`)")
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"request {ref} does not exist; `agency-gateway requests list` shows them")
    return record_of(row)


async def list_requests(
    conn: AsyncConnection,
    *,
    states: Sequence[str] | None = None,
    agency_id: str | None = None,
    case_id: str | None = None,
    limit: int = 200,
) -> list[RequestRecord]:
    """Requests, oldest first (the queue order)."""
    query = sa.select(REQUESTS).order_by(R.id).limit(limit)
    if states:
        query = query.where(R.state.in_(list(states)))
    if agency_id is not None:
        query = query.where(R.agency_id == agency_id)
    if case_id is not None:
        query = query.where(R.case_id == case_id)
    return [record_of(r) for r in await conn.execute(query)]


__all__ = [
    "REQUESTS",
    "MismatchRow",
    "RequestRecord",
    "approved_terms",
    "get_request",
    "list_requests",
    "on_arrival",
    "record_of",
    "request_row",
    "schedule_json",
    "term_mismatches",
    "terms_of_row",
]
