"""The lender's money with its agencies: attribution of repayments, commission, monthly
statements.

``attribution`` is the pure core that credits each lender receipt to the placement that held
the case (with the contract's grace window), ``attribution_pass`` its step in the
reconciliation run and ``disputes`` the agency's ``attribution.disputed``; ``commission`` is
the pure commission schedule, ``states`` the statement's transition table, ``statements`` the
service that builds, adjusts, issues and settles a monthly statement (佣金结算单), ``views``
and ``documents`` what it reads and renders (canonical JSON, XLSX, signed PDF), ``packets``
the ``settlement.statement`` packet, ``answers`` the agency's ``settlement.confirmed`` and
``settlement.disputed``, and ``month`` one month settled end to end (the demo's).
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.settlement.attribution_pass import attribute_receipts, unaccounted_receipts
    from gateway.settlement.month import SettledMonth, settle_month
    from gateway.settlement.statements import StatementService

__all__ = [
    "SettledMonth",
    "StatementService",
    "attribute_receipts",
    "settle_month",
    "unaccounted_receipts",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "attribute_receipts": "gateway.settlement.attribution_pass",
        "unaccounted_receipts": "gateway.settlement.attribution_pass",
        "SettledMonth": "gateway.settlement.month",
        "settle_month": "gateway.settlement.month",
        "StatementService": "gateway.settlement.statements",
    },
)
