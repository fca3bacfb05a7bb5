"""How the batch engine reads and writes in bulk, on real databases (SQLite, and PostgreSQL
when GATEWAY_TEST_POSTGRES_URL is set): windows of rows computed ahead
(``gateway.store.row_stream.stream_windows``), the SQL forms of the facts the pure rules
read (epoch seconds, contact codes) agreeing with their older form and with Python, and
mismatches written in bulk exactly as the generic path writes them."""

import json
import sqlite3
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.reconciliation.contact_rules import CHANNELS
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches_by_kind
from gateway.reconciliation.sources import (
    SQLITE_UNIXEPOCH,
    epoch_seconds,
    event_facts,
    event_window,
)
from gateway.store.database import Database
from gateway.store.row_stream import Row, stream_rows, stream_windows
from gateway.store.tables import AgencyEventRow, InboundMessage, Mismatch

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
IDS = [1, 2, 3, 6, 10, 11]


async def store_events(db: Database, rows: list[dict[str, Any]]) -> None:
    """Store agency events (with the raw message each one needs) by explicit id."""
    async with db.transaction() as conn:
        await conn.execute(
            INBOUND.insert(),
            {
                "id": 1,
                "agency_id": "AGA",
                "channel": "sftp",
                "external_id": "result-1",
                "body": b"",
                "body_sha256": "0" * 64,
                "signature_scheme": "-",
                "status": "accepted",
                "response_status": 200,
                "response_body": b"",
                "received_at": NOW,
            },
        )
        for row in rows:
            await conn.execute(
                EVENTS.insert(),
                {
                    "inbound_id": 1,
                    "agency_id": "AGA",
                    "placement_id": "PL-1",
                    "event_type": "contact.attempted",
                    "occurred_at": NOW,
                    "data": "{}",
                    "applied": True,
                    "received_at": NOW,
                    **row,
                },
            )


async def test_windows_yield_every_row_once_in_order_and_skip_empty_windows(
    db: Database,
) -> None:
    await store_events(db, [{"id": n} for n in IDS])
    async with db.snapshot() as conn:
        got = [
            [row[0] for row in rows]
            async for rows in stream_windows(
                conn, event_window(db.dialect), after=0, upto=12, step=3
            )
        ]
        assert got == [[1, 2, 3], [6], [10, 11]]
        tail = [
            [row[0] for row in rows]
            async for rows in stream_windows(
                conn, event_window(db.dialect), after=2, upto=10, step=4
            )
        ]
        assert tail == [[3, 6], [10]]
        nothing = [
            rows
            async for rows in stream_windows(
                conn, event_window(db.dialect), after=11, upto=11, step=4
            )
        ]
        assert nothing == []
        streamed: list[Row] = []
        async for chunk in stream_rows(conn, event_facts(db.dialect, upto=11)):
            streamed.extend(chunk)
        windowed: list[Row] = []
        async for rows in stream_windows(conn, event_window(db.dialect), after=0, upto=11, step=2):
            windowed.extend(rows)
        assert windowed == streamed


async def test_windows_left_early_leave_the_transaction_usable(db: Database) -> None:
    await store_events(db, [{"id": n} for n in IDS])
    async with db.snapshot() as conn:
        windows = stream_windows(conn, event_window(db.dialect), after=0, upto=12, step=3)
        async with aclosing(windows):
            async for rows in windows:
                assert [row[0] for row in rows] == [1, 2, 3]
                break
        count = (await conn.execute(sa.select(sa.func.count()).select_from(EVENTS))).scalar()
        assert count == len(IDS)


async def test_contact_codes_follow_the_channel_numbers_of_the_contact_rules(
    db: Database,
) -> None:
    cases: list[tuple[dict[str, object], int | None]] = [
        ({"channel": name, "effective": effective}, 2 * n + int(effective))
        for n, name in CHANNELS.items()
        for effective in (False, True)
    ]
    other = 2 * max(CHANNELS) + 2
    cases += [
        ({"channel": "fax", "effective": True}, other + 1),
        ({"effective": False}, other),
        ({"channel": None}, other),
        ({"channel": 1, "effective": "yes"}, other),
    ]
    await store_events(
        db, [{"id": n, "data": json.dumps(data)} for n, (data, _) in enumerate(cases, start=1)]
    )
    await store_events_of_other_types(db, start=len(cases) + 1)
    async with db.snapshot() as conn:
        rows: list[Row] = []
        async for chunk in stream_rows(conn, event_facts(db.dialect, upto=len(cases) + 1)):
            rows.extend(chunk)
    assert [row[9] for row in rows] == [code for _, code in cases] + [None]


async def store_events_of_other_types(db: Database, *, start: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            EVENTS.insert(),
            {
                "id": start,
                "inbound_id": 1,
                "agency_id": "AGA",
                "placement_id": "PL-1",
                "event_type": "promise.made",
                "occurred_at": NOW,
                "data": json.dumps({"channel": "call", "effective": True}),
                "applied": True,
                "received_at": NOW,
            },
        )


