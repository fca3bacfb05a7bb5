"""Ops holds through ``Gateway.cases`` (gateway.cases.holds.CaseService) on SQLite and
PostgreSQL: hold, release and reopen, what each does to the case and its placement, and that
every one is attested."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import GatewayError, NotFound
from tests.case_world import CaseWorld, account, build_case_world


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    await w.intake([account(n) for n in range(3)])
    assert await w.allocate() == 3
    yield w
    await w.gateway.aclose()


async def test_a_hold_on_a_placed_case_recalls_it_and_a_release_reopens_it(
    world: CaseWorld,
) -> None:
    cases = world.gateway.cases
    [placement] = await world.placements("ACC-0000")
    held = await cases.hold("ACC-0000", "deceased", actor="ops:olga", note="family called")
    assert (held.status, held.code, held.recalled_placement_id, held.changed, held.holds) == (
        "held",
        "DECEASED",
        placement["id"],
        True,
        ("DECEASED",),
    )
    [packet] = await world.packets("placement.recalled")
    assert (packet["data"]["placement_id"], packet["data"]["reason_code"]) == (
        placement["id"],
        "DECEASED",
    )
    [hold] = await world.holds("ACC-0000")
    assert (hold["source"], hold["placed_by"], hold["note"]) == ("ops", "ops:olga", "family called")
    [_placed, moved] = await world.history("ACC-0000")
    assert (moved["event"], moved["to_status"], moved["actor"]) == ("hold", "held", "ops:olga")
    assert moved["placement_id"] == placement["id"]

    # The same code again changes nothing; a second code is attested though nothing moves.
    again = await cases.hold("ACC-0000", "DECEASED", actor="ops:olga")
    assert (again.changed, again.status) == (False, "held")
    second = await cases.hold("ACC-0000", "COMPLAINT", actor="ops:vic")
    assert (second.changed, second.status, second.holds) == (
        True,
        "held",
        ("COMPLAINT", "DECEASED"),
    )
    [leaf] = await world.leaves("hold", "case:ACC-0000")
    assert (leaf["action"], leaf["code"], leaf["actor"], leaf["status"]) == (
        "add",
        "COMPLAINT",
        "ops:vic",
        "held",
    )
    assert len(await world.history("ACC-0000")) == 2

    # Releasing one leaves the other standing; releasing the last opens the case.
    first = await cases.release("ACC-0000", "DECEASED", actor="ops:olga", note="wrong person")
    assert (first.status, first.holds) == ("held", ("COMPLAINT",))
    assert len(await world.leaves("hold", "case:ACC-0000")) == 2
    last = await cases.release("ACC-0000", "complaint", actor="ops:olga")
    assert (last.status, last.holds) == ("open", ())
    released = await world.holds("ACC-0000", standing=False)
    assert [(h["code"], h["released_by"]) for h in released] == [
        ("DECEASED", "ops:olga"),
        ("COMPLAINT", "ops:olga"),
    ]
    assert released[0]["release_note"] == "wrong person"
    case_leaves = await world.leaves("case", "case:ACC-0000")
    assert [(c["event"], c["to"]) for c in case_leaves] == [("hold", "held"), ("release", "open")]
    # Open again, it is allocatable again (never back to the agency that had it).
    assert await world.status("ACC-0000") == "open"


async def test_hold_and_release_errors(world: CaseWorld) -> None:
    cases = world.gateway.cases
    with pytest.raises(NotFound, match="case NOPE does not exist"):
        await cases.hold("NOPE", "DECEASED", actor="ops:olga")
    with pytest.raises(GatewayError, match="'two words' is not a hold code"):
        await cases.hold("ACC-0000", "two words", actor="ops:olga")
    with pytest.raises(GatewayError, match="has no standing hold DISPUTE; it has no standing"):
        await cases.release("ACC-0000", "DISPUTE", actor="ops:olga")
    await cases.hold("ACC-0001", "STUDENT", actor="ops:olga")
    with pytest.raises(GatewayError, match="its holds are: STUDENT"):
        await cases.release("ACC-0001", "DISPUTE", actor="ops:olga")
    # Nothing was written by the refusals.
    assert await world.holds("ACC-0000") == []
    assert await world.status("ACC-0000") == "placed"


async def test_reopen_a_recalled_case_for_the_next_allocation(world: CaseWorld) -> None:
    cases = world.gateway.cases
    await world.gateway.placements.recall("ACC-0002", "OPS_REVIEW")
    assert await world.status("ACC-0002") == "recalled"
    assert await cases.reopen("ACC-0002", actor="ops:olga", note="review done") == "returned"
    last = (await world.history("ACC-0002"))[-1]
    assert (last["event"], last["from_status"], last["to_status"], last["reason"]) == (
        "reopen",
        "recalled",
        "returned",
        "review done",
    )
    with pytest.raises(GatewayError, match="is returned: only a recalled or closed case"):
        await cases.reopen("ACC-0002", actor="ops:olga")
    with pytest.raises(NotFound):
        await cases.reopen("NOPE", actor="ops:olga")


async def test_a_closed_case_cannot_be_held_and_reopens_into_its_hold(world: CaseWorld) -> None:
    cases = world.gateway.cases
    await world.intake([account(1, dpd=0)])  # cured: recalled and closed
    assert await world.status("ACC-0001") == "closed"
    with pytest.raises(GatewayError, match="is closed: it cannot be held \\(reopen it first\\)"):
        await cases.hold("ACC-0001", "DISPUTE", actor="ops:olga")
    await world.intake([account(3, balance_minor=0, holds="DECEASED")])
    assert await cases.reopen("ACC-0003", actor="ops:olga") == "held"
