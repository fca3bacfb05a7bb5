"""File layouts: records to bytes and back, for CSV, JSON Lines and fixed-width (pure).

Theory of operation
-------------------
A *record* is a JSON-shaped mapping: a packet exactly as the outbox stores it, an agency
result event, or one statement line. A layout (``LayoutSection``) maps record fields to
columns by dotted path (``data.balance``) and says how each cell is written (money as
``1234.56`` or minor units, dates and timestamps by strftime format, lists and tuples joined
with the column's ``separator`` or the layout's ``list_separator``).

``RecordWriter`` renders records chunk by chunk: ``start()`` gives the byte-order mark and
header, ``write(payloads)`` one encoded chunk, ``finish()`` the optional ``TRAILER`` record.
Nothing holds more than one chunk, so a 100,000-record file streams to disk in constant
memory. A record that cannot be rendered (a value wider than its fixed-width column) is left
out and reported as a ``RowError``; the rest of the chunk is written.

``adapters.sftp.parsing.read_records(stream, ...)`` is the inverse over a binary stream: it
yields a ``ParsedRecord`` per good row (the nested mapping, ready for pydantic), a
``RowError`` (line, column, reason) per bad row, and the ``Trailer`` if there is one.

JSON Lines files carry records whole, one canonical JSON object per line; outbound lines are
the stored packet bytes themselves.

A ``settlement.statement`` packet is the one packet that is more than one row in CSV and
fixed-width files: ``statement_rows`` turns it into one ``LINE`` row per statement line and
a ``SUMMARY`` row with its totals, and the writer writes them all or none (a statement is
never sent in part).
"""

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

from adapters.sftp.row_code import InlineForms, compile_cells
from gateway.config.layouts import ColumnSpec, LayoutSection, RecordKind
from schemas.base import decimal_text, minor_exponent

TRAILER_TAG = "TRAILER"
ISO_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"
ISO_DATE = "%Y-%m-%d"
_DIGITS = re.compile(r"[0-9]+")
"""ASCII digits only: ``str.isdigit`` also accepts full-width and other scripts' digits."""


class CellError(ValueError):
    """One cell cannot be written or read; ``column`` names it."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"{column}: {message}")
        self.column = column
        self.message = message


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that was left out: 1-based ``line`` in the file, the ``field`` (column name or
    record path) and what was wrong. Values are never included: they may be personal data."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    line: int
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Trailer:
    line: int
    record_count: int
    control_total_minor: int


@dataclass(slots=True)
class Totals:
    """Control totals: records written and the sum of their amounts per currency. Amounts
    of different currencies are never added together: a trailer's one total is only
    defined for a file in one currency (``control_total_minor``)."""

    record_count: int = 0
    amounts: dict[str, int] = field(default_factory=dict)

    @property
    def control_total_minor(self) -> int:
        """The total of a file in one currency (0 for a file without amounts)."""
        if len(self.amounts) > 1:
            raise ValueError(
                f"one control total cannot add amounts in {', '.join(sorted(self.amounts))}"
            )
        return sum(self.amounts.values())

    def mixes(self, record: Mapping[str, Any]) -> str | None:
        """The currency of ``record`` when it is not the currency of the records so far."""
        money = control_money(record)
        if money is None or not self.amounts or money[0] in self.amounts:
            return None
        return money[0]

    def add(self, record: Mapping[str, Any]) -> None:
        self.record_count += 1
        money = control_money(record)
        if money is not None:
            currency, amount = money
            self.amounts[currency] = self.amounts.get(currency, 0) + amount


def control_money(record: Mapping[str, Any]) -> tuple[str, int] | None:
    """The amount a record contributes to control totals: its balance, else its amount."""
    data = record.get("data", record)
    if type(data) is not dict and not isinstance(data, Mapping):
        return None
    for name in ("balance", "amount"):
        money = data.get(name)
        if type(money) is dict and type(money.get("amount_minor")) is int:
            return str(money.get("currency", "")), int(money["amount_minor"])
    return None


def format_money(amount_minor: int, currency: str, money_format: str) -> str:
    if money_format == "minor":
        return str(amount_minor)
    return decimal_text(amount_minor, currency)


def parse_money(text: str, currency: str, money_format: str) -> int:
    """Minor units from ``1234.56`` (decimal) or ``123456`` (minor); never through float."""
    raw = text.strip()
    negative = raw.startswith("-")
    digits = raw[1:] if negative else raw
    if money_format == "minor":
        if not _DIGITS.fullmatch(digits):
            raise ValueError("not a whole number of minor units")
        value = int(digits)
    else:
        exponent = minor_exponent(currency)
        whole, dot, frac = digits.partition(".")
        if (
            not _DIGITS.fullmatch(whole)
            or (dot and not _DIGITS.fullmatch(frac))
            or len(frac) > exponent
        ):
            raise ValueError(f"not an amount with at most {exponent} decimals, like 1234.56")
        value = int(whole) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    return -value if negative else value


def path_of(spec: ColumnSpec) -> tuple[str, ...]:
    return tuple(spec.field.split("."))


def lookup(record: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a dotted path, or None. Records are JSON objects: plain dicts are
    checked by type (an ABC ``isinstance`` per cell costs more than decoding the JSON)."""
    value: Any = record
    for key in path:
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


