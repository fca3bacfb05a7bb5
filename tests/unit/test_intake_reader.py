"""The intake reader: CSV and JSON Lines → validated accounts or errors with line and field."""

import csv
import io
import json
from pathlib import Path

import pytest

from gateway.errors import IntakeError
from gateway.intake.reader import FIELDS, ParsedRow, RowError, detect_format, read_accounts
from schemas.base import MAX_MINOR

BOM = "\ufeff"


def account(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "account_id": "ACC-1",
        "debtor_id": "DEB-1",
        "name": "Li Lei",
        "national_id": "110101199001011234",
        "phones": "+8613800000001;13900000002",
        "address": "1 Example Road",
        "region": "CN-11",
        "product": "cash-loan",
        "currency": "CNY",
        "principal_minor": 1_000_000,
        "balance_minor": 850_000,
        "dpd": 45,
        "credit_grade": "B",
        "due_date": "2025-11-01",
    }
    row.update(overrides)
    return row


def csv_text(rows: list[dict[str, object]], *, header: list[str] | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    columns = header or list(FIELDS)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return out.getvalue()


def jsonl_text(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read_csv_bytes(data: bytes, source: str = "in.csv") -> list[ParsedRow | RowError]:
    return list(read_accounts(io.BytesIO(data), fmt="csv", source=source))


def errors_of(results: list[ParsedRow | RowError]) -> list[RowError]:
    return [r for r in results if isinstance(r, RowError)]


def parsed_of(results: list[ParsedRow | RowError]) -> list[ParsedRow]:
    return [r for r in results if isinstance(r, ParsedRow)]


def test_csv_with_bom_and_crlf_reads_every_field() -> None:
    text = BOM + csv_text([account(), account(account_id="ACC-2", phones="+8613800000003")])
    results = read_csv_bytes(text.encode("utf-8"))
    rows = parsed_of(results)
    assert [r.line for r in rows] == [2, 3]
    first = rows[0].account
    assert first.account_id == "ACC-1"
    assert first.phones == ("+8613800000001", "13900000002")
    assert first.balance_minor == 850_000
    assert first.due_date.isoformat() == "2025-11-01"
    assert rows[1].account.phones == ("+8613800000003",)
    assert errors_of(results) == []


def test_csv_from_a_text_stream_with_bom() -> None:
    text = BOM + csv_text([account()])
    results = list(read_accounts(io.StringIO(text, newline=""), fmt="csv", source="t.csv"))
    assert [r.account.account_id for r in parsed_of(results)] == ["ACC-1"]


def test_chinese_names_and_addresses_survive_csv_and_jsonl() -> None:
    row = account(name="张伟", address="上海市浦东新区世纪大道100号")
    csv_rows = parsed_of(read_csv_bytes(csv_text([row]).encode()))
    jsonl_rows = parsed_of(
        list(read_accounts(io.BytesIO(jsonl_text([row]).encode()), fmt="jsonl", source="x"))
    )
    for rows in (csv_rows, jsonl_rows):
        assert rows[0].account.name == "张伟"
        assert rows[0].account.address == "上海市浦东新区世纪大道100号"


def test_blank_lines_are_skipped_and_line_numbers_stay_physical() -> None:
    text = csv_text([account()]) + "\r\n" + ",,,,\r\n" + csv_text([account(account_id="A3")])
    # The second csv_text adds its own header line; drop it so the file has one header.
    lines = text.split("\r\n")
    del lines[4]
    results = read_csv_bytes("\r\n".join(lines).encode())
    assert errors_of(results) == []
    assert [r.line for r in parsed_of(results)] == [2, 5]


def test_quoted_newline_in_a_cell_does_not_shift_later_line_numbers() -> None:
    text = csv_text([account(address="Line one\nLine two"), account(account_id="A2", dpd="x")])
    results = read_csv_bytes(text.encode())
    assert parsed_of(results)[0].account.address == "Line one\nLine two"
    [error] = errors_of(results)
    assert (error.line, error.field) == (4, "dpd")


def test_bad_rows_report_exact_line_and_field_and_never_the_value() -> None:
    rows = [
        account(account_id="A1"),
        account(account_id="A2", dpd="forty"),
        account(account_id="A3", phones="+86 138;call-me"),
        account(account_id="A4", credit_grade="Z"),
        account(account_id="A5", national_id="12"),
        account(account_id="A6", balance_minor="-5"),
        account(account_id="A7"),
    ]
    results = read_csv_bytes(csv_text(rows).encode(), source="lender/2026-01-15.csv")
    assert [r.account.account_id for r in parsed_of(results)] == ["A1", "A7"]
    errors = errors_of(results)
    assert [(e.line, e.field) for e in errors] == [
        (3, "dpd"),
        (4, "phones"),
        (5, "credit_grade"),
        (6, "national_id"),
        (7, "balance_minor"),
    ]
    assert str(errors[0]).startswith("lender/2026-01-15.csv:3: dpd: ")
    assert "item 2" in errors[1].message
    assert "call-me" not in str(errors[1])
    assert all(not e.fatal for e in errors)


def test_every_bad_field_of_a_line_is_reported_at_once() -> None:
    rows = [account(account_id="B1", dpd="forty", credit_grade="Z", balance_minor="-5")]
    [error] = errors_of(read_csv_bytes(csv_text(rows).encode(), source="in.csv"))
    fields = [error.field, *(f for f, _ in error.more)]
    assert sorted(fields) == ["balance_minor", "credit_grade", "dpd"]
    text = str(error)
    assert text.startswith("in.csv:2: ")
    assert all(f"{f}: " in text for f in fields) and text.count("; ") == 2


def test_an_amount_too_large_for_the_store_is_a_row_error() -> None:
    """Amounts stop at 15 digits of minor units (schemas.base.MAX_MINOR), so a stray value
    is refused on its line rather than failing the database write of the whole import."""
    rows = [
        account(account_id="A1", balance_minor=MAX_MINOR),
        account(account_id="A2", balance_minor=10**20),
        account(account_id="A3", principal_minor=MAX_MINOR + 1),
    ]
    results = read_csv_bytes(csv_text(rows).encode())
    assert [r.account.account_id for r in parsed_of(results)] == ["A1"]
    assert [(e.line, e.field) for e in errors_of(results)] == [
        (3, "balance_minor"),
        (4, "principal_minor"),
    ]


def test_wrong_column_count_is_a_whole_row_error() -> None:
    text = csv_text([account()]) + "A2,D2,only three\r\n"
    [error] = errors_of(read_csv_bytes(text.encode()))
    assert (error.line, error.field) == (3, "-")
    assert "expected 14 columns" in error.message


def test_unknown_column_is_one_fatal_header_error_naming_it() -> None:
    header = [*FIELDS, "nickname"]
    text = csv_text([account(nickname="x"), account(account_id="A2", nickname="y")], header=header)
    results = read_csv_bytes(text.encode())
    assert len(results) == 1
    error = results[0]
    assert isinstance(error, RowError)
    assert (error.line, error.field, error.fatal) == (1, "nickname", True)
    assert "unknown column" in error.message


def test_missing_column_is_one_header_error_not_one_per_row() -> None:
    header = [f for f in FIELDS if f != "phones"]
    rows = [account(account_id=f"A{i}") for i in range(50)]
    results = read_csv_bytes(csv_text(rows, header=header).encode(), source="f.csv")
    assert len(results) == 1
    error = results[0]
    assert isinstance(error, RowError)
    assert (error.line, error.field, error.fatal) == (1, "phones", True)
    assert str(error).startswith("f.csv:1: phones: missing required column;")


def test_empty_csv_is_a_fatal_error() -> None:
    [error] = errors_of(read_csv_bytes(b""))
    assert error.fatal
    assert "empty" in error.message


def test_duplicate_account_id_names_the_first_line() -> None:
    rows = [account(), account(account_id="A2"), account(name="Someone Else")]
    results = read_csv_bytes(csv_text(rows).encode())
    assert len(parsed_of(results)) == 2
    [error] = errors_of(results)
    assert (error.line, error.field) == (4, "account_id")
    assert "first seen on line 2" in error.message


def test_invalid_utf8_rejects_only_its_row_and_names_the_column() -> None:
    good = csv_text([account(), account(account_id="A2", name="XNAMEX")]).encode()
    data = good.replace(b"XNAMEX", b"\xff\xfe bad")
    results = read_csv_bytes(data)
    assert [r.account.account_id for r in parsed_of(results)] == ["ACC-1"]
    [error] = errors_of(results)
    assert (error.line, error.field) == (3, "name")


def test_jsonl_rows_and_errors() -> None:
    lines = [
        json.dumps(account(phones=["+8613800000001", "13900000002"])),
        "",
        "{not json",
        "[1, 2]",
        json.dumps(account(account_id="A4", nmae="typo")),
        json.dumps({k: v for k, v in account(account_id="A5").items() if k != "region"}),
        json.dumps(account(account_id="A6", phones="+8613800000009")),
        "   ",
        json.dumps(account()),
    ]
    data = (BOM + "\n".join(lines) + "\n").encode()
    results = list(read_accounts(io.BytesIO(data), fmt="jsonl", source="feed.jsonl"))
    rows = parsed_of(results)
    assert [(r.line, r.account.account_id) for r in rows] == [(1, "ACC-1"), (7, "A6")]
    assert rows[0].account.phones == ("+8613800000001", "13900000002")
    assert rows[1].account.phones == ("+8613800000009",)
    errors = errors_of(results)
    assert [(e.line, e.field) for e in errors] == [
        (3, "-"),
        (4, "-"),
        (5, "nmae"),
        (6, "region"),
        (9, "account_id"),
    ]
    assert "not valid JSON" in errors[0].message
    assert "unknown field" in errors[2].message
    assert errors[3].message == "required field is missing"
    assert "first seen on line 1" in errors[4].message


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("A.CSV", "csv"), ("b.jsonl", "jsonl"), ("dir/c.ndjson", "jsonl")],
)
def test_detect_format_by_extension(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


def test_detect_format_refuses_unknown_extensions() -> None:
    with pytest.raises(IntakeError, match=r"\*\.csv, \*\.jsonl or \*\.ndjson"):
        detect_format("accounts.xlsx")
