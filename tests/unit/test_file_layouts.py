"""File layouts (pure): what agencies read in our placement files and what we read in theirs."""

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from adapters.sftp.layouts import (
    ParsedRecord,
    RecordWriter,
    RowError,
    Trailer,
    format_money,
    parse_money,
)
from adapters.sftp.parsing import cut_off, read_records
from adapters.sftp.row_code import Uncommon
from gateway.config.layouts import DEFAULT_COLUMNS, ColumnSpec, LayoutSection
from gateway.dispatch.packets import (
    LEGAL_BASIS,
    render_created,
    render_deletion_request,
    render_recalled,
)
from tests.factories import PII

PLACED = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)


def created(n: int = 1, *, balance: int = 123_456, fields: frozenset[str] | None = None) -> bytes:
    return render_created(
        agency_id="AGY_SFTP",
        placement_id=f"PL-AC{n:08d}-1",
        case_id=f"AC{n:08d}",
        bucket="M2",
        dpd=45,
        balance_minor=balance,
        principal_minor=100_000,
        currency="CNY",
        due_date=date(2025, 12, 1),
        product="借呗",
        credit_grade="B",
        debtor_id=f"CU{n:08d}",
        region="CN-31",
        pii=PII,
        allowed_fields=fields
        if fields is not None
        else frozenset({"debtor.name", "debtor.phones", "debtor.address"}),
        placed_at=PLACED,
        return_by=date(2026, 7, 14),
    ).payload


def render(layout: LayoutSection, kind: str, payloads: list[bytes]) -> bytes:
    writer = RecordWriter(layout, kind)  # type: ignore[arg-type]
    chunk, errors = writer.write(payloads)
    assert errors == []
    return writer.start() + chunk + writer.finish()


def parse(layout: LayoutSection, kind: str, data: bytes) -> list[Any]:
    return list(read_records(io.BytesIO(data), layout, kind))  # type: ignore[arg-type]


def as_packet(record: dict[str, Any]) -> dict[str, Any]:
    """What a CSV round trip can restore of a packet (the envelope timestamp is no column)."""
    packet = dict(record)
    packet.pop("timestamp", None)
    return packet


@pytest.mark.parametrize(
    "layout",
    [
        LayoutSection(),
        LayoutSection(encoding="gb18030", delimiter="|", line_ending="crlf"),
        LayoutSection(encoding="utf-8-sig", money_format="minor", date_format="%Y%m%d"),
        LayoutSection(timestamp_format="%Y-%m-%d %H:%M:%S", header=False, trailer=True),
    ],
    ids=["utf8-comma", "gb18030-pipe-crlf", "bom-minor-compact-dates", "no-header-trailer"],
)
def test_a_csv_placement_file_reads_back_to_the_packet_fields_it_maps(
    layout: LayoutSection,
) -> None:
    payloads = [created(1), created(2, balance=5)]
    data = render(layout, "placement.created", payloads)
    rows = parse(layout, "placement.created", data)
    records = [r for r in rows if isinstance(r, ParsedRecord)]
    assert [as_packet(r.record) for r in records] == [as_packet(json.loads(p)) for p in payloads]
    first_data_line = 2 if layout.header else 1
    assert [r.line for r in records] == [first_data_line, first_data_line + 1]
    trailers = [r for r in rows if isinstance(r, Trailer)]
    assert trailers == ([Trailer(first_data_line + 2, 2, 123_461)] if layout.trailer else [])


def test_encodings_put_the_bytes_agencies_expect_on_disk() -> None:
    payloads = [created(1)]
    gb = render(LayoutSection(encoding="gb18030"), "placement.created", payloads)
    bom = render(LayoutSection(encoding="utf-8-sig"), "placement.created", payloads)
    plain = render(LayoutSection(), "placement.created", payloads)
    assert "张三".encode("gb18030") in gb and "张三".encode() not in gb
    assert bom.startswith(b"\xef\xbb\xbf") and bom[3:] == plain
    assert not plain.startswith(b"\xef\xbb\xbf")


