"""Reading settlement statements: an agency's month of attributions with what the
commission schedule looks at (bucket and DPD at placement, age at payment, legal stage), a
statement with its lines, adjustments, fees and documents, and its canonical form (what its
SHA-256 covers and what the agency confirms)."""

import calendar
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.errors import NotFound, SettlementError
from gateway.settlement.commission import reimbursed
from gateway.store.case_tables import AllocationDecision
from gateway.store.settlement_tables import Attribution
from gateway.store.statement_tables import (
    SettlementAdjustment,
    SettlementDocument,
    SettlementFee,
    SettlementLine,
    SettlementStatement,
)
from gateway.store.tables import AgencyEventRow, Case, Placement

STATEMENTS = SettlementStatement.__table__  # type: ignore[attr-defined]
LINES = SettlementLine.__table__  # type: ignore[attr-defined]
ADJUSTMENTS = SettlementAdjustment.__table__  # type: ignore[attr-defined]
FEES = SettlementFee.__table__  # type: ignore[attr-defined]
DOCUMENTS = SettlementDocument.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
DECISIONS = AllocationDecision.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
S, L, AD, F, D = STATEMENTS.c, LINES.c, ADJUSTMENTS.c, FEES.c, DOCUMENTS.c

LEGAL_EVENT = "legal.action"


