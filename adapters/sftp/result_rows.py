"""Agency result files → agency events, row by row (pure).

A result file has one event per row in the agency's layout (columns ``result``); a
statement file has one inventory line per row (columns ``statement``) and becomes ONE
``statement.submitted`` event. Rows are validated with the same wire models as webhook
events (``schemas.events``). A bad row becomes a ``RowError`` naming the file's line and
the column; it never stops the file: the good rows still count.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from adapters.sftp.layouts import ParsedRecord, RowError, Totals, Trailer
from adapters.sftp.parsing import column_for
from gateway.config.layouts import LayoutSection, RecordKind
from schemas.events import (
    AGENCY_EVENT_ADAPTER,
    AgencyEvent,
    StatementItem,
    StatementSubmitted,
    StatementSubmittedData,
)

MAX_STORED_ERRORS = 1000
"""Row errors kept per file (the count is always exact)."""


def _first_error(exc: ValidationError, layout: LayoutSection, kind: RecordKind) -> tuple[str, str]:
    err = exc.errors(include_url=False, include_input=False)[0]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err["type"] == "json_invalid":
        # A JSON Lines row that Python's reader took but the strict one refuses: a lone
        # surrogate escape ("\ud800") or a number too large for a float (1e400).
        return "line", f"not a JSON object as the API reads one: {err['msg']}"
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = (err.get("ctx") or {}).get("tag")
        what = f"unknown event type {tag!r}" if tag else "no event type"
        return column_for(layout, kind, ["type"]), f"{what}; see schemas/json for the types{more}"
    # The first location item of a tagged union is the tag itself (it has a dot).
    loc = [p for p in err["loc"] if not (isinstance(p, str) and "." in p)]
    column = column_for(layout, kind, loc)
    return column, f"{err['msg']}{more}"


@dataclass(slots=True)
class FileTally:
    """What a file held: rows read, rows accepted, row errors (first ``MAX_STORED_ERRORS``)."""

    rows_total: int = 0
    rows_ok: int = 0
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    trailer: Trailer | None = None
    totals: Totals = field(default_factory=Totals)
    """Amounts per currency of the rows that could be read (for the trailer's total)."""
    unread: int = 0
    """Rows that could not be read at all: their amounts are unknown."""

    def read(self, row: ParsedRecord | RowError) -> None:
        self.rows_total += 1
        if isinstance(row, RowError):
            self.unread += 1
            self.fail(row)
        else:
            self.totals.add(row.record)

    def fail(self, error: RowError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_STORED_ERRORS:
            self.errors.append(error)

    def check_counts(self, manifest_count: int | None) -> None:
        """File-level checks: the trailer's record count and control total, and the
        manifest's record count. The trailer's one total is in the file's one currency: a
        file whose amounts are in several currencies cannot match it and is told so."""
        if self.trailer is not None and self.trailer.record_count != self.rows_total:
            self.fail(
                RowError(
                    self.trailer.line,
                    "TRAILER",
                    f"says {self.trailer.record_count} records, the file has {self.rows_total}",
                )
            )
        if self.trailer is not None and len(self.totals.amounts) > 1:
            self.fail(
                RowError(
                    self.trailer.line,
                    "TRAILER",
                    "one control total cannot add amounts in "
                    f"{', '.join(sorted(self.totals.amounts))}: send one currency per file",
                )
            )
        elif self.trailer is not None and not self.unread:
            total = self.totals.control_total_minor
            if self.trailer.control_total_minor != total:
                self.fail(
                    RowError(
                        self.trailer.line,
                        "TRAILER",
                        f"says a control total of {self.trailer.control_total_minor} minor "
                        f"units, the file's amounts add up to {total}",
                    )
                )
        if manifest_count is not None and manifest_count != self.rows_total:
            self.fail(
                RowError(
                    0,
                    "manifest.record_count",
                    f"says {manifest_count} records, the file has {self.rows_total}",
                )
            )


def _validate_event(record: dict[str, Any], layout: LayoutSection) -> AgencyEvent:
    """A JSON Lines row is an event exactly as it would be POSTed: validated as strictly as
    the webhook API validates one (``5000.0``, ``"5000"`` and ``true`` are not integers).
    Cells of CSV and fixed-width rows were already typed by their column."""
    if layout.format == "jsonl":
        return AGENCY_EVENT_ADAPTER.validate_json(json.dumps(record), strict=True)
    return AGENCY_EVENT_ADAPTER.validate_python(record)


def result_events(
    rows: Iterable[ParsedRecord | RowError | Trailer], layout: LayoutSection, tally: FileTally
) -> Iterator[AgencyEvent]:
    """Validate each parsed row into an event; bad rows go to ``tally``."""
    return (event for _, event in result_lines(rows, layout, tally))


def result_lines(
    rows: Iterable[ParsedRecord | RowError | Trailer], layout: LayoutSection, tally: FileTally
) -> Iterator[tuple[int, AgencyEvent]]:
    """``result_events`` with each event's line in the file (for refusals found later)."""
    for row in rows:
        if isinstance(row, Trailer):
            tally.trailer = row
            continue
        tally.read(row)
        if isinstance(row, RowError):
            continue
        try:
            event = _validate_event(row.record, layout)
        except ValidationError as exc:
            column, message = _first_error(exc, layout, "result")
            tally.fail(RowError(row.line, column, message))
            continue
        tally.rows_ok += 1
        yield row.line, event


def statement_event(
    rows: Iterable[ParsedRecord | RowError | Trailer],
    layout: LayoutSection,
    tally: FileTally,
    *,
    statement_id: str,
    received_at: datetime,
) -> StatementSubmitted | None:
    """One ``statement.submitted`` from the good rows; None when no row is good. The period
    comes from the first row that has ``period_start``/``period_end``, else the day received."""
    items: list[StatementItem] = []
    period: tuple[Any, Any] | None = None
    for row in rows:
        if isinstance(row, Trailer):
            tally.trailer = row
            continue
        tally.read(row)
        if isinstance(row, RowError):
            continue
        record = dict(row.record)
        start, end = record.pop("period_start", None), record.pop("period_end", None)
        try:
            if layout.format == "jsonl":
                item = StatementItem.model_validate_json(json.dumps(record), strict=True)
            else:
                item = StatementItem.model_validate(record)
        except ValidationError as exc:
            column, message = _first_error(exc, layout, "statement")
            tally.fail(RowError(row.line, column, message))
            continue
        if period is None and start and end:
            period = (start, end)
        tally.rows_ok += 1
        items.append(item)
    if not items:
        return None
    today = received_at.date()
    start_day, end_day = period or (today, today)
    try:
        return StatementSubmitted(
            type="statement.submitted",
            timestamp=received_at,
            data=StatementSubmittedData(
                statement_id=statement_id,
                period_start=date.fromisoformat(str(start_day)),
                period_end=date.fromisoformat(str(end_day)),
                items=tuple(items),
            ),
        )
    except (ValidationError, ValueError) as exc:
        tally.fail(RowError(0, "statement", str(exc).splitlines()[0]))
        tally.rows_ok = 0
        return None


def refuse_row(tally: FileTally, line: int, column: str, reason: str) -> None:
    """A row that was read and stored but refused by the gateway's rules (a settlement answer
    its statement cannot take): counted as a row error, reported like any other."""
    tally.rows_ok -= 1
    tally.fail(RowError(line, column, reason))


def error_report(errors: Sequence[RowError]) -> list[dict[str, object]]:
    return [{"line": e.line, "field": e.field, "message": e.message} for e in errors]


__all__ = [
    "MAX_STORED_ERRORS",
    "FileTally",
    "error_report",
    "refuse_row",
    "result_events",
    "result_lines",
    "statement_event",
]
