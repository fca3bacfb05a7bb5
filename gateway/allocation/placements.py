"""Placements: allocation, recall and amendment, each written in ONE transaction with its
outbox item and evidence leaf, so a crash can never leave a placement without its packet or
a packet without its proof.

An allocation round reads the store (``gateway.allocation.rounds``), lets the pure rules
decide (``gateway.allocation.rules``), then writes each batch of groups' decisions together
with their placements (each placement points at its decision), and finally the reasons of
what stayed unplaced. ``preview`` stops after the decision.
"""

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.decisions import Decision
from gateway.allocation.rounds import (
    AllocationReport,
    RoundInput,
    batches,
    new_round_id,
    read_factors,
    read_round,
    record_decisions,
    record_reasons,
    record_unplaced,
)
from gateway.allocation.routing import Policy
from gateway.allocation.rules import AllocationResult, allocate
from gateway.cases.history import CaseMove, move_cases
from gateway.clock import to_datetime
from gateway.cluster import ALLOCATION_ROUND, Lease, LeaseStore, holder_id, holding
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection
from gateway.dispatch.packets import (
    placement_id_for,
    render_amended,
    render_created,
    render_recalled,
)
from gateway.dispatch.queue import queue_packets
from gateway.documents.prepare import PackPreparer, PackRequest, PreparedPack
from gateway.errors import GatewayError, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.letters.service import revoke_letters
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.register.gate import RegisterGate
from gateway.store.database import Database
from gateway.store.tables import Case, Expectation, Placement

log = logging.getLogger(__name__)

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]

ROUND_LEASE_SECONDS = 60.0
"""The allocation round's lease, renewed every third of it while the round runs."""
C, P = CASES.c, PLACEMENTS.c

WRITE_BATCH = 500


@dataclass(frozen=True, slots=True)
class BalanceChange:
    case_id: str
    old_balance_minor: int
    new_balance_minor: int


@dataclass(frozen=True, slots=True)
class NewPlacement:
    """One placement to write: the case row, the agency, its ordinal and how it was drawn."""

    case: RowMapping
    agency_id: str
    ordinal: int
    strategy: str
    decision_id: int | None = None


def _uncount(report: AllocationReport, found: RoundInput, dropped: Sequence[Decision]) -> None:
    """Take decisions left for the next round out of the report's placed counts."""
    for decision in dropped:
        for case_id in decision.case_ids:
            report.placed -= 1
            report.changed += 1
            report.by_agency[str(decision.chosen)] -= 1
            report.by_strategy[decision.strategy] -= 1
            report.by_agency_bucket[(str(decision.chosen), found.cases[case_id]["bucket"])] -= 1
    if dropped:
        report.by_agency += Counter()  # drop the counts that fell to zero
        report.by_strategy += Counter()
        report.by_agency_bucket += Counter()


