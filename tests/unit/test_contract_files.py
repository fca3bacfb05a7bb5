"""The published contract against the file parsers (pure): SFTP result files and the JSON
attachments of e-mailed replies hold events exactly as they would be POSTed, so the same
oracle (``tests.contract``) decides every row: accepted exactly when the contract accepts,
otherwise an error naming the line and the field, never an exception. CSV result rows are
drawn from the documented columns (docs/agency-protocol.md 7.6): valid cells, and cells the
document says are refused.
"""

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import strategies as st

from adapters.sftp.parsing import read_records
from adapters.sftp.result_rows import FileTally, result_events
from gateway.config.layouts import DEFAULT_COLUMNS, LayoutSection
from gateway.inbound.sheets import RowDefaults, parse_sheet
from schemas.base import minor_exponent
from schemas.events import EVENT_TYPES, example_event
from tests.contract import (
    Mutation,
    RawNumber,
    Verdict,
    apply,
    documents,
    draw_all,
    drawn,
    dumps,
    judge_event,
    published,
)

JSONL = LayoutSection(format="jsonl")
GOOD_LINE = json.dumps(example_event("case.closed")).encode()
VALID, MUTATED = 12, 24
"""The counts of the API's contract test, so the examples drawn for it are reused."""


def read_jsonl(body: bytes) -> FileTally:
    tally = FileTally()
    data = GOOD_LINE + b"\n" + body + b"\n"
    events = list(result_events(read_records(io.BytesIO(data), JSONL, "result"), JSONL, tally))
    assert len(events) == tally.rows_ok
    return tally


def check_jsonl(body: bytes, verdict: Verdict) -> None:
    tally = read_jsonl(body)
    where = f"line {body!r}\nverdict {verdict}\nerrors {tally.errors}"
    if verdict.outcome == "valid":
        assert (tally.rows_ok, tally.errors) == (2, []), where
        return
    assert tally.rows_ok == 1 and tally.errors, where
    if b"\n" in body:
        return  # another encoding cut the line in two: both halves are refused
    [error] = tally.errors
    assert error.line == 2, where
    if verdict.outcome == "malformed":
        assert error.field == "line", where
        if verdict.key is not None:
            assert repr(verdict.key) in error.message, where
    else:
        assert error.field in verdict.fields, where


RESULT_TYPES = tuple(t for t in EVENT_TYPES if t != "statement.submitted")


@pytest.mark.parametrize("event_type", RESULT_TYPES)
def test_a_json_lines_result_row_is_accepted_exactly_when_the_contract_accepts_it(
    event_type: str,
) -> None:
    valid, pairs = drawn(event_type, VALID, MUTATED)
    for document in valid:
        body = dumps(document)
        check_jsonl(body, judge_event(body))
    outcomes = set()
    for document, mutation in pairs:
        body = apply(document, mutation)
        verdict = judge_event(body)
        outcomes.add(verdict.outcome)
        check_jsonl(body, verdict)
    assert {"invalid", "malformed"} <= outcomes


@pytest.mark.parametrize(
    "value", [True, "5000", "5_000", 5000.0, RawNumber("5e3"), RawNumber("5000.00")], ids=repr
)
def test_a_json_lines_amount_that_is_not_a_json_integer_is_refused(value: object) -> None:
    # Defect kept as examples: JSON Lines rows were validated leniently, so each of these
    # was read as the amount 5000 (or 1).
    body = apply(
        example_event("payment.reported"),
        Mutation("replace", ("data", "amount", "amount_minor"), value),
    )
    check_jsonl(body, Verdict("invalid", frozenset({"data.amount.amount_minor"})))


def test_a_json_lines_row_that_repeats_a_key_is_refused() -> None:
    body = apply(
        example_event("payment.reported"), Mutation("duplicate", ("data", "amount", "amount_minor"))
    )
    assert judge_event(body) == Verdict("malformed", key="amount_minor")
    check_jsonl(body, Verdict("malformed", key="amount_minor"))


