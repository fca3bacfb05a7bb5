"""Bulk recording of a delivered file batch: only items the batch claim still holds are
recorded, each exactly as the per-item path would (attempt, receipt leaf, expectations,
state), on SQLite and PostgreSQL."""

import json
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from adapters.sftp import batch_store as store
from gateway.config.agencies import parse_agency
from gateway.dispatch import outbox
from gateway.dispatch.batch_records import record_batch_delivery
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.dispatch.outbox import NewItem
from gateway.dispatch.packets import RenderedPacket
from gateway.evidence.log import LeafInput
from gateway.evidence.merkle import leaf_hash
from gateway.ports import BatchDelivered
from gateway.store.database import Database
from gateway.store.tables import (
    AgencyEventRow,
    DeliveryAttempt,
    EvidenceLeaf,
    Expectation,
    InboundMessage,
)

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
AGENCY = "AGY_FILES"
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]


def agency_hooks() -> ReconciliationHooks:
    agency = parse_agency(
        {
            "id": AGENCY,
            "name": "Files agency",
            "channel": "webhook",
            "endpoint": {"url": "http://127.0.0.1:9/unused", "allow_plain_http": True},
            "signing": {"keys": [{"env": "UNUSED_OUTBOUND"}]},
            "inbound": {"keys": [{"env": "UNUSED_INBOUND"}]},
            "eligibility": {"buckets": ["M1"]},
            "capacity": {"max_open_placements": 100},
            "sla": {"ack_hours": 24, "first_activity_hours": 72},
        }
    )
    return ReconciliationHooks(agencies={AGENCY: agency})


async def queue(db: Database, n: int) -> list[int]:
    items = [
        NewItem(
            AGENCY,
            f"PL-{i}",
            RenderedPacket(f"pkt_{i:040x}", "placement.created", 1, b"{}"),
            5,
        )
        for i in range(n)
    ]
    async with db.transaction() as conn:
        ids = await outbox.enqueue(conn, items, now=NOW)
    return sorted(ids.values())


async def test_only_items_the_claim_still_holds_are_recorded(db: Database) -> None:
    ids = await queue(db, 5)
    owner, other = "batch-a@worker", "batch-b@worker"
    async with db.transaction() as conn:
        claimed = await outbox.claim(conn, worker=owner, limit=5, lease_seconds=600, now=NOW)
        assert [c.id for c in claimed] == ids
        batch_id = await store.insert_batch(
            conn,
            agency_id=AGENCY,
            file_type="PLACEMENT",
            business_date=date(2026, 11, 28),
            seq=1,
            base_name="B1",
            resend_of=(),
            now=NOW,
        )
        await store.add_members(conn, batch_id, [(i, n, n + 1) for n, i in enumerate(ids, 1)])
        # One item was reaped and claimed again by another batch; one was reaped only.
        await conn.execute(
            outbox.OUTBOX.update().where(outbox.OC.id == ids[1]).values(lease_owner=other)
        )
        await conn.execute(
            outbox.OUTBOX.update()
            .where(outbox.OC.id == ids[2])
            .values(state="pending", lease_owner=None)
        )
    async with db.transaction() as conn:
        # The agency acknowledged record 4 before we recorded its delivery.
        inbound_id = (
            await conn.execute(
                INBOUND.insert()
                .values(
                    agency_id=AGENCY,
                    channel="webhook",
                    external_id="evt-1",
                    body=b"{}",
                    body_sha256="0" * 64,
                    signature_scheme="v1",
                    status="accepted",
                    response_status=204,
                    response_body=b"",
                    received_at=NOW,
                )
                .returning(INBOUND.c.id)
            )
        ).scalar_one()
        await conn.execute(
            EVENTS.insert().values(
                inbound_id=inbound_id,
                agency_id=AGENCY,
                placement_id="PL-3",
                event_type="placement.acknowledged",
                occurred_at=NOW,
                data="{}",
                applied=True,
                received_at=NOW,
            )
        )
    delivered = BatchDelivered(
        batch_id=batch_id,
        request_timestamp=1_796_000_000,
        remote_path='inbox/LENDERX "1".csv',
        size=1234,
        sha256="ab" * 32,
        manifest_path="inbox/B1.manifest.json",
    )
    held: list[int] = []
    pages: list[int | None] = []
    after: int | None = 0
    while after is not None:
        async with db.transaction() as conn:
            page, after = await record_batch_delivery(
                conn,
                delivered,
                agency_id=AGENCY,
                owner=owner,
                after_record=after,
                limit=2,
                started_at=NOW,
                duration_ms=42,
                hooks=agency_hooks(),
                now=NOW + timedelta(seconds=1),
            )
        held += page
        pages.append(after)
    # Held members are records 1, 4 and 5: pages of two are (1, 4), (5), then none.
    assert pages == [4, 5, None]
    mine = [ids[0], ids[3], ids[4]]
    assert sorted(held) == mine
    async with db.connect() as conn:
        states: dict[int, str] = dict(
            (await conn.execute(sa.select(outbox.OC.id, outbox.OC.state))).all()
        )
        assert states == {
            ids[0]: "delivered",
            ids[1]: "leased",
            ids[2]: "pending",
            ids[3]: "delivered",
            ids[4]: "delivered",
        }
        attempts = (await conn.execute(sa.select(ATTEMPTS).order_by(ATTEMPTS.c.outbox_id))).all()
        assert [a.outbox_id for a in attempts] == mine
        assert {(a.outcome, a.duration_ms, a.response_sha256) for a in attempts} == {
            ("delivered", 42, "ab" * 32)
        }
        assert [a.response_excerpt for a in attempts] == [
            f'inbox/LENDERX "1".csv line {line}' for line in (2, 5, 6)
        ]
        leaves = (await conn.execute(sa.select(LEAVES).where(LEAVES.c.kind == "receipt"))).all()
        assert len(leaves) == 3
        by_ref = {leaf.ref: leaf for leaf in leaves}
        for a, record in zip(attempts, (1, 4, 5), strict=True):
            receipt = delivered.receipt(record, record + 1)
            expected = LeafInput(
                "receipt",
                f"attempt:{a.id}",
                {
                    "attempt_id": a.id,
                    "outbox_id": a.outbox_id,
                    "dedupe_key": f"pkt_{ids.index(a.outbox_id):040x}",
                    "agency_id": AGENCY,
                    "outcome": "delivered",
                    "http_status": None,
                    "response_sha256": receipt.response_sha256,
                    "request_timestamp": receipt.request_timestamp,
                    "details": dict(receipt.details),
                },
            ).body()
            leaf = by_ref[f"attempt:{a.id}"]
            assert bytes(leaf.body) == expected
            assert bytes(leaf.leaf_hash) == leaf_hash(expected)
            assert json.loads(leaf.body)["details"]["line"] == str(record + 1)
        expectations = (
            await conn.execute(
                sa.select(EXPECTATIONS.c.placement_id, EXPECTATIONS.c.kind, EXPECTATIONS.c.state)
            )
        ).all()
        assert sorted(expectations) == sorted(
            (f"PL-{ids.index(i)}", kind, "met" if (i, kind) == (ids[3], "ack") else "open")
            for i in mine
            for kind in ("ack", "first_activity")
        )


