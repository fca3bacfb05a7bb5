"""An allocation round's store side: read what the rules need, record what they decided.

``read_round`` gathers, in one snapshot, the allocatable cases with everything
``gateway.allocation.rules`` weighs: whether its claim batch is approved, each case's earlier
placements (agency, tier, state),
its active holds, its latest lifecycle event and when it last came back from an agency, and
the open placements per agency and per debtor. ``record_decisions`` stores the rules'
explanations (``allocation_decisions``), batched, and returns their ids so the placements can
point at them; ``record_reasons`` keeps ``cases.unallocated_reason`` current.
``AllocationReport`` counts what a round decided (or, for a preview, would decide).
"""

import json
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.decisions import AllocationResult, Assignment, Decision, Unallocated
from gateway.allocation.performance import Recovery, performance_factors
from gateway.allocation.routing import CAME_BACK_EVENTS, CaseToAllocate, PastPlacement
from gateway.claims.states import ALLOCATABLE_BATCH_STATES
from gateway.config.settings import AllocationSection
from gateway.lifecycle import ALLOCATABLE_CASE_STATES, OPEN_PLACEMENT_STATES
from gateway.reporting.scorecards import placement_totals
from gateway.store.case_tables import AllocationDecision, CaseHistory, CaseHold
from gateway.store.claim_tables import ClaimBatch
from gateway.store.tables import Case, Placement

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
DECISIONS = AllocationDecision.__table__  # type: ignore[attr-defined]
BATCHES = ClaimBatch.__table__  # type: ignore[attr-defined]
C, P, H, D = CASES.c, PLACEMENTS.c, HISTORY.c, DECISIONS.c

ALLOCATABLE = C.status.in_(sorted(ALLOCATABLE_CASE_STATES))
BATCH = 500


@dataclass(slots=True)
class RoundInput:
    """The store as one allocation round sees it."""

    cases: dict[str, RowMapping] = field(default_factory=dict)
    """Allocatable case id → its row (everything the placement packet needs)."""
    to_allocate: list[CaseToAllocate] = field(default_factory=list)
    open_counts: Counter[str] = field(default_factory=Counter)
    debtor_agency: dict[str, str] = field(default_factory=dict)
    """Debtors with an open placement → its agency (the lowest id when there are several)."""
    ordinals: Counter[str] = field(default_factory=Counter)
    """Case id → how many placements it has had (the next one's number is this plus one)."""