# -- CSV result rows from the documented columns ----------------------------------------------

CSV = LayoutSection()
COLUMNS = DEFAULT_COLUMNS["result"]
NAMES = [c.name for c in COLUMNS]
FIELD_OF = {c.name: c.field for c in COLUMNS}
KIND_OF = {c.name: c.kind for c in COLUMNS}


def _utc_text(value: str) -> str:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(kind: str, value: Any) -> str:
    """A value written as the protocol's table says (7.6, "written as")."""
    if kind == "money":
        exponent = minor_exponent(value["currency"])
        return str(Decimal(value["amount_minor"]).scaleb(-exponent))
    if kind == "timestamp":
        return _utc_text(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind == "list":
        return ";".join(str(v) for v in value)  # the layout's list_separator
    return str(value)


def csv_row(event: dict[str, Any]) -> list[str] | None:
    """The event as one row of the default result columns, or None when a value cannot be
    written in a CSV cell as it is (text with a line break or edge spaces, or two currencies)."""
    cells = dict.fromkeys(NAMES, "")
    data = event["data"]
    currencies = {v["currency"] for v in data.values() if isinstance(v, dict)}
    if len(currencies) > 1:
        return None
    cells["EVENT_TYPE"] = event["type"]
    cells["EVENT_TIME"] = _utc_text(event["timestamp"])
    cells["CURRENCY"] = next(iter(currencies), "")
    for name in NAMES:
        field = FIELD_OF[name]
        if not field.startswith("data."):
            continue
        value = data.get(field.removeprefix("data."))
        if value is None:
            continue
        text = _cell(KIND_OF[name], value)
        if text != text.strip() or not text or any(c in text for c in "\r\n\x00"):
            return None
        cells[name] = text
    return [cells[n] for n in NAMES]


def csv_file(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(NAMES)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def read_csv(data: bytes) -> FileTally:
    tally = FileTally()
    list(result_events(read_records(io.BytesIO(data), CSV, "result"), CSV, tally))
    return tally


REFUSED_CELLS: dict[str, tuple[str, ...]] = {
    # Each is refused by the words of 7.6 or by the event's schema, whatever the event.
    "money": ("1,000.00", "¥1000", "10.001", "abc", "-5", "1e3", "NaN", "9" * 20),
    "timestamp": (
        "2026-01-16 10:12:00",
        "2026-01-16T10:12:00+08:00",
        "1999-12-31T23:59:59Z",
        "2026-02-30T00:00:00Z",
        "1772442000",
    ),
    "date": ("2026/01/30", "1999-12-31", "2026-02-30", "30.01.2026"),
    "bool": ("maybe", "2", "-1", "真"),
    "currency": ("XX", "人民币", "CNYY"),
}
ACCEPTED_CELLS: dict[str, tuple[str, ...]] = {
    "bool": ("YES", "n", "1", "False"),
    "currency": ("cny",),
}


@st.composite
def csv_cases(draw: st.DrawFn) -> tuple[dict[str, Any], str, str, bool]:
    """(event, column, cell, whether the contract accepts the row with that cell)."""
    event_type = draw(st.sampled_from(RESULT_TYPES))
    event = draw(documents(published(event_type)))
    row = csv_row(event)
    if row is None:
        return event, "", "", True
    filled = [n for n, c in zip(NAMES, row, strict=True) if c and KIND_OF[n] in REFUSED_CELLS]
    empty_foreign = [
        n
        for n, c in zip(NAMES, row, strict=True)
        if not c
        and FIELD_OF[n].startswith("data.")
        and FIELD_OF[n].removeprefix("data.") not in _data_properties(event_type)
    ]
    choices = ["same"] + ["refused"] * bool(filled) + ["foreign"] * bool(empty_foreign)
    choices += ["accepted"] * any(KIND_OF[n] in ACCEPTED_CELLS for n in filled)
    move = draw(st.sampled_from(choices))
    if move == "refused":
        column = draw(st.sampled_from(filled))
        return event, column, draw(st.sampled_from(REFUSED_CELLS[KIND_OF[column]])), False
    if move == "foreign":
        return event, draw(st.sampled_from(empty_foreign)), "X1", False
    if move == "accepted":
        column = draw(st.sampled_from([n for n in filled if KIND_OF[n] in ACCEPTED_CELLS]))
        return event, column, draw(st.sampled_from(ACCEPTED_CELLS[KIND_OF[column]])), True
    return event, "", "", True


def _data_properties(event_type: str) -> set[str]:
    schema = published(event_type)
    ref = schema["properties"]["data"]["$ref"].rsplit("/", 1)[-1]
    return set(schema["$defs"][ref]["properties"])


def test_a_csv_result_row_is_accepted_exactly_when_its_cells_are_valid() -> None:
    tried = {True: 0, False: 0}
    for event, column, cell, accepted in draw_all(csv_cases(), 150):
        row = csv_row(event)
        if row is None:
            continue
        if column:
            row[NAMES.index(column)] = cell
        good = csv_row(example_event("case.closed"))
        assert good is not None
        data = csv_file([good, row])
        tally = read_csv(data)
        where = f"{column}={cell!r}\n{data.decode()}\nerrors {tally.errors}"
        tried[accepted] += 1
        if accepted:
            assert (tally.rows_ok, tally.errors) == (2, []), where
        else:
            assert tally.rows_ok == 1, where
            [error] = tally.errors
            assert (error.line, error.field) == (3, column), where
    assert tried[True] > 20 and tried[False] > 20, tried


# -- JSON reply sheets ---------------------------------------------------------------------------

DEFAULTS = RowDefaults(received_at=datetime(2026, 3, 2, tzinfo=UTC))


@pytest.mark.parametrize("event_type", RESULT_TYPES)
def test_a_json_reply_attachment_is_accepted_exactly_when_the_contract_accepts_it(
    event_type: str,
) -> None:
    valid, pairs = drawn(event_type, VALID, MUTATED)
    items = [dumps(d) for d in valid] + [apply(d, m) for d, m in pairs]
    for item in items:
        verdict = judge_event(item)
        if verdict.outcome == "malformed":
            continue  # one bad item spoils the whole file: a file-level error, checked below
        data = b'{"events": [' + dumps(example_event("case.closed")) + b", " + item + b"]}"
        parsed = parse_sheet("reply.json", data, DEFAULTS)
        where = f"item {item!r}\nverdict {verdict}\nerrors {parsed.errors}"
        if verdict.outcome == "valid":
            assert (len(parsed.events), parsed.errors) == (2, ()), where
        else:
            assert len(parsed.events) == 1 and parsed.errors, where
            assert {e.line for e in parsed.errors} == {2}, where


@pytest.mark.parametrize("value", [True, "5000", 5000.0, RawNumber("5000.00")], ids=repr)
def test_a_json_reply_amount_that_is_not_a_json_integer_is_refused(value: object) -> None:
    # Defect kept as examples: JSON reply attachments were validated leniently.
    item = apply(
        example_event("payment.reported"),
        Mutation("replace", ("data", "amount", "amount_minor"), value),
    )
    parsed = parse_sheet("reply.json", b"[" + item + b"]", DEFAULTS)
    assert parsed.events == () and [e.line for e in parsed.errors] == [1], parsed


def test_a_json_reply_that_repeats_a_key_is_refused_naming_it() -> None:
    item = apply(example_event("payment.reported"), Mutation("duplicate", ("data", "payment_id")))
    parsed = parse_sheet("reply.json", b"[" + item + b"]", DEFAULTS)
    assert parsed.events == ()
    [error] = parsed.errors
    assert error.field == "file" and "'payment_id'" in error.message, error
