"""Intake, the first step of a case's life: the lender's overdue-account export is read and
validated (``reader``), each account classified into a bucket by days past due and balance
(``classification``) and written as one ``cases`` row, personal data encrypted (``writer``),
its holds and paid-off or cured figures applied to the case (gateway.cases.scrubs);
``service`` runs a whole file and reports every rejected line.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.intake.service import IntakeReport, import_file

__all__ = ["IntakeReport", "import_file"]

__getattr__ = lazy_exports(
    __name__,
    {
        "IntakeReport": "gateway.intake.service",
        "import_file": "gateway.intake.service",
    },
)