def test_money_dates_and_lists_follow_the_layout() -> None:
    layout = LayoutSection(
        delimiter=";",
        date_format="%d/%m/%Y",
        list_separator="|",
        columns={
            "placement.created": (
                ColumnSpec(name="ID", field="data.placement_id"),
                ColumnSpec(name="AMT", field="data.balance", kind="money"),
                ColumnSpec(name="CUR", field="data.balance.currency", kind="currency"),
                ColumnSpec(name="DUE", field="data.due_date", kind="date"),
                ColumnSpec(name="TEL", field="data.debtor.phones", kind="list"),
                ColumnSpec(name="NID", field="data.debtor.national_id"),
            )
        },
    )
    data = render(layout, "placement.created", [created(7, balance=1_234_505)])
    assert data.decode().splitlines() == [
        "ID;AMT;CUR;DUE;TEL;NID",
        "PL-AC00000007-1;12345.05;CNY;01/12/2025;13800138000|+86 139 0013 9000;",
    ]


def test_fields_outside_the_allowlist_are_empty_even_when_a_column_maps_them() -> None:
    payload = created(3, fields=frozenset({"debtor.name"}))
    data = render(LayoutSection(), "placement.created", [payload]).decode()
    header, row = data.splitlines()
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert cells["NAME"] == "张三"
    assert cells["NATIONAL_ID"] == cells["PHONES"] == cells["ADDRESS"] == ""
    assert str(PII["national_id"]) not in data


def test_json_lines_carry_the_stored_packet_bytes_exactly() -> None:
    payloads = [created(1), created(2)]
    layout = LayoutSection(format="jsonl", trailer=True)
    data = render(layout, "placement.created", payloads)
    lines = data.split(b"\n")
    assert lines[:2] == payloads
    assert json.loads(lines[2]) == {"trailer": {"control_total_minor": 246_912, "record_count": 2}}


def fixed_layout(**overrides: Any) -> LayoutSection:
    recall = (
        ColumnSpec(name="REC", field="data.placement_id", width=20),
        ColumnSpec(name="CODE", field="data.reason_code", width=12),
        ColumnSpec(name="AT", field="data.recalled_at", kind="timestamp", width=20),
    )
    other = (ColumnSpec(name="ID", field="data.placement_id", width=24),)
    columns = {kind: other for kind in ("placement.created", "placement.amended", "payment.direct")}
    values: dict[str, Any] = {
        "format": "fixed",
        "encoding": "gb18030",
        "header": False,
        "trailer": True,
        "columns": {
            **columns,
            "placement.recalled": recall,
            "result": (ColumnSpec(name="T", field="type", width=30),),
            "statement": (ColumnSpec(name="P", field="placement_id", width=30),),
        },
    }
    values.update(overrides)
    return LayoutSection(**values)


def recalled(n: int) -> bytes:
    return render_recalled(
        agency_id="AGY_SFTP",
        placement_id=f"PL-{n}",
        case_id=f"AC{n}",
        version=1,
        reason_code="PAID_DIRECT",
        at=PLACED,
    ).payload


def test_fixed_width_rows_are_padded_to_byte_widths_and_read_back() -> None:
    layout = fixed_layout()
    data = render(layout, "placement.recalled", [recalled(1), recalled(22)])
    lines = data.split(b"\n")
    assert lines[0] == b"PL-1".ljust(20) + b"PAID_DIRECT ".ljust(12) + b"2026-01-15T08:30:00Z"
    assert all(len(line) == 52 for line in lines[:2])
    assert lines[2] == b"TRAILER" + b"0" * 11 + b"2" + b"0" * 20
    rows = parse(layout, "placement.recalled", data)
    assert [r.record["data"]["placement_id"] for r in rows if isinstance(r, ParsedRecord)] == [
        "PL-1",
        "PL-22",
    ]
    assert rows[-1] == Trailer(3, 2, 0)


def test_a_value_wider_than_its_fixed_column_is_left_out_and_named() -> None:
    layout = fixed_layout()
    writer = RecordWriter(layout, "placement.recalled")
    chunk, errors = writer.write([recalled(1), recalled(10**25), recalled(3)])
    assert [i for i, _ in errors] == [1]
    assert errors[0][1] == RowError(2, "REC", "value is 29 bytes, the column is 20")
    assert chunk.count(b"\n") == 2 and writer.totals.record_count == 2


def test_fixed_width_counts_bytes_of_the_agency_encoding() -> None:
    layout = fixed_layout(
        columns={
            **fixed_layout().columns,
            "statement": (
                ColumnSpec(name="NAME", field="placement_id", width=6),
                ColumnSpec(name="N", field="status", width=3, align="right", pad="0"),
            ),
        }
    )
    writer = RecordWriter(layout, "statement")
    chunk, errors = writer.write_records([{"placement_id": "张三", "status": "7"}])
    assert errors == [] and chunk == "张三".encode("gb18030") + b"  007\n"
    rows = parse(layout, "statement", chunk)
    assert rows == [ParsedRecord(1, {"placement_id": "张三", "status": "7"})]


