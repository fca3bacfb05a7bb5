"""Agency events from sheets: CSV, XLSX, JSON and the reply form in a mail body (pure).

Law firms answer with a sheet (attached to a reply, or handed over by other means and fed
to ``agency-gateway events import FILE --agency ID``). One row is one event; the columns are
``gateway.inbound.reply_sheet.REPLY_COLUMNS``. Headers may be English, Chinese (``事件``,
``委托编号``, ``案号``...) or both (``事件 event_type``). Amounts are decimal text in major units
(``1234.56``), never floats; dates without an offset are in the firm's time zone.
A ``data.deleted`` row (the answer to a deletion request) carries its method, ``deleted`` or
``returned``, in the ``reason`` column, and when it was done in ``occurred_at``; the sheet
has no column for the firm's own reference, so email confirmations leave it out.
An ``attribution.disputed`` row names the lender's receipt in ``payment_id``, says why in
``reason`` and may claim an ``amount``.
A ``waiver.requested`` row (减免) gives its ``request_id``, the settlement the debtor would pay
in ``amount`` and ``reason``; ``instalment.requested`` (分期) its ``request_id``,
``instalments``, first due date ``start`` (monthly thereafter), total in ``amount`` and
``reason``; ``pause.requested`` (停催) its ``request_id``, ``start``, ``until`` and ``reason``.
A ``settlement.confirmed`` row (结算确认) names the statement (``statement_id``, ``revision``)
and the ``sha256`` it agrees to; ``settlement.disputed`` (结算异议) its ``line_nos``, ``reason``
and the commission claimed in ``amount``. Neither is about a placement: ``placement_id`` is
left empty and the reply's placement is not used.
A ``complaint.received`` row (投诉) gives the ``channel`` the debtor complained by and what they
said in ``reason``; the lender opens a complaint from it (gateway.complaints).

Every problem is reported with its line (CSV/XLSX row, JSON item, form block) and field;
rows without problems still become events, so one bad line does not hold back the rest.
"""

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from gateway.inbound.reply_sheet import (
    ACTION_ALIASES,
    DELETION_METHODS,
    EVENT_ALIASES,
    NEEDS_COURT_CASE,
    PARTY_ALIASES,
    PURPOSE_ALIASES,
    amount_minor,
    column_name,
    moment,
)
from schemas.events import AGENCY_EVENT_ADAPTER, AgencyEvent

Row = tuple[int, Mapping[str, str]]

SETTLEMENT_ANSWERS = frozenset({"settlement.confirmed", "settlement.disputed"})
"""Answers to a settlement statement: rows about a statement, not a placement."""
_LIST_SPLIT = re.compile(r"[\s,;，；、]+")

_FORM_LINE = re.compile(
    r"^\s*(?:[^\x00-\x7f]+\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*[:\uff1a]\s*(.*?)\s*$"
)


