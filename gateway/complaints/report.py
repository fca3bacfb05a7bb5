"""The monthly complaint report (XLSX) for the regulator and the consumer-protection team.

The month is a calendar month in the lender's time zone; it covers the complaints received in
it, as they stand when the report is made. Sheets:

* ``Summary``: totals, answers on time, median days to answer;
* ``By agency``, ``By category``, ``By channel``, ``By outcome``: the same counts per group;
* ``Complaints``: one row per complaint, by references only (case, placement, the source's
  reference): never a name, a phone number or the summary.

``figures`` is pure; ``monthly_report`` reads the month and renders it.
"""

import io
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.complaints.states import on_time
from gateway.complaints.store import ComplaintRecord, K, record_of, select_complaints
from gateway.errors import GatewayError

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True, slots=True)
class Figures:
    """Counts of one group of complaints."""

    received: int
    upheld: int
    partly_upheld: int
    not_upheld: int
    withdrawn: int
    waiting: int
    overdue: int
    answered: int
    answered_on_time: int
    median_days_to_answer: float | None

    @property
    def on_time_bps(self) -> int | None:
        """Answers on time as basis points of answers (None without answers)."""
        return None if not self.answered else self.answered_on_time * 10_000 // self.answered


def figures(records: Iterable[ComplaintRecord]) -> Figures:
    rows = list(records)
    outcomes = [r.outcome for r in rows]
    answered = [r for r in rows if r.resolved_at is not None]
    days = [
        (r.resolved_at - r.received_at).total_seconds() / 86_400 for r in answered if r.resolved_at
    ]
    return Figures(
        received=len(rows),
        upheld=outcomes.count("upheld"),
        partly_upheld=outcomes.count("partly_upheld"),
        not_upheld=outcomes.count("not_upheld"),
        withdrawn=outcomes.count("withdrawn"),
        waiting=sum(1 for r in rows if r.state in ("open", "investigating")),
        overdue=sum(1 for r in rows if r.overdue),
        answered=len(answered),
        answered_on_time=sum(1 for r in answered if on_time(r.deadline_at, r.resolved_at)),
        median_days_to_answer=round(statistics.median(days), 1) if days else None,
    )


FIGURE_COLUMNS: Sequence[tuple[str, str]] = (
    ("received", "收到 Received"),
    ("upheld", "成立 Upheld"),
    ("partly_upheld", "部分成立 Partly upheld"),
    ("not_upheld", "不成立 Not upheld"),
    ("withdrawn", "撤回 Withdrawn"),
    ("waiting", "处理中 Waiting"),
    ("overdue", "逾期未答复 Overdue"),
    ("answered", "已答复 Answered"),
    ("answered_on_time", "按时答复 On time"),
    ("median_days_to_answer", "答复天数中位数 Median days to answer"),
)

LIST_COLUMNS: Sequence[tuple[str, str]] = (
    ("id", "编号 No."),
    ("source", "来源 Source"),
    ("source_ref", "来源编号 Source ref"),
    ("case_id", "案件 Case"),
    ("placement_id", "委案 Placement"),
    ("agency_id", "机构 Agency"),
    ("collector_id", "催收员 Collector"),
    ("channel", "渠道 Channel"),
    ("category", "类别 Category"),
    ("received_at", "收到时间 Received"),
    ("deadline_at", "答复期限 Deadline"),
    ("state", "状态 State"),
    ("outcome", "结果 Outcome"),
    ("resolved_at", "答复时间 Answered"),
    ("closed_at", "办结时间 Closed"),
    ("on_time", "按时 On time"),
    ("overdue", "逾期 Overdue"),
)


def month_bounds(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as [first instant, first instant of the next month) in ``zone``."""
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        raise GatewayError(f"month {month!r} is not YYYY-MM (e.g. 2026-11)") from None
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return (
        datetime.combine(first, time(0), tzinfo=zone),
        datetime.combine(after, time(0), tzinfo=zone),
    )


def _local(value: datetime | None, zone: ZoneInfo) -> str | None:
    return None if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _group_sheet(
    book: Workbook,
    title: str,
    label: str,
    records: Sequence[ComplaintRecord],
    key: Callable[[ComplaintRecord], str],
) -> None:
    sheet = book.create_sheet(title)
    sheet.append([label, *(head for _, head in FIGURE_COLUMNS)])
    groups: dict[str, list[ComplaintRecord]] = {}
    for record in records:
        groups.setdefault(key(record), []).append(record)
    for name in sorted(groups):
        found = figures(groups[name])
        sheet.append([name, *(getattr(found, f) for f, _ in FIGURE_COLUMNS)])
    for cell in sheet[1]:
        cell.font = Font(bold=True)


def report_xlsx(
    month: str, records: Sequence[ComplaintRecord], *, zone: ZoneInfo, made_at: datetime
) -> bytes:
    """The workbook for ``month`` (the module docstring lists its sheets)."""
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "Summary"
    total = figures(records)
    summary.append(["投诉月报 Complaint report", month])
    summary.append(["生成时间 Made at", _local(made_at, zone)])
    for field, head in FIGURE_COLUMNS:
        summary.append([head, getattr(total, field)])
    rate = total.on_time_bps
    summary.append(["按时答复率 On-time rate", None if rate is None else rate / 10_000])
    summary.cell(row=summary.max_row, column=2).number_format = "0.0%"
    summary.column_dimensions["A"].width = 40
    _group_sheet(book, "By agency", "机构 Agency", records, lambda r: r.agency_id or "-")
    _group_sheet(book, "By category", "类别 Category", records, lambda r: r.category)
    _group_sheet(book, "By channel", "渠道 Channel", records, lambda r: r.channel)
    _group_sheet(book, "By outcome", "结果 Outcome", records, lambda r: r.outcome or "waiting")
    listing = book.create_sheet("Complaints")
    listing.append([head for _, head in LIST_COLUMNS])
    for r in records:
        values = r.as_dict() | {"on_time": on_time(r.deadline_at, r.resolved_at)}
        listing.append(
            [
                _local(v, zone) if isinstance(v, datetime) else v
                for v in (values[f] for f, _ in LIST_COLUMNS)
            ]
        )
    for cell in listing[1]:
        cell.font = Font(bold=True)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def month_complaints(
    conn: AsyncConnection, month: str, *, zone: ZoneInfo, now: datetime
) -> list[ComplaintRecord]:
    """The complaints received in ``month`` (lender's time zone), oldest first."""
    start, end = month_bounds(month, zone)
    rows = await conn.execute(
        select_complaints()
        .where(K.received_at >= start, K.received_at < end)
        .order_by(K.received_at, K.id)
    )
    return [record_of(r, now) for r in rows]


async def monthly_report(
    conn: AsyncConnection, month: str, *, zone: ZoneInfo, now: datetime
) -> bytes:
    """The XLSX report of ``month`` as the complaints stand at ``now``."""
    records = await month_complaints(conn, month, zone=zone, now=now)
    return report_xlsx(month, records, zone=zone, made_at=now)


__all__ = [
    "FIGURE_COLUMNS",
    "LIST_COLUMNS",
    "MEDIA_TYPE",
    "Figures",
    "figures",
    "month_bounds",
    "month_complaints",
    "monthly_report",
    "report_xlsx",
]