def result_layout(**overrides: Any) -> LayoutSection:
    return LayoutSection(**overrides)


def result_csv(*lines: str, layout: LayoutSection | None = None) -> list[Any]:
    layout = layout or result_layout()
    header = ",".join(c.name for c in layout.columns_for("result"))
    return parse(layout, "result", ("\n".join([header, *lines]) + "\n").encode())


def cells(**values: str) -> str:
    names = [c.name for c in result_layout().columns_for("result")]
    return ",".join(values.get(n, "") for n in names)


def test_result_rows_become_nested_records_with_currency_filled_in() -> None:
    rows = result_csv(
        cells(
            EVENT_TYPE="payment.reported",
            EVENT_TIME="2026-01-16T09:00:00Z",
            PLACEMENT_ID="PL-1",
            AMOUNT="100.50",
            CURRENCY="USD",
            PAYMENT_ID="P1",
            PAID_AT="2026-01-16T08:00:00Z",
        ),
        cells(
            EVENT_TYPE="contact.attempted",
            EVENT_TIME="2026-01-16T09:00:00Z",
            PLACEMENT_ID="PL-1",
            CHANNEL="call",
            OUTCOME="reached",
            ATTEMPTED_AT="2026-01-16T08:00:00Z",
            EFFECTIVE="Y",
        ),
    )
    assert rows == [
        ParsedRecord(
            2,
            {
                "type": "payment.reported",
                "timestamp": "2026-01-16T09:00:00Z",
                "data": {
                    "placement_id": "PL-1",
                    "amount": {"amount_minor": 10050, "currency": "USD"},
                    "payment_id": "P1",
                    "paid_at": "2026-01-16T08:00:00Z",
                },
            },
        ),
        ParsedRecord(
            3,
            {
                "type": "contact.attempted",
                "timestamp": "2026-01-16T09:00:00Z",
                "data": {
                    "placement_id": "PL-1",
                    "channel": "call",
                    "outcome": "reached",
                    "attempted_at": "2026-01-16T08:00:00Z",
                    "effective": True,
                },
            },
        ),
    ]


def test_bad_cells_are_row_errors_with_line_and_column_and_other_rows_still_parse() -> None:
    good = cells(EVENT_TYPE="case.closed", PLACEMENT_ID="PL-2", REASON="settled")
    rows = result_csv(
        cells(EVENT_TYPE="payment.reported", AMOUNT='"12,30"'),
        good,
        cells(EVENT_TYPE="contact.attempted", EFFECTIVE="maybe"),
        cells(EVENT_TYPE="payment.reported", PAID_AT="16/01/2026"),
        "only,three,cells",
        good,
    )
    assert [r if isinstance(r, RowError) else r.line for r in rows] == [
        RowError(2, "AMOUNT", "not an amount with at most 2 decimals, like 1234.56"),
        3,
        RowError(4, "EFFECTIVE", "not a yes/no value (true/false, 1/0, Y/N)"),
        RowError(5, "PAID_AT", "not a time in the format %Y-%m-%dT%H:%M:%SZ"),
        RowError(6, "row", f"3 cells, the layout has {len(DEFAULT_COLUMNS['result'])}"),
        7,
    ]


def test_a_file_that_is_not_in_the_agency_encoding_is_reported_not_crashed_on() -> None:
    layout = result_layout(encoding="utf-8")
    data = (",".join(c.name for c in layout.columns_for("result")) + "\n").encode()
    data += "张三".encode("gb18030") + b"\n"
    rows = parse(layout, "result", data)
    assert len(rows) == 1 and isinstance(rows[0], RowError) and rows[0].field == "file"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(0, "CNY", "0.00"), (5, "CNY", "0.05"), (123_456, "CNY", "1234.56"), (1500, "JPY", "1500")],
)
def test_money_is_written_with_the_currency_exponent(amount: int, currency: str, text: str) -> None:
    assert format_money(amount, currency, "decimal") == text
    assert parse_money(text, currency, "decimal") == amount


