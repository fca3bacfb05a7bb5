"""Result rows (pure): parsed rows of an agency's result file become events; a bad row is a
row error naming its line and column and never stops the file."""

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings, strategies as st

from adapters.sftp.layouts import ParsedRecord, RowError
from adapters.sftp.parsing import read_records
from adapters.sftp.result_rows import FileTally, error_report, result_events, statement_event
from gateway.config.layouts import ColumnSpec, LayoutSection
from schemas.events import EVENT_TYPES, DataDeleted

AT = datetime(2026, 2, 2, 9, tzinfo=UTC)
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


# -- whatever an agency's file holds, every row is an event or a row error -------------------

NASTY_CELLS = (
    "",
    " ",
    "1e400",
    "Infinity",
    "NaN",
    "-0",
    "9" * 5000,
    "999999999999999999999",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-05:00",
    "2026-02-30T00:00:00Z",
    "TRAILER",
    "\x00",
    '中文,"quoted"\r\nnext',
    "data.deleted",
    "payment.reported",
    "statement.submitted",
)
CELLS = st.one_of(st.sampled_from(NASTY_CELLS), st.text(max_size=24))
ZONED = LayoutSection(timestamp_format="%Y-%m-%dT%H:%M:%S%z", money_format="minor")
JSONL = LayoutSection(format="jsonl")
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(NASTY_CELLS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def _read_everything(layout: LayoutSection, body: bytes) -> None:
    """Both readers over ``body``: every row ends as an event or a row error, never as an
    exception (which would fail the whole file's transaction)."""
    found, tally = events(layout, body)
    assert len(found) == tally.rows_ok <= tally.rows_total
    assert tally.rows_total - tally.rows_ok <= tally.error_count
    assert all(e.line >= 1 and e.field and e.message for e in tally.errors)
    tally.check_counts(manifest_count=len(found))
    statement = FileTally()
    rows = read_records(io.BytesIO(body), layout, "statement")
    statement_event(rows, layout, statement, statement_id="ST-1", received_at=AT)


RESULT_COLUMNS = [c.name for c in CSV.columns_for("result")]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(EVENT_TYPES),
            st.dictionaries(st.sampled_from(RESULT_COLUMNS), CELLS, max_size=4),
        ),
        max_size=6,
    ),
    layout=st.sampled_from([CSV, ZONED]),
)
@example(rows=[("data.deleted", {"EVENT_TIME": "0001-01-01T00:00:00+01:00"})], layout=ZONED)
def test_any_csv_cells_are_events_or_row_errors(
    rows: list[tuple[str, dict[str, str]]], layout: LayoutSection
) -> None:
    """Rows of the right width (so every cell is parsed), each with up to four cells
    replaced by something odd."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RESULT_COLUMNS)
    for event_type, odd in rows:
        cells = {"EVENT_TYPE": event_type, "EVENT_TIME": "2026-02-01T09:00:00+0000", **odd}
        writer.writerow([cells.get(name, "") for name in RESULT_COLUMNS])
    _read_everything(layout, out.getvalue().encode())


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(JSON_VALUES, max_size=6),
    trailer=st.none()
    | JSON_VALUES
    | st.fixed_dictionaries({"record_count": JSON_VALUES, "control_total_minor": JSON_VALUES}),
)
@example(lines=[], trailer={"record_count": float("inf"), "control_total_minor": 0})
@example(lines=[], trailer={"record_count": 2.5, "control_total_minor": True})
def test_any_json_lines_are_events_or_row_errors(lines: list[Any], trailer: Any) -> None:
    docs = [*lines] + ([] if trailer is None else [{"trailer": trailer}])
    body = "".join(json.dumps(d, allow_nan=True) + "\n" for d in docs).encode()
    _read_everything(JSONL, body)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300), layout=st.sampled_from([CSV, ZONED, FIXED, JSONL]))
def test_any_bytes_in_any_layout_are_events_or_row_errors(
    data: bytes, layout: LayoutSection
) -> None:
    _read_everything(layout, data)


NEAR_ISO = st.from_regex(
    r"\A ?[0-9\uff10]{1,4}-[0-9]{1,2}-[0-9]{1,3}"
    r"(T[0-9]{1,2}:[0-9]{2}:[0-9]{2}(Z|\.5Z|\+08:00)?)? ?\Z"
)


@settings(max_examples=300, deadline=None)
@given(text=NEAR_ISO)
@example(text="2026-02-30T09:00:00Z")
@example(text="2026-02-01T24:00:00Z")
@example(text="0001-01-01")
def test_the_iso_fast_path_reads_exactly_what_strptime_reads(text: str) -> None:
    """Default layouts skip strptime for text of the exact ISO shape; what they accept,
    refuse and return must not change."""
    reader = read_records  # the parsers are reached through a file of two rows
    names = ["EVENT_TYPE", "EVENT_TIME", "PROMISED_DATE"]
    layout = LayoutSection(
        columns={
            "result": (
                ColumnSpec(name=names[0], field="type"),
                ColumnSpec(name=names[1], field="timestamp", kind="timestamp"),
                ColumnSpec(name=names[2], field="data.promised_date", kind="date"),
            )
        }
    )
    body = (
        f"{','.join(names)}\n"
        f"case.closed,{text},2026-01-01\n"
        f"case.closed,2026-01-01T00:00:00Z,{text}\n"
    ).encode()
    timed, dated = list(reader(io.BytesIO(body), layout, "result"))

    def reference(fmt: str, as_date: bool) -> str | None:
        try:
            moment = datetime.strptime(text.strip(), fmt)
        except ValueError:
            return None
        if as_date:
            return moment.date().isoformat()
        return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")

    for row, column, expected, read in (
        (timed, names[1], reference(layout.timestamp_format, False), lambda r: r["timestamp"]),
        (
            dated,
            names[2],
            reference(layout.date_format, True),
            lambda r: r["data"]["promised_date"],
        ),
    ):
        if expected is None:
            assert isinstance(row, RowError) and row.field == column, row
        else:
            assert isinstance(row, ParsedRecord), row
            assert read(row.record) == expected


def paid(n: int, amount: str, currency: str) -> dict[str, str]:
    return {
        "EVENT_TYPE": "payment.reported",
        "EVENT_TIME": "2026-02-01T09:00:00Z",
        "PLACEMENT_ID": f"PL-{n}",
        "CURRENCY": currency,
        "AMOUNT": amount,
        "PAYMENT_ID": f"P{n}",
        "PAID_AT": "2026-02-01T08:00:00Z",
    }


@pytest.mark.parametrize(
    ("rows", "trailer", "problem"),
    [
        ([paid(1, "10.00", "CNY"), paid(2, "2.50", "CNY")], "TRAILER,2,1250", None),
        (
            [paid(1, "10.00", "CNY"), paid(2, "2.50", "CNY")],
            "TRAILER,2,1000",
            "says a control total of 1000 minor units, the file's amounts add up to 1250",
        ),
        (
            [paid(1, "10.00", "CNY"), paid(2, "2.50", "USD")],
            "TRAILER,2,1250",
            "one control total cannot add amounts in CNY, USD: send one currency per file",
        ),
    ],
    ids=["matches", "differs", "mixes-currencies"],
)
def test_a_trailer_s_control_total_is_checked_in_the_file_s_one_currency(
    rows: list[dict[str, str]], trailer: str, problem: str | None
) -> None:
    layout = LayoutSection(trailer=True)
    body = csv_file(*rows) + f"{trailer}\n".encode()
    found, tally = events(layout, body)
    assert (tally.rows_total, tally.rows_ok, len(found)) == (2, 2, 2)
    tally.check_counts(2)
    expected = [] if problem is None else [RowError(4, "TRAILER", problem)]
    assert tally.errors == expected
