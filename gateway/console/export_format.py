"""What an exported list looks like: its columns, each cell as text or a number, personal
data masked in free text, and the bytes of the CSV and XLSX files. Pure: rows in, bytes out;
gateway.console.list_exports reads the rows and streams the bytes.

Theory of operation: a list's export has the columns the page shows, named by their field
(``delta_minor``, ``created_at``), with raw values rather than display text: amounts in minor
units next to their currency, times in ISO 8601 UTC, lists joined by spaces. So a file reads
back into the same rows the JSON API returns, whatever the console's language.

The lists select no personal data (``cases.pii`` is never read). The free-text columns
(``FREE_TEXT``: a mismatch's detail, a case's reason for being unallocated) are written by
the gateway but quote what agencies sent (payment and case references); anything in them
that looks like a mobile number, a national id or an e-mail address is masked as the case
page masks personal data, unless the user's role may see personal data
(``console.pii_reveal_roles``). Text cells that a spreadsheet would run as a formula (they
start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) get a leading apostrophe.
"""

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import IO, Any, Final

from openpyxl import Workbook

from gateway.console.personal_data import mask_national_id, mask_phone

Cell = str | int
CSV_BOM: Final = "\ufeff"
"""Excel reads a CSV as UTF-8 (Chinese included) only when it starts with this mark."""
XLSX_MAX_ROWS: Final = 1_000_000
"""A sheet holds 1,048,576 rows; a larger XLSX export is refused (CSV has no cap)."""

QUEUE_COLUMNS: Final = (
    "id",
    "severity",
    "kind",
    "state",
    "agency_id",
    "case_id",
    "placement_id",
    "delta_minor",
    "currency",
    "assignee",
    "created_at",
    "updated_at",
    "detail",
)
CASE_COLUMNS: Final = (
    "id",
    "debtor_id",
    "status",
    "bucket",
    "dpd",
    "balance_minor",
    "currency",
    "agency_id",
    "placement_id",
    "placement_state",
    "tier",
    "return_by",
    "holds",
    "unallocated_reason",
    "updated_at",
)
AGENCY_COLUMNS: Final = (
    "agency_id",
    "name",
    "channel",
    "enabled",
    "endpoint_disabled",
    "disabled_reason",
    "circuit_state",
    "open_placements",
    "capacity",
    "pending",
    "dead",
    "unknown",
    "open_mismatches",
)
FREE_TEXT: Final = frozenset({"detail", "unallocated_reason"})

_MOBILE = re.compile(r"(?<![0-9])(\+?86[ -]?)?(1[3-9][0-9]{9})(?![0-9])")
_NATIONAL_ID = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return local[:1] + "***@" + domain


def mask_free_text(text: str) -> str:
    """Mobile numbers, national ids and e-mail addresses in ``text``, masked."""
    text = _NATIONAL_ID.sub(lambda m: mask_national_id(m.group()), text)
    text = _MOBILE.sub(lambda m: (m.group(1) or "") + mask_phone(m.group(2)), text)
    return _EMAIL.sub(lambda m: _mask_email(m.group()), text)


def cell(value: Any) -> Cell:
    """One value as the file holds it: numbers stay numbers, times become ISO 8601 UTC."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def formula_safe(value: Cell) -> Cell:
    """A text cell a spreadsheet would evaluate, made inert with a leading apostrophe."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def shape(row: Mapping[str, Any], columns: Sequence[str], *, reveal: bool) -> list[Cell]:
    """One exported row: ``row``'s ``columns`` in order, free text masked unless ``reveal``."""
    out: list[Cell] = []
    for name in columns:
        value = cell(row.get(name))
        if name in FREE_TEXT and not reveal and isinstance(value, str):
            value = mask_free_text(value)
        out.append(formula_safe(value))
    return out


def csv_text(rows: Iterable[Sequence[Cell]]) -> str:
    """Rows as CSV lines (RFC 4180 quoting, CRLF line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def csv_head(columns: Sequence[str]) -> bytes:
    """The first bytes of a CSV export: the byte order mark and the header line."""
    return (CSV_BOM + csv_text([list(columns)])).encode()


def csv_chunk(rows: Iterable[Sequence[Cell]]) -> bytes:
    return csv_text(rows).encode()


class XlsxSheet:
    """An XLSX workbook of one sheet, built row by row in openpyxl's write-only mode (rows
    go to a temporary file as they come, so memory stays flat), then saved to ``target``."""

    def __init__(self, title: str, columns: Sequence[str]) -> None:
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet(title[:31])
        self._sheet.append(list(columns))
        self.rows = 0

    def append(self, rows: Iterable[Sequence[Cell]]) -> None:
        for row in rows:
            self._sheet.append(list(row))
            self.rows += 1

    def save(self, target: IO[bytes]) -> None:
        self._book.save(target)


__all__ = [
    "AGENCY_COLUMNS",
    "CASE_COLUMNS",
    "CSV_BOM",
    "FREE_TEXT",
    "QUEUE_COLUMNS",
    "XLSX_MAX_ROWS",
    "Cell",
    "XlsxSheet",
    "cell",
    "csv_chunk",
    "csv_head",
    "csv_text",
    "formula_safe",
    "mask_free_text",
    "shape",
]
