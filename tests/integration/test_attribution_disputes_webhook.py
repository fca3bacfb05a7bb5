"""``attribution.disputed`` over the webhook channel, through the real inbound API: the
dispute marks the receipt's attribution rows and opens an ``attribution_disputed``
mismatch; the lender resolves it in the queue and releases the rows."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.email.triage import VouchedReplyReader
from gateway.allocation.placements import PlacementService
from gateway.clock import to_datetime
from gateway.config.settings import AllocationSection
from gateway.console.accounts import add_user
from gateway.errors import ActionRefused
from gateway.privacy.pii import PiiKeyRing
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import ActionRequest
from gateway.settlement.disputes import ATTRIBUTIONS
from gateway.store.tables import EvidenceLeaf
from tests.attribution_world import (
    MISMATCHES,
    RECEIPT,
    attributed_receipt,
    check_dispute,
    dispute_data,
    disputes,
)
from tests.integration.test_inbound_api import START, World, ack, event, world

NOW = to_datetime(START)
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]

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


async def test_accepting_the_agencys_claim_moves_the_share_with_its_reason_and_evidence(
    world: World, tmp_path: Path
) -> None:
    """The lender agrees with the agency: accepting the dispute moves the receipt's
    unsettled shares to the placement the agency named, with rule ``moved``, the reason and
    an evidence leaf; a move to a placement of another case, or of a settled share, is
    refused and changes nothing."""
    held, other = world.held["AGY_A"][:2]
    await attributed_receipt(world.db, tmp_path, placement_id=held.placement_id, agency_id="AGY_A")
    assert (await world.post("AGY_A", ack(held))).status == 200
    answer = await world.post(
        "AGY_A", event("attribution.disputed", dispute_data(held.placement_id, 10_000))
    )
    assert answer.status == 200, answer.body
    [mismatch], _ = await disputes(world.db)
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
    wrong_case = ActionRequest("accept", "ana", "their call", placement_id=other.placement_id)
    with pytest.raises(ActionRefused, match="a share moves only to a placement of its own case"):
        await service.act(mismatch["id"], wrong_case)
    assert (await disputes(world.db))[1] == ["disputed", "disputed"]
    # A share a confirmed statement settled never moves.
    new_share = ATTRIBUTIONS.c.placement_id == f"{held.placement_id}-NEW"
    async with world.db.transaction() as conn:
        await conn.execute(ATTRIBUTIONS.update().where(new_share).values(state="settled"))
    with pytest.raises(ActionRefused, match="settled on a confirmed statement"):
        await service.act(mismatch["id"], ActionRequest("accept", "ana", "their call"))
    async with world.db.transaction() as conn:
        await conn.execute(ATTRIBUTIONS.update().where(new_share).values(state="disputed"))

    done = await service.act(
        mismatch["id"], ActionRequest("accept", "ana", "their promise brought the payment")
    )
    assert done.to_state == "resolved"
    assert done.details["to_placement_id"] == held.placement_id
    assert done.details["amount_minor"] == 6_000
    assert done.details["from_placements"] == [f"{held.placement_id}-NEW"]
    rows = await world.rows(
        sa.select(
            ATTRIBUTIONS.c.placement_id,
            ATTRIBUTIONS.c.agency_id,
            ATTRIBUTIONS.c.rule,
            ATTRIBUTIONS.c.state,
            ATTRIBUTIONS.c.amount_minor,
            ATTRIBUTIONS.c.reason,
        ).order_by(ATTRIBUTIONS.c.id)
    )
    assert [tuple(r)[:5] for r in rows] == [
        (held.placement_id, "AGY_A", "moved", "active", 10_000),
    ]
    assert rows[0][5] == (
        f"moved from {held.placement_id}-NEW by ana: their promise brought the payment"
    )
    [leaf] = await world.rows(
        sa.select(LEAVES.c.body).where(
            LEAVES.c.kind == "attribution", LEAVES.c.ref == f"receipt:{RECEIPT}"
        )
    )
    assert b'"moved"' in bytes(leaf[0]) and held.placement_id.encode() in bytes(leaf[0])
