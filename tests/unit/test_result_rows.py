"""Result rows (pure): parsed rows of an agency's result file become events; a bad row is a
row error naming its line and column and never stops the file."""

import io
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.file_layouts import RowError
from gateway.file_parsing import read_records
from gateway.layout_settings import ColumnSpec, LayoutSection
from gateway.result_rows import FileTally, error_report, result_events
from schemas.events import DataDeleted

CSV = LayoutSection()
FIXED = LayoutSection(
    format="fixed",
    header=False,
    columns={
        kind: (ColumnSpec(name="P", field="data.placement_id", width=20),)
        for kind in ("placement.created", "placement.amended", "placement.recalled")
    }
    | {
        "payment.direct": (ColumnSpec(name="P", field="data.placement_id", width=20),),
        "statement": (ColumnSpec(name="P", field="placement_id", width=20),),
        "result": (
            ColumnSpec(name="TYPE", field="type", width=16),
            ColumnSpec(name="AT", field="timestamp", kind="timestamp", width=20),
            ColumnSpec(name="PLACEMENT", field="data.placement_id", width=12),
            ColumnSpec(name="HOW", field="data.method", width=8),
            ColumnSpec(name="REF", field="data.reference", width=12),
        ),
    },
)


def csv_file(*rows: dict[str, str]) -> bytes:
    names = [c.name for c in CSV.columns_for("result")]
    lines = [",".join(names), *(",".join(r.get(n, "") for n in names) for r in rows)]
    return ("\n".join(lines) + "\n").encode()


def deleted(**overrides: str) -> dict[str, str]:
    row = {
        "EVENT_TYPE": "data.deleted",
        "EVENT_TIME": "2026-02-01T09:00:00Z",
        "PLACEMENT_ID": "PL-AC00000001-1",
        "METHOD": "deleted",
        "REFERENCE": "DEL-PL-AC00000001-1",
    }
    return {**row, **overrides}


def events(layout: LayoutSection, body: bytes) -> tuple[list[Any], FileTally]:
    tally = FileTally()
    rows = read_records(io.BytesIO(body), layout, "result")
    return list(result_events(rows, layout, tally)), tally


def test_a_data_deleted_row_becomes_a_data_deleted_event() -> None:
    found, tally = events(
        CSV, csv_file(deleted(), deleted(METHOD="returned", REFERENCE="", PLACEMENT_ID="PL-2"))
    )
    assert (tally.rows_total, tally.rows_ok, tally.errors) == (2, 2, [])
    first, second = found
    assert isinstance(first, DataDeleted) and isinstance(second, DataDeleted)
    assert first.timestamp == datetime(2026, 2, 1, 9, tzinfo=UTC)
    assert (first.data.placement_id, first.data.method, first.data.reference) == (
        "PL-AC00000001-1",
        "deleted",
        "DEL-PL-AC00000001-1",
    )
    assert (second.data.method, second.data.reference) == ("returned", None)


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (deleted(METHOD="shredded"), ("METHOD", "Input should be 'deleted' or 'returned'")),
        (deleted(METHOD=""), ("METHOD", "Field required")),
        (deleted(REFERENCE="R" * 65), ("REFERENCE", "String should have at most 64 characters")),
        (deleted(PLACEMENT_ID=""), ("PLACEMENT_ID", "Field required")),
        (
            deleted(REASON="settled"),
            ("REASON", "Extra inputs are not permitted"),
        ),
    ],
    ids=["bad-method", "no-method", "long-reference", "no-placement", "stray-column"],
)
def test_a_bad_data_deleted_row_is_a_row_error_and_the_good_rows_still_count(
    row: dict[str, str], error: tuple[str, str]
) -> None:
    found, tally = events(CSV, csv_file(deleted(), row, deleted(PLACEMENT_ID="PL-3")))
    assert [e.data.placement_id for e in found] == ["PL-AC00000001-1", "PL-3"]
    assert (tally.rows_total, tally.rows_ok, tally.error_count) == (3, 2, 1)
    assert error_report(tally.errors) == [{"line": 3, "field": error[0], "message": error[1]}]


def test_a_method_on_another_event_type_is_refused_by_its_column() -> None:
    row = {
        "EVENT_TYPE": "case.closed",
        "EVENT_TIME": "2026-02-01T09:00:00Z",
        "PLACEMENT_ID": "PL-1",
        "REASON": "settled",
        "METHOD": "deleted",
    }
    found, tally = events(CSV, csv_file(row))
    assert found == []
    assert tally.errors == [RowError(2, "METHOD", "Extra inputs are not permitted")]


def test_fixed_width_data_deleted_rows_name_the_agency_s_own_columns() -> None:
    def line(method: str) -> bytes:
        return (
            b"data.deleted".ljust(16)
            + b"2026-02-01T09:00:00Z"
            + b"PL-7".ljust(12)
            + method.encode().ljust(8)
            + b"TICKET-9".ljust(12)
            + b"\n"
        )

    found, tally = events(FIXED, line("returned") + line("burned"))
    [event] = found
    assert isinstance(event, DataDeleted)
    assert (event.data.method, event.data.reference) == ("returned", "TICKET-9")
    assert tally.errors == [RowError(2, "HOW", "Input should be 'deleted' or 'returned'")]
