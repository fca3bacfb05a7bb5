"""Compiled rows: a layout's cells for one record kind as one generated function (pure).

``RecordWriter`` (adapters.sftp.layouts) renders a record cell by cell: a getter walks each
column's dotted path and a formatter writes the value. For a file of 100,000 placements of
twenty columns that is four million calls of small closures, most of the time a batch takes
to render. ``compile_cells`` writes the same work as one function per record kind, generated
once per writer:

* each path prefix (``data``, ``data.debtor``) is looked up once per record, not once per
  column below it;
* the common values are written inline: a text that is a ``str``, an ``int``, a date or an
  ISO timestamp already in its written form, money as ``{amount_minor: int, currency: str}``,
  a list of texts none of which holds the separator;
* everything else (a value of another type, a cell kind or format with no inline form) goes
  to the column's own formatter, with the value the column's getter would have found.

The record and its prefixes must be plain dicts (what ``orjson`` gives) or missing; when one
is not, the function raises ``Uncommon`` and the writer renders that record the generic way.
So a compiled function either returns exactly the cells the getters and formatters give, or
raises (any exception: the writer then runs the generic path, which gives the row or its
error): the bytes never depend on which path ran (tests/unit/test_file_layouts.py compares
them on generated records).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config.layouts import ColumnSpec
from schemas.base import MINOR_EXPONENT, decimal_text

Formatter = Callable[[Any, Mapping[str, Any]], str]
CompiledCells = Callable[[Mapping[str, Any]], list[str]]


@dataclass(frozen=True, slots=True)
class InlineForms:
    """Which values the layout writes as they are: dates (ISO date format), timestamps
    (the ISO UTC format, for a value already in it), money in minor units or as decimal
    text, and lists joined by ``list_separator`` (unless a column has its own)."""

    iso_dates: bool
    iso_timestamps: bool
    minor_money: bool
    list_separator: str


class Uncommon(Exception):
    """The record, or an object on a column's path, is not a plain dict: render it the
    generic way."""


def _missing_or_uncommon(value: object) -> dict[str, Any]:
    """What the path below a prefix that is not a dict reads from: nothing below a missing
    prefix (every column under it is empty, as ``lookup`` finds); anything else is not the
    common case."""
    if value is None:
        return {}
    raise Uncommon


def _inline(kind: str, forms: InlineForms, n: int) -> list[str]:
    """Statements setting ``c<n>`` from ``v`` for one cell of ``kind``; ``f<n>`` is the
    column's formatter, for whatever the inline form does not cover."""
    generic = [f"    c{n} = f{n}(v, record)"]
    if kind in ("text", "currency"):
        # text: "" for None, str() of the rest; currency: a str is itself.
        return [f"    c{n} = v if type(v) is str else f{n}(v, record)"]
    if kind == "int":
        return [f"    c{n} = str(v) if type(v) is int else f{n}(v, record)"]
    if kind == "date" and forms.iso_dates:
        return [f"    c{n} = v if type(v) is str else f{n}(v, record)"]
    if kind == "timestamp" and forms.iso_timestamps:
        return [f"    c{n} = v if type(v) is str and len(v) == 20 else f{n}(v, record)"]
    if kind == "list":
        # Items that are texts, none holding the separator, are joined as they are.
        return [
            "    if type(v) is list:",
            f"        c{n} = s{n}.join(v)",
            f"        if c{n}.count(s{n}) != len(v) - 1:",
            f"            c{n} = f{n}(v, record)",
            "    else:",
            f"    {generic[0]}",
        ]
    if kind == "money":
        common = (
            "    if (type(v) is dict and type(a := v.get('amount_minor')) is int"
            " and type(k := v.get('currency')) is str):"
        )
        if forms.minor_money:
            return [common, f"        c{n} = str(a)", "    else:", f"    {generic[0]}"]
        # decimal_text, written out for the usual two decimals and no sign.
        return [
            common,
            "        if a >= 0 and exponent(k, 2) == 2:",
            f"            c{n} = f'{{a // 100}}.{{a % 100:02d}}'",
            "        else:",
            f"            c{n} = decimal_text(a, k)",
            "    else:",
            f"    {generic[0]}",
        ]
    return generic


def compile_cells(
    columns: Sequence[ColumnSpec], formatters: Sequence[Formatter], forms: InlineForms
) -> CompiledCells:
    """The function giving a record's cells for ``columns`` (see the module docstring);
    ``formatters`` are the columns' own, in the same order."""
    prefixes: dict[tuple[str, ...], str] = {}
    lines = ["def cells(record):", "    if type(record) is not dict:", "        raise Uncommon"]

    def prefix(path: tuple[str, ...]) -> str:
        """The variable holding the dict at ``path`` (``record`` for the empty path)."""
        if not path:
            return "record"
        if path not in prefixes:
            parent = prefix(path[:-1])
            name = prefixes[path] = f"p{len(prefixes)}"
            lines.append(f"    {name} = {parent}.get({path[-1]!r})")
            lines.append(f"    if type({name}) is not dict:")
            lines.append(f"        {name} = missing_or_uncommon({name})")
        return prefixes[path]

    for n, column in enumerate(columns):
        path = tuple(column.field.split("."))
        lines.append(f"    v = {prefix(path[:-1])}.get({path[-1]!r})")
        lines += _inline(column.kind, forms, n)
    lines.append(f"    return [{', '.join(f'c{n}' for n in range(len(columns)))}]")
    namespace: dict[str, Any] = {
        "Uncommon": Uncommon,
        "missing_or_uncommon": _missing_or_uncommon,
        "decimal_text": decimal_text,
        "exponent": MINOR_EXPONENT.get,
        **{f"f{n}": formatter for n, formatter in enumerate(formatters)},
        **{f"s{n}": c.separator or forms.list_separator for n, c in enumerate(columns)},
    }
    exec(compile("\n".join(lines), f"<cells of {len(columns)} columns>", "exec"), namespace)
    compiled: CompiledCells = namespace["cells"]
    return compiled


__all__ = ["CompiledCells", "InlineForms", "Uncommon", "compile_cells"]
