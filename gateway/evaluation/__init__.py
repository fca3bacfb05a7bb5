"""The annual evaluation of each agency (issue 20, items 5): register standing and history,
compliance (violations, complaints, deletion confirmations, data incidents), performance
against peers in the same strata with the vintage curve, the SLA record and the money, a
recommendation computed from stated rules, and the reviewer's decision recorded with four
eyes, which feeds the register (share or status).

``model`` is the pure core (inputs → report, recommendation); ``gather`` reads the store
through the other parts' APIs; ``documents`` renders the PDFs (Chinese, English) and the
XLSX; ``service`` stores reports, documents and evidence leaves and runs the decision.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.evaluation.model import Inputs, Report, evaluate
    from gateway.evaluation.service import EvaluationService

__all__ = ["EvaluationService", "Inputs", "Report", "evaluate"]

__getattr__ = lazy_exports(
    __name__,
    {
        "EvaluationService": "gateway.evaluation.service",
        "Inputs": "gateway.evaluation.model",
        "Report": "gateway.evaluation.model",
        "evaluate": "gateway.evaluation.model",
    },
)
