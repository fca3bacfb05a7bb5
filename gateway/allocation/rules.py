"""Allocation: choose the agency for each case, and say why (pure and deterministic).

Theory of operation
-------------------
1. Screening (``gateway.allocation.routing.screen``): held, not overdue, nothing owed,
   cooling off or not allocatable cases are left out, each with its reason.
2. Groups: a debtor's accounts in one currency travel together. Accounts in different buckets
   follow ``[allocation] mixed_debtors``: ``worst`` lets the worst bucket (M1 < M2 < M3 <
   M4-6 < M6+ < LEGAL) decide eligibility for the whole group; ``split`` makes one part per
   bucket, each allocated on its own.
3. Stickiness: if the debtor has an open placement, the group follows that agency when it can
   take it (contract, history, tier, capacity). When it cannot, a group of new cases under
   ``worst`` waits with the reason naming that agency (unless no agency at all could take
   it); a split part, or cases that come back from an agency, are placed on their own and the
   decision says so.
4. Tier (``routing.target_tier``): the first tier the group is due for that has an agency
   whose contract takes it and that never had any of its cases. Only that tier's agencies
   are candidates; when all of them are full, the group waits.
5. Capacity: an agency never holds more open placements than ``max_open_placements``.
6. Among the candidates with room, a weighted draw seeded by ``seed`` and the group's key
   (the debtor id, plus currency and bucket when the debtor has several groups), so the
   same input and seed always give the same answer, independent of input order. Groups are
   taken in an order drawn the same way, so capacity is consumed the same way on every run.

Champion and challenger: a group is a *challenger* with probability ``challenger_share``
(again a draw on its key) and drawn by the contract weights (``capacity.weight``) alone;
every other group is a *champion*, drawn by the contract weight times the agency's
performance factor in the group's currency (``gateway.allocation.performance``). Each
assignment records its strategy, so scorecards can compare the two.

The register (gateway.register) comes first of all: an agency it refuses today (not
admitted, contract not started or ended, a required qualification expired) has that refusal
as its verdict for every group, before its contract is looked at; an agency's register share
multiplies its contract weight in both strategies.

Every group that reaches step 3 yields a ``Decision``: every configured agency with its tier
and verdict ("eligible", or why not), the weights and factors of the eligible ones, the draw
and the agency chosen, or the reason none was. ``gateway.allocation.rounds`` stores them.
"""

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from gateway.allocation.decisions import (
    AllocationResult,
    Assignment,
    Candidate,
    Decision,
    Unallocated,
)
from gateway.allocation.routing import (
    REASONS,
    CaseToAllocate,
    Floor,
    PastPlacement,
    Policy,
    bucket_rank,
    capacity_verdict,
    fit_verdict,
    floor_of,
    group_floor,
    screen,
    target_tier,
    worst_bucket,
)
from gateway.config.agencies import AgencyConfig

STRATEGIES = ("champion", "challenger")
RULES = ("single", "worst", "split")
DEFAULT_POLICY = Policy()


def eligible(agency: AgencyConfig, case: CaseToAllocate) -> bool:
    """The agency's contract takes the case on its own, and it never had it."""
    return fit_verdict(agency, [case], case.bucket) is None


