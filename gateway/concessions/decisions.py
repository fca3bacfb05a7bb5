"""A person's decision on an agency's request, and what an approval does.

``ConcessionService.decide`` runs in one transaction: it locks the request, checks the move
(gateway.concessions.rules: the transition table, the person's role limits, four eyes), writes
the decision, its ``concession`` evidence leaf and the ``request.decided`` packet for the
agency, and the consequences of an approval:

- a **pause** puts a ``PAUSE`` hold on the case (gateway.cases.holds; the placement stays with
  the agency, which the packet tells to stop collecting until ``pause_until``);
  ``lift_pauses`` releases it the day after ``pause_until``;
- an **instalment plan** creates one payment expectation per instalment (kind
  ``promise_payment``, ref ``plan:<request id>:<n>``, due at the end of its due date plus the
  promise grace), so a missed instalment is breached by the SLA check as a
  ``broken_promise``, as a broken promise is;
- a **waiver** is the approved terms themselves: later promises and settled closes are
  checked against them (gateway.concessions.requests).

Two people deciding the same request at once get one decision: the row is locked and its
update is conditional on the state read, so the second is refused (ConcessionRefused).
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals import store as approvals
from gateway.approvals.rules import Person, payload_hash
from gateway.cases.holds import NewHold, add_holds, hold_leaf, release_holds
from gateway.clock import to_datetime
from gateway.concessions.packets import render_decided
from gateway.concessions.requests import REQUESTS, R, RequestRecord, get_request, record_of
from gateway.concessions.rules import (
    FOUR_EYES_ACTION,
    PAUSE_HOLD_CODE,
    ConcessionRefused,
    check_second_person,
    decision_event,
    limit_problems,
    next_state,
)
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import ConcessionsSection, FourEyesSection
from gateway.dispatch.queue import queue_packets
from gateway.evidence.log import LeafInput, append_leaves
from gateway.ports import Clock
from gateway.reconciliation.event_rules import PROMISE_GRACE
from gateway.reconciliation.kinds import NewExpectation
from gateway.reconciliation.recorder import insert_expectations
from gateway.store.case_tables import CaseHold
from gateway.store.database import Database
from gateway.store.tables import Case, Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
P, HC, C = PLACEMENTS.c, HOLDS.c, CASES.c


async def _case_status(conn: AsyncConnection, case_id: str) -> str:
    return str((await conn.execute(sa.select(C.status).where(C.id == case_id))).scalar_one())


def decision_leaf(record: RequestRecord, event: str, person: Person, note: str | None) -> LeafInput:
    return LeafInput(
        kind="concession",
        ref=f"concession:{record.id}",
        fields={
            "event": event,
            "agency_id": record.agency_id,
            "request_id": record.request_id,
            "placement_id": record.placement_id,
            "request_kind": record.kind,
            "by": person.name,
            "role": person.role,
            "terms_sha256": payload_hash(record.as_dict() | {"state": None}),
            "note": note or "",
        },
    )


def instalment_expectations(record: RequestRecord) -> list[tuple[str, str, NewExpectation]]:
    """One payment expectation per instalment of an approved plan: met by payments from the
    day after the previous due date (the approval for the first) to its due date plus the
    promise grace."""
    found = []
    start = record.decided_at or record.requested_at
    for n, inst in enumerate(record.terms.schedule, 1):
        due = datetime.combine(inst.due_date, time(23, 59, 59), tzinfo=UTC) + PROMISE_GRACE
        found.append(
            (
                record.placement_id,
                record.agency_id,
                NewExpectation(
                    "promise_payment",
                    f"plan:{record.request_id}:{n}",
                    due,
                    inst.amount_minor,
                    amount_lower_minor=inst.amount_minor,
                    currency=record.terms.currency,
                    window_start=start,
                ),
            )
        )
        start = datetime.combine(inst.due_date + timedelta(days=1), time(0), tzinfo=UTC)
    return found


class ConcessionService:
    """Ops decisions on agencies' requests (the CLI and the console).

    Args:
        db: the database.
        clock: time source.
        agencies: agency configs by id (the packet goes on the agency's channel).
        concessions: ``[concessions]`` limits and validity.
        four_eyes: ``[four_eyes]``, whose ``concession_approval`` rule says when a second
            person must check.
    """

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        agencies: Mapping[str, AgencyConfig],
        concessions: ConcessionsSection,
        four_eyes: FourEyesSection,
    ) -> None:
        self._db = db
        self._clock = clock
        self._agencies = agencies
        self._settings = concessions
        self._four_eyes = four_eyes

    async def decide(
        self, ref: str | int, *, approve: bool, person: Person, reason: str | None = None
    ) -> RequestRecord:
        """Approve or reject request ``ref`` (its id or ``AGENCY/REQUEST_ID``) as ``person``.
        An approval above the four-eyes threshold leaves it ``awaiting_check`` until a second
        person approves. Raises ConcessionRefused (or FourEyesRefused) saying why not."""
        now = to_datetime(self._clock.now())
        async with self._db.transaction() as conn:
            return await self.decide_in(
                conn, ref, approve=approve, person=person, reason=reason, now=now
            )

    async def decide_in(
        self,
        conn: AsyncConnection,
        ref: str | int,
        *,
        approve: bool,
        person: Person,
        reason: str | None,
        now: datetime,
    ) -> RequestRecord:
        """``decide`` in the caller's transaction."""
        record = await get_request(conn, ref)
        # Lock the row: a second decider waits here and then reads the decided state.
        await conn.execute(sa.select(R.id).where(R.id == record.id).with_for_update())
        record = await get_request(conn, record.id)
        limit = self._settings.limits.get(person.role)  # type: ignore[call-overload]
        if limit is None:
            raise ConcessionRefused(
                f"request {record.ref}: {person.name} is {person.role}, a role without "
                "[concessions.limits]: they may not decide requests"
            )
        if not approve:
            return await self._reject(conn, record, person, reason, now)
        if record.terms.problems:
            raise ConcessionRefused(
                f"request {record.ref} cannot be approved as asked: "
                + "; ".join(record.terms.problems)
                + ". Reject it with that reason"
            )
        problems = limit_problems(record.terms, limit, role=person.role, today=now.date())
        if problems:
            raise ConcessionRefused(
                f"request {record.ref}: " + "; ".join(problems) + ". A person of a role "
                "with wider [concessions.limits] may approve it, or reject it"
            )
        event = decision_event(record.terms, record.state, self._four_eyes)
        after = next_state(record.state, event, request=record.ref)
        if record.state == "awaiting_check":
            check_second_person(
                self._four_eyes,
                first=record.first_by or "",
                second=person.name,
                role=person.role,
                request=record.ref,
            )
            if record.approval_id is not None:
                await approvals.decide(
                    conn,
                    record.approval_id,
                    approve=True,
                    checker=person.name,
                    checker_role=person.role,
                    four_eyes=self._four_eyes,
                    now=now,
                    note=reason,
                )
        if after == "awaiting_check":
            approval = await approvals.request(
                conn,
                action=FOUR_EYES_ACTION,
                subject=f"concession:{record.ref}",
                payload=record.as_dict() | {"state": None},
                maker=person.name,
                now=now,
                amount_minor=record.terms.size,
                currency=record.terms.currency,
            )
            await self._move(
                conn,
                record,
                after,
                {"first_by": person.name[:64], "approval_id": approval.id},
            )
            moved = await get_request(conn, record.id)
            await append_leaves(conn, [decision_leaf(moved, "propose", person, reason)], now=now)
            return moved
        valid_until = self._valid_until(record, now)
        await self._move(
            conn,
            record,
            after,
            {
                "decided_by": person.name[:64],
                "decided_at": now,
                "decision_reason": None if reason is None else reason[:500],
                "valid_until": valid_until,
            },
        )
        decided = await get_request(conn, record.id)
        await append_leaves(conn, [decision_leaf(decided, "approve", person, reason)], now=now)
        await self._consequences(conn, decided, person, now)
        await self._tell(conn, decided, now)
        return decided

    def _valid_until(self, record: RequestRecord, now: datetime) -> date:
        if record.kind == "pause" and record.terms.pause_until is not None:
            return record.terms.pause_until
        if record.kind == "instalment" and record.terms.schedule:
            return record.terms.schedule[-1].due_date
        return now.date() + timedelta(days=self._settings.valid_days)

    async def _reject(
        self,
        conn: AsyncConnection,
        record: RequestRecord,
        person: Person,
        reason: str | None,
        now: datetime,
    ) -> RequestRecord:
        if not reason or not reason.strip():
            raise ConcessionRefused(
                f"request {record.ref}: a rejection needs a reason (--reason); the agency is "
                "told it"
            )
        after = next_state(record.state, "reject", request=record.ref)
        if record.state == "awaiting_check" and record.approval_id is not None:
            if person.name == record.first_by:
                await approvals.withdraw(conn, record.approval_id, by=person.name, now=now)
            else:
                await approvals.decide(
                    conn,
                    record.approval_id,
                    approve=False,
                    checker=person.name,
                    checker_role=person.role,
                    four_eyes=self._four_eyes,
                    now=now,
                    note=reason,
                )
        await self._move(
            conn,
            record,
            after,
            {
                "decided_by": person.name[:64],
                "decided_at": now,
                "decision_reason": reason.strip()[:500],
            },
        )
        decided = await get_request(conn, record.id)
        await append_leaves(conn, [decision_leaf(decided, "reject", person, reason)], now=now)
        await self._tell(conn, decided, now)
        return decided

    async def _move(
        self, conn: AsyncConnection, record: RequestRecord, after: str, values: dict[str, object]
    ) -> None:
        done = await conn.execute(
            REQUESTS.update()
            .where(R.id == record.id, R.state == record.state)
            .values(state=after, **values)
        )
        if done.rowcount != 1:
            raise ConcessionRefused(f"request {record.ref} was decided meanwhile; look again")

    async def _consequences(
        self, conn: AsyncConnection, record: RequestRecord, person: Person, now: datetime
    ) -> None:
        if record.kind == "instalment":
            await insert_expectations(conn, instalment_expectations(record), now=now)
        elif record.kind == "pause":
            actor = f"ops:{person.name}"
            note = f"{record.ref} until {record.terms.pause_until}"
            await add_holds(
                conn,
                [NewHold(record.case_id, PAUSE_HOLD_CODE, "ops", actor, note)],
                now=now,
            )
            status = await _case_status(conn, record.case_id)
            await append_leaves(
                conn,
                [
                    hold_leaf(
                        record.case_id,
                        action="add",
                        code=PAUSE_HOLD_CODE,
                        source="ops",
                        actor=actor,
                        status=str(status),
                        note=note,
                    )
                ],
                now=now,
            )

    async def _tell(self, conn: AsyncConnection, record: RequestRecord, now: datetime) -> None:
        agency = self._agencies.get(record.agency_id)
        if agency is None:
            return  # an agency removed from config since: nothing to send it on
        version = (
            await conn.execute(sa.select(P.version).where(P.id == record.placement_id))
        ).scalar_one()
        approved = record.state == "approved"
        packet = render_decided(
            agency_id=agency.id,
            placement_id=record.placement_id,
            case_id=record.case_id,
            version=int(version),
            request_id=record.request_id,
            kind=record.kind,
            decision="approved" if approved else "rejected",
            terms=record.terms if approved else None,
            reason=record.decision_reason,
            decided_at=record.decided_at or now,
            valid_until=record.valid_until if approved else None,
        )
        await queue_packets(conn, [(agency, record.placement_id, packet)], now=now)

    async def lift_pauses(self, *, actor: str = "system") -> list[RequestRecord]:
        """Release the ``PAUSE`` hold of every approved pause whose last day has passed;
        returns the requests lifted."""
        now = to_datetime(self._clock.now())
        async with self._db.transaction() as conn:
            rows = await conn.execute(
                sa.select(REQUESTS).where(
                    R.kind == "pause",
                    R.state == "approved",
                    R.lifted_at.is_(None),
                    R.pause_until < now.date(),
                )
            )
            lifted = [record_of(r) for r in rows]
            for record in lifted:
                holds = await conn.execute(
                    sa.select(HC.id).where(
                        HC.case_id == record.case_id,
                        HC.code == PAUSE_HOLD_CODE,
                        HC.released_at.is_(None),
                    )
                )
                ids = [int(h) for h in holds.scalars()]
                note = f"{record.ref} ended {record.terms.pause_until}"
                await release_holds(conn, ids, by=actor, now=now, note=note)
                await conn.execute(REQUESTS.update().where(R.id == record.id).values(lifted_at=now))
                await append_leaves(
                    conn,
                    [
                        hold_leaf(
                            record.case_id,
                            action="release",
                            code=PAUSE_HOLD_CODE,
                            source="ops",
                            actor=actor,
                            status=await _case_status(conn, record.case_id),
                            note=note,
                        )
                    ],
                    now=now,
                )
        return lifted


__all__ = ["ConcessionService", "decision_leaf", "instalment_expectations"]