Getter = Callable[[Mapping[str, Any]], Any]


def getter(path: tuple[str, ...]) -> Getter:
    """``lookup`` specialised for one path (rows are rendered cell by cell, 20 per row)."""
    if len(path) == 1:
        (k0,) = path
        return lambda record: record.get(k0)
    if len(path) == 2:
        k0, k1 = path

        def two(record: Mapping[str, Any]) -> Any:
            value = record.get(k0)
            return value.get(k1) if type(value) is dict else lookup(record, path)

        return two
    if len(path) == 3:
        k0, k1, k2 = path

        def three(record: Mapping[str, Any]) -> Any:
            value = record.get(k0)
            value = value.get(k1) if type(value) is dict else None
            return value.get(k2) if type(value) is dict else lookup(record, path)

        return three
    return lambda record: lookup(record, path)


Formatter = Callable[[Any, Mapping[str, Any]], str]
_WRITTEN_TIMESTAMPS = 4096
"""Timestamp texts a column remembers the written form of."""


def _formatter(
    spec: ColumnSpec, layout: LayoutSection, money_paths: list[tuple[str, ...]]
) -> Formatter:
    name, kind = spec.name, spec.kind

    def text(value: Any, _record: Mapping[str, Any]) -> str:
        return "" if value is None else str(value)

    def integer(value: Any, _record: Mapping[str, Any]) -> str:
        return "" if value is None else str(int(value))

    def money(value: Any, _record: Mapping[str, Any]) -> str:
        if value is None:
            return ""
        if type(value) is not dict and not isinstance(value, Mapping):
            raise CellError(name, "expected money {amount_minor, currency}")
        return format_money(int(value["amount_minor"]), str(value["currency"]), layout.money_format)

    def currency(value: Any, record: Mapping[str, Any]) -> str:
        if isinstance(value, str):
            return value
        for path in money_paths:
            found = lookup(record, path)
            if type(found) is dict and "currency" in found:
                return str(found["currency"])
        return ""

    def day(value: Any, _record: Mapping[str, Any]) -> str:
        if value is None:
            return ""
        if layout.date_format == ISO_DATE:
            return str(value)
        return date.fromisoformat(str(value)).strftime(layout.date_format)

    # A file's timestamps repeat (a run of placements shares its placed_at): each text is
    # parsed and written once per column.
    written: dict[str, str] = {}

    def timestamp(value: Any, _record: Mapping[str, Any]) -> str:
        if value is None:
            return ""
        text_value = str(value)
        if layout.timestamp_format == ISO_TIMESTAMP and len(text_value) == 20:
            return text_value
        if (known := written.get(text_value)) is not None:
            return known
        moment = datetime.fromisoformat(text_value).astimezone(zone)
        if len(written) >= _WRITTEN_TIMESTAMPS:
            written.clear()
        text = written[text_value] = moment.strftime(layout.timestamp_format)
        return text

    def boolean(value: Any, _record: Mapping[str, Any]) -> str:
        return "" if value is None else ("true" if value else "false")

    separator = spec.separator or layout.list_separator
    zone = layout.zone

    def listing(value: Any, _record: Mapping[str, Any]) -> str:
        if value is None:
            return ""
        if not isinstance(value, list | tuple):
            raise CellError(name, "expected a list of values")
        items = [str(v) for v in value]
        if any(separator in item for item in items):
            raise CellError(name, f"a list item contains the separator {separator!r}")
        return separator.join(items)

    table: dict[str, Formatter] = {
        "text": text,
        "int": integer,
        "money": money,
        "currency": currency,
        "date": day,
        "timestamp": timestamp,
        "bool": boolean,
        "list": listing,
    }
    return table[kind]


