"""The demo's second act: cases that move on.

After the first round has been worked by the sandbox agencies, the lender's day-2 file
changes a few placed cases (``plan_day2``): some balances drop (amendments), one debtor has
died (a ``DECEASED`` hold, which recalls the placement), one account is paid off (recalled
and closed), one crosses the legal threshold (an escalation that ops approve). Then time is
simulated past the early-stage agency's 30-day term (``terms_and_second_round``): the
expiring placements are warned, one is renewed by ops, the rest are recalled as expired, and
a second allocation round takes every returned and expired case to the next tier. The checks
at the end (``lifecycle_checks``) are the issue's acceptance lines, counted in the demo's own
database: none placed back with an agency that had it, none held / not overdue / nothing owed
placed, none left past its term, every unallocated case with a reason.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa

from gateway.bootstrap import Gateway
from gateway.demo.data import rebalanced
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.store.case_tables import CaseHold
from gateway.store.tables import Case, Placement
from schemas.account import IntakeAccount

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
C, P = CASES.c, PLACEMENTS.c

DEMO_ACTOR = "ops:demo"


@dataclass(frozen=True, slots=True)
class Day2Plan:
    """Which placed cases the lender's day-2 file (and ops) change, and how."""

    recalls: tuple[str, ...]
    amended: frozenset[str]
    deceased: str | None
    paid_off: str | None
    to_legal: str | None


def plan_day2(placed: list[str], collection: list[str]) -> Day2Plan:
    """Split the placed cases: the first half recalled by ops (paid to the lender directly),
    the rest amended; three more from ``collection`` (placed outside the legal tier) die,
    pay off and cross the legal threshold."""
    half = len(placed) // 2
    spare = [c for c in collection if c not in placed]
    return Day2Plan(
        recalls=tuple(placed[:half]),
        amended=frozenset(placed[half:]),
        deceased=spare[0] if len(spare) > 0 else None,
        paid_off=spare[1] if len(spare) > 1 else None,
        to_legal=spare[2] if len(spare) > 2 else None,
    )


def day2_accounts(
    accounts: Iterable[IntakeAccount], plan: Day2Plan, *, legal_min_dpd: int
) -> Iterator[IntakeAccount]:
    """The day-2 export: the first file with the plan's changes."""
    for account in accounts:
        if account.account_id in plan.amended:
            yield rebalanced(account, max(1, account.balance_minor - 10_000))
        elif account.account_id == plan.deceased:
            yield account.model_copy(update={"holds": ("DECEASED",)})
        elif account.account_id == plan.paid_off:
            yield rebalanced(account, 0)
        elif account.account_id == plan.to_legal:
            late = legal_min_dpd + 10
            yield account.model_copy(
                update={"dpd": late, "due_date": account.due_date - timedelta(days=late)}
            )
        else:
            yield account


async def placed_case_ids(
    gateway: Gateway, *, limit: int, outside_tier: str | None = None
) -> list[str]:
    """Cases the agencies are working (acknowledged or active), optionally only those
    placed outside ``outside_tier``."""
    query = sa.select(P.case_id).where(P.state.in_(["acknowledged", "active"]))
    if outside_tier:
        query = query.where(sa.or_(P.tier.is_(None), P.tier != outside_tier))
    async with gateway.db.connect() as conn:
        rows = await conn.execute(query.order_by(P.case_id).limit(limit))
        return [str(r[0]) for r in rows.all()]


@dataclass(slots=True)
class CaseLife:
    """What the second act did, for the demo's notes and ``--json`` summary."""

    escalations_approved: int = 0
    renewed: str | None = None
    warned: int = 0
    expired: Counter[str] = field(default_factory=Counter)
    expiry_as_of: date | None = None
    second_round_placed: Counter[str] = field(default_factory=Counter)
    """Placements of the second round by tier."""
    second_round_unallocated: Counter[str] = field(default_factory=Counter)
    checks: dict[str, int] = field(default_factory=dict)

    def ok(self) -> bool:
        return all(n == 0 for n in self.checks.values())

    def as_json(self) -> dict[str, object]:
        return {
            "escalations_approved": self.escalations_approved,
            "renewed": self.renewed,
            "expiry_warnings": self.warned,
            "expired_by_agency": dict(self.expired),
            "expiry_as_of": self.expiry_as_of.isoformat() if self.expiry_as_of else None,
            "second_round_placed_by_tier": dict(self.second_round_placed),
            "second_round_unallocated_by_reason": dict(self.second_round_unallocated),
            "checks": self.checks,
        }


async def approve_escalations(gateway: Gateway, life: CaseLife) -> None:
    """Propose the escalations due and approve them, as ops would from the queue."""
    scan = await gateway.escalations.scan()
    for escalation_id in scan.proposed:
        await gateway.escalations.approve(
            escalation_id, actor=DEMO_ACTOR, note="large aged debt: refer to the law firm"
        )
        life.escalations_approved += 1