def _draw(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class _Part:
    key: str
    debtor_id: str
    currency: str
    bucket: str
    rule: str
    cases: tuple[CaseToAllocate, ...]
    note: str | None


def _parts(key: str, group: list[CaseToAllocate], policy: Policy) -> list[_Part]:
    first = group[0]
    buckets = sorted({c.bucket for c in group}, key=lambda b: (bucket_rank(b), b))
    if len(buckets) == 1:
        return [_Part(key, first.debtor_id, first.currency, buckets[0], "single", (*group,), None)]
    mixed = ", ".join(buckets)
    if policy.mixed_debtors == "worst":
        worst = worst_bucket(buckets)
        note = f"mixed buckets {mixed}: the worst, {worst}, decides for all"
        return [_Part(key, first.debtor_id, first.currency, worst, "worst", (*group,), note)]
    return [
        _Part(
            f"{key}/{bucket}",
            first.debtor_id,
            first.currency,
            bucket,
            "split",
            tuple(c for c in group if c.bucket == bucket),
            f"mixed buckets {mixed}: split by bucket, {bucket} placed on its own",
        )
        for bucket in buckets
    ]


@dataclass(slots=True)
class _Round:
    """What one allocation run shares across its groups."""

    agencies: list[AgencyConfig]
    by_id: dict[str, AgencyConfig]
    load: dict[str, int]
    debtor_agency: Mapping[str, str]
    seed: int
    factors: Mapping[tuple[str, str], float]
    challenger_share: float
    policy: Policy
    barred: Mapping[str, str]
    shares: Mapping[str, float]

    def decide(self, part: _Part) -> Decision:
        size = len(part.cases)
        challenger = _draw(self.seed + 2, part.key) < self.challenger_share
        fits = {
            a.id: self.barred.get(a.id) or fit_verdict(a, part.cases, part.bucket)
            for a in self.agencies
        }
        floor = group_floor(floor_of(c, self.by_id, self.policy) for c in part.cases)
        target = target_tier(self.agencies, fits, floor, self.policy)
        blank = Decision(
            debtor_id=part.debtor_id,
            case_ids=tuple(c.case_id for c in part.cases),
            bucket=part.bucket,
            tier=None,
            rule=part.rule,
            strategy="challenger" if challenger else "champion",
            candidates=(),
            draw=None,
            chosen=None,
        )
        notes = [part.note] if part.note else []
        sticky_id = self.debtor_agency.get(part.debtor_id)
        if sticky_id is not None:
            refusal = self._sticky_refusal(sticky_id, fits, floor, size, part.bucket)
            elsewhere = f"debtor's accounts are with {sticky_id}"
            if refusal is None:
                sticky = self.by_id[sticky_id]
                factor = self._factor(sticky_id, part.currency, blank.strategy)
                return replace(
                    blank,
                    candidates=tuple(
                        Candidate(a.id, a.tier, "eligible", self._weight(a), factor)
                        if a.id == sticky_id
                        else Candidate(a.id, a.tier, fits[a.id] or elsewhere)
                        for a in self.agencies
                    ),
                    tier=sticky.tier,
                    chosen=sticky_id,
                    reason="; ".join(
                        [*notes, f"follows the debtor's other accounts at {sticky_id}"]
                    ),
                )
            detail = f"debtor's other accounts are with {sticky_id}, which {refusal}"
            fresh = not floor.exact and not any(c.placements for c in part.cases)
            if fresh and part.rule != "split" and target is not None:
                # New accounts wait for the debtor's agency rather than start a second one
                # (unless no agency at all could take them: that is the truer reason).
                return replace(
                    blank,
                    candidates=tuple(
                        Candidate(
                            a.id,
                            a.tier,
                            fits[a.id]
                            or (
                                self._why_not(a, target, floor, size) if a.id == sticky_id else None
                            )
                            or elsewhere,
                        )
                        for a in self.agencies
                    ),
                    tier=self.policy.tiers[target],
                    code="debtor_elsewhere",
                    reason=detail,
                )
            notes.append(f"{detail}: placed on their own")
        if target is None:
            code, detail = self._no_tier(floor, fits)
            return replace(
                blank,
                candidates=tuple(
                    Candidate(a.id, a.tier, fits[a.id] or self._tier_verdict(a, None, floor))
                    for a in self.agencies
                ),
                code=code,
                reason=detail,
            )
        return self._draw_in(blank, part, target, fits, floor, notes)

    def _draw_in(
        self,
        blank: Decision,
        part: _Part,
        target: int,
        fits: Mapping[str, str | None],
        floor: Floor,
        notes: list[str],
    ) -> Decision:
        """The weighted draw among the target tier's agencies with room (or wait for room)."""
        size = len(part.cases)
        candidates: list[Candidate] = []
        pool: list[tuple[AgencyConfig, float]] = []
        for agency in self.agencies:
            verdict = fits[agency.id] or self._why_not(agency, target, floor, size)
            if verdict is not None:
                candidates.append(Candidate(agency.id, agency.tier, verdict))
                continue
            factor = self._factor(agency.id, part.currency, blank.strategy)
            weight = self._weight(agency)
            candidates.append(Candidate(agency.id, agency.tier, "eligible", weight, factor))
            pool.append((agency, weight * factor))
        tier = self.policy.tiers[target]
        if not pool:
            waiting = ", ".join(
                a.id for a in self.agencies if fits[a.id] is None and a.tier == tier
            )
            return replace(
                blank,
                candidates=tuple(candidates),
                tier=tier,
                code="tier_full",
                reason=f"tier {tier} is full: waiting for room at {waiting}",
            )
        draw = _draw(self.seed + 1, part.key)
        point = draw * sum(weight for _, weight in pool)
        chosen = pool[-1][0]
        for agency, weight in pool:
            point -= weight
            if point < 0:
                chosen = agency
                break
        return replace(
            blank,
            candidates=tuple(candidates),
            tier=tier,
            chosen=chosen.id,
            draw=draw,
            reason="; ".join(notes) or None,
        )

    def _weight(self, agency: AgencyConfig) -> float:
        """The contract weight times the agency's register share (1 without an entry)."""
        return agency.capacity.weight * self.shares.get(agency.id, 1.0)

    def _factor(self, agency_id: str, currency: str, strategy: str) -> float:
        """The performance factor a draw applies: champions only."""
        return self.factors.get((agency_id, currency), 1.0) if strategy == "champion" else 1.0

    def _tier_verdict(self, agency: AgencyConfig, target: int | None, floor: Floor) -> str:
        """Why an agency that fits is still not a candidate, tier-wise (empty: it is)."""
        policy = self.policy
        index = policy.index(agency.tier)
        if index is None:
            return f"tier {agency.tier} is not one of [allocation] tiers"
        if floor.exact and index != floor.index:
            return f"tier {agency.tier}: escalated cases go to {policy.tiers[floor.index]}"
        if index < floor.index:
            return f"tier {agency.tier}: the case has been through it"
        if target is not None and index != target:
            return f"tier {agency.tier}: the case is due for {policy.tiers[target]}"
        return ""

    def _why_not(
        self, agency: AgencyConfig, target: int | None, floor: Floor, size: int
    ) -> str | None:
        """Tier, then capacity: why an agency that fits is not a candidate (None: it is)."""
        return self._tier_verdict(agency, target, floor) or capacity_verdict(
            agency, self.load[agency.id], size
        )

    def _sticky_refusal(
        self, sticky_id: str, fits: Mapping[str, str | None], floor: Floor, size: int, bucket: str
    ) -> str | None:
        """How the debtor's current agency cannot take the group, as "which ..." (None: it can)."""
        sticky = self.by_id.get(sticky_id)
        if sticky is None:
            return "is not configured"
        fit = fits[sticky_id]
        if fit == f"bucket {bucket} not in contract":
            return f"cannot take {bucket}"
        if fit is not None:
            return f"cannot take them ({fit})"
        if not floor.admits(self.policy.index(sticky.tier)):
            return f"is in tier {sticky.tier}, not one the cases are due for"
        if capacity_verdict(sticky, self.load[sticky_id], size) is not None:
            return "is full"
        return None

    def _no_tier(self, floor: Floor, fits: Mapping[str, str | None]) -> tuple[str, str]:
        tiers = self.policy.tiers
        if floor.exact:
            return "no_eligible_agency", (
                f"escalated to {tiers[floor.index]}, but no agency of that tier can take it"
            )
        if floor.index > 0:
            return "no_next_tier", f"no agency after tier {tiers[floor.index - 1]} can take it"
        why = "; ".join(f"{a.id}: {fits[a.id]}" for a in self.agencies if fits[a.id])
        return "no_eligible_agency", f"no agency can take it ({why or 'no agencies'})"[:500]


def allocate(
    cases: Iterable[CaseToAllocate],
    agencies: Sequence[AgencyConfig],
    *,
    open_counts: Mapping[str, int],
    debtor_agency: Mapping[str, str],
    seed: int,
    factors: Mapping[tuple[str, str], float] | None = None,
    challenger_share: float = 0.0,
    policy: Policy = DEFAULT_POLICY,
    now: datetime | None = None,
    barred: Mapping[str, str] | None = None,
    shares: Mapping[str, float] | None = None,
) -> AllocationResult:
    """Assign cases to agencies, with a decision per group saying why.

    Args:
        cases: allocatable cases (others are reported unallocated with their reason).
        agencies: every configured agency (any order; sorted by id internally).
        open_counts: open placements per agency now.
        debtor_agency: debtors that already have an open placement, and where.
        seed: the allocation seed from config.
        factors: (agency, currency) → performance factor for champion groups (default 1).
        challenger_share: the share of groups drawn by contract weights alone.
        policy: tiers, legal tier, cool-off and the mixed-debtor rule.
        now: the time the cool-off is measured against (None: no cool-off).
        barred: agency → why the register refuses it today (gateway.register): its verdict
            for every group, so it is never a candidate and the reasons name it.
        shares: agency → register share factor (0..1) multiplying its contract weight.
    """
    ordered = sorted(agencies, key=lambda a: a.id)
    state = _Round(
        agencies=ordered,
        by_id={a.id: a for a in ordered},
        load={a.id: open_counts.get(a.id, 0) for a in ordered},
        debtor_agency=debtor_agency,
        seed=seed,
        factors=factors or {},
        challenger_share=challenger_share,
        policy=policy,
        barred=barred or {},
        shares=shares or {},
    )
    result = AllocationResult()
    groups: dict[tuple[str, str], list[CaseToAllocate]] = {}
    for case in sorted(cases, key=lambda c: c.case_id):
        refusal = screen(case, now=now, policy=policy)
        if refusal is not None:
            result.unallocated.append(Unallocated(case.case_id, *refusal))
        else:
            groups.setdefault((case.debtor_id, case.currency), []).append(case)
    currencies = Counter(debtor for debtor, _ in groups)
    parts: list[_Part] = []
    for (debtor_id, currency), group in groups.items():
        key = debtor_id if currencies[debtor_id] == 1 else f"{debtor_id}/{currency}"
        parts.extend(_parts(key, group, policy))
    for part in sorted(parts, key=lambda p: (_draw(seed, p.key), p.key)):
        decision = state.decide(part)
        result.decisions.append(decision)
        if decision.chosen is None:
            result.unallocated.extend(
                Unallocated(c.case_id, decision.code or "", decision.reason or "")
                for c in part.cases
            )
            continue
        state.load[decision.chosen] += len(part.cases)
        result.assignments.extend(
            Assignment(c.case_id, decision.chosen, decision.strategy, decision.tier)
            for c in part.cases
        )
    return result


__all__ = [
    "DEFAULT_POLICY",
    "REASONS",
    "RULES",
    "STRATEGIES",
    "AllocationResult",
    "Assignment",
    "Candidate",
    "CaseToAllocate",
    "Decision",
    "PastPlacement",
    "Policy",
    "Unallocated",
    "allocate",
    "eligible",
]
