"""Reporting on agencies: ``scorecards`` measure how each agency served the placements it
received in a period (volume, recovery, SLA, conduct); ``stratified`` compares them fairly
(recovery on lender-received, attributed money, within strata of bucket, balance band and
vintage month, with confidence intervals; champion against challenger; roll, cure, cost of
collection; vintage curves), on the statistics of ``strata`` (pure); ``charts`` draws the
curves (SVG for the console, PNG for export)."""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.reporting.charts import curves_png, curves_svg
    from gateway.reporting.scorecards import Scorecard, scorecards
    from gateway.reporting.strata import Comparison, Contrast, Curve
    from gateway.reporting.stratified import (
        Flow,
        StratifiedReport,
        stratified_scorecards,
        vintage_curves,
    )

__all__ = [
    "Comparison",
    "Contrast",
    "Curve",
    "Flow",
    "Scorecard",
    "StratifiedReport",
    "curves_png",
    "curves_svg",
    "scorecards",
    "stratified_scorecards",
    "vintage_curves",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "Comparison": "gateway.reporting.strata",
        "Contrast": "gateway.reporting.strata",
        "Curve": "gateway.reporting.strata",
        "Flow": "gateway.reporting.stratified",
        "Scorecard": "gateway.reporting.scorecards",
        "StratifiedReport": "gateway.reporting.stratified",
        "curves_png": "gateway.reporting.charts",
        "curves_svg": "gateway.reporting.charts",
        "scorecards": "gateway.reporting.scorecards",
        "stratified_scorecards": "gateway.reporting.stratified",
        "vintage_curves": "gateway.reporting.stratified",
    },
)
