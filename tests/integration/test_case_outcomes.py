"""A case follows its placement's outcome: signed agency events received through the real
inbound service (and reconciled by gateway.reconciliation.recorder) move the case, on SQLite
and PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.case_world import AGENCY, CaseWorld, account, build_case_world

N = 8


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    await w.intake([account(n) for n in range(N)])
    assert await w.allocate() == N
    yield w
    await w.gateway.aclose()


async def placement_of(world: CaseWorld, case_id: str) -> dict[str, Any]:
    [placement] = await world.placements(case_id)
    return placement


async def acknowledge(world: CaseWorld, *case_ids: str) -> None:
    for case_id in case_ids:
        p = await placement_of(world, case_id)
        status = await world.post(
            "placement.acknowledged",
            {
                "placement_id": p["id"],
                "agency_case_ref": f"EXT-{case_id}",
                "balance": {"amount_minor": p["balance_minor"], "currency": "CNY"},
            },
        )
        assert status == 200


async def test_agency_outcomes_move_the_case(world: CaseWorld) -> None:
    ids = [f"ACC-{n:04d}" for n in range(N)]
    await acknowledge(world, *ids[1:7])
    pid = {case_id: (await placement_of(world, case_id))["id"] for case_id in ids}
    balance = {"amount_minor": 1_000, "currency": "CNY"}
    outcomes = [
        ("placement.rejected", {"placement_id": pid[ids[0]], "reason": "outside our area"}),
        (
            "case.returned",
            {"placement_id": pid[ids[1]], "reason": "uncollectable", "balance": balance},
        ),
        ("case.returned", {"placement_id": pid[ids[2]], "reason": "deceased", "balance": balance}),
        ("case.returned", {"placement_id": pid[ids[3]], "reason": "disputed", "balance": balance}),
        ("case.closed", {"placement_id": pid[ids[4]], "reason": "paid_in_full"}),
        ("case.closed", {"placement_id": pid[ids[5]], "reason": "written_off"}),
        ("case.closed", {"placement_id": pid[ids[6]], "reason": "settled"}),
    ]
    # At once: the inbound writer commits what queued up as one batch.
    answers = await asyncio.gather(*(world.post(t, d) for t, d in outcomes))
    assert answers == [200] * len(outcomes)

    assert await world.statuses() == {
        ids[0]: "returned",
        ids[1]: "returned",
        ids[2]: "held",
        ids[3]: "held",
        ids[4]: "closed",
        ids[5]: "written_off",
        ids[6]: "closed",
        ids[7]: "placed",
    }
    actor = f"agency:{AGENCY}"
    expected = {
        ids[0]: ("reject", "rejected: outside our area"),
        ids[1]: ("return", "returned: uncollectable"),
        ids[2]: ("hold", "returned: deceased"),
        ids[3]: ("hold", "returned: disputed"),
        ids[4]: ("close", "closed: paid_in_full"),
        ids[5]: ("write_off", "closed: written_off"),
        ids[6]: ("close", "closed: settled"),
    }
    for case_id, (event, reason) in expected.items():
        last = (await world.history(case_id))[-1]
        assert (last["event"], last["actor"], last["reason"], last["placement_id"]) == (
            event,
            actor,
            reason,
            pid[case_id],
        ), case_id
    for case_id, code in ((ids[2], "DECEASED"), (ids[3], "DISPUTE")):
        [hold] = await world.holds(case_id)
        assert (hold["code"], hold["source"], hold["placed_by"]) == (code, "agency", actor)
    # Returned and rejected cases are allocatable again, never to the agency that had them;
    # the held ones are not.
    assert await world.allocate() == 0
    assert len(await world.placements()) == N


async def test_the_confirmation_of_our_recall_moves_nothing(world: CaseWorld) -> None:
    await acknowledge(world, "ACC-0000")
    recalled = await world.gateway.placements.recall("ACC-0000", "OPS_REVIEW")
    assert await world.status("ACC-0000") == "recalled"
    before = await world.history("ACC-0000")
    answer = await world.post(
        "case.returned",
        {
            "placement_id": recalled,
            "reason": "deceased",
            "balance": {"amount_minor": 1_000, "currency": "CNY"},
        },
    )
    assert answer == 200
    assert (await placement_of(world, "ACC-0000"))["state"] == "returned"
    assert await world.status("ACC-0000") == "recalled"
    assert await world.history("ACC-0000") == before
    assert await world.holds("ACC-0000") == []


async def test_events_that_end_nothing_move_nothing(world: CaseWorld) -> None:
    await acknowledge(world, "ACC-0000")
    p = await placement_of(world, "ACC-0000")
    payment = {
        "placement_id": p["id"],
        "payment_id": "PAY-1",
        "amount": {"amount_minor": 1_000, "currency": "CNY"},
        "paid_at": "2026-03-02T09:00:00Z",
    }
    assert await world.post("payment.reported", payment) == 200
    # A return of a placement that is not open yet (never acknowledged) is illegal: refused
    # by reconciliation as a mismatch, and the case stays placed.
    q = await placement_of(world, "ACC-0001")
    balance = {"amount_minor": 1_000, "currency": "CNY"}
    returned = {"placement_id": q["id"], "reason": "uncollectable", "balance": balance}
    assert await world.post("case.returned", returned) == 200
    assert await world.status("ACC-0000") == "placed"
    assert await world.status("ACC-0001") == "placed"
    assert [h["event"] for h in await world.history("ACC-0001")] == ["place"]
