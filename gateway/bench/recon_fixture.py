"""The reconciliation benchmark's data set, bulk-loaded straight into a SQLite store.

What goes in is drawn elsewhere: the placements and the agencies' events with their injected
breaks by gateway.bench.recon_book, the lender's payment feed by
gateway.bench.recon_lender_feed. This module is the I/O shell around them.

Loading goes through sqlite3 ``executemany`` in batches of ``BATCH`` rows, in one
transaction, with the secondary indexes dropped and rebuilt afterwards (a sorted build);
none of it is timed. The generators share one ``random.Random`` seeded with ``seed``, so each
is drained before the next starts: placements, events, then receipts.
"""

import random
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TypeVar

from gateway.bench.recon_book import (
    DAY,
    Book,
    FixtureSummary,
    Payment,
    event_rows,
    inbound_rows,
    placement_rows,
)
from gateway.bench.recon_lender_feed import feed_row, receipt_rows

BATCH = 50_000
TABLES = ("cases", "placements", "inbound_messages", "agency_events", "lender_payments")


def _insert(table: str, width: int) -> str:
    return f"INSERT INTO {table} VALUES ({','.join('?' * width)})"


INSERT_CASE = (
    "INSERT INTO cases (id, debtor_id, pii, content_mac, region, product, currency, "
    "principal_minor, balance_minor, dpd, credit_grade, due_date, bucket, status, created_at, "
    f"updated_at) VALUES ({','.join('?' * 16)})"
)
INSERT_PLACEMENT = (
    "INSERT INTO placements (id, case_id, agency_id, state, version, currency, "
    "balance_minor, acked_balance_minor, collected_minor, agency_case_ref, placed_at, "
    f"return_by, recalled_at, recall_reason, updated_at) VALUES ({','.join('?' * 15)})"
)


T = TypeVar("T")


def _batches(rows: Iterable[T]) -> Iterator[list[T]]:
    it = iter(rows)
    while batch := list(islice(it, BATCH)):
        yield batch


def build(path: Path, rows: int, *, seed: int = 20260101) -> FixtureSummary:
    """Fill the (migrated, empty) SQLite store at ``path``; return what was written."""
    rnd = random.Random(seed)
    summary = FixtureSummary()
    as_of = int(summary.as_of.timestamp())
    start = as_of - 100 * DAY
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-400000")
        indexes = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({','.join('?' * len(TABLES))})",
            TABLES,
        ).fetchall()
        con.execute("BEGIN")
        for name, _sql in indexes:
            con.execute(f'DROP INDEX "{name}"')
        books = _placements(con, rnd, rows, start, summary)
        payments = _events(con, rnd, rows, books, as_of, summary)
        _receipts(con, rnd, payments, books, as_of, summary)
        for _name, sql in indexes:
            con.execute(sql)
        con.execute("COMMIT")
        con.execute("ANALYZE")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return summary


def _placements(
    con: sqlite3.Connection, rnd: random.Random, rows: int, start: int, summary: FixtureSummary
) -> dict[str, Book]:
    books: dict[str, Book] = {}
    for batch in _batches(placement_rows(rnd, rows, start, books)):
        con.executemany(INSERT_CASE, [case for case, _ in batch])
        con.executemany(INSERT_PLACEMENT, [placement for _, placement in batch])
    summary.placements = rows
    return books


def _events(
    con: sqlite3.Connection,
    rnd: random.Random,
    rows: int,
    books: dict[str, Book],
    as_of: int,
    summary: FixtureSummary,
) -> list[Payment]:
    """Load the events; return the applied payments for the lender's feed."""
    con.executemany(_insert("inbound_messages", 12), inbound_rows(rows, as_of))
    payments: list[Payment] = []
    for batch in _batches(event_rows(rnd, rows, books, summary, payments)):
        con.executemany(_insert("agency_events", 12), batch)
    summary.events = rows
    return payments


def _receipts(
    con: sqlite3.Connection,
    rnd: random.Random,
    payments: list[Payment],
    books: dict[str, Book],
    as_of: int,
    summary: FixtureSummary,
) -> None:
    con.execute(_insert("payment_feeds", 9), feed_row(as_of))
    receipts = receipt_rows(rnd, payments, books, summary)
    for batch in _batches(receipts):
        con.executemany(_insert("lender_payments", 17), batch)
    summary.receipts = len(receipts)


__all__ = ["build"]