@dataclass(frozen=True, slots=True)
class LineError:
    """One problem: where (line or row, field) and what."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class ParsedEvents:
    events: tuple[AgencyEvent, ...]
    errors: tuple[LineError, ...]


@dataclass(frozen=True, slots=True)
class RowDefaults:
    """What a row may leave out: the placement a reply is about, the reply's time, the
    currency and the time zone of dates written without an offset."""

    received_at: datetime
    placement_id: str | None = None
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"


def _event_dict(row: Mapping[str, str], defaults: RowDefaults) -> dict[str, object]:
    raw_type = row.get("event_type", "").strip()
    event_type = EVENT_ALIASES.get(raw_type.lower(), EVENT_ALIASES.get(raw_type, raw_type))
    placement_id = row.get("placement_id", "").strip() or defaults.placement_id
    if not placement_id and event_type not in SETTLEMENT_ANSWERS:
        raise _FieldError("placement_id", "missing")
    when_text = row.get("occurred_at", "").strip()
    try:
        when = moment(when_text, defaults.timezone) if when_text else defaults.received_at
    except ValueError as exc:
        raise _FieldError("occurred_at", str(exc)) from None
    currency = row.get("currency", "").strip().upper() or defaults.currency

    def need(name: str) -> str:
        value = row.get(name, "").strip()
        if not value:
            raise _FieldError(name, f"required for {event_type}")
        return value

    def money(name: str = "amount") -> dict[str, object]:
        try:
            return {"amount_minor": amount_minor(need(name), currency), "currency": currency}
        except ValueError as exc:
            raise _FieldError(name, str(exc)) from None

    data: dict[str, object] = {"placement_id": placement_id}
    if event_type in SETTLEMENT_ANSWERS:
        data = {
            "statement_id": _whole(need("statement_id"), "statement_id"),
            "revision": _whole(need("revision"), "revision"),
        }
        if event_type == "settlement.confirmed":
            data["sha256"] = need("sha256").lower()
        else:
            data.update(
                line_nos=[_whole(n, "line_nos") for n in _LIST_SPLIT.split(need("line_nos")) if n],
                reason=need("reason"),
                claimed=money(),
            )
    elif event_type == "placement.acknowledged":
        data.update(agency_case_ref=need("agency_case_ref"), balance=money())
    elif event_type == "placement.rejected":
        data.update(reason=need("reason"))
    elif event_type == "legal.action":
        action = need("action")
        action = ACTION_ALIASES.get(action, action.lower())
        data.update(action=action, occurred_at=when.isoformat())
        if court := row.get("court", "").strip():
            data["court"] = court
        if number := row.get("court_case_number", "").strip():
            data["court_case_number"] = number
        elif action in NEEDS_COURT_CASE:
            raise _FieldError("court_case_number", f"required for {action}")
    elif event_type == "payment.reported":
        data.update(payment_id=need("payment_id"), amount=money(), paid_at=when.isoformat())
    elif event_type == "case.returned":
        data.update(reason=need("reason"), balance=money())
    elif event_type == "case.closed":
        data.update(reason=need("reason"))
    elif event_type == "data.deleted":
        method = need("reason")
        if (known := DELETION_METHODS.get(method.lower())) is None:
            raise _FieldError(
                "reason", f"{method!r} is not a deletion method; use deleted or returned"
            )
        data.update(method=known)
    elif event_type == "attribution.disputed":
        # the lender's receipt id (payment_id on the packet) goes in the payment_id column
        data.update(receipt_id=need("payment_id"), reason=need("reason"))
        if row.get("amount", "").strip():
            data["amount_claimed"] = money()
    elif event_type == "waiver.requested":
        # the amount is the settlement the debtor would pay; the rest is waived
        data.update(request_id=need("request_id"), settlement_amount=money(), reason=need("reason"))
    elif event_type == "instalment.requested":
        data.update(
            request_id=need("request_id"),
            instalments=_count(need("instalments")),
            first_due_date=_day(need("start"), "start", defaults),
            frequency="monthly",
            total=money(),
            reason=need("reason"),
        )
    elif event_type == "pause.requested":
        data.update(
            request_id=need("request_id"),
            pause_from=_day(need("start"), "start", defaults),
            pause_until=_day(need("until"), "until", defaults),
            reason=need("reason"),
        )
    elif event_type == "complaint.received":
        # the debtor's words go in the reason column; channel says how they complained
        data.update(channel=need("channel"), summary=need("reason"))
    elif event_type == "contact.attempted":
        outcome = need("outcome").lower()
        data.update(
            channel=need("channel").lower(),
            outcome=outcome,
            attempted_at=when.isoformat(),
            effective=outcome == "reached",
        )
        if party := row.get("party", "").strip():
            data["party"] = PARTY_ALIASES.get(party, PARTY_ALIASES.get(party.lower(), party))
        if purpose := row.get("purpose", "").strip():
            data["purpose"] = PURPOSE_ALIASES.get(purpose, purpose.lower())
        for name in ("collector_id", "recording_ref"):
            if value := row.get(name, "").strip():
                data[name] = value
    else:
        known = ", ".join(sorted(set(EVENT_ALIASES.values())))
        raise _FieldError("event_type", f"unknown event {raw_type!r}; use one of {known}")
    return {"type": event_type, "timestamp": when.isoformat(), "data": data}


def _day(text: str, name: str, defaults: RowDefaults) -> str:
    try:
        return moment(text, defaults.timezone).date().isoformat()
    except ValueError as exc:
        raise _FieldError(name, str(exc)) from None


def _whole(text: str, name: str) -> int:
    if not text.strip().isdigit():
        raise _FieldError(name, f"{text!r} is not a whole number")
    return int(text)


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise _FieldError("instalments", f"{text!r} is not a whole number of instalments")
    return int(text)


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _validation_errors(line: int, exc: ValidationError, prefix: str = "") -> list[LineError]:
    out = []
    for err in exc.errors(include_url=False)[:5]:
        loc = [str(p) for p in err["loc"] if p not in ("data",)]
        # The first element of a union location is the event type; keep the field path.
        field = ".".join(loc[1:] if len(loc) > 1 else loc) or "row"
        out.append(LineError(line, prefix + field, err["msg"]))
    return out


def rows_to_events(rows: Iterable[Row], defaults: RowDefaults) -> ParsedEvents:
    """Turn sheet rows into events; blank rows are skipped, bad rows reported by line."""
    events: list[AgencyEvent] = []
    errors: list[LineError] = []
    for line, row in rows:
        if not any(v.strip() for k, v in row.items() if k != "placement_id"):
            continue  # an untouched row of the pre-filled sheet
        try:
            envelope = _event_dict(row, defaults)
        except _FieldError as exc:
            errors.append(LineError(line, exc.field, exc.message))
            continue
        try:
            events.append(AGENCY_EVENT_ADAPTER.validate_python(envelope))
        except ValidationError as exc:
            errors.extend(_validation_errors(line, exc))
    return ParsedEvents(tuple(events), tuple(errors))


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValueError("the file is neither UTF-8 nor GB18030 text")


def csv_rows(data: bytes) -> list[Row]:
    """CSV rows (UTF-8, with or without BOM, or GB18030 as Chinese Excel saves it)."""
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    header: list[str] | None = None
    rows: list[Row] = []
    for values in reader:
        if header is None:
            header = [column_name(h) for h in values]
            continue
        rows.append((reader.line_num, dict(zip(header, values, strict=False))))
    return rows


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        # Excel stores 1234.56 as a float; repr gives the shortest text that round-trips.
        return repr(value)
    return str(value)


def xlsx_rows(data: bytes) -> list[Row]:
    """Rows of the first worksheet of an XLSX workbook."""
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheet = workbook.worksheets[0]
        header: list[str] | None = None
        rows: list[Row] = []
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            if header is None:
                header = [column_name(_cell(v)) for v in values]
                continue
            rows.append((number, dict(zip(header, (_cell(v) for v in values), strict=False))))
        return rows
    finally:
        workbook.close()


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def json_events(data: bytes) -> ParsedEvents:
    """Wire-format events: a list, or ``{"events": [...]}``; each item checked on its own."""
    try:
        document = json.loads(_decode(data), object_pairs_hook=_one_value_per_key)
    except (ValueError, json.JSONDecodeError) as exc:
        return ParsedEvents((), (LineError(1, "file", f"not valid JSON: {exc}"),))
    items = document.get("events") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return ParsedEvents((), (LineError(1, "file", 'expected a list or {"events": [...]}'),))
    events: list[AgencyEvent] = []
    errors: list[LineError] = []
    for n, item in enumerate(items, start=1):
        try:
            # As strictly as the webhook API: these are wire events (5000.0 is no integer).
            events.append(AGENCY_EVENT_ADAPTER.validate_json(json.dumps(item), strict=True))
        except ValidationError as exc:
            errors.extend(_validation_errors(n, exc))
    return ParsedEvents(tuple(events), tuple(errors))


def form_rows(text: str) -> list[Row]:
    """Filled-in reply forms in a mail body; quoted lines (``>``) are the original mail."""
    rows: list[Row] = []
    current: dict[str, str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(">"):
            continue
        if "REPLY FORM" in line.upper():
            current, start = {}, number
            continue
        if current is None:
            continue
        if line.strip().startswith("---- END") or line.strip().upper() == "END":
            rows.append((start, current))
            current = None
            continue
        match = _FORM_LINE.match(line)
        if match:
            current[column_name(match.group(1))] = match.group(2)
    return rows


def parse_sheet(name: str, data: bytes, defaults: RowDefaults) -> ParsedEvents:
    """Events from a file by its extension: ``.csv``, ``.xlsx`` or ``.json``."""
    lower = name.lower()
    try:
        if lower.endswith(".json"):
            return json_events(data)
        if lower.endswith(".xlsx"):
            return rows_to_events(xlsx_rows(data), defaults)
        if lower.endswith(".csv") or lower.endswith(".txt"):
            return rows_to_events(csv_rows(data), defaults)
    except (ValueError, KeyError, OSError) as exc:
        return ParsedEvents((), (LineError(0, "file", f"cannot read {name}: {exc}"),))
    return ParsedEvents((), (LineError(0, "file", f"{name}: use a .csv, .xlsx or .json file"),))


def merge(parts: Sequence[ParsedEvents]) -> ParsedEvents:
    return ParsedEvents(
        tuple(e for p in parts for e in p.events), tuple(x for p in parts for x in p.errors)
    )


__all__ = [
    "LineError",
    "ParsedEvents",
    "Row",
    "RowDefaults",
    "csv_rows",
    "form_rows",
    "json_events",
    "merge",
    "parse_sheet",
    "rows_to_events",
    "xlsx_rows",
]