def test_epoch_seconds_is_what_strftime_gave_and_what_python_computes(tmp_path: Path) -> None:
    moments = [
        datetime(2026, 3, 4, 12, 0, 0, 250_000, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2038, 1, 19, 3, 14, 8, 500_000, tzinfo=UTC),
    ]
    texts: list[str | None] = []
    for m in moments:
        texts += [
            m.strftime("%Y-%m-%d %H:%M:%S.%f"),  # how SQLAlchemy stores a timestamp
            m.strftime("%Y-%m-%dT%H:%M:%SZ"),  # ISO 8601 in an event's JSON
            (m + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00"),
        ]
    # SQLite rounds to the millisecond (.999999 is the next second): both forms agree on it.
    texts += [None, "not a date", "2026-03-04", "2026-03-04 12:00:00.999999"]
    texts += ["1969-12-31 23:59:59.500000"]
    con = sqlite3.connect(tmp_path / "epoch.db")
    con.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, v TEXT)")
    con.executemany("INSERT INTO t (v) VALUES (?)", [(t,) for t in texts])
    v = sa.table("t", sa.column("n"), sa.column("v")).c
    ours = sa.select(epoch_seconds(v.v, "sqlite")).order_by(v.n)
    sql = str(ours.compile(compile_kwargs={"literal_binds": True}))
    assert ("unixepoch" in sql) == SQLITE_UNIXEPOCH
    got = [r[0] for r in con.execute(sql)]
    old = [r[0] for r in con.execute("SELECT CAST(strftime('%s', v) AS BIGINT) FROM t ORDER BY n")]
    assert got == old
    expected = [int(m.timestamp()) for m in moments for _ in range(3)]
    assert got[: len(expected)] == expected
    assert got[len(expected) :][:3] == [
        None,
        None,
        int(datetime(2026, 3, 4, tzinfo=UTC).timestamp()),
    ]
    con.close()


def draft(kind: str, n: int) -> MismatchDraft:
    return MismatchDraft(
        kind,
        f"PL-{n}",
        f"détail {n}",  # not ASCII: stored as is
        {"balance_minor": n, "at": NOW},
        {"type": "payment.reported", "amount_minor": -n},
        n if n % 2 else None,
    )


async def test_bulk_mismatches_count_the_new_ones_by_kind_in_input_order(db: Database) -> None:
    first = [
        (f"k{n}", draft("over_collection" if n % 3 else "wrong_agency", n), "AGA", n, None)
        for n in range(1, 8)
    ]
    async with db.transaction() as conn:
        assert await insert_mismatches_by_kind(conn, [], now=NOW) == {}
        new = await insert_mismatches_by_kind(conn, first, now=NOW)
    assert new == {"over_collection": 5, "wrong_agency": 2}
    again = [
        first[0],  # known: skipped
        ("k9", draft("status_conflict", 9), "AGB", None, 4),
        ("k9", draft("status_conflict", 10), "AGB", None, 5),  # the same key twice: once
    ]
    async with db.transaction() as conn:
        new = await insert_mismatches_by_kind(conn, again, now=NOW + timedelta(hours=1))
    assert new == {"status_conflict": 1}
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(MISMATCHES).order_by(MISMATCHES.c.id))).mappings()
        stored = [dict(r) for r in rows.all()]
    assert [r["dedupe_key"] for r in stored] == [f"k{n}" for n in range(1, 8)] + ["k9"]
    last = stored[-1]
    assert {k: last[k] for k in ("kind", "severity", "state", "agency_id", "rule")} == {
        "kind": "status_conflict",
        "severity": draft("status_conflict", 9).severity,
        "state": "open",
        "agency_id": "AGB",
        "rule": "status_conflict",
    }
    assert (last["placement_id"], last["event_id"], last["outbox_id"]) == ("PL-9", None, 4)
    assert (last["delta_minor"], last["detail"]) == (9, "détail 9")
    assert json.loads(last["ours"]) == {"at": str(NOW), "balance_minor": 9}
    assert json.loads(last["theirs"]) == {"amount_minor": -9, "type": "payment.reported"}
    assert last["created_at"] == last["updated_at"] == NOW + timedelta(hours=1)
    assert stored[0]["created_at"] == NOW and stored[1]["delta_minor"] is None


@pytest.mark.parametrize("count", [0, 1])
async def test_bulk_mismatches_in_a_rolled_back_transaction_leave_nothing(
    db: Database, count: int
) -> None:
    rows = [(f"r{n}", draft("wrong_agency", n), "AGA", n, None) for n in range(count)]
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            assert sum((await insert_mismatches_by_kind(conn, rows, now=NOW)).values()) == count
            raise RuntimeError("rolled back")
    async with db.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(MISMATCHES))).scalar()
    assert total == 0