@pytest.mark.parametrize(
    "text", ["1.234", "1e3", "", "12.", " ", "1,000.00", "0x10", "\uff11\uff12"]
)
def test_money_text_that_is_not_an_amount_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_money(text, "CNY", "decimal")


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["CNY", "JPY", "KWD"]))
def test_money_round_trips_exactly(amount: int, currency: str) -> None:
    for style in ("decimal", "minor"):
        assert parse_money(format_money(amount, currency, style), currency, style) == amount


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)


@given(
    st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=20),
    st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
    st.sampled_from([",", "|", "\t"]),
)
def test_any_text_survives_a_csv_round_trip(
    rows: list[tuple[str, str]], encoding: str, delimiter: str
) -> None:
    layout = LayoutSection(
        encoding=encoding,
        delimiter=delimiter,
        columns={
            "statement": (
                ColumnSpec(name="A", field="placement_id"),
                ColumnSpec(name="B", field="status"),
            )
        },
    )
    records = [{"placement_id": a, "status": b} for a, b in rows]
    writer = RecordWriter(layout, "statement")
    chunk, errors = writer.write_records(records)
    assert errors == []
    parsed = parse(layout, "statement", writer.start() + chunk)
    # Line breaks inside cells are written as \n (CRLF and CR included).
    newlines = [
        {k: v.replace("\r\n", "\n").replace("\r", "\n") for k, v in r.items()} for r in records
    ]
    expected = [{k: v for k, v in r.items() if v.strip()} for r in newlines]
    got = [r.record for r in parsed if isinstance(r, ParsedRecord)]
    assert [r for r in got if r] == [r for r in expected if r]


CATEGORIES = ("debtor.debtor_id", "debtor.name", "debtor.phones")


def deletion(n: int, *, categories: tuple[str, ...] = CATEGORIES) -> bytes:
    return render_deletion_request(
        agency_id="AGY_SFTP",
        placement_id=f"PL-AC{n:08d}-1",
        case_id=f"AC{n:08d}",
        version=1,
        reason="recalled",
        ended_at=datetime(2026, 1, 20, 10, 15, tzinfo=UTC),
        delete_by=date(2026, 2, 19),
        categories=categories,
        at=PLACED,
    ).payload


def test_a_deletion_request_renders_in_csv_with_its_categories_joined_by_a_pipe() -> None:
    payload = deletion(1)
    packet_id = json.loads(payload)["data"]["packet_id"]
    layout = LayoutSection(delimiter="|", trailer=True)
    data = render(layout, "data.deletion_requested", [payload])
    header, row, trailer = data.decode().splitlines()
    assert header == (
        "RECORD_TYPE|PACKET_ID|PLACEMENT_ID|CASE_ID|REASON|ENDED_AT|DELETE_BY|CATEGORIES|LEGAL_BASIS"
    )
    assert row == (
        f"data.deletion_requested|{packet_id}|PL-AC00000001-1|AC00000001|recalled|"
        f'2026-01-20T10:15:00Z|2026-02-19|"debtor.debtor_id|debtor.name|debtor.phones"|'
        f"{LEGAL_BASIS}"
    )
    assert trailer == "TRAILER|1|0"  # no money in a deletion request
    [parsed, _] = parse(layout, "data.deletion_requested", data)
    assert isinstance(parsed, ParsedRecord)
    assert as_packet(parsed.record) == as_packet(json.loads(payload))


def test_a_list_column_can_join_with_its_own_separator() -> None:
    layout = LayoutSection()  # list_separator ";" joins phones; CATEGORIES says "|"
    phones = render(layout, "placement.created", [created(1)]).decode()
    assert "13800138000;+86 139 0013 9000" in phones
    assert (
        "debtor.name|debtor.phones"
        in render(layout, "data.deletion_requested", [deletion(1)]).decode()
    )
    writer = RecordWriter(layout, "data.deletion_requested")
    writer.start()
    _, errors = writer.write([deletion(2, categories=("debtor.name", "a|b"))])
    assert errors == [(0, RowError(2, "CATEGORIES", "a list item contains the separator '|'"))]


