"""Reading data files in an agency's layout: bytes → records, row by row (pure).

``read_records(stream, layout, kind)`` yields a ``ParsedRecord`` per good row (the nested
mapping, ready for pydantic), a ``RowError`` (line, column, reason) per bad row, and the
``Trailer`` if the file has one. A bad row never stops the file. CSV is decoded as a text
stream; fixed-width rows are cut in bytes (widths count bytes of the file's encoding) before
each cell is decoded; JSON Lines rows are whole records. A header is recognised by what it
says, never by its position: when the layout has one, a first row that names the layout's
columns in order (any case) is skipped, and one naming only the first columns of the layout
means rows of just those columns (files written before the layout grew). Any other first row
is data: a file sent without its header loses no row. Layouts are ``LayoutSection``s; the
inverse is ``adapters.sftp.layouts.RecordWriter``.
"""

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from adapters.sftp.layouts import (
    ISO_DATE,
    ISO_TIMESTAMP,
    TRAILER_TAG,
    ParsedRecord,
    RowError,
    Trailer,
    lookup,
    parse_money,
    path_of,
)
from gateway.config.layouts import ColumnSpec, LayoutSection, RecordKind

_TRUE = frozenset({"true", "1", "y", "yes"})
_FALSE = frozenset({"false", "0", "n", "no"})

Parser = Callable[[str], Any]

_CURRENCY_CODE = re.compile(r"[A-Z]{3}", re.ASCII)
_ISO_DATE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_ISO_TIMESTAMP_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", re.ASCII
)


