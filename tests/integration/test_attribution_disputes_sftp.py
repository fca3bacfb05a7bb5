"""``attribution.disputed`` over SFTP, against a real asyncssh server on loopback (the
sandbox server): a row of the agency's result file (RECEIPT_ID, REASON, AMOUNT_CLAIMED)
becomes the event, which marks the receipt's attribution and opens the mismatch."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.bootstrap import Gateway
from tests.attribution_world import attributed_receipt, check_dispute, dispute_data, disputes
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.integration.test_sftp_pickup import pickup_of, put, render


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(tmp_path, database_url)
    yield w
    await w.aclose()


@pytest.fixture
async def gateway(world: SftpWorld) -> AsyncIterator[Gateway]:
    await seed(world, 2)
    gw = world.gateway()
    try:
        assert (await (await gw.dispatcher()).drain_once()).delivered == 2
        yield gw
    finally:
        await gw.aclose()


async def test_a_dispute_row_in_a_result_file_opens_the_mismatch(
    world: SftpWorld, gateway: Gateway, tmp_path: Path
) -> None:
    async with gateway.db.connect() as conn:
        placement_id = (
            (await conn.execute(sa.text("SELECT id FROM placements ORDER BY id"))).scalars().first()
        )
    assert placement_id is not None
    await attributed_receipt(gateway.db, tmp_path, placement_id=placement_id, agency_id=AGENCY_ID)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = {"type": "attribution.disputed", "timestamp": at, "data": dispute_data(placement_id)}
    body = render(world, "result", [row])
    header = body.split(b"\n")[0]
    assert b",RECEIPT_ID,AMOUNT_CLAIMED" in header
    put(world, f"{AGENCY_ID}_LENDERX_RESULT_20260301_0001.csv", body)
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    mismatches, states = await disputes(gateway.db)
    check_dispute(mismatches, states, placement_id=placement_id, agency_id=AGENCY_ID)
