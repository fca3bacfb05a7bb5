"""Placements: allocation, recall and amendment, each written in ONE transaction with its
outbox item and evidence leaf, so a crash can never leave a placement without its packet or
a packet without its proof.
"""

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.rules import CaseToAllocate, Recovery, allocate, performance_factors
from gateway.cases.history import CaseMove, move_cases
from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection
from gateway.dispatch.packets import (
    placement_id_for,
    render_amended,
    render_created,
    render_recalled,
)
from gateway.dispatch.queue import queue_packets
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.lifecycle import ALLOCATABLE_CASE_STATES, OPEN_PLACEMENT_STATES
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.reporting.scorecards import placement_totals
from gateway.store.database import Database
from gateway.store.tables import Case, Expectation, Placement

log = logging.getLogger(__name__)

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
C, P = CASES.c, PLACEMENTS.c

WRITE_BATCH = 500


@dataclass(slots=True)
class AllocationReport:
    placed: int = 0
    unallocated: int = 0
    by_agency: Counter[str] = field(default_factory=Counter)
    by_strategy: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    factors: dict[tuple[str, str], float] = field(default_factory=dict)
    """The performance factors the champion draws used ((agency, currency) → factor)."""


@dataclass(frozen=True, slots=True)
class BalanceChange:
    case_id: str
    old_balance_minor: int
    new_balance_minor: int


