"""Batched statements run at the driver: many rows in one ``executemany``, without
SQLAlchemy's per-row parameter processing, which on hot paths costs more than the
database's own work.

Theory of operation
-------------------
A statement is compiled once per shape and dialect, and kept (``_PLANS``): the SQL text and
a plan saying, for each parameter position, whether a row supplies it (with the type's bind
processor, where the type has one: datetimes, dates) or the statement itself carries it
(``.values(updated_at=now)``, a literal in a WHERE clause). The shape is SQLAlchemy's own
cache key, which leaves literal values out; those are read from each call's statement
through its cache key's extracted parameters, as SQLAlchemy's compiled cache does. So a
group commit that runs the same five statements every few milliseconds compiles none of
them after the first.

``insert_numbered`` returns the new ids in input order on both backends; ``bulk_insert``
takes rows as plain tuples for the fastest path (intake, evidence leaves). On SQLite the
statements go to the driver's thread without the engine's execution machinery
(gateway.store.sqlite_driver.run_statement).
"""

import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.cache_key import CacheKey
from sqlalchemy.sql.compiler import Compiled, SQLCompiler

from gateway.store.sqlite_driver import run_statement

Processor = Callable[[Any], Any] | None

MAX_PLANS = 512
"""Compiled shapes kept; the code has a few dozen, so the bound only guards against a
caller that builds statements of ever new shapes."""


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    compiled: Compiled
    width: int
    per_row: tuple[tuple[int, str, Processor], ...]
    """(position, row key, processor) of the values each row supplies."""
    fixed: tuple[tuple[int, str, Processor], ...]
    """(position, bind name, processor) of the values the statement carries."""


_PLANS: dict[Hashable, _Plan] = {}
_NOTHING = object()
_MAX_IDS: dict[sa.Table, str] = {}
"""``SELECT max(id)`` of each table ``insert_numbered`` numbered on SQLite."""


def driver_processor(column: sa.ColumnElement[Any], dialect: Dialect) -> Processor:
    """What turns a Python value into the driver's value for ``column`` on ``dialect`` (None
    when the driver takes it as it is). A type decorator's processor exists only on its
    dialect implementation: the bare type would hand SQLite a naive datetime to format."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _remember(key: Hashable, plan: _Plan) -> _Plan:
    if len(_PLANS) >= MAX_PLANS:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _plan(
    statement: sa.Insert | sa.Update,
    dialect: Dialect,
    keys: tuple[str, ...],
    cache_key: CacheKey | None,
) -> _Plan:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), cache_key=cache_key)
    order = compiled.positiontup
    if order is None:
        raise TypeError(f"execute_rows needs a positional paramstyle, not {dialect.name}")
    per_row: list[tuple[int, str, Processor]] = []
    fixed: list[tuple[int, str, Processor]] = []
    for position, name in enumerate(order):
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if name in keys:
            per_row.append((position, name, process))
            continue
        if bind.effective_value is None and bind.required:
            raise TypeError(f"execute_rows: no row names the parameter {name!r}")
        fixed.append((position, name, process))
    return _Plan(compiled.string, compiled, len(order), tuple(per_row), tuple(fixed))


async def execute_rows(
    conn: AsyncConnection, statement: sa.Insert | sa.Update, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``conn.execute(statement, rows)`` as one driver ``executemany`` (see the module
    docstring). A bind no row names must carry its own value (``.values(updated_at=now)``);
    every row must have the same keys as the first."""
    if not rows:
        return
    dialect = conn.dialect
    keys = tuple(rows[0])
    cache_key = statement._generate_cache_key()
    shape = None if cache_key is None else (dialect.name, cache_key.key, keys)
    plan = _PLANS.get(shape) if shape is not None else None
    if plan is None:
        plan = _plan(statement, dialect, keys, cache_key)
        if shape is not None:
            _remember(shape, plan)
    template: list[Any] = [None] * plan.width
    if plan.fixed:
        compiled = plan.compiled
        assert isinstance(compiled, SQLCompiler)  # what compile() gives an INSERT or UPDATE
        carried = compiled.construct_params(
            extracted_parameters=cache_key.bindparams if cache_key is not None else None,
            _check=False,
        )
        for position, name, process in plan.fixed:
            value = carried[name]
            template[position] = process(value) if process is not None else value
    params = []
    # The last value each processor converted, by identity: rows of one batch often share a
    # datetime object (the commit's ``now``), and converting a datetime costs microseconds.
    last: list[tuple[object, object]] = [(_NOTHING, None)] * plan.width
    for row in rows:
        values = list(template)
        for position, name, convert in plan.per_row:
            value = row[name]
            if convert is None:
                values[position] = value
                continue
            seen, converted = last[position]
            if seen is not value:
                converted = convert(value)
                last[position] = (value, converted)
            values[position] = converted
        params.append(tuple(values))
    await run_statement(conn, plan.sql, params, many=True)


