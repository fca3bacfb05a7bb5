"""Placement expiry: the warning before a placement ends, the automatic recall after it, and
renewal by ops.

Theory of operation
-------------------
The dates are decided by gateway.cases.terms. ``ExpiryService.run`` first sends the warnings
that are due (``placement.expiring``, only to agencies whose contract says
``expiry_warning = true``; ``placements.expiry_warned_at`` records it, so each term is warned
once), then recalls every open placement that has expired through
``PlacementService.recall_in`` (code ``EXPIRED``, case event ``expire``, actor ``expiry``):
the case becomes ``returned`` and the next allocation takes it on to the next tier.

Work is done in batches, one transaction each. Every row is read again inside its
transaction (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers), so a
renewal or a recall that lands between the plan and the batch is respected, and running the
job twice, or from ``serve`` and the CLI at once, sends nothing twice. Each recall runs in a
savepoint: one refused by the case lifecycle is reported and does not undo the others.

``renew`` moves ``return_by`` on, raises the placement's version, counts the renewal, clears
the warning mark and queues a ``placement.amended`` packet that carries the new ``return_by``,
with a ``renewal`` evidence leaf, in one transaction.
"""

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import PlacementService
from gateway.cases.terms import (
    EXPIRED_CODE,
    expiry_cutoff,
    recall_on,
    renewed_return_by,
    warning_window,
)
from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection
from gateway.dispatch.packets import render_amended, render_expiring
from gateway.dispatch.queue import queue_packets
from gateway.documents.prepare import PackRequest
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.ports import Clock
from gateway.store.database import Database
from gateway.store.tables import Placement

log = logging.getLogger(__name__)

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
P = PLACEMENTS.c

Progress = Callable[[int, int], None]
"""``progress(done, total)`` after each batch."""


@dataclass(frozen=True, slots=True)
class TermEnd:
    """An open placement whose term ends: due a warning, or expired."""

    placement_id: str
    case_id: str
    agency_id: str
    return_by: date
    recall_on: date


@dataclass(slots=True)
class ExpiryPlan:
    """What an expiry run would do today (``placements expire --dry-run``)."""

    today: date
    warnings: list[TermEnd] = field(default_factory=list)
    expired: list[TermEnd] = field(default_factory=list)


