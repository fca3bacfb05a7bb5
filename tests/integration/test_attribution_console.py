"""The case page lists the case's attributions, and a dispute of one lands in the mismatch
queue (the console's real app, SQLite and PostgreSQL when configured)."""

from pathlib import Path

from tests.attribution_world import RECEIPT, attributed_receipt, dispute_data
from tests.integration.test_console import Console, console

__all__ = ["console"]


async def test_the_case_page_shows_its_attributions_and_a_dispute_is_queued(
    console: Console, tmp_path: Path
) -> None:
    world = console.world
    [(placement_id, case_id, _balance), *_] = world.placements["AGY_ALPHA"]
    viewer = await console.login("olga")
    empty = await (await viewer.client.get(f"/cases/{case_id}")).text()
    assert "No lender receipt on this case yet." in empty or "本案尚无贷方实收款项。" in empty
    await attributed_receipt(
        world.gateway.db, tmp_path, placement_id=placement_id, agency_id="AGY_ALPHA"
    )
    html = await (await viewer.client.get(f"/cases/{case_id}")).text()
    assert RECEIPT in html and "grace_shared" in html and "40.00%" in html
    assert f"{placement_id}-NEW" in html and "AGY_NEW" in html

    status = await world.post_event("AGY_ALPHA", "attribution.disputed", dispute_data(placement_id))
    assert status == 200
    mismatch_id = await world.mismatch_id("attribution_disputed")
    assert mismatch_id
    queue = await (await viewer.client.get("/mismatches?kind=attribution_disputed")).text()
    assert "1 matching" in queue or "1 条" in queue
    html = await (await viewer.client.get(f"/cases/{case_id}")).text()
    assert html.count("<code>disputed</code>") == 2