def test_a_fixed_width_layout_agreed_before_deletion_requests_still_loads_and_writes_them() -> None:
    layout = fixed_layout()  # maps every kind but data.deletion_requested: its defaults apply
    payload = deletion(3)
    data = render(layout, "data.deletion_requested", [payload, deletion(4, categories=())])
    first, second, trailer = data.split(b"\n")[:3]
    widths = [24, 44, 64, 64, 8, 25, 10, 200, 200]
    assert len(first) == len(second) == sum(widths)
    cells, offset = [], 0
    for width in widths:
        cells.append(first[offset : offset + width].decode("gb18030").rstrip())
        offset += width
    assert cells[0] == "data.deletion_requested" and cells[2] == "PL-AC00000003-1"
    assert cells[4:8] == [
        "recalled",
        "2026-01-20T10:15:00Z",
        "2026-02-19",
        "debtor.debtor_id|debtor.name|debtor.phones",
    ]
    assert trailer == b"TRAILER" + b"0" * 11 + b"2" + b"0" * 20
    rows = parse(layout, "data.deletion_requested", data)
    records = [r.record for r in rows if isinstance(r, ParsedRecord)]
    assert as_packet(records[0]) == as_packet(json.loads(payload))
    assert "categories" not in records[1]["data"]  # an empty list is an empty cell


def test_a_fixed_width_deletion_column_without_a_width_is_refused_when_the_config_loads() -> None:
    columns = {
        **fixed_layout().columns,
        "data.deletion_requested": (ColumnSpec(name="P", field="data.placement_id"),),
    }
    with pytest.raises(ValueError, match=r"columns\.data\.deletion_requested: \['P'\]"):
        fixed_layout(columns=columns)


def test_json_lines_keep_the_categories_a_list() -> None:
    payload = deletion(5)
    data = render(LayoutSection(format="jsonl"), "data.deletion_requested", [payload])
    assert data == payload + b"\n"
    assert json.loads(data)["data"]["categories"] == list(CATEGORIES)


def test_data_deleted_rows_carry_method_and_reference() -> None:
    rows = result_csv(
        cells(
            EVENT_TYPE="data.deleted",
            EVENT_TIME="2026-02-01T09:00:00Z",
            PLACEMENT_ID="PL-1",
            METHOD="deleted",
            REFERENCE="DEL-PL-1",
        )
    )
    assert rows == [
        ParsedRecord(
            2,
            {
                "type": "data.deleted",
                "timestamp": "2026-02-01T09:00:00Z",
                "data": {"placement_id": "PL-1", "method": "deleted", "reference": "DEL-PL-1"},
            },
        )
    ]


def test_a_result_file_written_before_method_and_reference_existed_still_reads() -> None:
    """Its header names the first 21 default columns; rows of 21 cells are read as such."""
    names = [c.name for c in result_layout().columns_for("result")]
    assert names[names.index("METHOD") :][:2] == ["METHOD", "REFERENCE"]
    old = names[: names.index("METHOD")]
    row = ["case.closed", "2026-01-16T09:00:00Z", "PL-2"] + [""] * (len(old) - 3)
    row[old.index("REASON")] = "settled"
    body = "\n".join([",".join(old), ",".join(row), ",".join([*row, "deleted", ""])]) + "\n"
    rows = parse(result_layout(), "result", body.encode())
    assert rows == [
        ParsedRecord(
            2,
            {
                "type": "case.closed",
                "timestamp": "2026-01-16T09:00:00Z",
                "data": {"placement_id": "PL-2", "reason": "settled"},
            },
        ),
        RowError(3, "row", f"{len(old) + 2} cells, the layout has {len(old)}"),
    ]
    # A first row that does not name the layout's columns is no header: it is read as data.
    renamed = "\n".join(["事件," + ",".join(old[1:]), ",".join(row)]) + "\n"
    assert parse(result_layout(), "result", renamed.encode()) == [
        RowError(1, "row", f"{len(old)} cells, the layout has {len(names)}"),
        RowError(2, "row", f"{len(old)} cells, the layout has {len(names)}"),
    ]


def test_a_csv_result_file_sent_without_its_header_loses_no_row() -> None:
    """The header is recognised by what it says: a file that starts with a data row is read
    from that row, and a header in another case is still the header."""
    first = cells(EVENT_TYPE="case.closed", PLACEMENT_ID="PL-1", REASON="settled")
    second = cells(EVENT_TYPE="case.closed", PLACEMENT_ID="PL-2", REASON="settled")
    headless = parse(result_layout(), "result", f"{first}\n{second}\n".encode())
    assert [(r.line, r.record["data"]["placement_id"]) for r in headless] == [
        (1, "PL-1"),
        (2, "PL-2"),
    ]
    lower = ",".join(c.name.lower() for c in result_layout().columns_for("result"))
    headed = parse(result_layout(), "result", f"{lower}\n{first}\n".encode())
    assert [(r.line, r.record["data"]["placement_id"]) for r in headed] == [(2, "PL-1")]