def _parser(spec: ColumnSpec, layout: LayoutSection) -> Parser:
    kind = spec.kind

    def text(value: str) -> Any:
        return value

    def integer(value: str) -> Any:
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError("not a whole number") from None

    def money(value: str) -> Any:
        # Currency is filled in after the row is read (from a currency column or the layout).
        return {"_text": value.strip()}

    def currency(value: str) -> Any:
        return value.strip().upper()

    # The ISO formats (every layout's default) are checked by fromisoformat, a few times
    # faster than strptime, once the text has exactly their shape.
    iso_date = layout.date_format == ISO_DATE
    iso_timestamp = layout.timestamp_format == ISO_TIMESTAMP
    zone = layout.zone  # times without an offset are in the layout's zone

    def day(value: str) -> Any:
        text = value.strip()
        try:
            if iso_date and _ISO_DATE_SHAPE.fullmatch(text):
                return date.fromisoformat(text).isoformat()
            return datetime.strptime(text, layout.date_format).date().isoformat()
        except ValueError:
            raise ValueError(f"not a date in the format {layout.date_format}") from None

    def timestamp(value: str) -> Any:
        text = value.strip()
        try:
            if iso_timestamp and _ISO_TIMESTAMP_SHAPE.fullmatch(text):
                datetime.fromisoformat(text[:-1])  # the range checks; the text is canonical
                return text
            moment = datetime.strptime(text, layout.timestamp_format)
        except ValueError:
            raise ValueError(f"not a time in the format {layout.timestamp_format}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        try:
            return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        except OverflowError:
            raise ValueError("a time outside the years 1 to 9999 once in UTC") from None

    def boolean(value: str) -> Any:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("not a yes/no value (true/false, 1/0, Y/N)")

    separator = spec.separator or layout.list_separator

    def listing(value: str) -> Any:
        return [item for item in value.split(separator) if item]

    table: dict[str, Parser] = {
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


def _assign(record: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = record
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    if isinstance(node.get(path[-1]), dict) and isinstance(value, dict):
        node[path[-1]].update(value)
    else:
        node[path[-1]] = value


class _RowReader:
    """Turns the cells of one row into a nested record (see ``read_records``)."""

    def __init__(self, layout: LayoutSection, columns: Sequence[ColumnSpec]) -> None:
        self.layout = layout
        self.columns = tuple(columns)
        money = {c.field: c for c in self.columns if c.kind == "money"}
        self._money = money
        self._cells = []
        self._row_currency: list[int] = []
        for n, c in enumerate(self.columns):
            parent = c.field.rpartition(".")[0]
            if c.kind == "currency" and parent not in money:
                self._row_currency.append(n)
            self._cells.append((c, path_of(c), _parser(c, layout)))

    def record(self, line: int, cells: Sequence[str]) -> ParsedRecord | RowError:
        if len(cells) != len(self.columns):
            return RowError(line, "row", f"{len(cells)} cells, the layout has {len(self.columns)}")
        record: dict[str, Any] = {}
        row_currency = self.layout.currency
        for n in self._row_currency:
            if cells[n].strip():
                row_currency = cells[n].strip().upper()
                if not _CURRENCY_CODE.fullmatch(row_currency):
                    # Named here: otherwise the error would name the money column it fills.
                    return RowError(line, self.columns[n].name, "not an ISO 4217 code, e.g. CNY")
        for n, ((spec, path, parse), cell) in enumerate(zip(self._cells, cells, strict=True)):
            if not cell.strip() or n in self._row_currency:
                continue
            try:
                _assign(record, path, parse(cell))
            except ValueError as exc:
                return RowError(line, spec.name, str(exc))
        for spec in self._money.values():
            money = lookup(record, path_of(spec))
            if not isinstance(money, dict) or "_text" not in money:
                continue
            cur = str(money.get("currency", row_currency))
            try:
                amount = parse_money(money.pop("_text"), cur, self.layout.money_format)
            except ValueError as exc:
                return RowError(line, spec.name, str(exc))
            money.update(amount_minor=amount, currency=cur)
        return ParsedRecord(line, record)

    def column_for(self, loc: Sequence[str | int]) -> str:
        """The column that carries a record path (pydantic error location), or the path."""
        path = tuple(str(p) for p in loc)
        best: ColumnSpec | None = None
        for spec in self.columns:
            field_path = path_of(spec)
            if path[: len(field_path)] == field_path and (
                best is None or len(spec.field) > len(best.field)
            ):
                best = spec
        return best.name if best is not None else ".".join(path)

    def for_header(self, cells: Sequence[str]) -> "_RowReader | None":
        """The reader for the rows after a first row that is the header, or None when the
        first row is not a header (it is data). A header names the layout's columns in
        order, in any case; one naming only the first columns means a layout that grew
        columns at the end (``METHOD`` and ``REFERENCE`` of the default result columns) and
        files written to it before: their rows have just those columns."""
        names = [c.name.casefold() for c in self.columns]
        given = [c.strip().casefold() for c in cells]
        if given == names:
            return self
        if 0 < len(given) < len(names) and given == names[: len(given)]:
            return _RowReader(self.layout, self.columns[: len(given)])
        return None


def column_for(layout: LayoutSection, kind: RecordKind, loc: Sequence[str | int]) -> str:
    """Name the column of a record path, for error messages (``data.amount.amount_minor``
    → ``AMOUNT``). JSON Lines have no columns: the dotted path is returned."""
    if layout.format == "jsonl":
        return ".".join(str(p) for p in loc)
    return _RowReader(layout, layout.columns_for(kind)).column_for(loc)


def _csv_trailer(line: int, cells: Sequence[str]) -> Trailer | RowError:
    try:
        return Trailer(line, int(cells[1]), int(cells[2]))
    except (IndexError, ValueError):
        return RowError(line, TRAILER_TAG, "a trailer is TRAILER, record count, control total")


def _read_csv(
    stream: IO[bytes], layout: LayoutSection, reader: _RowReader
) -> Iterator[ParsedRecord | RowError | Trailer]:
    encoding = "utf-8-sig" if layout.encoding.startswith("utf-8") else layout.encoding
    text = io.TextIOWrapper(stream, encoding=encoding, newline="", errors="strict")
    rows = csv.reader(text, delimiter=layout.delimiter)
    first = True
    line = 0
    try:
        for cells in rows:
            line_start, line = line + 1, rows.line_num
            if first and layout.header:
                first = False
                after_header = reader.for_header(cells)
                if after_header is not None:
                    reader = after_header
                    continue
            first = False
            if not cells:
                continue
            if cells[0] == TRAILER_TAG:
                yield _csv_trailer(line_start, cells)
                continue
            yield reader.record(line_start, cells)
    except UnicodeDecodeError as exc:
        yield RowError(line + 1, "file", f"not valid {layout.encoding}: {exc.reason}")
    except csv.Error as exc:
        yield RowError(line + 1, "file", f"CSV syntax: {exc}")
    finally:
        text.detach()


def _is_fixed_header(body: bytes, reader: _RowReader, encoding: str) -> bool:
    """Whether a fixed-width first line is the header: each column's name in its width."""
    offset = 0
    for column in reader.columns:
        width = column.width or 0
        cell = body[offset : offset + width].decode(encoding, errors="replace")
        offset += width
        if cell.strip().strip(column.pad).strip().casefold() != column.name.casefold():
            return False
    return offset == len(body)


def _read_fixed(
    stream: IO[bytes], layout: LayoutSection, reader: _RowReader
) -> Iterator[ParsedRecord | RowError | Trailer]:
    encoding = "utf-8" if layout.encoding.startswith("utf-8") else layout.encoding
    widths = [(c.width or 0, c.align, c.pad) for c in reader.columns]
    total = sum(w for w, _, _ in widths)
    for line, raw in enumerate(stream, 1):
        if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        body = raw.rstrip(b"\r\n")
        if not body or (line == 1 and layout.header and _is_fixed_header(body, reader, encoding)):
            continue
        if body.startswith(TRAILER_TAG.encode()):
            tail = body[len(TRAILER_TAG) :]
            try:
                yield Trailer(line, int(tail[:12]), int(tail[12:32]))
            except ValueError:
                yield RowError(
                    line, TRAILER_TAG, "a trailer is TRAILER, 12-digit count, 20-digit total"
                )
            continue
        if len(body) != total:
            yield RowError(line, "row", f"{len(body)} bytes, the layout has {total}")
            continue
        cells: list[str] = []
        offset = 0
        try:
            for width, align, pad in widths:
                cell = body[offset : offset + width].decode(encoding)
                offset += width
                cells.append(cell.lstrip(pad) if align == "right" else cell.rstrip(pad))
        except UnicodeDecodeError as exc:
            yield RowError(
                line, reader.columns[len(cells)].name, f"not valid {encoding}: {exc.reason}"
            )
            continue
        yield reader.record(line, cells)


def _whole(value: object) -> int:
    """A JSON trailer's number: an integer, or a string of one; never a float (``3.7``,
    ``Infinity``) or a boolean."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        return int(value)
    raise ValueError("not a whole number")


class _NotWireJson(ValueError):
    pass


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _NotWireJson(
                f"the key {key!r} appears twice in one object, and JSON parsers disagree on "
                "which value counts"
            )
        seen.add(key)
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise _NotWireJson(f"{name} is not a JSON number")


def _read_jsonl(stream: IO[bytes]) -> Iterator[ParsedRecord | RowError | Trailer]:
    # Each line is an event exactly as it would be POSTed (docs/agency-protocol.md 7.6), so
    # it is read as strictly: a repeated key or NaN is refused, not resolved.
    for line, raw in enumerate(stream, 1):
        if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            record = json.loads(
                raw.decode("utf-8"),
                object_pairs_hook=_one_value_per_key,
                parse_constant=_no_constant,
            )
        except (UnicodeDecodeError, json.JSONDecodeError, _NotWireJson) as exc:
            yield RowError(line, "line", f"not a JSON object: {exc}")
            continue
        if not isinstance(record, dict):
            yield RowError(line, "line", "not a JSON object")
            continue
        trailer = record.get("trailer")
        if isinstance(trailer, dict) and len(record) == 1:
            try:
                count, total = trailer["record_count"], trailer["control_total_minor"]
                yield Trailer(line, _whole(count), _whole(total))
            except (KeyError, ValueError):
                yield RowError(
                    line, TRAILER_TAG, "trailer needs record_count and control_total_minor"
                )
            continue
        yield ParsedRecord(line, record)


_TAIL_BYTES = 64 * 1024


def cut_off(path: Path, layout: LayoutSection) -> str | None:
    """Why a data file looks cut off, or None: its last line has no line ending, or a layout
    with trailers has no trailer after the last record. For files taken without a marker or
    manifest, whose readiness is only a guess: such a file is refused whole, never applied
    in part."""
    size = path.stat().st_size
    if size == 0:
        return None
    with path.open("rb") as stream:
        stream.seek(max(0, size - _TAIL_BYTES))
        tail = stream.read()
    if not tail.endswith(b"\n"):
        return "its last line has no line ending: the file looks cut off"
    if layout.trailer and layout.format != "jsonl":
        last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].lstrip(b"\xef\xbb\xbf")
        if not last.startswith(TRAILER_TAG.encode("ascii")):
            return f"it does not end with a {TRAILER_TAG} record: the file looks cut off"
    return None


def read_records(
    stream: IO[bytes], layout: LayoutSection, kind: RecordKind
) -> Iterator[ParsedRecord | RowError | Trailer]:
    """Parse a data file streamed from ``stream`` (see module docstring)."""
    if layout.format == "jsonl":
        return _read_jsonl(stream)
    reader = _RowReader(layout, layout.columns_for(kind))
    if layout.format == "fixed":
        return _read_fixed(stream, layout, reader)
    return _read_csv(stream, layout, reader)


__all__ = [
    "column_for",
    "cut_off",
    "read_records",
]
