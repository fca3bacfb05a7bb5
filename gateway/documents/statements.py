"""The statements generated for each placement (pure): the repayment history and the
balance breakdown, as CSV.

CSV in UTF-8 with a byte-order mark, so Excel opens the Chinese headers correctly; each
column's header is Chinese then English (``到账时间 received_at``), amounts are decimal text in
the currency's units (never floats), and a part of the balance the lender did not give is
written ``未提供 not given``, never 0. The same inputs always give the same bytes, so a
re-rendered statement hashes the same.
"""

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from schemas.base import decimal_text

BOM = "\ufeff"
NOT_GIVEN = "未提供 not given"
MEDIA_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Repayment:
    """One payment the lender received for the case (``lender_payments``)."""

    payment_id: str
    received_at: datetime
    amount_minor: int
    currency: str
    kind: str
    agency_id: str | None = None


@dataclass(frozen=True, slots=True)
class Breakdown:
    """The case's balance and its parts, as the lender's intake gave them (None: not given)."""

    case_id: str
    currency: str
    balance_minor: int
    principal_minor: int
    principal_due_minor: int | None = None
    interest_minor: int | None = None
    penalty_minor: int | None = None
    fees_minor: int | None = None
    contract_no: str | None = None
    disbursed_on: date | None = None
    annual_rate_bp: int | None = None
    due_date: date | None = None
    dpd: int | None = None


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return (BOM + out.getvalue()).encode("utf-8")


def repayment_history_name(case_id: str) -> str:
    return f"repayment-history-{case_id}.csv"


def balance_breakdown_name(case_id: str) -> str:
    return f"balance-breakdown-{case_id}.csv"


def repayment_history(case_id: str, payments: Sequence[Repayment], *, as_of: date) -> bytes:
    """The lender's receipts for the case, oldest first, and their total per currency."""
    rows: list[list[str]] = [
        ["案件 case_id", "截至 as_of"],
        [case_id, as_of.isoformat()],
        [],
        ["到账时间 received_at", "金额 amount", "币种 currency", "流水号 payment_id", "类型 kind"],
    ]
    totals: dict[str, int] = {}
    for p in sorted(payments, key=lambda p: (p.received_at, p.payment_id)):
        rows.append(
            [
                p.received_at.isoformat(),
                decimal_text(p.amount_minor, p.currency),
                p.currency,
                p.payment_id,
                p.kind,
            ]
        )
        totals[p.currency] = totals.get(p.currency, 0) + p.amount_minor
    if not payments:
        rows.append(["无还款记录 no payments received", "", "", "", ""])
    for currency, total in sorted(totals.items()):
        rows.append(["合计 total", decimal_text(total, currency), currency, "", ""])
    return _csv(rows)


def _money(value: int | None, currency: str) -> str:
    return NOT_GIVEN if value is None else decimal_text(value, currency)


def balance_breakdown(b: Breakdown, *, as_of: date) -> bytes:
    """The balance and its parts (principal due, interest, penalty, fees) and the loan's
    details, one row per item."""
    rate = (
        NOT_GIVEN
        if b.annual_rate_bp is None
        else f"{b.annual_rate_bp // 100}.{b.annual_rate_bp % 100:02d}%"
    )
    rows = [
        ["项目 item", "金额或内容 value", "币种 currency"],
        ["案件 case_id", b.case_id, ""],
        ["截至 as_of", as_of.isoformat(), ""],
        ["合同编号 contract_no", b.contract_no or NOT_GIVEN, ""],
        ["放款日 disbursed_on", b.disbursed_on.isoformat() if b.disbursed_on else NOT_GIVEN, ""],
        ["年化利率 annual_rate", rate, ""],
        ["到期日 due_date", b.due_date.isoformat() if b.due_date else NOT_GIVEN, ""],
        ["逾期天数 days_past_due", NOT_GIVEN if b.dpd is None else str(b.dpd), ""],
        ["本金 principal (disbursed)", decimal_text(b.principal_minor, b.currency), b.currency],
        ["应还本金 principal_due", _money(b.principal_due_minor, b.currency), b.currency],
        ["利息 interest", _money(b.interest_minor, b.currency), b.currency],
        ["罚息 penalty", _money(b.penalty_minor, b.currency), b.currency],
        ["费用 fees", _money(b.fees_minor, b.currency), b.currency],
        ["应还总额 balance", decimal_text(b.balance_minor, b.currency), b.currency],
    ]
    return _csv(rows)


__all__ = [
    "BOM",
    "MEDIA_TYPE",
    "NOT_GIVEN",
    "Breakdown",
    "Repayment",
    "balance_breakdown",
    "balance_breakdown_name",
    "repayment_history",
    "repayment_history_name",
]
