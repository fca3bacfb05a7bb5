"""Escalation to the legal tier: a placed case that crossed the legal threshold is taken back
from its collection agency so that the next allocation places it with a law firm.

Theory of operation
-------------------
Which placements need it is one rule, gateway.cases.terms.needs_escalation: the case's
bucket is ``LEGAL`` and the placement's agency is not of ``[allocation] legal_tier``.
``EscalationService.scan`` finds the open ones that have no escalation yet and, by
``[allocation] escalation``:

* ``off``: leaves them;
* ``auto``: recalls each at once (``PlacementService.recall_in``, code
  ``LEGAL_ESCALATION``, case event ``escalate``, actor ``escalation``) and records the
  escalation as ``approved`` by ``escalation``;
* ``approval`` (default): records it as ``proposed``, for ops to ``approve`` (which recalls
  it the same way, as the approving person) or ``reject``.

An escalation moves by gateway.cases.terms.ESCALATION_TRANSITIONS. There is at most one per
placement (a unique index): a rejected one is never proposed again for that placement, and
two scans at once cannot propose it twice. Each proposal, approval and rejection appends an
``escalation`` evidence leaf on the case; the recall adds its own. A case moved by
``escalate`` goes to the legal tier at the next allocation, without the cool-off.
"""

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import PlacementService
from gateway.cases.terms import (
    ESCALATION_CODE,
    ESCALATION_TRANSITIONS,
    LEGAL_BUCKET,
    needs_escalation,
    next_escalation_state,
)
from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.ports import Clock
from gateway.store.case_tables import Escalation
from gateway.store.database import Database, dialect_insert
from gateway.store.tables import Case, Placement

log = logging.getLogger(__name__)

ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
E, P, C = ESCALATIONS.c, PLACEMENTS.c, CASES.c

