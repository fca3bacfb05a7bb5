"""Performance factors: how much more (or less) an agency's champion draws weigh, from what
it recovered recently (pure).

An agency's factor in a currency is its recovery rate (collected over placed) over the mean
rate of the agencies scored in that currency, clamped to ``[floor, cap]`` so no agency is
starved or flooded by one good or bad quarter; an agency with fewer than ``min_placements``
placements is not scored and keeps 1.
"""

from collections.abc import Iterable
from dataclasses import dataclass


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


__all__ = ["Recovery", "performance_factors"]