class PlacementService:
    """Allocates cases, recalls and amends placements.

    Args:
        db: the database.
        agencies: agency configs by id.
        pii: the key ring that decrypts debtor details for allowlisted fields.
        settings: allocation settings (seed, placement length, tiers, cool-off, mixed debtors).
        clock: time source.
        packs: prepares each new placement's authorisation letter and document pack in the
            placement's transaction, and revokes letters on recall (gateway.documents);
            None: packets carry no letter and no documents.
        register: the agency register's gate (gateway.register.gate), read by every round
            and renewal; None: no register (tests that do not ask for one).
    """

    def __init__(
        self,
        *,
        db: Database,
        agencies: Mapping[str, AgencyConfig],
        pii: PiiKeyRing,
        settings: AllocationSection,
        clock: Clock,
        packs: PackPreparer | None = None,
        register: RegisterGate | None = None,
    ) -> None:
        self._db = db
        self._agencies = agencies
        self._pii = pii
        self._settings = settings
        self._clock = clock
        self.packs = packs
        self.register = register

    async def allocate(self) -> AllocationReport:
        """Place every allocatable case that an agency can take; record why, per group.

        A round holds the cluster's ``allocation-round`` lease from its read to its last
        write, so rounds of different processes (``serve`` instances, the CLI) never
        overlap: a second caller gets RoleHeld at once rather than waiting."""
        async with self.exclusive_round():
            now = to_datetime(self._clock.now())
            found, result, report = await self.plan(now)
            return await self.commit(found, result, report, now=now)

    def exclusive_round(self) -> AbstractAsyncContextManager[Lease]:
        """Hold the cluster's ``allocation-round`` role for a round's plan and commit; raise
        RoleHeld, naming the holder, while another process's round runs."""
        return holding(
            LeaseStore(self._db), ALLOCATION_ROUND, holder_id(), seconds=ROUND_LEASE_SECONDS
        )

    async def commit(
        self,
        found: RoundInput,
        result: AllocationResult,
        report: AllocationReport,
        *,
        now: datetime,
    ) -> AllocationReport:
        """Write what ``plan`` decided: each batch of groups' decisions with their
        placements, then the reasons of what stayed unplaced. A group whose cases changed
        since the plan read them is left for the next round (``report.changed``)."""
        if not found.cases:
            return report
        round_id = report.round_id = new_round_id(now)
        seed = self._settings.seed
        for planned in batches([d for d in result.decisions if d.chosen], WRITE_BATCH):
            async with self._db.transaction() as conn:
                chunk = await self._unchanged(conn, planned, found, report)
                chunk = await self._still_admitted(conn, chunk, found, report, now)
                if not chunk:
                    continue
                ids = await record_decisions(conn, chunk, round_id=round_id, seed=seed, now=now)
                await self._write_placements(
                    conn,
                    [
                        NewPlacement(
                            found.cases[case_id],
                            str(d.chosen),
                            found.ordinals[case_id] + 1,
                            d.strategy,
                            decision_id,
                        )
                        for d, decision_id in zip(chunk, ids, strict=True)
                        for case_id in d.case_ids
                    ],
                    now,
                )
            report.decisions += len(chunk)
        if result.unallocated:
            async with self._db.transaction() as conn:
                report.decisions += await record_unplaced(
                    conn, found, result, round_id=round_id, seed=seed, now=now
                )
        log.info(
            "allocation round %s: %d placed, %d unallocated, %d decisions recorded",
            round_id,
            report.placed,
            report.unallocated,
            report.decisions,
        )
        return report

    async def _unchanged(
        self,
        conn: AsyncConnection,
        planned: Sequence[Decision],
        found: RoundInput,
        report: AllocationReport,
    ) -> list[Decision]:
        """The decisions whose cases are still as the round read them, in the write's
        transaction (rows locked on PostgreSQL; SQLite's writer lock is already held). A case
        held, closed, amended or placed since the read drops its group from this round, and
        the next round decides it afresh."""
        ids = [case_id for d in planned for case_id in d.case_ids]
        query = sa.select(C.id, C.updated_at).where(C.id.in_(ids))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        now_at = {str(i): at for i, at in await conn.execute(query)}
        kept: list[Decision] = []
        dropped: list[Decision] = []
        for decision in planned:
            if all(now_at.get(c) == found.cases[c]["updated_at"] for c in decision.case_ids):
                kept.append(decision)
                continue
            dropped.append(decision)
            log.info(
                "allocation: %s changed since the round read it; left for the next round",
                ", ".join(decision.case_ids),
            )
        _uncount(report, found, dropped)
        return kept

    async def _still_admitted(
        self,
        conn: AsyncConnection,
        planned: list[Decision],
        found: RoundInput,
        report: AllocationReport,
        now: datetime,
    ) -> list[Decision]:
        """The decisions whose agency the register still admits, read in the write's
        transaction: a suspension or termination between the plan and the write stops the
        placement (the group is left for the next round, which gives the reason)."""
        if self.register is None or not planned:
            return planned
        barred, _ = await self.register.check(conn, {str(d.chosen) for d in planned}, now)
        if not barred:
            return planned
        kept = [d for d in planned if d.chosen not in barred]
        dropped = [d for d in planned if d.chosen in barred]
        for decision in dropped:
            log.warning(
                "allocation: %s not placed with %s: %s",
                ", ".join(decision.case_ids),
                decision.chosen,
                barred[str(decision.chosen)],
            )
        _uncount(report, found, dropped)
        return kept

    async def preview(self) -> AllocationReport:
        """What ``allocate`` would do now, writing nothing."""
        _, _, report = await self.plan(to_datetime(self._clock.now()))
        return report

    async def plan(self, now: datetime) -> tuple[RoundInput, AllocationResult, AllocationReport]:
        """Read the round and run the rules on it (no writes)."""
        async with self._db.snapshot() as conn:
            found = await read_round(conn)
            factors = (
                await read_factors(conn, self._settings, now)
                if found.cases and self._settings.performance_weighting
                else {}
            )
            barred, shares = (
                await self.register.check(conn, self._agencies, now)
                if found.cases and self.register is not None
                else ({}, {})
            )
        if not found.cases:
            return found, AllocationResult(), AllocationReport()
        result = allocate(
            found.to_allocate,
            list(self._agencies.values()),
            open_counts=found.open_counts,
            debtor_agency=found.debtor_agency,
            seed=self._settings.seed,
            factors=factors,
            challenger_share=self._settings.challenger_share,
            policy=Policy.from_settings(self._settings),
            now=now,
            barred=barred,
            shares=shares,
        )
        return found, result, AllocationReport.of(found, result, factors)

    async def _write_placements(
        self, conn: AsyncConnection, rows: Sequence[NewPlacement], now: datetime
    ) -> None:
        placements = []
        for row in rows:
            case, agency_id = row.case, row.agency_id
            agency = self._agencies[agency_id]
            term = agency.placement_days or self._settings.placement_days
            return_by = (now + timedelta(days=term)).date()
            case_id = str(case["id"])
            placement_id = placement_id_for(case_id, row.ordinal)
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
                    "strategy": row.strategy,
                    "tier": agency.tier,
                    "decision_id": row.decision_id,
                    "updated_at": now,
                }
            )
        await conn.execute(PLACEMENTS.insert(), placements)
        packs: dict[str, PreparedPack] = {}
        if self.packs is not None:
            packs = await self.packs.prepare_packs(
                conn,
                [
                    PackRequest(p["id"], p["case_id"], p["agency_id"], now.date(), p["return_by"])
                    for p in placements
                ],
                now=now,
            )
        packets = []
        for row, p in zip(rows, placements, strict=True):
            case, agency_id = row.case, row.agency_id
            agency = self._agencies[agency_id]
            case_id, placement_id = p["case_id"], p["id"]
            pii = self._pii.decrypt(case["pii"], bound_to=case_id) if agency.fields else {}
            pack = packs.get(placement_id)
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
                return_by=p["return_by"],
                authorisation=None if pack is None else pack.authorisation,
                documents=None if pack is None else pack.documents,
            )
            packets.append((agency, placement_id, packet))
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
            known={str(r.case["id"]): str(r.case["status"]) for r in rows},
        )
        await record_reasons(
            conn, {str(r.case["id"]): None for r in rows if r.case["unallocated_reason"]}
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
        revoked = (
            await self.packs.revoke(conn, [placement_id], reason=event, now=now)
            if self.packs is not None
            else []
        )
        # A letter issued while letters were on must not outlive its placement because they
        # were turned off since (or no letter service is configured now): revoking is plain
        # SQL (gateway.letters.service), needs no signing key, and finds nothing to do when
        # the packs already revoked it.
        revoked += await revoke_letters(conn, [placement_id], reason=event, now=now)
        packet = render_recalled(
            agency_id=agency_id,
            placement_id=placement_id,
            case_id=case_id,
            version=version,
            reason_code=reason_code,
            at=now,
            revoked_letters=revoked,
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
        actor: str = "ops",
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
                        recalled.append(
                            await self.recall_in(conn, case_id, reason_code, now=now, actor=actor)
                        )
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
    "NewPlacement",
    "PlacementService",
]
