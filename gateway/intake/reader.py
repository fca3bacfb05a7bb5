"""Reading the lender's overdue-account export: CSV or JSON Lines → validated rows (pure).

Theory of operation: the reader walks the stream once, line by line, and yields either a
``ParsedRow`` (a validated ``IntakeAccount``) or a ``RowError`` saying where (source, line,
field) and what was wrong. It never holds the file in memory; the only state it keeps is the
line on which each account id was first seen, to reject duplicates within one file.

* CSV: the first non-blank record is the header and must name every required
  ``IntakeAccount`` field exactly once, may name the optional ones (``holds``, the balance
  breakdown, ``contract_no``, ``disbursed_on``, ``annual_rate_bp``) once, and
  nothing else; a wrong header is one *fatal* error on its line and nothing after it is read.
  ``phones`` holds numbers and ``holds`` hold codes, each separated by ``;``. Blank records
  (no text in any cell) are skipped. Line numbers are physical lines, so a quoted cell
  spanning lines does not shift the numbers of later rows.
* JSON Lines: one object per line; blank lines are skipped; unknown keys are errors;
  ``holds`` may be left out, or be a list of codes or one string of codes separated by ``;``.
* Encoding: UTF-8, with or without a byte-order mark. A binary stream is decoded line by line,
  so invalid bytes reject only the rows they are in.

Messages never quote a cell's value: the rows carry personal data.
"""

import codecs
import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from gateway.errors import IntakeError
from schemas.account import BREAKDOWN_FIELDS, IntakeAccount

Format = Literal["csv", "jsonl"]

FIELDS: tuple[str, ...] = tuple(
    name for name, info in IntakeAccount.model_fields.items() if info.is_required()
)
"""The required CSV columns and JSON keys, in the schema's order."""
OPTIONAL_FIELDS: tuple[str, ...] = tuple(
    name for name in IntakeAccount.model_fields if name not in FIELDS
)
"""Columns and keys a file may leave out (``holds``, the breakdown and the contract's details)."""

SUFFIXES: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

_BOM = codecs.BOM_UTF8.decode()


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """A valid account and the line it starts on."""

    line: int
    account: IntakeAccount


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: where it is and what is wrong (never the offending value).

    ``field`` is ``-`` when the row as a whole is bad (malformed JSON, wrong column count).
    ``fatal`` marks a file-level problem (a wrong CSV header): nothing after it was read.
    """

    line: int
    field: str
    message: str
    source: str
    fatal: bool = False
    more: tuple[tuple[str, str], ...] = ()
    """Every other bad field of the same line, as (field, message): one pass over the file
    shows the lender everything to fix."""

    def __str__(self) -> str:
        problems = [(self.field, self.message), *self.more]
        return f"{self.source}:{self.line}: " + "; ".join(f"{f}: {m}" for f, m in problems)


def detect_format(path: str | Path) -> Format:
    """Return the format named by the file's extension, or raise IntakeError."""
    suffix = Path(path).suffix.lower()
    try:
        return SUFFIXES[suffix]
    except KeyError:
        raise IntakeError(
            f"{path}: cannot tell the file format from the extension {suffix or '(none)'!r}; "
            f"name the file *.csv, *.jsonl or *.ndjson"
        ) from None


class _Lines:
    """Decoded lines of a text or binary stream, numbered from 1, BOM removed.

    Invalid UTF-8 is decoded with ``surrogateescape`` and the line number remembered, so the
    row can be rejected instead of the whole file.
    """

    def __init__(self, stream: Iterable[str] | Iterable[bytes]) -> None:
        self._it: Iterator[str | bytes] = iter(stream)
        self.number = 0
        self.last_bad = 0

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        raw = next(self._it)
        self.number += 1
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("utf-8", "surrogateescape")
                self.last_bad = self.number
        else:
            line = raw
        if self.number == 1 and line.startswith(_BOM):
            line = line[1:]
        return line


def _has_bad_bytes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _translate(exc: ValidationError) -> list[tuple[str, str]]:
    """Every pydantic error as (field, message), in words a lender's analyst can act on."""
    errors = exc.errors(include_url=False, include_input=False)
    # A misspelt key shows up as "unknown" and "missing"; the unknown one names the cause,
    # so it comes first.
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    return [_words(err) for err in errors]


