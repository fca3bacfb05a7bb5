"""Allocation: choose the agency for each case (pure and deterministic).

Rules, in order:

1. A debtor's accounts travel together: the group goes to one agency, and if any of the
   debtor's accounts is already placed, the rest follow it there.
2. Eligibility from the agency's contract: bucket, balance range, region, currency.
3. Never back to an agency that returned or rejected the case before.
4. Capacity: an agency never holds more open placements than ``max_open_placements``.
5. Among eligible agencies with room, a weighted draw seeded by ``seed`` and the debtor id,
   so the same input and seed always give the same answer, independent of input order.

Champion and challenger: a debtor's group is a *challenger* with probability
``challenger_share`` (again a draw on the debtor id) and drawn by the contract weights
(``capacity.weight``) alone; every other group is a *champion*, drawn by the contract weight
times the agency's performance factor in the group's currency. ``performance_factors``
derives the factors from recent recovery: an agency's recovery rate over the mean of its
peers' in that currency, clamped to ``[floor, cap]``; an agency with fewer than
``min_placements`` scored placements keeps 1. Each assignment records its strategy, so
scorecards can compare the two.
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.config.agencies import AgencyConfig


@dataclass(frozen=True, slots=True)
class CaseToAllocate:
    case_id: str
    debtor_id: str
    bucket: str
    balance_minor: int
    currency: str
    region: str
    excluded_agencies: frozenset[str] = frozenset()


STRATEGIES = ("champion", "challenger")


@dataclass(frozen=True, slots=True)
class Assignment:
    case_id: str
    agency_id: str
    strategy: str = "champion"


@dataclass(frozen=True, slots=True)
class Recovery:
    """What an agency recovered of its recent placements in one currency."""

    agency_id: str
    currency: str
    placements: int
    placed_minor: int
    collected_minor: int


def performance_factors(
    recoveries: Iterable[Recovery], *, min_placements: int, floor: float, cap: float
) -> dict[tuple[str, str], float]:
    """(agency, currency) → weight factor: its recovery rate over the mean of the scored
    agencies' rates in that currency, clamped to ``[floor, cap]``. Agencies with fewer than
    ``min_placements`` placements (or nothing placed) are not scored and keep 1."""
    rates: dict[str, dict[str, float]] = {}
    for r in recoveries:
        if r.placements >= min_placements and r.placed_minor > 0:
            rates.setdefault(r.currency, {})[r.agency_id] = r.collected_minor / r.placed_minor
    factors: dict[tuple[str, str], float] = {}
    for currency, by_agency in rates.items():
        mean = sum(by_agency.values()) / len(by_agency)
        for agency_id, rate in by_agency.items():
            factor = rate / mean if mean > 0 else 1.0
            factors[(agency_id, currency)] = min(cap, max(floor, factor))
    return factors


@dataclass(frozen=True, slots=True)
class Unallocated:
    case_id: str
    reason: str


@dataclass(slots=True)
class AllocationResult:
    assignments: list[Assignment] = field(default_factory=list)
    unallocated: list[Unallocated] = field(default_factory=list)


def eligible(agency: AgencyConfig, case: CaseToAllocate) -> bool:
    rules = agency.eligibility
    return (
        agency.enabled
        and case.bucket in rules.buckets
        and case.currency in rules.currencies
        and case.balance_minor >= rules.min_balance_minor
        and (rules.max_balance_minor is None or case.balance_minor <= rules.max_balance_minor)
        and (not rules.regions or case.region in rules.regions)
        and agency.id not in case.excluded_agencies
    )


def _draw(seed: int, debtor_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{debtor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def allocate(
    cases: Iterable[CaseToAllocate],
    agencies: Sequence[AgencyConfig],
    *,
    open_counts: Mapping[str, int],
    debtor_agency: Mapping[str, str],
    seed: int,
    factors: Mapping[tuple[str, str], float] | None = None,
    challenger_share: float = 0.0,
) -> AllocationResult:
    """Assign cases to agencies.

    Args:
        cases: unplaced cases.
        agencies: candidate agencies (any order; sorted by id internally).
        open_counts: open placements per agency now.
        debtor_agency: debtors that already have an open placement, and where.
        seed: the allocation seed from config.
        factors: (agency, currency) → performance factor for champion groups (default 1).
        challenger_share: the share of debtor groups drawn by contract weights alone.
    """
    factors = factors or {}
    ordered = sorted(agencies, key=lambda a: a.id)
    load = {a.id: open_counts.get(a.id, 0) for a in ordered}
    groups: dict[str, list[CaseToAllocate]] = {}
    for case in cases:
        groups.setdefault(case.debtor_id, []).append(case)
    result = AllocationResult()
    # Debtors in a stable order, so capacity is consumed the same way on every run.
    for debtor_id in sorted(groups, key=lambda d: (_draw(seed, d), d)):
        group = sorted(groups[debtor_id], key=lambda c: c.case_id)
        candidates = [
            a
            for a in ordered
            if all(eligible(a, c) for c in group)
            and load[a.id] + len(group) <= a.capacity.max_open_placements
        ]
        sticky = debtor_agency.get(debtor_id)
        if sticky is not None:
            candidates = [a for a in candidates if a.id == sticky]
        if not candidates:
            reason = (
                f"debtor's other accounts are with {sticky}, which cannot take these"
                if sticky
                else "no eligible agency with free capacity"
            )
            result.unallocated.extend(Unallocated(c.case_id, reason) for c in group)
            continue
        strategy = "challenger" if _draw(seed + 2, debtor_id) < challenger_share else "champion"
        currency = group[0].currency
        weights = [
            a.capacity.weight
            * (factors.get((a.id, currency), 1.0) if strategy == "champion" else 1.0)
            for a in candidates
        ]
        point = _draw(seed + 1, debtor_id) * sum(weights)
        chosen = candidates[-1]
        for agency, weight in zip(candidates, weights, strict=True):
            point -= weight
            if point < 0:
                chosen = agency
                break
        load[chosen.id] += len(group)
        result.assignments.extend(Assignment(c.case_id, chosen.id, strategy) for c in group)
    return result


__all__ = [
    "STRATEGIES",
    "AllocationResult",
    "Assignment",
    "CaseToAllocate",
    "Recovery",
    "Unallocated",
    "allocate",
    "eligible",
    "performance_factors",
]
