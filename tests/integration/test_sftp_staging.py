"""Staging a file batch chunk by chunk (each chunk is rendered while the dispatcher claims the
next): rows keep their order across chunks, a row the layout refuses is reported alone, and
a batch closed before it is flushed leaves nothing behind. Real asyncssh server on loopback."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sftp.adapter import SftpAdapter
from gateway.bootstrap import Gateway
from gateway.errors import PermanentDeliveryError
from gateway.ports import BatchDelivered, OutboundPacket
from gateway.store.tables import OutboxItem
from gateway.store.transfer_tables import FileBatchItem
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ITEMS = FileBatchItem.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(tmp_path, database_url)
    yield w
    await w.aclose()


def packet(outbox_id: int, placement_id: str, balance: object) -> OutboundPacket:
    body = {"type": "placement.created", "data": {"placement_id": placement_id}}
    if balance is not None:
        body["data"]["balance"] = balance  # type: ignore[index]
    return OutboundPacket(
        outbox_id, f"pkt_{outbox_id}", AGENCY_ID, "placement.created", json.dumps(body).encode(), 1
    )


MONEY = {"amount_minor": 100, "currency": "CNY"}


@asynccontextmanager
async def seeded(
    world: SftpWorld, count: int
) -> AsyncIterator[tuple[Gateway, list[int], SftpAdapter]]:
    """``count`` seeded placements: the gateway, their outbox ids in order, the SFTP adapter."""
    await seed(world, count)
    gateway = world.gateway()
    try:
        async with gateway.db.connect() as conn:
            ids = sorted((await conn.execute(sa.select(OUTBOX.c.id))).scalars())
        adapter = (await gateway.dispatcher()).adapters[AGENCY_ID]
        assert isinstance(adapter, SftpAdapter)
        yield gateway, ids, adapter
    finally:
        await gateway.aclose()


async def test_chunks_keep_their_order_and_a_refused_row_is_reported_alone(
    world: SftpWorld,
) -> None:
    async with seeded(world, 4) as (gateway, ids, adapter):
        builder = adapter.open_batch()
        try:
            await builder.stage([packet(ids[0], "PL-A", MONEY), packet(ids[1], "PL-B", "12")])
            await builder.stage([packet(ids[2], "PL-C", MONEY)])
            await builder.stage([packet(ids[3], "PL-D", None)])
            reports = [report async for report in builder.flush()]
        finally:
            await builder.aclose()
        [delivered] = [r for r in reports if isinstance(r, BatchDelivered)]
        [[(refused_id, error)]] = [r for r in reports if not isinstance(r, BatchDelivered)]
        assert refused_id == ids[1] and isinstance(error, PermanentDeliveryError)
        assert "line 3: BALANCE" in str(error)
        async with gateway.db.connect() as conn:
            members = (
                await conn.execute(
                    sa.select(ITEMS.c.outbox_id, ITEMS.c.record_no, ITEMS.c.line_no)
                    .where(ITEMS.c.batch_id == delivered.batch_id)
                    .order_by(ITEMS.c.record_no)
                )
            ).all()
        assert [tuple(m) for m in members] == [(ids[0], 1, 2), (ids[2], 2, 3), (ids[3], 3, 4)]
        name = delivered.remote_path.rpartition("/")[2]
        lines = (world.path("inbox") / name).read_text(encoding="utf-8").splitlines()
        assert [line.split(",")[2] for line in lines[1:]] == ["PL-A", "PL-C", "PL-D"]


async def test_a_batch_closed_before_its_flush_leaves_no_spool_and_no_member(
    world: SftpWorld,
) -> None:
    async with seeded(world, 2) as (gateway, ids, adapter):
        builder = adapter.open_batch()
        await builder.stage([packet(ids[0], "PL-A", MONEY)])
        await builder.stage([packet(ids[1], "PL-B", MONEY)])
        await builder.aclose()
        spool = adapter.drop.spool_dir
        assert not spool.exists() or list(spool.iterdir()) == []
        async with gateway.db.connect() as conn:
            members = (await conn.execute(sa.select(ITEMS.c.outbox_id))).scalars().all()
        # The first chunk was recorded when the second was staged; the second never was.
        assert members == [ids[0]]
        assert world.files("inbox") == []