def test_a_fixed_width_file_sent_without_its_header_loses_no_row() -> None:
    layout = fixed_layout(header=True)
    data = render(layout, "placement.recalled", [recalled(1), recalled(22)])
    header, body = data.split(b"\n", 1)
    assert header.startswith(b"REC ")
    for text, first_line in ((data, 2), (body, 1)):
        rows = parse(layout, "placement.recalled", text)
        assert [(r.line, r.record["data"]["placement_id"]) for r in rows[:2]] == [
            (first_line, "PL-1"),
            (first_line + 1, "PL-22"),
        ]


def test_times_without_a_zone_marker_are_written_and_read_in_the_layouts_zone() -> None:
    """A Beijing agency writes 17:30 for 09:30 UTC: the layout's zone (the lender's, by
    default) says so both ways, so contacts are not shifted by 8 hours."""
    layout = LayoutSection(timestamp_format="%Y-%m-%d %H:%M:%S")
    assert layout.timezone == "Asia/Shanghai"
    data = render(layout, "placement.created", [created(1)])
    assert "2026-01-15 16:30:00" in data.decode()  # PLACED is 08:30 UTC
    [row] = result_csv(
        cells(
            EVENT_TYPE="contact.attempted",
            EVENT_TIME="2026-01-16 17:30:00",
            PLACEMENT_ID="PL-1",
            CHANNEL="call",
            OUTCOME="reached",
            ATTEMPTED_AT="2026-01-16 23:05:00",
        ),
        layout=result_layout(timestamp_format="%Y-%m-%d %H:%M:%S"),
    )
    assert isinstance(row, ParsedRecord)
    assert row.record["timestamp"] == "2026-01-16T09:30:00Z"
    assert row.record["data"]["attempted_at"] == "2026-01-16T15:05:00Z"  # 23:05 in Beijing


@pytest.mark.parametrize(
    ("overrides", "written", "read_back"),
    [
        ({"timezone": "UTC"}, "2026-01-15 08:30:00", "2026-01-16T17:30:00Z"),
        (
            {"timestamp_format": "%Y-%m-%dT%H:%M:%SZ"},
            "2026-01-15T08:30:00Z",
            "2026-01-16T17:30:00Z",
        ),
        (
            {"timestamp_format": "%Y-%m-%d %H:%M:%S%z"},
            "2026-01-15 16:30:00+0800",
            "2026-01-16T09:30:00Z",
        ),
    ],
    ids=["utc-zone", "iso-z-is-utc", "offset-honoured"],
)
def test_a_zone_marker_or_a_utc_layout_is_honoured(
    overrides: dict[str, str], written: str, read_back: str
) -> None:
    layout = LayoutSection(**{"timestamp_format": "%Y-%m-%d %H:%M:%S", **overrides})
    assert written in render(layout, "placement.created", [created(1)]).decode()
    stamp = {
        "%Y-%m-%dT%H:%M:%SZ": "2026-01-16T17:30:00Z",
        "%Y-%m-%d %H:%M:%S%z": "2026-01-16 17:30:00+0800",
    }
    text = stamp.get(layout.timestamp_format, "2026-01-16 17:30:00")
    [row] = result_csv(
        cells(EVENT_TYPE="placement.rejected", EVENT_TIME=text, PLACEMENT_ID="PL-1", REASON="dup"),
        layout=result_layout(**{"timestamp_format": "%Y-%m-%d %H:%M:%S", **overrides}),
    )
    assert isinstance(row, ParsedRecord) and row.record["timestamp"] == read_back


def test_an_unknown_zone_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        LayoutSection(timezone="Mars/Olympus")


