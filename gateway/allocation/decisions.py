"""What an allocation round decided: the assignments, the cases left unplaced with their
reasons, and per group the explanation (every agency's verdict, the weights, the draw).

``gateway.allocation.rules`` produces these; ``gateway.allocation.rounds`` stores the
explanations in ``allocation_decisions`` and the reasons in ``cases.unallocated_reason``.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Assignment:
    case_id: str
    agency_id: str
    strategy: str = "champion"
    tier: str | None = None


@dataclass(frozen=True, slots=True)
class Unallocated:
    case_id: str
    code: str
    """One of ``routing.REASONS``."""
    reason: str
    """The detail: what exactly stands in the way."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One agency as a decision saw it. ``weight`` and ``factor`` are set for eligible ones:
    the contract weight and the performance factor the draw applied (1 for challengers)."""

    agency_id: str
    tier: str
    verdict: str
    weight: float | None = None
    factor: float | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Why one group (a debtor's accounts, or one bucket of them) went where it went."""

    debtor_id: str
    case_ids: tuple[str, ...]
    bucket: str
    tier: str | None
    rule: str
    strategy: str
    candidates: tuple[Candidate, ...]
    draw: float | None
    """The uniform draw in [0, 1): the chosen agency is the first whose share of the summed
    weights (in agency id order) reaches past it. None when no draw was needed."""
    chosen: str | None
    code: str | None = None
    """The unallocated reason code when no agency was chosen."""
    reason: str | None = None
    """Why none was chosen, or a note on how the group was placed."""


@dataclass(slots=True)
class AllocationResult:
    assignments: list[Assignment] = field(default_factory=list)
    unallocated: list[Unallocated] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


__all__ = ["AllocationResult", "Assignment", "Candidate", "Decision", "Unallocated"]