async def test_attempt_ids_a_batch_takes_are_never_handed_out_again(db: Database) -> None:
    ids = await queue(db, 3)
    owner = "batch-c@worker"
    async with db.transaction() as conn:
        await outbox.claim(conn, worker=owner, limit=3, lease_seconds=600, now=NOW)
        batch_id = await store.insert_batch(
            conn,
            agency_id=AGENCY,
            file_type="PLACEMENT",
            business_date=date(2026, 11, 28),
            seq=1,
            base_name="B1",
            resend_of=(),
            now=NOW,
        )
        await store.add_members(conn, batch_id, [(i, n, n + 1) for n, i in enumerate(ids, 1)])
    delivered = BatchDelivered(batch_id, 1_796_000_000, "inbox/B1.csv", 10, "ab" * 32, "")
    async with db.transaction() as conn:
        held, _ = await record_batch_delivery(
            conn,
            delivered,
            agency_id=AGENCY,
            owner=owner,
            after_record=0,
            limit=10,
            started_at=NOW,
            duration_ms=1,
            hooks=agency_hooks(),
            now=NOW,
        )
    assert sorted(held) == ids
    # The next attempt recorded the ordinary way (the table's own default id) comes after
    # every id the batch numbered itself, and names no other attempt's receipt.
    async with db.transaction() as conn:
        later = (
            await conn.execute(
                ATTEMPTS.insert()
                .values(
                    outbox_id=ids[0],
                    agency_id=AGENCY,
                    attempt_no=2,
                    lease_token=9,
                    outcome="transient",
                    started_at=NOW,
                    duration_ms=1,
                    request_timestamp=1_796_000_000,
                )
                .returning(ATTEMPTS.c.id)
            )
        ).scalar_one()
    async with db.connect() as conn:
        batch_ids = (
            (await conn.execute(sa.select(ATTEMPTS.c.id).where(ATTEMPTS.c.id != later)))
            .scalars()
            .all()
        )
        refs = set(
            (await conn.execute(sa.select(LEAVES.c.ref).where(LEAVES.c.kind == "receipt")))
            .scalars()
            .all()
        )
    assert len(batch_ids) == 3 and later > max(batch_ids)
    assert refs == {f"attempt:{i}" for i in batch_ids}
