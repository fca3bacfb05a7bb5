"""Where a case may go: the checks before any agency is considered, the tier a case is due
for, and each agency's verdict on it (pure).

Theory of operation
-------------------
A case first passes ``screen``: it must be allocatable (``gateway.lifecycle``), confirmed (the
claim batch of the intake that last created or changed it approved, gateway.claims), free of holds,
overdue (dpd > 0), owe something (balance > 0) and, if it came back from an agency (a
``return`` or ``expire`` in its history), be past its cool-off. A case that fails one of
these is left out of the round with that reason; it never reaches an agency.

Then its tier. ``[allocation] tiers`` is an ordered list and each agency names its tier. A
case never placed is due for the first tier (``floor_of`` = 0); a case that an agency had
is due for the tier after the highest one it has been in, except that a placement the agency
rejected on receipt does not count as having been worked (the case may go to another agency
of the same tier); a case whose last event is ``escalate`` is due for ``legal_tier`` and
nothing else. ``target_tier`` is the first tier from the floor on that has an agency whose
contract takes the case and that never had it (``fit_verdict`` is None), whatever that
agency's free capacity: when that tier is full the case waits for it rather than falling
through to a later one.

A verdict is ``None`` (eligible) or a short phrase saying why not; the phrases are what the
allocation explanation stores for every agency. A case is never offered to an agency that
had it before, whatever became of that placement.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from gateway.config.agencies import AgencyConfig
from gateway.config.settings import BUCKET_NAMES, AllocationSection
from gateway.lifecycle import ALLOCATABLE_CASE_STATES

REASONS: Final[dict[str, str]] = {
    "not_allocatable": "not in an allocatable status",
    "unconfirmed": "its claim batch is not approved (claims list)",
    "held": "on hold",
    "not_overdue": "not overdue (0 days past due)",
    "nothing_owed": "nothing owed (balance 0)",
    "cooling_off": "cooling off after a return or expiry",
    "no_next_tier": "no agency in a later tier can take it",
    "no_eligible_agency": "no agency's contract takes it",
    "tier_full": "waiting: its tier is full",
    "debtor_elsewhere": "the debtor's other accounts are with an agency that cannot take it",
}
"""Unallocated reason code → a readable label (the detail of each case says more)."""

CAME_BACK_EVENTS: Final = frozenset({"return", "expire"})
"""Case events that start the cool-off."""


@dataclass(frozen=True, slots=True)
class PastPlacement:
    """One earlier placement of a case. ``tier`` is None on rows from before tiers were
    recorded: the agency's configured tier stands in."""

    agency_id: str
    tier: str | None
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseToAllocate:
    """A case as the allocation rules see it.

    ``placements`` are the case's earlier placements; ``excluded_agencies`` adds agencies it
    must not go to for other reasons. ``last_event`` is its latest ``case_history`` event and
    ``came_back_at`` the time of its latest ``return`` or ``expire``.
    """

    case_id: str
    debtor_id: str
    bucket: str
    balance_minor: int
    currency: str
    region: str
    dpd: int
    status: str = "open"
    holds: tuple[str, ...] = ()
    placements: tuple[PastPlacement, ...] = ()
    excluded_agencies: frozenset[str] = frozenset()
    last_event: str | None = None
    came_back_at: datetime | None = None
    unconfirmed_batch: str | None = None
    """The claim batch (and its state) that a second person has not approved yet, if any."""

    @property
    def had(self) -> frozenset[str]:
        """Every agency the case must not go to again."""
        return self.excluded_agencies | {p.agency_id for p in self.placements}


@dataclass(frozen=True, slots=True)
class Policy:
    """The ``[allocation]`` keys the routing follows."""

    tiers: tuple[str, ...] = ("primary", "secondary", "legal")
    legal_tier: str = "legal"
    cool_off_days: int = 7
    mixed_debtors: Literal["worst", "split"] = "worst"

    @classmethod
    def from_settings(cls, settings: AllocationSection) -> "Policy":
        return cls(
            tiers=settings.tiers,
            legal_tier=settings.legal_tier,
            cool_off_days=settings.cool_off_days,
            mixed_debtors=settings.mixed_debtors,
        )

    def index(self, tier: str) -> int | None:
        return self.tiers.index(tier) if tier in self.tiers else None


@dataclass(frozen=True, slots=True)
class Floor:
    """The first tier index a case (or group) may go to; ``exact``: that tier and no other."""

    index: int = 0
    exact: bool = False

    def admits(self, index: int | None) -> bool:
        if index is None:
            return False
        return index == self.index if self.exact else index >= self.index