def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of ``YYYY-MM``; SettlementError for anything else."""
    try:
        year, mon = (int(part) for part in month.split("-"))
        first = date(year, mon, 1)
    except ValueError:
        raise SettlementError(f"month {month!r} is not YYYY-MM") from None
    if len(month) != 7:
        raise SettlementError(f"month {month!r} is not YYYY-MM")
    return first, date(year, mon, calendar.monthrange(year, mon)[1])


@dataclass(frozen=True, slots=True)
class MonthLine:
    """One attribution of the month, with what the schedule looks at."""

    id: int
    receipt_id: int
    case_id: str | None
    placement_id: str | None
    amount_minor: int
    currency: str
    paid_on: date
    rule: str
    state: str
    bucket: str
    dpd_at_placement: int
    age_days: int
    legal: bool


@dataclass(frozen=True, slots=True)
class StatementView:
    """A statement with its lines, adjustments, fees and documents, as dicts."""

    statement: dict[str, object]
    lines: list[dict[str, object]]
    adjustments: list[dict[str, object]]
    fees: list[dict[str, object]]
    documents: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            **self.statement,
            "lines": self.lines,
            "adjustments": self.adjustments,
            "fees": self.fees,
            "documents": self.documents,
        }


def canonical(view: StatementView) -> dict[str, object]:
    """The statement as the agency sees it: what its SHA-256 covers."""
    st = view.statement
    return {
        "statement_id": st["id"],
        "agency_id": st["agency_id"],
        "month": st["month"],
        "revision": st["revision"],
        "currency": st["currency"],
        "period": st["rule_period"],
        "tier": st["tier"],
        "totals": {
            k: st[k]
            for k in (
                "recovered_minor",
                "lines_minor",
                "floor_topup_minor",
                "ceiling_cut_minor",
                "adjustments_minor",
                "fees_minor",
                "total_minor",
                "withheld_minor",
            )
        },
        "lines": [
            {
                k: line[k]
                for k in (
                    "line_no",
                    "withheld",
                    "receipt_id",
                    "case_id",
                    "placement_id",
                    "paid_on",
                    "amount_minor",
                    "attribution_rule",
                    "rule",
                    "rate_bps",
                    "commission_minor",
                    "capped",
                )
            }
            for line in view.lines
        ],
        "adjustments": [{k: a[k] for k in ("amount_minor", "reason")} for a in view.adjustments],
        "fees": [
            {
                k: f[k]
                for k in ("case_id", "kind", "advanced_minor", "reimbursed_minor", "receipt_ref")
            }
            for f in view.fees
        ],
    }


def canonical_bytes(doc: Mapping[str, object]) -> bytes:
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def row_dict(row: sa.Row[tuple[object, ...]]) -> dict[str, object]:
    out = dict(row._mapping)
    for key, value in out.items():
        if isinstance(value, datetime | date):
            out[key] = value.isoformat()
    return out


SUMMARY = (
    "id",
    "agency_id",
    "month",
    "revision",
    "state",
    "currency",
    "rule_period",
    "tier",
    "recovered_minor",
    "lines_minor",
    "floor_topup_minor",
    "ceiling_cut_minor",
    "adjustments_minor",
    "fees_minor",
    "total_minor",
    "withheld_minor",
    "canonical_sha256",
    "dispute",
    "created_by",
    "issued_by",
    "created_at",
    "issued_at",
    "answered_at",
)


async def month_lines(
    conn: AsyncConnection, agency_id: str, first: date, last: date, *, legal_tier: str
) -> list[MonthLine]:
    """The agency's attributions paid in [first, last] (active and disputed), in paid order,
    with what the schedule looks at: bucket and DPD at placement, age at payment, legal."""
    A, P, C, DE = ATTRIBUTIONS.c, PLACEMENTS.c, CASES.c, DECISIONS.c
    query = (
        sa.select(
            A.id,
            A.receipt_id,
            A.case_id,
            A.placement_id,
            A.amount_minor,
            A.currency,
            A.paid_on,
            A.rule,
            A.state,
            P.placed_at,
            P.tier,
            C.bucket.label("case_bucket"),
            C.due_date,
            DE.bucket.label("placed_bucket"),
        )
        .select_from(
            ATTRIBUTIONS.join(PLACEMENTS, P.id == A.placement_id)
            .join(CASES, C.id == P.case_id)
            .outerjoin(DECISIONS, DE.id == P.decision_id)
        )
        .where(
            A.agency_id == agency_id,
            A.paid_on >= first,
            A.paid_on <= last,
            A.state.in_(("active", "disputed")),
        )
        .order_by(A.paid_on, A.receipt_id, A.id)
    )
    rows = [r._mapping for r in await conn.execute(query)]
    placements = {str(r["placement_id"]) for r in rows}
    legal_since: dict[str, date] = {}
    if placements:
        for pid, first_at in await conn.execute(
            sa.select(EVENTS.c.placement_id, sa.func.min(EVENTS.c.occurred_at))
            .where(EVENTS.c.event_type == LEGAL_EVENT, EVENTS.c.placement_id.in_(placements))
            .group_by(EVENTS.c.placement_id)
        ):
            legal_since[str(pid)] = as_date(first_at)
    out = []
    for r in rows:
        placed_on = as_date(r["placed_at"])
        paid_on = as_date(r["paid_on"])
        since = legal_since.get(str(r["placement_id"]))
        on_legal_tier = bool(legal_tier) and r["tier"] == legal_tier
        out.append(
            MonthLine(
                id=int(r["id"]),
                receipt_id=int(r["receipt_id"]),
                case_id=r["case_id"],
                placement_id=r["placement_id"],
                amount_minor=int(r["amount_minor"]),
                currency=str(r["currency"]),
                paid_on=paid_on,
                rule=str(r["rule"]),
                state=str(r["state"]),
                bucket=str(r["placed_bucket"] or r["case_bucket"]),
                dpd_at_placement=max(0, (placed_on - as_date(r["due_date"])).days),
                age_days=max(0, (paid_on - placed_on).days),
                legal=on_legal_tier or (since is not None and since <= paid_on),
            )
        )
    return out


def as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value)).date()


async def fees_of(
    conn: AsyncConnection, agency: AgencyConfig | None, agency_id: str, first: date, last: date
) -> list[dict[str, object]]:
    """The agency's fees incurred in [first, last], with what is reimbursed (at cost when
    the agency is no longer configured)."""
    rows = await conn.execute(
        sa.select(FEES)
        .where(F.agency_id == agency_id, F.incurred_on >= first, F.incurred_on <= last)
        .order_by(F.incurred_on, F.id)
    )
    out = []
    for r in rows:
        fee = row_dict(r)
        advanced = int(str(fee["advanced_minor"]))
        fee["reimbursed_minor"] = (
            reimbursed(agency.commission.legal_fees, str(fee["kind"]), advanced)
            if agency is not None
            else advanced
        )
        out.append(fee)
    return out


async def latest(conn: AsyncConnection, agency_id: str, month: str) -> dict[str, object] | None:
    row = (
        await conn.execute(
            sa.select(STATEMENTS)
            .where(S.agency_id == agency_id, S.month == month)
            .order_by(S.revision.desc())
            .limit(1)
        )
    ).first()
    return dict(row._mapping) if row is not None else None


async def get_statement(conn: AsyncConnection, statement_id: int) -> dict[str, object]:
    row = (await conn.execute(sa.select(STATEMENTS).where(S.id == statement_id))).first()
    if row is None:
        raise NotFound(f"no settlement statement {statement_id}")
    return dict(row._mapping)


async def view_of(
    conn: AsyncConnection, statement_id: int, agencies: Mapping[str, AgencyConfig]
) -> StatementView:
    row = (
        await conn.execute(sa.select(STATEMENTS.c[*SUMMARY]).where(S.id == statement_id))
    ).first()
    if row is None:
        raise NotFound(f"no settlement statement {statement_id}")
    st = row_dict(row)
    lines = [
        row_dict(r)
        for r in await conn.execute(
            sa.select(LINES).where(L.statement_id == statement_id).order_by(L.line_no)
        )
    ]
    adjustments = [
        row_dict(r)
        for r in await conn.execute(
            sa.select(AD.amount_minor, AD.reason, AD.actor, AD.created_at)
            .where(AD.statement_id == statement_id)
            .order_by(AD.id)
        )
    ]
    first, last = month_bounds(str(st["month"]))
    agency = agencies.get(str(st["agency_id"]))
    fee_rows = await fees_of(conn, agency, str(st["agency_id"]), first, last)
    documents = [
        row_dict(r)
        for r in await conn.execute(
            sa.select(D.kind, D.name, D.sha256)
            .where(D.statement_id == statement_id)
            .order_by(D.kind)
        )
    ]
    return StatementView(st, lines, adjustments, fee_rows, documents)


__all__ = [
    "LEGAL_EVENT",
    "SUMMARY",
    "MonthLine",
    "StatementView",
    "as_date",
    "canonical",
    "canonical_bytes",
    "fees_of",
    "get_statement",
    "latest",
    "month_bounds",
    "month_lines",
    "row_dict",
    "view_of",
]