@dataclass(slots=True)
class ExpiryReport:
    """What an expiry run did; the counters are by agency."""

    today: date
    warned: Counter[str] = field(default_factory=Counter)
    expired: Counter[str] = field(default_factory=Counter)
    warned_ids: list[str] = field(default_factory=list)
    expired_ids: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Placement id → why it was left alone (renewed or ended meanwhile, refused)."""


@dataclass(frozen=True, slots=True)
class Renewal:
    placement_id: str
    case_id: str
    agency_id: str
    previous_return_by: date
    return_by: date
    version: int
    renewals: int


class ExpiryService:
    """Warns, recalls and renews placements at the end of their term.

    Args:
        db: the database.
        agencies: agency configs by id (``expiry_warning`` says who is warned).
        placements: recalls go through it, so an expiry is recalled like any recall.
        settings: ``[allocation]``: ``expiry_grace_days``, ``expiry_warning_days``.
        clock: time source; "today" is its UTC date.
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
        self._warned_agencies = sorted(a.id for a in agencies.values() if a.expiry_warning)

    def _now(self) -> datetime:
        return to_datetime(self._clock.now())

    # -- planning -------------------------------------------------------------------------

    async def plan(self, *, as_of: date | None = None) -> ExpiryPlan:
        """What a run would do today (or on ``as_of``), read in one snapshot; nothing is
        written."""
        today = as_of or self._now().date()
        async with self._db.snapshot() as conn:
            return await self.plan_in(conn, today)

    async def plan_in(self, conn: AsyncConnection, today: date) -> ExpiryPlan:
        settings = self._settings
        grace = settings.expiry_grace_days
        plan = ExpiryPlan(today)
        if self._warned_agencies:
            first, last = warning_window(
                today, warning_days=settings.expiry_warning_days, grace_days=grace
            )
            rows = await conn.execute(
                sa.select(P.id, P.case_id, P.agency_id, P.return_by)
                .where(
                    P.state.in_(OPEN_PLACEMENT_STATES),
                    P.expiry_warned_at.is_(None),
                    P.agency_id.in_(self._warned_agencies),
                    P.return_by >= first,
                    P.return_by <= last,
                )
                .order_by(P.id)
            )
            plan.warnings = [self._term(row, grace) for row in rows]
        rows = await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, P.return_by)
            .where(
                P.state.in_(OPEN_PLACEMENT_STATES),
                P.return_by < expiry_cutoff(today, grace),
            )
            .order_by(P.id)
        )
        plan.expired = [self._term(row, grace) for row in rows]
        return plan

    @staticmethod
    def _term(row: Any, grace: int) -> TermEnd:
        placement_id, case_id, agency_id, return_by = row
        return TermEnd(
            str(placement_id), str(case_id), str(agency_id), return_by, recall_on(return_by, grace)
        )

    # -- running --------------------------------------------------------------------------

    async def run(
        self,
        *,
        batch: int = 200,
        progress: Progress | None = None,
        as_of: date | None = None,
    ) -> ExpiryReport:
        """Send the warnings that are due, then recall what has expired, ``batch`` placements
        to a transaction; ``progress(done, total)`` after each batch. ``as_of`` decides what
        is due by another day than today (the demo's simulation of later days); what is
        written is still stamped with the clock's time."""
        plan = await self.plan(as_of=as_of)
        report = ExpiryReport(plan.today)
        total = len(plan.warnings) + len(plan.expired)
        done = 0
        for start in range(0, len(plan.warnings), batch):
            chunk = plan.warnings[start : start + batch]
            async with self._db.transaction() as conn:
                await self._warn(conn, chunk, self._now(), report, plan.today)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        for start in range(0, len(plan.expired), batch):
            chunk = plan.expired[start : start + batch]
            async with self._db.transaction() as conn:
                await self._expire(conn, chunk, self._now(), report, plan.today)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        if report.warned or report.expired:
            log.info(
                "expiry: %d warning(s) queued, %d placement(s) recalled as expired",
                report.warned.total(),
                report.expired.total(),
            )
        return report

    async def run_in(self, conn: AsyncConnection, now: datetime) -> ExpiryReport:
        """``run`` in the caller's transaction, all at once."""
        plan = await self.plan_in(conn, now.date())
        report = ExpiryReport(plan.today)
        await self._warn(conn, plan.warnings, now, report, plan.today)
        await self._expire(conn, plan.expired, now, report, plan.today)
        return report

    async def _warn(
        self,
        conn: AsyncConnection,
        due: Sequence[TermEnd],
        now: datetime,
        report: ExpiryReport,
        today: date,
    ) -> None:
        if not due:
            return
        settings = self._settings
        first, last = warning_window(
            today,
            warning_days=settings.expiry_warning_days,
            grace_days=settings.expiry_grace_days,
        )
        rows = await conn.execute(
            sa.select(P.id, P.case_id, P.agency_id, P.return_by, P.version)
            .where(
                P.id.in_([d.placement_id for d in due]),
                P.state.in_(OPEN_PLACEMENT_STATES),
                P.expiry_warned_at.is_(None),
                P.agency_id.in_(self._warned_agencies),
                P.return_by >= first,
                P.return_by <= last,
            )
            .with_for_update()
        )
        packets = []
        warned: list[str] = []
        for placement_id, case_id, agency_id, return_by, version in rows:
            packet = render_expiring(
                agency_id=agency_id,
                placement_id=placement_id,
                case_id=case_id,
                version=version,
                return_by=return_by,
                recall_on=recall_on(return_by, settings.expiry_grace_days),
                at=now,
            )
            packets.append((self._agencies[agency_id], placement_id, packet))
            warned.append(placement_id)
            report.warned[agency_id] += 1
        for term in due:
            if term.placement_id not in warned:
                report.skipped[term.placement_id] = "warned, renewed or ended meanwhile"
        if not packets:
            return
        await conn.execute(
            PLACEMENTS.update().where(P.id.in_(warned)).values(expiry_warned_at=now, updated_at=now)
        )
        await queue_packets(conn, packets, now=now)
        report.warned_ids += warned

    async def _expire(
        self,
        conn: AsyncConnection,
        due: Sequence[TermEnd],
        now: datetime,
        report: ExpiryReport,
        today: date,
    ) -> None:
        cutoff = expiry_cutoff(today, self._settings.expiry_grace_days)
        for term in due:
            if term.agency_id not in self._agencies:
                report.skipped[term.placement_id] = (
                    f"agency {term.agency_id} is not configured; recall it by hand once it is"
                )
                continue
            try:
                async with conn.begin_nested():
                    still = (
                        await conn.execute(
                            sa.select(P.id)
                            .where(
                                P.id == term.placement_id,
                                P.state.in_(OPEN_PLACEMENT_STATES),
                                P.return_by < cutoff,
                            )
                            .with_for_update()
                        )
                    ).first()
                    if still is None:
                        report.skipped[term.placement_id] = "renewed or ended meanwhile"
                        continue
                    await self._placements.recall_in(
                        conn,
                        term.case_id,
                        EXPIRED_CODE,
                        now=now,
                        event="expire",
                        actor="expiry",
                    )
            except GatewayError as exc:
                report.skipped[term.placement_id] = str(exc)
                log.warning("expiry: %s not recalled: %s", term.placement_id, exc)
                continue
            report.expired[term.agency_id] += 1
            report.expired_ids.append(term.placement_id)

    # -- renewal --------------------------------------------------------------------------

    async def renew(
        self, placement_id: str, days: int, *, actor: str, note: str | None = None
    ) -> Renewal:
        """Extend an open placement by ``days`` and tell the agency (``placement.amended``
        with the new ``return_by``). NotFound for an unknown placement; GatewayError when it
        is not open or the new date would still have expired; RegisterRefused when the agency
        register no longer admits its agency (gateway.register)."""
        now = self._now()
        async with self._db.transaction() as conn:
            return await self.renew_in(conn, placement_id, days, actor=actor, note=note, now=now)

    async def renew_in(
        self,
        conn: AsyncConnection,
        placement_id: str,
        days: int,
        *,
        actor: str,
        note: str | None = None,
        now: datetime,
    ) -> Renewal:
        """``renew`` in the caller's transaction (the console attests it in the same one)."""
        row = (
            await conn.execute(
                sa.select(
                    P.case_id,
                    P.agency_id,
                    P.state,
                    P.version,
                    P.renewals,
                    P.return_by,
                    P.currency,
                    P.balance_minor,
                )
                .where(P.id == placement_id)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound(f"placement {placement_id} does not exist")
        case_id, agency_id, state, version, renewals, return_by, currency, balance = row
        if state not in OPEN_PLACEMENT_STATES:
            raise GatewayError(
                f"placement {placement_id} is {state}: only an open placement "
                f"({', '.join(sorted(OPEN_PLACEMENT_STATES))}) can be renewed"
            )
        agency = self._agencies.get(agency_id)
        if agency is None:
            raise GatewayError(
                f"placement {placement_id} is held by {agency_id}, which is not configured"
            )
        # A renewal keeps the case with the agency: the register must still admit it.
        if self._placements.register is not None:
            await self._placements.register.require(conn, agency_id, now)
        # A placement already past its grace may still be renewed, as long as the new date
        # reaches past it; renewed_return_by refuses one that would stay expired.
        new = renewed_return_by(
            return_by, days, today=now.date(), grace_days=self._settings.expiry_grace_days
        )
        await conn.execute(
            PLACEMENTS.update()
            .where(P.id == placement_id)
            .values(
                return_by=new,
                version=version + 1,
                renewals=renewals + 1,
                expiry_warned_at=None,
                updated_at=now,
            )
        )
        # A renewal issues a new letter (superseding the old one) and fresh statements.
        pack = None
        if self._placements.packs is not None:
            prepared = await self._placements.packs.prepare_packs(
                conn, [PackRequest(placement_id, case_id, agency_id, now.date(), new)], now=now
            )
            pack = prepared[placement_id]
        packet = render_amended(
            agency_id=agency_id,
            placement_id=placement_id,
            case_id=case_id,
            version=version + 1,
            balance_minor=balance,
            previous_balance_minor=balance,
            currency=currency,
            reason=f"renewed until {new.isoformat()}",
            at=now,
            return_by=new,
            authorisation=None if pack is None else pack.authorisation,
            documents=None if pack is None else pack.documents,
        )
        await queue_packets(conn, [(agency, placement_id, packet)], now=now)
        await append_leaves(
            conn,
            [
                LeafInput(
                    kind="renewal",
                    ref=f"placement:{placement_id}",
                    fields={
                        "case_id": case_id,
                        "agency_id": agency_id,
                        "actor": actor,
                        "days": days,
                        "from": return_by.isoformat(),
                        "to": new.isoformat(),
                        "version": version + 1,
                        "note": note or "",
                    },
                )
            ],
            now=now,
        )
        log.info("renewed %s until %s (%s)", placement_id, new, actor)
        return Renewal(placement_id, case_id, agency_id, return_by, new, version + 1, renewals + 1)


__all__ = [
    "ExpiryPlan",
    "ExpiryReport",
    "ExpiryService",
    "Progress",
    "Renewal",
    "TermEnd",
]