def _insert_sql(table: sa.Table, names: tuple[str, ...], dialect: Dialect) -> tuple[str, list[int]]:
    """The INSERT of ``names`` into ``table`` and where each name goes in its parameters."""
    shape = ("bulk_insert", dialect.name, table, names)
    plan = _PLANS.get(shape)
    if plan is None:
        statement = table.insert().values({n: sa.bindparam(n) for n in names})
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise TypeError(f"bulk_insert needs a positional paramstyle, not {dialect.name}")
        index = {name: i for i, name in enumerate(names)}
        picks = tuple((index[n], n, None) for n in compiled.positiontup)
        plan = _remember(shape, _Plan(compiled.string, compiled, len(picks), picks, ()))
    return plan.sql, [i for i, _, _ in plan.per_row]


async def bulk_insert(
    conn: AsyncConnection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    constants: Mapping[str, Any] | None = None,
) -> None:
    """Insert many rows with one driver ``executemany``.

    ``rows`` hold plain driver-ready values (int, str, bytes, None) for ``columns``, in that
    order; each of ``constants`` is the same for every row and goes through its column's
    type once (datetimes belong there).
    """
    if not rows:
        return
    fixed = dict(constants or {})
    names = (*columns, *fixed)
    sql, picks = _insert_sql(table, names, conn.dialect)
    for name, value in fixed.items():
        process = driver_processor(table.c[name], conn.dialect)
        fixed[name] = process(value) if process is not None else value
    # Each row is extended with the constants and reordered into the statement's order.
    tail = tuple(fixed.values())
    if picks == list(range(len(names))):
        params: list[Any] = [(*row, *tail) for row in rows] if tail else [tuple(r) for r in rows]
    else:
        pick = operator.itemgetter(*picks)
        params = [pick((*row, *tail)) for row in rows]
    await run_statement(conn, sql, params, many=True)


async def insert_numbered(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert rows in one batch and return their integer ids, in input order.

    SQLite cannot return ids of an ``executemany`` in order, and SQLAlchemy falls back to one
    INSERT per row; under ``BEGIN IMMEDIATE`` we hold the only writer lock, so numbering the
    rows ourselves from ``max(id) + 1`` is safe and keeps it one statement. PostgreSQL
    returns ordered ids from its batched RETURNING.
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        max_id = _MAX_IDS.get(table)
        if max_id is None:
            max_id = str(sa.select(sa.func.max(table.c.id)).compile(dialect=conn.dialect))
            _MAX_IDS[table] = max_id
        [(last,)] = await run_statement(conn, max_id, None, many=False) or [(None,)]
        start = (last or 0) + 1
        ids = list(range(start, start + len(rows)))
        await execute_rows(
            conn, table.insert(), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
        )
        return ids
    result = await conn.execute(
        table.insert().returning(table.c.id, sort_by_parameter_order=True), list(rows)
    )
    return list(result.scalars().all())


__all__ = ["bulk_insert", "driver_processor", "execute_rows", "insert_numbered"]