async def renew_one(gateway: Gateway, agency_id: str, life: CaseLife) -> date | None:
    """Renew one of ``agency_id``'s open placements by 60 days; return the term the
    others share (None when the agency holds nothing)."""
    async with gateway.db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(P.id, P.return_by)
                .where(P.agency_id == agency_id, P.state.in_(OPEN_PLACEMENT_STATES))
                .order_by(P.id)
                .limit(2)
            )
        ).all()
    if not rows:
        return None
    placement_id, return_by = rows[0]
    await gateway.expiry.renew(
        str(placement_id), 60, actor=DEMO_ACTOR, note="agency asked for time: payment plan"
    )
    life.renewed = str(placement_id)
    return return_by if isinstance(return_by, date) else date.fromisoformat(str(return_by))


async def expire(gateway: Gateway, *, warn_on: date, expire_on: date, life: CaseLife) -> None:
    """Warnings as of ``warn_on``, then the expiry recalls as of ``expire_on``."""
    warned = await gateway.expiry.run(as_of=warn_on)
    life.warned = warned.warned.total()
    expired = await gateway.expiry.run(as_of=expire_on)
    life.expired = expired.expired
    life.expiry_as_of = expire_on


async def second_round(gateway: Gateway, life: CaseLife) -> None:
    report = await gateway.placements.allocate()
    tiers = {a.id: a.tier for a in gateway.agencies.values()}
    for agency_id, n in report.by_agency.items():
        life.second_round_placed[tiers.get(agency_id, "?")] += n
    life.second_round_unallocated = Counter(report.reasons)


async def lifecycle_checks(gateway: Gateway, *, as_of: date, grace_days: int) -> dict[str, int]:
    """The acceptance counts; each must be 0."""
    earlier = PLACEMENTS.alias("earlier")
    active_hold = sa.exists().where(HOLDS.c.case_id == C.id, HOLDS.c.released_at.is_(None))
    open_p = P.state.in_(OPEN_PLACEMENT_STATES)
    cutoff = as_of - timedelta(days=grace_days)
    queries = {
        "placed_back_with_an_agency_that_had_it": sa.select(sa.func.count()).where(
            sa.exists().where(
                earlier.c.case_id == P.case_id,
                earlier.c.agency_id == P.agency_id,
                earlier.c.id != P.id,
            )
        ),
        "open_placements_of_held_cases": sa.select(sa.func.count())
        .select_from(PLACEMENTS.join(CASES, C.id == P.case_id))
        .where(open_p, active_hold),
        "open_placements_not_overdue_or_nothing_owed": sa.select(sa.func.count())
        .select_from(PLACEMENTS.join(CASES, C.id == P.case_id))
        .where(open_p, sa.or_(C.dpd == 0, C.balance_minor == 0)),
        "open_placements_past_return_by_and_grace": sa.select(sa.func.count()).where(
            open_p, P.return_by < cutoff
        ),
        "unallocated_cases_without_a_reason": sa.select(sa.func.count()).where(
            C.status.in_(["open", "returned"]),
            C.unallocated_reason.is_(None),
        ),
    }
    counts: dict[str, int] = {}
    async with gateway.db.connect() as conn:
        for name, query in queries.items():
            counts[name] = int((await conn.execute(query)).scalar_one())
    return counts


def life_notes(life: CaseLife) -> list[str]:
    placed = ", ".join(f"{t} {n}" for t, n in sorted(life.second_round_placed.items()))
    waiting = ", ".join(f"{r} {n}" for r, n in sorted(life.second_round_unallocated.items()))
    failed = [name for name, n in life.checks.items() if n]
    return [
        f"escalation: {life.escalations_approved} placed case(s) past the legal threshold "
        f"recalled for the legal tier (approved by ops)",
        f"expiry as of {life.expiry_as_of} (simulating the early-stage term's end): "
        f"{life.warned} placement.expiring warning(s), "
        f"{life.expired.total()} recalled as EXPIRED, placement {life.renewed} renewed by ops",
        f"second allocation round: placed by tier {placed or 'none'}; "
        f"unallocated by reason {waiting or 'none'}",
        "lifecycle checks: "
        + ("all hold" if not failed else "FAILED " + ", ".join(failed))
        + f" ({', '.join(f'{k} {v}' for k, v in life.checks.items())})",
    ]


__all__ = [
    "CaseLife",
    "Day2Plan",
    "approve_escalations",
    "day2_accounts",
    "expire",
    "life_notes",
    "lifecycle_checks",
    "placed_case_ids",
    "plan_day2",
    "renew_one",
    "second_round",
]