def screen(case: CaseToAllocate, *, now: datetime | None, policy: Policy) -> tuple[str, str] | None:
    """(reason code, detail) when the case must not be placed now, else None."""
    if case.status not in ALLOCATABLE_CASE_STATES:
        return "not_allocatable", f"the case is {case.status}"
    if case.unconfirmed_batch is not None:
        return "unconfirmed", f"claim batch {case.unconfirmed_batch}: not approved"
    if case.holds:
        return "held", f"on hold: {', '.join(sorted(set(case.holds)))}"
    if case.dpd <= 0:
        return "not_overdue", "not overdue (0 days past due)"
    if case.balance_minor <= 0:
        return "nothing_owed", f"nothing owed (balance {money(case.balance_minor)})"
    if (
        now is not None
        and case.came_back_at is not None
        and case.last_event != "escalate"
        and policy.cool_off_days > 0
    ):
        until = case.came_back_at + timedelta(days=policy.cool_off_days)
        if now < until:
            return "cooling_off", f"cooling off until {until.date().isoformat()}"
    return None


def money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 100)
    return f"{sign}{units:,}.{cents:02d}"


def agency_tier(agency_id: str, tier: str | None, agencies: dict[str, AgencyConfig]) -> str | None:
    """A past placement's tier: as recorded, else the agency's configured one (if known)."""
    if tier is not None:
        return tier
    agency = agencies.get(agency_id)
    return agency.tier if agency is not None else None


def floor_of(case: CaseToAllocate, agencies: dict[str, AgencyConfig], policy: Policy) -> Floor:
    """The tier the case is due for (see the module docstring)."""
    if case.last_event == "escalate" and policy.legal_tier:
        legal = policy.index(policy.legal_tier)
        if legal is not None:
            return Floor(legal, exact=True)
    floor = 0
    for past in case.placements:
        tier = agency_tier(past.agency_id, past.tier, agencies)
        index = policy.index(tier) if tier is not None else None
        if index is not None:
            floor = max(floor, index if past.state == "rejected" else index + 1)
    return Floor(floor)


def group_floor(floors: Iterable[Floor]) -> Floor:
    """The floor of cases placed together: the most advanced one (an escalation wins)."""
    found = list(floors)
    exact = [f for f in found if f.exact]
    if exact:
        return Floor(max(f.index for f in exact), exact=True)
    return Floor(max((f.index for f in found), default=0))


def bucket_rank(bucket: str) -> int:
    """M1 < M2 < M3 < M4-6 < M6+ < LEGAL (an unknown bucket ranks worst)."""
    return BUCKET_NAMES.index(bucket) if bucket in BUCKET_NAMES else len(BUCKET_NAMES)


def worst_bucket(buckets: Iterable[str]) -> str:
    return max(buckets, key=lambda b: (bucket_rank(b), b))


def fit_verdict(agency: AgencyConfig, cases: Sequence[CaseToAllocate], bucket: str) -> str | None:
    """Why the agency cannot take these cases as ``bucket``, by its contract or because it
    had one of them before (None: it can, capacity aside)."""
    rules = agency.eligibility
    if not agency.enabled:
        return "disabled"
    for case in cases:
        if case.currency not in rules.currencies:
            return f"currency {case.currency} not in contract"
    if bucket not in rules.buckets:
        return f"bucket {bucket} not in contract"
    for case in cases:
        if case.balance_minor < rules.min_balance_minor:
            return f"balance {money(case.balance_minor)} below {money(rules.min_balance_minor)}"
        if rules.max_balance_minor is not None and case.balance_minor > rules.max_balance_minor:
            return f"balance {money(case.balance_minor)} above {money(rules.max_balance_minor)}"
        if rules.regions and case.region not in rules.regions:
            return f"region {case.region} not in contract"
    for case in cases:
        if agency.id in case.had:
            return "had this case before"
    return None


def target_tier(
    agencies: Sequence[AgencyConfig], fits: Mapping[str, str | None], floor: Floor, policy: Policy
) -> int | None:
    """The first tier the floor admits with an agency that fits (``fits``: agency id →
    ``fit_verdict``), capacity aside."""
    for index in range(floor.index, len(policy.tiers)):
        if not floor.admits(index):
            break
        if any(policy.index(a.tier) == index and fits[a.id] is None for a in agencies):
            return index
    return None


def capacity_verdict(agency: AgencyConfig, load: int, size: int) -> str | None:
    """Why ``size`` more cases do not fit beside the ``load`` it holds (None: they do)."""
    limit = agency.capacity.max_open_placements
    if load + size <= limit:
        return None
    return (
        f"at capacity {load}/{limit}" if load >= limit else f"no room for {size} ({load}/{limit})"
    )


__all__ = [
    "CAME_BACK_EVENTS",
    "REASONS",
    "CaseToAllocate",
    "Floor",
    "PastPlacement",
    "Policy",
    "agency_tier",
    "bucket_rank",
    "capacity_verdict",
    "fit_verdict",
    "floor_of",
    "group_floor",
    "money",
    "screen",
    "target_tier",
    "worst_bucket",
]
