"""Reporting on agencies: ``scorecards`` measure how each agency served the placements it
received in a period (volume, recovery, SLA, conduct), for evaluation and allocation weights."""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.reporting.scorecards import Scorecard, scorecards

__all__ = ["Scorecard", "scorecards"]

__getattr__ = lazy_exports(
    __name__,
    {
        "Scorecard": "gateway.reporting.scorecards",
        "scorecards": "gateway.reporting.scorecards",
    },
)