@pytest.mark.parametrize(
    ("layout", "body", "reason"),
    [
        (LayoutSection(), b"A,B\n1,2\n", None),
        (LayoutSection(), b"A,B\n1,2\n3,", "no line ending"),
        (LayoutSection(), b"", None),
        (LayoutSection(trailer=True), b"A,B\n1,2\nTRAILER,1,2\n", None),
        (LayoutSection(trailer=True), b"A,B\n1,2\n", "TRAILER"),
        (LayoutSection(trailer=True, line_ending="crlf"), b"A,B\r\n1,2\r\nTRAILER,1,2\r\n", None),
        (LayoutSection(format="jsonl", trailer=True), b'{"a": 1}\n', None),
    ],
)
def test_a_cut_off_file_is_recognised(
    tmp_path: Path, layout: LayoutSection, body: bytes, reason: str | None
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(body)
    found = cut_off(path, layout)
    assert (found is None) if reason is None else (found is not None and reason in found)


def payment_record(n: int, amount: int, currency: str) -> dict[str, Any]:
    return {
        "type": "payment.reported",
        "timestamp": "2026-02-01T09:00:00Z",
        "data": {
            "placement_id": f"PL-{n}",
            "amount": {"amount_minor": amount, "currency": currency},
            "payment_id": f"P{n}",
            "paid_at": "2026-02-01T08:00:00Z",
        },
    }


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_file_with_a_trailer_never_adds_amounts_of_two_currencies(fmt: str) -> None:
    records = [
        payment_record(1, 1000, "CNY"),
        payment_record(2, 250, "USD"),
        payment_record(3, 5, "CNY"),
    ]
    writer = RecordWriter(result_layout(format=fmt, trailer=True), "result")
    chunk, errors = writer.write_records(records)
    assert [(i, e.field) for i, e in errors] == [(1, "currency")]
    assert b"PL-1" in chunk and b"PL-3" in chunk and b"PL-2" not in chunk
    assert "USD" in errors[0][1].message and "TRAILER" in errors[0][1].message
    assert writer.totals.amounts == {"CNY": 1005}
    trailer = writer.finish()
    assert b"1005" in trailer and b"2" in trailer
    # Without a trailer every row is written and the totals stay apart, per currency.
    plain = RecordWriter(result_layout(format=fmt), "result")
    assert plain.write_records(records)[1] == []
    assert plain.totals.amounts == {"CNY": 1005, "USD": 250}
    with pytest.raises(ValueError, match="CNY, USD"):
        _ = plain.totals.control_total_minor


def test_an_sftp_agency_with_a_trailer_takes_placements_in_one_currency() -> None:
    import tomllib

    from pydantic import ValidationError

    from gateway.config.agencies import parse_agency

    gamma = Path(__file__).parents[2] / "config" / "agencies" / "agy_gamma.toml"
    raw = tomllib.loads(gamma.read_text())
    assert raw["sftp"]["layout"]["trailer"] is True
    parse_agency(raw)
    raw["eligibility"]["currencies"] = ["CNY", "USD"]
    with pytest.raises(ValidationError, match="one control total"):
        parse_agency(raw)


def test_a_statement_in_a_fixed_width_file_is_all_its_rows_or_none() -> None:
    """The writer writes a statement's rows together: one that does not fit leaves the
    whole statement out (never a statement in part), with the line and column."""
    layout = fixed_layout(encoding="utf-8")
    packet = {
        "type": "settlement.statement",
        "data": {
            "packet_id": "k",
            "statement_id": 7,
            "revision": 2,
            "month": "2026-03",
            "sha256": "a" * 64,
            "recovered": {"amount_minor": 300, "currency": "CNY"},
            "commission": {"amount_minor": 30, "currency": "CNY"},
            "adjustments": {"amount_minor": 0, "currency": "CNY"},
            "fees": {"amount_minor": 0, "currency": "CNY"},
            "total": {"amount_minor": 30, "currency": "CNY"},
            "withheld": {"amount_minor": 0, "currency": "CNY"},
            "lines": [
                {
                    "line_no": 1,
                    "placement_id": "P1",
                    "amount": {"amount_minor": 100, "currency": "CNY"},
                },
                {
                    "line_no": 2,
                    "placement_id": "P2",
                    "amount": {"amount_minor": 200, "currency": "CNY"},
                },
            ],
        },
    }
    wide = json.loads(json.dumps(packet))
    wide["data"]["lines"][1]["rule"] = "x" * 65
    writer = RecordWriter(layout, "settlement.statement")
    head = writer.start()
    chunk, errors = writer.write_parsed([b"", b""], [wide, packet])
    assert [(n, e.line, e.field) for n, e in errors] == [(0, 2, "RULE")]
    assert writer.lines_written == 3
    body = head + chunk + writer.finish()
    lines = body.decode().splitlines()
    assert len(lines) == 3 + 1 and lines[-1].startswith("TRAILER000000000003")
    assert lines[-1].endswith("300".rjust(20, "0"))
    parsed = [
        r.record
        for r in read_records(io.BytesIO(body), layout, "settlement.statement")
        if isinstance(r, ParsedRecord)
    ]
    assert [(r["row"], r["data"].get("line_no")) for r in parsed] == [
        ("LINE", 1),
        ("LINE", 2),
        ("SUMMARY", None),
    ]


def _generic(writer: RecordWriter) -> RecordWriter:
    """``writer`` without its compiled cells (adapters.sftp.row_code): every record goes the
    generic way, cell by cell, as the compiled function hands over when a record is not
    common."""

    def uncommon(_record: Any) -> list[str]:
        raise Uncommon

    writer._compiled = uncommon
    return writer


_SCALAR = st.one_of(st.none(), _TEXT, st.integers(-(10**12), 10**12), st.booleans())
_MONEY = st.fixed_dictionaries(
    {"amount_minor": st.integers(-(10**12), 10**12)},
    optional={"currency": st.sampled_from(["CNY", "JPY", "KWD"])},
)
_BY_KIND = {
    "text": st.one_of(_TEXT, st.none()),
    "int": st.one_of(st.integers(-(10**6), 10**6), st.none()),
    "money": st.one_of(_MONEY, st.none()),
    "currency": st.sampled_from(["CNY", "USD"]),
    "date": st.sampled_from(["2026-01-15", "2025-12-01"]),
    "timestamp": st.sampled_from(["2026-01-15T08:30:00Z", "2026-01-15T08:30:00+08:00"]),
    "list": st.lists(_TEXT, max_size=3),
}


@st.composite
def _records(draw: st.DrawFn) -> Any:
    """Placement-shaped records: mostly values of their column's kind, some missing, some
    of another type, some parts that are not objects at all."""
    record: dict[str, Any] = {}
    for column in DEFAULT_COLUMNS["placement.created"]:
        *parents, name = column.field.split(".")
        node = record
        for key in parents:
            node = node.setdefault(key, {}) if type(node.get(key, {})) is dict else {}
        odd = draw(st.integers(0, 19))
        if odd == 0:
            continue
        node[name] = draw(_SCALAR if odd == 1 else _BY_KIND[column.kind])
    if draw(st.integers(0, 9)) == 0:
        record[draw(st.sampled_from(["data", "type"]))] = draw(_SCALAR)
    if draw(st.integers(0, 9)) == 0 and type(record.get("data")) is dict:
        record["data"][draw(st.sampled_from(["debtor", "balance"]))] = draw(_SCALAR)
    return record


_LAYOUTS = [
    LayoutSection(),
    LayoutSection(money_format="minor", line_ending="crlf", delimiter="|"),
    LayoutSection(date_format="%d/%m/%Y", timestamp_format="%Y%m%d%H%M%S"),
    LayoutSection(trailer=True),
]


@given(st.lists(_records(), min_size=1, max_size=8), st.sampled_from(_LAYOUTS))
def test_compiled_cells_write_what_the_generic_cells_write(
    records: list[dict[str, Any]], layout: LayoutSection
) -> None:
    """The compiled cells (adapters.sftp.row_code) are only a faster way to the same
    bytes: same rows, same errors, same totals, whatever the records hold."""
    fast = RecordWriter(layout, "placement.created")
    slow = _generic(RecordWriter(layout, "placement.created"))
    assert fast.write_records(records) == slow.write_records(records)
    assert (fast.totals, fast.lines_written) == (slow.totals, slow.lines_written)


@given(
    st.lists(st.lists(_TEXT, min_size=2, max_size=2), min_size=1, max_size=6),
    st.sampled_from([",", "|", "\t"]),
    st.sampled_from(["lf", "crlf"]),
)
def test_csv_chunks_are_what_the_csv_writer_writes(
    rows: list[list[str]], delimiter: str, line_ending: str
) -> None:
    """A chunk that needs no quoting is joined, not written by the csv module: the bytes
    are the same either way, quotes, delimiters and line breaks in cells included."""
    layout = LayoutSection(delimiter=delimiter, line_ending=line_ending)
    eol = "\r\n" if line_ending == "crlf" else "\n"
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=eol).writerows(
        [[c.replace("\r\n", "\n").replace("\r", "\n") for c in row] for row in rows]
    )
    writer = RecordWriter(layout, "statement")
    assert writer._csv_lines(rows) == buffer.getvalue().encode()