class PlacementService:
    """Allocates cases, recalls and amends placements.

    Args:
        db: the database.
        agencies: agency configs by id.
        pii: the key ring that decrypts debtor details for allowlisted fields.
        settings: allocation settings (seed, placement length).
        clock: time source.
    """

    def __init__(
        self,
        *,
        db: Database,
        agencies: Mapping[str, AgencyConfig],
        pii: PiiKeyRing,
        settings: AllocationSection,
        clock: Clock,
    ) -> None:
        self._db = db
        self._agencies = agencies
        self._pii = pii
        self._settings = settings
        self._clock = clock

    async def allocate(self) -> AllocationReport:
        """Place every allocatable case that an agency can take."""
        now = to_datetime(self._clock.now())
        report = AllocationReport()
        async with self._db.transaction() as conn:
            cases = (
                (await conn.execute(sa.select(CASES).where(C.status.in_(ALLOCATABLE_CASE_STATES))))
                .mappings()
                .all()
            )
            if not cases:
                return report
            history = (
                await conn.execute(
                    sa.select(P.case_id, P.agency_id, P.state, C.debtor_id).join(CASES)
                )
            ).all()
            if self._settings.performance_weighting:
                report.factors = await self._performance_factors(conn, now)
        excluded: dict[str, set[str]] = {}
        open_counts: Counter[str] = Counter()
        debtor_agency: dict[str, str] = {}
        ordinals: Counter[str] = Counter()
        for case_id, agency_id, state, debtor_id in history:
            ordinals[case_id] += 1
            if state in OPEN_PLACEMENT_STATES:
                open_counts[agency_id] += 1
                debtor_agency[debtor_id] = agency_id
            elif state in ("returned", "rejected", "recalled"):
                excluded.setdefault(case_id, set()).add(agency_id)
        result = allocate(
            (
                CaseToAllocate(
                    case_id=c["id"],
                    debtor_id=c["debtor_id"],
                    bucket=c["bucket"],
                    balance_minor=c["balance_minor"],
                    currency=c["currency"],
                    region=c["region"],
                    excluded_agencies=frozenset(excluded.get(c["id"], ())),
                )
                for c in cases
            ),
            list(self._agencies.values()),
            open_counts=open_counts,
            debtor_agency=debtor_agency,
            seed=self._settings.seed,
            factors=report.factors,
            challenger_share=self._settings.challenger_share,
        )
        by_id = {c["id"]: c for c in cases}
        for u in result.unallocated:
            report.unallocated += 1
            report.reasons[u.reason] += 1
        for start in range(0, len(result.assignments), WRITE_BATCH):
            chunk = result.assignments[start : start + WRITE_BATCH]
            async with self._db.transaction() as conn:
                await self._write_placements(
                    conn,
                    [
                        (by_id[a.case_id], a.agency_id, ordinals[a.case_id] + 1, a.strategy)
                        for a in chunk
                    ],
                    now,
                )
            for a in chunk:
                report.by_agency[a.agency_id] += 1
                report.by_strategy[a.strategy] += 1
            report.placed += len(chunk)
        return report

    async def _performance_factors(
        self, conn: AsyncConnection, now: datetime
    ) -> dict[tuple[str, str], float]:
        """Each agency's recovery on what it was placed in the last ``performance_days``,
        relative to its peers (gateway.allocation.rules.performance_factors)."""
        since = now - timedelta(days=self._settings.performance_days)
        rows = await conn.execute(placement_totals(P.placed_at >= since))
        return performance_factors(
            (
                Recovery(a, cur, int(n), int(pl or 0), int(co or 0))
                for a, cur, n, pl, co, _recalled in rows
            ),
            min_placements=self._settings.performance_min_placements,
            floor=self._settings.performance_floor,
            cap=self._settings.performance_cap,
        )

    async def _write_placements(
        self,
        conn: AsyncConnection,
        rows: Sequence[tuple[RowMapping, str, int, str]],
        now: datetime,
    ) -> None:
        return_by = (now + timedelta(days=self._settings.placement_days)).date()
        placements = []
        packets = []
        for case, agency_id, ordinal, strategy in rows:
            agency = self._agencies[agency_id]
            case_id = str(case["id"])
            placement_id = placement_id_for(case_id, ordinal)
            pii = self._pii.decrypt(case["pii"], bound_to=case_id) if agency.fields else {}
            packet = render_created(
                agency_id=agency_id,
                placement_id=placement_id,
                case_id=case_id,
                bucket=case["bucket"],
                dpd=case["dpd"],
                balance_minor=case["balance_minor"],
                principal_minor=case["principal_minor"],
                currency=case["currency"],
                due_date=case["due_date"],
                product=case["product"],
                credit_grade=case["credit_grade"],
                debtor_id=case["debtor_id"],
                region=case["region"],
                pii=pii,
                allowed_fields=frozenset(agency.fields),
                placed_at=now,
                return_by=return_by,
            )
            placements.append(
                {
                    "id": placement_id,
                    "case_id": case_id,
                    "agency_id": agency_id,
                    "state": "placed",
                    "version": 1,
                    "currency": case["currency"],
                    "balance_minor": case["balance_minor"],
                    "collected_minor": 0,
                    "placed_at": now,
                    "return_by": return_by,
                    "strategy": strategy,
                    "updated_at": now,
                }
            )
            packets.append((agency, placement_id, packet))
        await conn.execute(PLACEMENTS.insert(), placements)
        legal_tier = self._settings.legal_tier
        await move_cases(
            conn,
            [
                CaseMove(
                    p["case_id"],
                    "place_legal"
                    if legal_tier and self._agencies[p["agency_id"]].tier == legal_tier
                    else "place",
                    "allocation",
                    f"placed with {p['agency_id']}",
                    placement_id=p["id"],
                )
                for p in placements
            ],
            now=now,
            strict=True,
            known={str(case["id"]): str(case["status"]) for case, *_ in rows},
        )
        await queue_packets(conn, packets, now=now)

    async def recall(self, case_id: str, reason_code: str) -> str:
        """Recall the case's open placement; queue ``placement.recalled``. Returns its id."""
        now = to_datetime(self._clock.now())
        async with self._db.transaction() as conn:
            return await self.recall_in(conn, case_id, reason_code, now=now)

    async def recall_in(
        self,
        conn: AsyncConnection,
        case_id: str,
        reason_code: str,
        *,
        now: datetime,
        event: str = "recall",
        actor: str = "ops",
    ) -> str:
        """``recall`` in the caller's transaction (ops actions attest it in the same one).

        ``event`` is the case's lifecycle event: ``recall`` (ops take it back), ``hold``,
        ``expire``, ``escalate`` or ``close`` (paid off or cured at the lender)."""
        row = (
            await conn.execute(
                sa.select(P.id, P.agency_id, P.version).where(
                    P.case_id == case_id, P.state.in_(OPEN_PLACEMENT_STATES)
                )
            )
        ).first()
        if row is None:
            exists = (await conn.execute(sa.select(C.id).where(C.id == case_id))).first()
            if exists is None:
                raise NotFound(f"case {case_id} does not exist")
            raise GatewayError(f"case {case_id} has no open placement to recall")
        placement_id, agency_id, version = row
        await conn.execute(
            PLACEMENTS.update()
            .where(P.id == placement_id)
            .values(state="recalled", recalled_at=now, recall_reason=reason_code, updated_at=now)
        )
        await move_cases(
            conn,
            [CaseMove(case_id, event, actor, reason_code, placement_id=placement_id)],
            now=now,
            strict=True,
        )
        await conn.execute(
            EXPECTATIONS.update()
            .where(EXPECTATIONS.c.placement_id == placement_id, EXPECTATIONS.c.state == "open")
            .values(state="cancelled")
        )
        packet = render_recalled(
            agency_id=agency_id,
            placement_id=placement_id,
            case_id=case_id,
            version=version,
            reason_code=reason_code,
            at=now,
        )
        await queue_packets(conn, [(self._agencies[agency_id], placement_id, packet)], now=now)
        await append_leaves(
            conn,
            [
                LeafInput(
                    kind="recall",
                    ref=f"placement:{placement_id}",
                    fields={"case_id": case_id, "agency_id": agency_id, "reason": reason_code},
                )
            ],
            now=now,
        )
        log.info("recalled %s from %s (%s)", placement_id, agency_id, reason_code)
        return str(placement_id)

    async def recall_agency(
        self,
        agency_id: str,
        reason_code: str,
        *,
        batch: int = 200,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Recall every open placement ``agency_id`` holds (its contract ends): each as
        ``recall`` does, ``batch`` to a transaction; ``progress(done, total)`` after each.
        A case that stopped being open in the meantime is skipped. The placement ids."""
        async with self._db.connect() as conn:
            cases = list(
                (
                    await conn.execute(
                        sa.select(P.case_id)
                        .where(P.agency_id == agency_id, P.state.in_(OPEN_PLACEMENT_STATES))
                        .order_by(P.case_id)
                    )
                ).scalars()
            )
        recalled: list[str] = []
        for start in range(0, len(cases), batch):
            now = to_datetime(self._clock.now())
            async with self._db.transaction() as conn:
                for case_id in cases[start : start + batch]:
                    still_open = (
                        await conn.execute(
                            sa.select(P.id).where(
                                P.case_id == case_id,
                                P.agency_id == agency_id,
                                P.state.in_(OPEN_PLACEMENT_STATES),
                            )
                        )
                    ).first()
                    if still_open is not None:
                        recalled.append(await self.recall_in(conn, case_id, reason_code, now=now))
            if progress is not None:
                progress(min(start + batch, len(cases)), len(cases))
        return recalled

    async def amend_balances(
        self, conn: AsyncConnection, changes: Sequence[BalanceChange], *, now: datetime
    ) -> int:
        """In the caller's transaction: queue ``placement.amended`` for open placements."""
        if not changes:
            return 0
        by_case = {c.case_id: c for c in changes}
        rows = (
            await conn.execute(
                sa.select(
                    P.id, P.case_id, P.agency_id, P.version, P.currency, P.balance_minor
                ).where(P.case_id.in_(list(by_case)), P.state.in_(OPEN_PLACEMENT_STATES))
            )
        ).all()
        packets = []
        updates = []
        for placement_id, case_id, agency_id, version, currency, balance in rows:
            change = by_case[case_id]
            if change.new_balance_minor == balance:
                continue
            packet = render_amended(
                agency_id=agency_id,
                placement_id=placement_id,
                case_id=case_id,
                version=version + 1,
                balance_minor=change.new_balance_minor,
                previous_balance_minor=balance,
                currency=currency,
                reason="balance changed at the lender",
                at=now,
            )
            packets.append((self._agencies[agency_id], placement_id, packet))
            updates.append({"pid": placement_id, "v": version + 1, "bal": change.new_balance_minor})
        if updates:
            await conn.execute(
                PLACEMENTS.update()
                .where(P.id == sa.bindparam("pid"))
                .values(
                    version=sa.bindparam("v"), balance_minor=sa.bindparam("bal"), updated_at=now
                ),
                updates,
            )
            await queue_packets(conn, packets, now=now)
        return len(updates)


__all__ = [
    "AllocationReport",
    "BalanceChange",
    "PlacementService",
]
