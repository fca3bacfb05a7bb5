"""A recall jumps the queue: queued behind a backlog of the agency's packets, it is in the very
next claim, on SQLite and PostgreSQL; after a failed attempt it is retried on the schedule
like any other packet."""

from datetime import UTC, datetime, timedelta

from gateway.dispatch import outbox
from gateway.dispatch.outbox import NewItem
from gateway.dispatch.packets import RenderedPacket
from gateway.store.database import Database

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
AGENCY = "AGY_Q"


def item(n: int, packet_type: str) -> NewItem:
    return NewItem(
        AGENCY, f"PL-{n}", RenderedPacket(f"pkt_{packet_type}_{n}", packet_type, 1, b"{}"), 5
    )


async def test_a_recall_is_claimed_before_the_backlog_queued_earlier(db: Database) -> None:
    async with db.transaction() as conn:
        backlog = await outbox.enqueue(
            conn, [item(n, "placement.created") for n in range(40)], now=NOW
        )
    later = NOW + timedelta(minutes=5)
    async with db.transaction() as conn:
        recall = await outbox.enqueue(conn, [item(7, "placement.recalled")], now=later)
        amended = await outbox.enqueue(conn, [item(8, "placement.amended")], now=later)
    [recall_id] = recall.values()
    async with db.transaction() as conn:
        first = await outbox.claim(conn, worker="w", limit=5, lease_seconds=60, now=later)
    assert recall_id in [c.id for c in first]
    # The other four are the oldest of the backlog; the amendment waits its turn.
    assert sorted(c.id for c in first if c.id != recall_id) == sorted(backlog.values())[:4]
    assert not set(amended.values()) & {c.id for c in first}

    retry_at = later + timedelta(minutes=1)
    async with db.transaction() as conn:
        assert await outbox.mark_failed(
            conn,
            item_id=recall_id,
            lease_token=next(c.lease_token for c in first if c.id == recall_id),
            state="pending",
            error="503",
            run_at=retry_at,
        )
        assert await outbox.next_due(conn) == NOW
        again = await outbox.claim(conn, worker="w", limit=50, lease_seconds=60, now=later)
    assert recall_id not in [c.id for c in again]
