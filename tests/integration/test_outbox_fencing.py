"""The outbox's lease fencing at the edges the dispatcher tests leave out, found by mutation
testing (docs/mutation.md): a completion counts only while the item is still leased under that
token, so a late worker cannot undo a delivery or kill an item the reaper gave back, and a
delivered item keeps no trace of its lease or of an earlier failure."""

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import BUCKETS, AgencyConfig, parse_agency
from gateway.dispatch import outbox
from gateway.store.database import Database
from gateway.store.tables import OutboxItem
from tests.conftest import Seeder

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
LEASE = 30


def agency(agency_id: str = "AGY_A", *, max_attempts: int = 8) -> AgencyConfig:
    return parse_agency(
        {
            "id": agency_id,
            "name": f"{agency_id} test agency",
            "channel": "webhook",
            "endpoint": {"url": "https://agency.invalid/hooks"},
            "signing": {"scheme": "v1", "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
            "inbound": {"scheme": "v1", "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
            "eligibility": {"buckets": list(BUCKETS)},
            "capacity": {"max_open_placements": 100_000},
            "retry": {"max_attempts": max_attempts},
        }
    )


async def one_item(
    db: Database, seed_placements: Seeder, *, max_attempts: int = 8
) -> outbox.ClaimedItem:
    clock = ManualClock(START)
    config = agency(max_attempts=max_attempts)
    await seed_placements(db, {config.id: config}, 1, clock)
    async with db.transaction() as conn:
        [item] = await outbox.claim(
            conn, worker="w-1", limit=10, lease_seconds=LEASE, now=to_datetime(START)
        )
    return item


async def row(db: Database) -> Any:
    async with db.connect() as conn:
        [only] = (await conn.execute(sa.select(OUTBOX))).all()
    return only


async def test_a_second_completion_of_a_delivered_item_changes_nothing(
    db: Database, seed_placements: Seeder
) -> None:
    item = await one_item(db, seed_placements)
    t1 = to_datetime(START + 1)
    async with db.transaction() as conn:
        assert await outbox.mark_delivered(conn, [(item.id, item.lease_token)], now=t1) == {item.id}
    # The same worker, confused (a retried task, a duplicate ack), completes again.
    async with db.transaction() as conn:
        again = await outbox.mark_delivered(
            conn, [(item.id, item.lease_token)], now=t1 + timedelta(hours=1)
        )
        failed = await outbox.mark_failed(
            conn, item_id=item.id, lease_token=item.lease_token, state="dead", error="late"
        )
    assert again == set() and failed is False
    delivered = await row(db)
    assert (delivered.state, delivered.delivered_at, delivered.last_error) == (
        "delivered",
        t1,
        None,
    )


async def test_a_worker_whose_lease_was_reaped_cannot_fail_the_item(
    db: Database, seed_placements: Seeder
) -> None:
    """Reaped, the item is pending under the same token until someone claims it again: the
    late worker's failure must not make it dead or move its time."""
    item = await one_item(db, seed_placements)
    after = to_datetime(START + LEASE + 1)
    async with db.transaction() as conn:
        assert await outbox.reap(conn, now=after) == 1
        failed = await outbox.mark_failed(
            conn,
            item_id=item.id,
            lease_token=item.lease_token,
            state="dead",
            error="late",
            run_at=after + timedelta(days=1),
        )
    assert failed is False
    pending = await row(db)
    assert (pending.state, pending.lease_token, pending.run_at, pending.last_error) == (
        "pending",
        item.lease_token,
        after,
        None,
    )


async def test_a_delivery_after_a_failure_clears_the_lease_and_the_error(
    db: Database, seed_placements: Seeder
) -> None:
    item = await one_item(db, seed_placements)
    t1 = to_datetime(START + 1)
    async with db.transaction() as conn:
        assert await outbox.mark_failed(
            conn, item_id=item.id, lease_token=item.lease_token, state="pending", error="503"
        )
        [retry] = await outbox.claim(conn, worker="w-2", limit=10, lease_seconds=LEASE, now=t1)
    assert (await row(db)).last_error == "503"
    async with db.transaction() as conn:
        assert await outbox.mark_delivered(conn, [(retry.id, retry.lease_token)], now=t1) == {
            retry.id
        }
    done = await row(db)
    assert (done.state, done.lease_owner, done.lease_expires_at, done.last_error) == (
        "delivered",
        None,
        None,
        None,
    )


async def test_a_long_error_is_kept_to_its_first_2000_characters(
    db: Database, seed_placements: Seeder
) -> None:
    item = await one_item(db, seed_placements)
    error = "".join(chr(ord("a") + n % 26) for n in range(3000))
    async with db.transaction() as conn:
        assert await outbox.mark_failed(
            conn, item_id=item.id, lease_token=item.lease_token, state="dead", error=error
        )
    assert (await row(db)).last_error == error[:2000]


async def test_an_item_keeps_the_attempt_limit_of_its_agency(
    db: Database, seed_placements: Seeder
) -> None:
    item = await one_item(db, seed_placements, max_attempts=3)
    assert (await row(db)).max_attempts == 3
    assert item.max_attempts == 3


async def test_a_reaped_item_keeps_no_trace_of_its_lease(
    db: Database, seed_placements: Seeder
) -> None:
    await one_item(db, seed_placements)
    after = to_datetime(START + LEASE + 1)
    async with db.transaction() as conn:
        assert await outbox.reap(conn, now=after) == 1
        assert await outbox.counts_by_state(conn) == {"pending": 1}
    reaped = await row(db)
    assert (reaped.state, reaped.lease_owner, reaped.lease_expires_at, reaped.run_at) == (
        "pending",
        None,
        None,
        after,
    )


async def test_a_resend_puts_back_only_the_named_dead_items_from_scratch(
    db: Database, seed_placements: Seeder
) -> None:
    clock = ManualClock(START)
    config = agency()
    await seed_placements(db, {config.id: config}, 3, clock)
    now = to_datetime(START)
    async with db.transaction() as conn:
        dead, other_dead, delivered = await outbox.claim(
            conn, worker="w-1", limit=10, lease_seconds=LEASE, now=now
        )
        for item in (dead, other_dead):
            await outbox.mark_failed(
                conn, item_id=item.id, lease_token=item.lease_token, state="dead", error="410"
            )
        await outbox.mark_delivered(conn, [(delivered.id, delivered.lease_token)], now=now)
        assert await outbox.counts_by_state(conn) == {"dead": 2, "delivered": 1}
    later = to_datetime(START + 600)
    async with db.transaction() as conn:
        assert await outbox.requeue(conn, [dead.id, delivered.id], now=later) == 1
        assert await outbox.counts_by_state(conn) == {"pending": 1, "dead": 1, "delivered": 1}
    async with db.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(sa.select(OUTBOX))).all()}
    again = rows[dead.id]
    assert (again.state, again.attempts, again.last_error, again.run_at) == (
        "pending",
        0,
        None,
        later,
    )
    assert (rows[other_dead.id].state, rows[other_dead.id].last_error) == ("dead", "410")
    assert rows[delivered.id].state == "delivered"