def _words(err: Any) -> tuple[str, str]:
    loc = err["loc"]
    field = str(loc[0]) if loc else "-"
    kind = err["type"]
    if kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = f"unknown field; expected only: {', '.join(FIELDS + OPTIONAL_FIELDS)}"
    elif kind == "breakdown_mismatch":
        field = ",".join(BREAKDOWN_FIELDS)
        message = err["msg"]
    elif field == "holds" and kind == "string_pattern_mismatch":
        message = "not a hold code; use A-Z, 0-9 and _ (2 to 32, starting with a letter)"
    else:
        message = err["msg"]
    if len(loc) > 1 and isinstance(loc[1], int):
        message = f"item {loc[1] + 1}: {message}"
    return field, message


class _Validator:
    """Validates one row's mapping and rejects account ids already seen in this file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._first_seen: dict[str, int] = {}

    def __call__(self, line: int, data: Mapping[str, object]) -> ParsedRow | RowError:
        try:
            account = IntakeAccount.model_validate(data)
        except ValidationError as exc:
            (field, message), *more = _translate(exc)
            return RowError(line, field, message, self.source, more=tuple(more))
        first = self._first_seen.setdefault(account.account_id, line)
        if first != line:
            return RowError(
                line, "account_id", f"duplicate account id; first seen on line {first}", self.source
            )
        return ParsedRow(line, account)


def read_accounts(
    stream: Iterable[str] | Iterable[bytes], *, fmt: Format, source: str
) -> Iterator[ParsedRow | RowError]:
    """Yield each data row of ``stream`` as a ParsedRow or a RowError, in file order.

    Args:
        stream: an open text file (opened with ``newline=""`` for CSV) or binary file, or
            any iterable of lines.
        fmt: ``"csv"`` or ``"jsonl"`` (see ``detect_format``).
        source: how errors name the file, usually its path.
    """
    lines = _Lines(stream)
    validate = _Validator(source)
    if fmt == "csv":
        return _read_csv(lines, validate)
    if fmt == "jsonl":
        return _read_jsonl(lines, validate)
    raise IntakeError(f"{source}: unknown intake format {fmt!r}; expected csv or jsonl")


def _read_jsonl(lines: _Lines, validate: _Validator) -> Iterator[ParsedRow | RowError]:
    source = validate.source
    for line in lines:
        if not line.strip():
            continue
        n = lines.number
        if lines.last_bad == n:
            yield RowError(n, "-", "line is not valid UTF-8; save the file as UTF-8", source)
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield RowError(n, "-", f"not valid JSON ({exc.msg} at column {exc.colno})", source)
            continue
        if not isinstance(data, dict):
            yield RowError(n, "-", f"expected a JSON object, found {type(data).__name__}", source)
            continue
        yield validate(n, data)


def _header_error(header: list[str], line: int, source: str) -> RowError | None:
    seen: set[str] = set()
    for column in header:
        if column not in IntakeAccount.model_fields:
            return RowError(
                line,
                column,
                f"unknown column; expected exactly: {','.join(FIELDS)} "
                f"and optionally: {','.join(OPTIONAL_FIELDS)}",
                source,
                True,
            )
        if column in seen:
            return RowError(line, column, "column appears twice in the header", source, True)
        seen.add(column)
    missing = [f for f in FIELDS if f not in seen]
    if missing:
        return RowError(
            line,
            ",".join(missing),
            f"missing required column{'s' if len(missing) > 1 else ''}; "
            f"the header must name: {','.join(FIELDS)}",
            source,
            True,
        )
    return None


def _read_csv(lines: _Lines, validate: _Validator) -> Iterator[ParsedRow | RowError]:
    source = validate.source
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    header_line = 0
    while True:
        start = lines.number + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # The reader starts afresh on the next line, so one bad quote costs one row.
            yield RowError(start, "-", f"malformed CSV: {exc}", source)
            continue
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            header_line = start
            if lines.last_bad >= start:
                yield RowError(start, "-", "header is not valid UTF-8", source, True)
                return
            problem = _header_error(header, start, source)
            if problem is not None:
                yield problem
                return
            continue
        if len(record) != len(header):
            yield RowError(
                start,
                "-",
                f"expected {len(header)} columns as in the header on line {header_line}, "
                f"found {len(record)}",
                source,
            )
            continue
        data = dict(zip(header, record, strict=True))
        if lines.last_bad >= start:
            column = next((k for k, v in data.items() if _has_bad_bytes(v)), "-")
            yield RowError(start, column, "not valid UTF-8; save the file as UTF-8", source)
            continue
        yield validate(start, data)
    if header is None:
        yield RowError(1, "-", "file is empty; expected a header row", source, True)


__all__ = [
    "FIELDS",
    "OPTIONAL_FIELDS",
    "SUFFIXES",
    "Format",
    "ParsedRow",
    "RowError",
    "detect_format",
    "read_accounts",
]