ESCALATION_STATES = tuple(ESCALATION_TRANSITIONS)
_BATCH = 200
_TEXT = 500


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open placement that needs escalation and has none yet."""

    placement_id: str
    case_id: str
    agency_id: str
    reason: str


@dataclass(slots=True)
class ScanReport:
    """What one scan did: ``proposed`` escalation ids (approval), placements ``recalled``
    by agency (auto), and what it left (``off``, or ended meanwhile)."""

    mode: str
    found: int = 0
    proposed: list[int] = field(default_factory=list)
    recalled: Counter[str] = field(default_factory=Counter)
    recalled_ids: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EscalationView:
    """One escalation as ``cases escalations`` and the console show it."""

    id: int
    case_id: str
    placement_id: str
    agency_id: str
    state: str
    reason: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    placement_state: str | None


def _text(value: str | None) -> str | None:
    return value[:_TEXT] if value else None


class EscalationService:
    """Finds placed cases that belong with a law firm, and proposes or makes their recall.

    Args:
        db: the database.
        agencies: agency configs by id (their ``tier``).
        placements: the recall goes through it, like any recall.
        settings: ``[allocation]``: ``legal_tier`` and ``escalation``.
        clock: time source.
    """

    def __init__(
        self,
        *,
        db: Database,
        agencies: Mapping[str, AgencyConfig],
        placements: PlacementService,
        settings: AllocationSection,
        clock: Clock,
    ) -> None:
        self._db = db
        self._agencies = agencies
        self._placements = placements
        self._settings = settings
        self._clock = clock
        self._outside_legal = sorted(
            a.id
            for a in agencies.values()
            if needs_escalation(LEGAL_BUCKET, a.tier, settings.legal_tier)
        )

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    # -- scanning -------------------------------------------------------------------------

    async def candidates_in(self, conn: AsyncConnection) -> list[Candidate]:
        """Open placements that need escalation and have no escalation row."""
        if not self._outside_legal:
            return []
        rows = await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, C.dpd)
            .join(CASES, C.id == P.case_id)
            .where(
                P.state.in_(OPEN_PLACEMENT_STATES),
                C.bucket == LEGAL_BUCKET,
                P.agency_id.in_(self._outside_legal),
                ~sa.exists().where(E.placement_id == P.id),
            )
            .order_by(P.id)
        )
        legal_tier = self._settings.legal_tier
        return [
            Candidate(
                placement_id,
                case_id,
                agency_id,
                f"the case is {LEGAL_BUCKET} (dpd {dpd}) while {agency_id} is in tier "
                f"{self._agencies[agency_id].tier!r}, not {legal_tier!r}",
            )
            for placement_id, case_id, agency_id, dpd in rows
        ]

    async def scan(self) -> ScanReport:
        """Escalate by ``[allocation] escalation`` (see the module docstring), in batches."""
        report = ScanReport(self._settings.escalation)
        async with self._db.snapshot() as conn:
            found = await self.candidates_in(conn)
        report.found = len(found)
        if report.mode == "off":
            return report
        for start in range(0, len(found), _BATCH):
            async with self._db.transaction() as conn:
                await self._escalate(conn, found[start : start + _BATCH], self._now(), report)
        if report.proposed or report.recalled:
            log.info(
                "escalation: %d proposed, %d recalled for the legal tier",
                len(report.proposed),
                report.recalled.total(),
            )
        return report

    async def scan_in(self, conn: AsyncConnection, now: datetime) -> ScanReport:
        """``scan`` in the caller's transaction."""
        report = ScanReport(self._settings.escalation)
        found = await self.candidates_in(conn)
        report.found = len(found)
        if report.mode != "off":
            await self._escalate(conn, found, now, report)
        return report

    async def _escalate(
        self,
        conn: AsyncConnection,
        found: Sequence[Candidate],
        now: datetime,
        report: ScanReport,
    ) -> None:
        auto = report.mode == "auto"
        for candidate in found:
            try:
                async with conn.begin_nested():
                    escalation_id = await self._insert(conn, candidate, auto=auto, now=now)
                    if escalation_id is not None and auto:
                        await self._recall(conn, candidate.case_id, candidate.placement_id, now)
            except GatewayError as exc:
                report.skipped[candidate.placement_id] = str(exc)
                log.warning("escalation: %s left: %s", candidate.placement_id, exc)
                continue
            if escalation_id is None:
                report.skipped[candidate.placement_id] = "escalated meanwhile"
            elif auto:
                report.recalled[candidate.agency_id] += 1
                report.recalled_ids.append(candidate.placement_id)
            else:
                report.proposed.append(escalation_id)

    async def _insert(
        self, conn: AsyncConnection, candidate: Candidate, *, auto: bool, now: datetime
    ) -> int | None:
        """The escalation row (``approved`` by rule in auto mode); None if the placement has
        one already."""
        values: dict[str, object] = {
            "case_id": candidate.case_id,
            "placement_id": candidate.placement_id,
            "agency_id": candidate.agency_id,
            "state": "approved" if auto else "proposed",
            "reason": candidate.reason[:_TEXT],
            "proposed_at": now,
        }
        if auto:
            values.update(
                decided_by="escalation", decided_at=now, note="[allocation] escalation = auto"
            )
        inserted = (
            await conn.execute(
                dialect_insert(conn, ESCALATIONS)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["placement_id"])
                .returning(E.id)
            )
        ).first()
        if inserted is None:
            return None
        escalation_id = int(inserted[0])
        await self._leaf(
            conn,
            escalation_id,
            candidate.case_id,
            candidate.placement_id,
            str(values["state"]),
            "escalation",
            candidate.reason,
            now,
        )
        return escalation_id

    async def _recall(
        self,
        conn: AsyncConnection,
        case_id: str,
        placement_id: str,
        now: datetime,
        actor: str = "escalation",
    ) -> None:
        state = (
            await conn.execute(sa.select(P.state).where(P.id == placement_id).with_for_update())
        ).scalar()
        if state not in OPEN_PLACEMENT_STATES:
            raise GatewayError(
                f"placement {placement_id} is {state or 'gone'}: it has already ended"
            )
        await self._placements.recall_in(
            conn, case_id, ESCALATION_CODE, now=now, event="escalate", actor=actor
        )

    async def _leaf(
        self,
        conn: AsyncConnection,
        escalation_id: int,
        case_id: str,
        placement_id: str,
        state: str,
        actor: str,
        why: str | None,
        now: datetime,
    ) -> None:
        await append_leaves(
            conn,
            [
                LeafInput(
                    kind="escalation",
                    ref=f"case:{case_id}",
                    fields={
                        "escalation_id": escalation_id,
                        "placement_id": placement_id,
                        "state": state,
                        "actor": actor,
                        "why": why or "",
                    },
                )
            ],
            now=now,
        )

    # -- deciding -------------------------------------------------------------------------

    async def approve(
        self, escalation_id: int, *, actor: str, note: str | None = None
    ) -> EscalationView:
        """Recall the placement for the legal tier and mark the escalation approved."""
        now = self._now()
        async with self._db.transaction() as conn:
            return await self.approve_in(conn, escalation_id, actor=actor, note=note, now=now)

    async def approve_in(
        self,
        conn: AsyncConnection,
        escalation_id: int,
        *,
        actor: str,
        note: str | None = None,
        now: datetime,
    ) -> EscalationView:
        return await self._decide(conn, escalation_id, "approve", actor=actor, note=note, now=now)

    async def reject(
        self, escalation_id: int, *, actor: str, note: str | None = None
    ) -> EscalationView:
        """Leave the case with its agency; the placement is never proposed again."""
        now = self._now()
        async with self._db.transaction() as conn:
            return await self.reject_in(conn, escalation_id, actor=actor, note=note, now=now)

    async def reject_in(
        self,
        conn: AsyncConnection,
        escalation_id: int,
        *,
        actor: str,
        note: str | None = None,
        now: datetime,
    ) -> EscalationView:
        return await self._decide(conn, escalation_id, "reject", actor=actor, note=note, now=now)

    async def _decide(
        self,
        conn: AsyncConnection,
        escalation_id: int,
        decision: str,
        *,
        actor: str,
        note: str | None,
        now: datetime,
    ) -> EscalationView:
        row = (
            await conn.execute(
                sa.select(E.case_id, E.placement_id, E.state)
                .where(E.id == escalation_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound(f"escalation {escalation_id} does not exist")
        case_id, placement_id, state = row
        after = next_escalation_state(state, decision)
        if after is None:
            raise GatewayError(
                f"escalation {escalation_id} is already {state}: only a proposed escalation "
                "can be approved or rejected"
            )
        if decision == "approve":
            try:
                await self._recall(conn, case_id, placement_id, now, actor=actor)
            except GatewayError as exc:
                raise GatewayError(
                    f"escalation {escalation_id}: {exc}; reject the escalation instead"
                ) from exc
        await conn.execute(
            ESCALATIONS.update()
            .where(E.id == escalation_id)
            .values(state=after, decided_by=actor, decided_at=now, note=_text(note))
        )
        await self._leaf(conn, escalation_id, case_id, placement_id, after, actor, note, now)
        log.info("escalation %d %s by %s", escalation_id, after, actor)
        [view] = await escalation_views(conn, ids=[escalation_id])
        return view


async def escalation_views(
    conn: AsyncConnection,
    *,
    state: str | None = None,
    ids: Sequence[int] = (),
    limit: int = 500,
) -> list[EscalationView]:
    """Escalations, newest first, with the state their placement is in now."""
    query = (
        sa.select(
            E.id,
            E.case_id,
            E.placement_id,
            E.agency_id,
            E.state,
            E.reason,
            E.proposed_at,
            E.decided_by,
            E.decided_at,
            E.note,
            P.state.label("placement_state"),
        )
        .outerjoin(PLACEMENTS, P.id == E.placement_id)
        .order_by(E.id.desc())
        .limit(limit)
    )
    if state is not None:
        query = query.where(E.state == state)
    if ids:
        query = query.where(E.id.in_(list(ids)))
    rows = await conn.execute(query)
    return [EscalationView(**dict(r)) for r in rows.mappings()]


__all__ = [
    "ESCALATION_STATES",
    "Candidate",
    "EscalationService",
    "EscalationView",
    "ScanReport",
    "escalation_views",
]
