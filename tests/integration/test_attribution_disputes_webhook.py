"""``attribution.disputed`` over the webhook channel, through the real inbound API: the
dispute marks the receipt's attribution rows and opens an ``attribution_disputed``
mismatch; the lender resolves it in the queue and releases the rows."""

from pathlib import Path

import sqlalchemy as sa

from adapters.email.triage import VouchedReplyReader
from gateway.allocation.placements import PlacementService
from gateway.clock import to_datetime
from gateway.config.settings import AllocationSection
from gateway.console.accounts import add_user
from gateway.privacy.pii import PiiKeyRing
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import ActionRequest
from tests.attribution_world import (
    MISMATCHES,
    attributed_receipt,
    check_dispute,
    dispute_data,
    disputes,
)
from tests.integration.test_inbound_api import START, World, ack, event, world

NOW = to_datetime(START)

__all__ = ["world"]


async def test_a_dispute_posted_to_the_api_opens_a_mismatch_with_both_sides(
    world: World, tmp_path: Path
) -> None:
    held = world.held["AGY_A"][0]
    await attributed_receipt(world.db, tmp_path, placement_id=held.placement_id, agency_id="AGY_A")
    assert (await world.post("AGY_A", ack(held))).status == 200
    answer = await world.post(
        "AGY_A", event("attribution.disputed", dispute_data(held.placement_id, 10_000))
    )
    assert answer.status == 200, answer.body
    mismatches, states = await disputes(world.db)
    check_dispute(mismatches, states, placement_id=held.placement_id, agency_id="AGY_A")
    assert (await world.placement(held.placement_id)).state == "acknowledged"

    # a dispute without a claim, on a receipt the lender never had: still a mismatch
    other = dispute_data(held.placement_id, None) | {"receipt_id": "RCPT-UNKNOWN"}
    assert (await world.post("AGY_A", event("attribution.disputed", other))).status == 200
    mismatches, _ = await disputes(world.db)
    assert "does not have" in mismatches[-1]["detail"] and mismatches[-1]["delta_minor"] is None

    # the lender decides in the queue: the receipt's rows count again once no dispute of it
    # is left open (the unknown receipt's dispute names another receipt)
    await add_user(world.db, "ana", "operator", "a long enough password 1", now=NOW)
    service = ResolutionService(
        db=world.db,
        placements=PlacementService(
            db=world.db,
            agencies=world.agencies,
            pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
            settings=AllocationSection(),
            clock=world.clock,
        ),
        agencies=world.agencies,
        clock=world.clock,
        vouched_replies=VouchedReplyReader(base_dir=tmp_path),
    )
    done = await service.act(
        mismatches[0]["id"], ActionRequest("dismiss", "ana", "the payment came after our call")
    )
    assert done.details == {"released_attributions": 2}
    assert (await disputes(world.db))[1] == ["active", "active"]


async def test_a_dispute_on_another_agencys_placement_changes_no_attribution(
    world: World, tmp_path: Path
) -> None:
    held = world.held["AGY_A"][0]
    await attributed_receipt(world.db, tmp_path, placement_id=held.placement_id, agency_id="AGY_A")
    answer = await world.post(
        "AGY_B", event("attribution.disputed", dispute_data(held.placement_id))
    )
    assert answer.status == 403, answer.body  # recorded, changes nothing
    mismatches, states = await disputes(world.db)
    assert mismatches == [] and states == ["active", "active"]
    kinds = await world.rows(sa.select(MISMATCHES.c.kind))
    assert [k for (k,) in kinds] == ["wrong_agency"]