def _line_end(layout: LayoutSection) -> str:
    return "\r\n" if layout.line_ending == "crlf" else "\n"


EXPANDED_KINDS = frozenset({"settlement.statement"})
"""Packet types written as several rows each in CSV and fixed-width files."""

_STATEMENT_HEAD = ("packet_id", "statement_id", "revision", "month", "sha256")


def statement_rows(packet: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a ``settlement.statement`` packet: one ``LINE`` per statement line, then
    the ``SUMMARY`` (totals and the number of lines); every row repeats the statement's id,
    revision, month and SHA-256."""
    data = packet.get("data")
    if type(data) is not dict:
        raise ValueError("a settlement.statement packet without data")
    head = {k: data.get(k) for k in _STATEMENT_HEAD}
    kind = packet.get("type")
    lines = data.get("lines") or []
    rows: list[dict[str, Any]] = [
        {"type": kind, "row": "LINE", "data": {**head, **line}} for line in lines
    ]
    summary = {
        **head,
        "line_count": len(lines),
        "recovered": data.get("recovered"),
        "commission": data.get("commission"),
        "adjustments": data.get("adjustments"),
        "fees": data.get("fees"),
        "total": data.get("total"),
        "withheld_amount": data.get("withheld"),
    }
    rows.append({"type": kind, "row": "SUMMARY", "data": summary})
    return rows


class RecordWriter:
    """Renders one data file of ``kind`` records in ``layout``, chunk by chunk (see module)."""

    def __init__(self, layout: LayoutSection, kind: RecordKind) -> None:
        self.layout = layout
        self.kind = kind
        self.totals = Totals()
        self.columns = layout.columns_for(kind)
        money_paths = [path_of(c) for c in self.columns if c.kind == "money"]
        self._cells = [
            (c, getter(path_of(c)), _formatter(c, layout, money_paths)) for c in self.columns
        ]
        # The same cells, one generated function per writer (adapters.sftp.row_code).
        self._compiled = compile_cells(
            self.columns,
            [fmt for _, _, fmt in self._cells],
            InlineForms(
                iso_dates=layout.date_format == ISO_DATE,
                iso_timestamps=layout.timestamp_format == ISO_TIMESTAMP,
                minor_money=layout.money_format == "minor",
                list_separator=layout.list_separator,
            ),
        )
        self._encoding = "utf-8" if layout.encoding == "utf-8-sig" else layout.encoding
        self._eol = _line_end(layout)
        self._lines_written = 0

    @property
    def expands(self) -> bool:
        """True when one record becomes several rows (``statement_rows``)."""
        return self.kind in EXPANDED_KINDS and self.layout.format != "jsonl"

    @property
    def lines_written(self) -> int:
        """Lines in the file so far (header included), i.e. the line number of the last row."""
        return self._lines_written

    def start(self) -> bytes:
        """Byte-order mark (utf-8-sig) and header line, if any."""
        prefix = b"\xef\xbb\xbf" if self.layout.encoding == "utf-8-sig" else b""
        if not self.layout.header or self.layout.format == "jsonl":
            return prefix
        names = [c.name for c in self.columns]
        self._lines_written += 1
        if self.layout.format == "csv":
            return prefix + self._csv_lines([names])
        cells = [self._fit(c, c.name) for c in self.columns]
        return prefix + b"".join(cells) + self._eol.encode()

    def write(self, payloads: Sequence[bytes]) -> tuple[bytes, list[tuple[int, RowError]]]:
        """Render stored packet bytes; returns the chunk and (input index, error) of rows
        left out. JSON Lines rows are the payload bytes themselves."""
        # orjson: decoding the stored packets is a third of rendering with the json module.
        return self.write_parsed(payloads, [orjson.loads(p) for p in payloads])

    def write_parsed(
        self, payloads: Sequence[bytes], records: Sequence[Mapping[str, Any]]
    ) -> tuple[bytes, list[tuple[int, RowError]]]:
        """``write`` for payloads the caller has already decoded into ``records`` (the same
        order), so a caller that reads them too decodes each packet once."""
        if self.layout.format == "jsonl":
            lines: list[bytes] = []
            errors: list[tuple[int, RowError]] = []
            for n, (payload, record) in enumerate(zip(payloads, records, strict=True)):
                if (refused := self._one_currency(record)) is not None:
                    errors.append((n, refused))
                    continue
                self.totals.add(record)
                self._lines_written += 1
                lines.append(payload.rstrip(b"\n") + b"\n")
            return b"".join(lines), errors
        if self.expands:
            return self._write_expanded(records)
        return self.write_records(records)

    def _write_expanded(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[bytes, list[tuple[int, RowError]]]:
        """Each record as its rows (``statement_rows``), all of them or none: a record one
        of whose rows cannot be written is left out whole, with that row's error."""
        chunks: list[bytes] = []
        errors: list[tuple[int, RowError]] = []
        for n, record in enumerate(records):
            saved = (self._lines_written, self.totals.record_count, dict(self.totals.amounts))
            try:
                rows = statement_rows(record)
            except ValueError as exc:
                errors.append((n, RowError(self._lines_written + 1, "record", str(exc))))
                continue
            chunk, refused = self.write_records(rows)
            if refused:
                self._lines_written, self.totals.record_count, self.totals.amounts = saved
                errors.append((n, refused[0][1]))
                continue
            chunks.append(chunk)
        return b"".join(chunks), errors

    def _one_currency(self, record: Mapping[str, Any]) -> RowError | None:
        """A file with a trailer has one control total, so it carries one currency: a record
        in another currency than the file's first amount is left out."""
        if not self.layout.trailer or (other := self.totals.mixes(record)) is None:
            return None
        return RowError(
            self._lines_written + 1,
            "currency",
            f"an amount in {other} cannot go into a file of {', '.join(self.totals.amounts)} "
            "amounts: the TRAILER has one control total",
        )

    def write_records(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[bytes, list[tuple[int, RowError]]]:
        """Render mappings (agency results, statements, or parsed packets)."""
        errors: list[tuple[int, RowError]] = []
        if self.layout.format == "jsonl":
            lines = []
            for n, record in enumerate(records):
                if (refused := self._one_currency(record)) is not None:
                    errors.append((n, refused))
                    continue
                self.totals.add(record)
                lines.append(
                    json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
                )
            self._lines_written += len(lines)
            return ("\n".join(lines) + "\n").encode() if lines else b"", errors
        rows: list[list[str]] = []
        fixed: list[bytes] = []
        compiled = self._compiled
        for n, record in enumerate(records):
            if (refused := self._one_currency(record)) is not None:
                errors.append((n, refused))
                continue
            try:
                try:
                    cells = compiled(record)
                except Exception:
                    # Not the common case (or a bad cell): the generic path gives the row,
                    # or raises the row's error.
                    cells = [fmt(get(record), record) for _, get, fmt in self._cells]
                if self.layout.format == "fixed":
                    fixed.append(
                        b"".join(
                            self._fit(c, v) for (c, _, _), v in zip(self._cells, cells, strict=True)
                        )
                    )
                else:
                    rows.append(cells)
            except CellError as exc:
                errors.append((n, RowError(self._lines_written + 1, exc.column, exc.message)))
                continue
            except (KeyError, TypeError, ValueError) as exc:
                errors.append((n, RowError(self._lines_written + 1, "record", str(exc))))
                continue
            self._lines_written += 1
            self.totals.add(record)
        if self.layout.format == "csv":
            return self._csv_lines(rows), errors
        eol = self._eol.encode()
        return b"".join(line + eol for line in fixed), errors

    def finish(self) -> bytes:
        """The TRAILER record (count and control total) if the layout has one. Its total is
        in the file's one currency (``write`` leaves out records in another)."""
        if not self.layout.trailer:
            return b""
        count, total = self.totals.record_count, self.totals.control_total_minor
        self._lines_written += 1
        if self.layout.format == "jsonl":
            trailer = {"trailer": {"record_count": count, "control_total_minor": total}}
            return (json.dumps(trailer, separators=(",", ":"), sort_keys=True) + "\n").encode()
        if self.layout.format == "fixed":
            return f"{TRAILER_TAG}{count:012d}{total:020d}{self._eol}".encode(self._encoding)
        return self._csv_lines([[TRAILER_TAG, str(count), str(total)]])

    def _csv_lines(self, rows: list[list[str]]) -> bytes:
        delimiter, eol = self.layout.delimiter, self._eol
        widths = [len(row) for row in rows]
        if rows and min(widths) > 1:
            # Most chunks need no quoting: joined, they hold no quote, no line break but the
            # rows' own and no delimiter but the rows' own, so the csv writer would write
            # exactly the joined lines (it quotes a row of one empty field: none here).
            text = eol.join([delimiter.join(row) for row in rows]) + eol
            if (
                '"' not in text
                and text.count("\n") == len(rows)
                and text.count("\r") == (len(rows) if "\r" in eol else 0)
                and text.count(delimiter) == sum(widths) - len(rows)
            ):
                return text.encode(self._encoding)
        # Line breaks inside a cell become \n, which the writer quotes; a bare \r would not be
        # quoted (Python < 3.12) and would split the row for every reader.
        rows = [
            [c.replace("\r\n", "\n").replace("\r", "\n") if "\r" in c else c for c in row]
            for row in rows
        ]
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=eol)
        writer.writerows(rows)
        return buffer.getvalue().encode(self._encoding)

    def _fit(self, spec: ColumnSpec, value: str) -> bytes:
        if any(ch in value for ch in "\r\n"):
            raise CellError(spec.name, "a line break cannot go into a fixed-width column")
        encoded = value.encode(self._encoding)
        width = spec.width or len(encoded)
        if len(encoded) > width:
            raise CellError(spec.name, f"value is {len(encoded)} bytes, the column is {width}")
        padding = spec.pad.encode(self._encoding) * (width - len(encoded))
        return padding + encoded if spec.align == "right" else encoded + padding


__all__ = [
    "EXPANDED_KINDS",
    "ISO_DATE",
    "ISO_TIMESTAMP",
    "TRAILER_TAG",
    "CellError",
    "ParsedRecord",
    "RecordWriter",
    "RowError",
    "Totals",
    "Trailer",
    "control_money",
    "format_money",
    "lookup",
    "parse_money",
    "path_of",
    "statement_rows",
]