@dataclass(slots=True)
class AllocationReport:
    placed: int = 0
    unallocated: int = 0
    by_agency: Counter[str] = field(default_factory=Counter)
    by_strategy: Counter[str] = field(default_factory=Counter)
    by_agency_bucket: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Placements per (agency, the case's bucket)."""
    reasons: Counter[str] = field(default_factory=Counter)
    """Unallocated cases per reason code (gateway.allocation.routing.REASONS)."""
    factors: dict[tuple[str, str], float] = field(default_factory=dict)
    """The performance factors the champion draws used ((agency, currency) → factor)."""
    assignments: list[Assignment] = field(default_factory=list)
    unallocated_cases: list[Unallocated] = field(default_factory=list)
    round_id: str | None = None
    """The round's id in ``allocation_decisions`` (None for a preview or an empty round)."""
    decisions: int = 0
    """Decisions written (unallocated groups only when a case's reason changed)."""
    changed: int = 0
    """Cases left for the next round: held, closed or amended between the read and the write."""

    @classmethod
    def of(
        cls,
        found: RoundInput,
        result: AllocationResult,
        factors: dict[tuple[str, str], float],
    ) -> "AllocationReport":
        """The counts of what the rules decided for this round."""
        report = cls(
            placed=len(result.assignments),
            unallocated=len(result.unallocated),
            factors=factors,
            assignments=result.assignments,
            unallocated_cases=result.unallocated,
        )
        for a in result.assignments:
            report.by_agency[a.agency_id] += 1
            report.by_strategy[a.strategy] += 1
            report.by_agency_bucket[(a.agency_id, found.cases[a.case_id]["bucket"])] += 1
        report.reasons.update(u.code for u in result.unallocated)
        return report


def new_round_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


async def read_round(conn: AsyncConnection) -> RoundInput:
    """Everything the rules need for the cases allocatable now."""
    found = RoundInput()
    rows = (await conn.execute(sa.select(CASES).where(ALLOCATABLE))).mappings().all()
    if not rows:
        return found
    found.cases = {str(r["id"]): r for r in rows}
    unconfirmed: dict[str, str] = {
        batch_id: f"{batch_id} ({status})"
        for batch_id, status in await conn.execute(
            sa.select(BATCHES.c.id, BATCHES.c.status).where(
                BATCHES.c.status.not_in(sorted(ALLOCATABLE_BATCH_STATES))
            )
        )
    }
    past: dict[str, list[PastPlacement]] = {}
    debtor_agencies: dict[str, set[str]] = {}
    placements = await conn.execute(
        sa.select(P.case_id, P.agency_id, P.state, P.tier, C.debtor_id).join(
            CASES, C.id == P.case_id
        )
    )
    for case_id, agency_id, state, tier, debtor_id in placements:
        found.ordinals[case_id] += 1
        if state in OPEN_PLACEMENT_STATES:
            found.open_counts[agency_id] += 1
            debtor_agencies.setdefault(debtor_id, set()).add(agency_id)
        if case_id in found.cases:
            past.setdefault(case_id, []).append(PastPlacement(agency_id, tier, state))
    found.debtor_agency = {d: min(a) for d, a in debtor_agencies.items()}
    holds: dict[str, list[str]] = {}
    for case_id, code in await conn.execute(
        sa.select(HOLDS.c.case_id, HOLDS.c.code)
        .join(CASES, C.id == HOLDS.c.case_id)
        .where(HOLDS.c.released_at.is_(None), ALLOCATABLE)
    ):
        holds.setdefault(case_id, []).append(code)
    latest = (
        sa.select(sa.func.max(H.id))
        .join(CASES, C.id == H.case_id)
        .where(ALLOCATABLE)
        .group_by(H.case_id)
    )
    last_event: dict[str, str] = {
        case_id: event
        for case_id, event in await conn.execute(
            sa.select(H.case_id, H.event).where(H.id.in_(latest))
        )
    }
    came_back: dict[str, datetime] = {
        case_id: at
        for case_id, at in await conn.execute(
            sa.select(H.case_id, sa.func.max(H.at))
            .join(CASES, C.id == H.case_id)
            .where(ALLOCATABLE, H.event.in_(sorted(CAME_BACK_EVENTS)))
            .group_by(H.case_id)
        )
    }
    found.to_allocate = [
        CaseToAllocate(
            case_id=case_id,
            debtor_id=r["debtor_id"],
            bucket=r["bucket"],
            balance_minor=r["balance_minor"],
            currency=r["currency"],
            region=r["region"],
            dpd=r["dpd"],
            status=r["status"],
            holds=tuple(sorted(holds.get(case_id, ()))),
            placements=tuple(past.get(case_id, ())),
            last_event=last_event.get(case_id),
            came_back_at=came_back.get(case_id),
            unconfirmed_batch=unconfirmed.get(r["claim_batch_id"] or ""),
        )
        for case_id, r in found.cases.items()
    ]
    return found


async def read_factors(
    conn: AsyncConnection, settings: AllocationSection, now: datetime
) -> dict[tuple[str, str], float]:
    """Each agency's performance factor from its recovery on what it was placed in the last
    ``performance_days`` (gateway.allocation.performance)."""
    since = now - timedelta(days=settings.performance_days)
    rows = await conn.execute(placement_totals(P.placed_at >= since))
    return performance_factors(
        (
            Recovery(a, cur, int(n), int(pl or 0), int(co or 0))
            for a, cur, n, pl, co, _recalled in rows
        ),
        min_placements=settings.performance_min_placements,
        floor=settings.performance_floor,
        cap=settings.performance_cap,
    )


def decision_row(
    decision: Decision, *, round_id: str, seed: int, now: datetime
) -> dict[str, object]:
    """The ``allocation_decisions`` row of one decision."""
    return {
        "round_id": round_id,
        "debtor_id": decision.debtor_id,
        "case_ids": json.dumps(list(decision.case_ids)),
        "bucket": decision.bucket,
        "tier": decision.tier,
        "rule": decision.rule,
        "strategy": decision.strategy,
        "seed": seed,
        "candidates": json.dumps(
            [
                {
                    "agency": c.agency_id,
                    "tier": c.tier,
                    "verdict": c.verdict,
                    "weight": c.weight,
                    "factor": None if c.factor is None else round(c.factor, 4),
                }
                for c in decision.candidates
            ],
            ensure_ascii=False,
        ),
        "draw": decision.draw,
        "chosen_agency": decision.chosen,
        "reason": None if decision.reason is None else decision.reason[:500],
        "decided_at": now,
    }


async def record_decisions(
    conn: AsyncConnection,
    decisions: Sequence[Decision],
    *,
    round_id: str,
    seed: int,
    now: datetime,
) -> list[int]:
    """Insert the decisions (one batch); their ids, in order."""
    if not decisions:
        return []
    result = await conn.execute(
        DECISIONS.insert().returning(D.id, sort_by_parameter_order=True),
        [decision_row(d, round_id=round_id, seed=seed, now=now) for d in decisions],
    )
    return [int(i) for i in result.scalars().all()]


def batches(decisions: Sequence[Decision], cases: int) -> Iterator[list[Decision]]:
    """The decisions in order, in batches of about ``cases`` cases (a group is never split)."""
    batch: list[Decision] = []
    size = 0
    for decision in decisions:
        batch.append(decision)
        size += len(decision.case_ids)
        if size >= cases:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


async def record_unplaced(
    conn: AsyncConnection,
    found: RoundInput,
    result: AllocationResult,
    *,
    round_id: str,
    seed: int,
    now: datetime,
) -> int:
    """Store the reasons of the cases left unplaced, and the decisions of their groups, but
    only where a case's reason changed since the last round (so repeated rounds do not grow
    ``allocation_decisions``). The number of decisions written."""
    changed = {
        u.case_id: u.reason
        for u in result.unallocated
        if found.cases[u.case_id]["unallocated_reason"] != u.reason
    }
    explained = [
        d for d in result.decisions if d.chosen is None and any(c in changed for c in d.case_ids)
    ]
    for batch in batches(explained, BATCH):
        await record_decisions(conn, batch, round_id=round_id, seed=seed, now=now)
    await record_reasons(conn, changed)
    return len(explained)


async def record_reasons(conn: AsyncConnection, reasons: Mapping[str, str | None]) -> None:
    """Set ``cases.unallocated_reason`` (None clears it)."""
    if reasons:
        await conn.execute(
            CASES.update()
            .where(C.id == sa.bindparam("b_id"))
            .values(unallocated_reason=sa.bindparam("b_reason")),
            [
                {"b_id": case_id, "b_reason": None if r is None else r[:500]}
                for case_id, r in reasons.items()
            ],
        )


__all__ = [
    "AllocationReport",
    "RoundInput",
    "batches",
    "decision_row",
    "new_round_id",
    "read_factors",
    "read_round",
    "record_decisions",
    "record_reasons",
    "record_unplaced",
]
