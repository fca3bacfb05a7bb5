"""Waiver, instalment and pause requests end to end, on SQLite and PostgreSQL: signed events
through the real inbound service become pending requests; people decide them within their
role's limits (four eyes above the threshold, one decision when two decide at once); the
agency gets ``request.decided``; a pause holds the case until it ends; a plan's instalments
are expectations and a missed one is a break; promises and settled closes that no approved
terms cover are mismatches."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.approvals import store as approvals
from gateway.clock import to_datetime
from gateway.concessions.decisions import ConcessionService
from gateway.concessions.requests import REQUESTS, get_request, list_requests
from gateway.config.settings import FourEyesSection
from gateway.errors import ConcessionRefused
from gateway.reconciliation.payment_feed import import_feed
from gateway.reconciliation.sla import run_sla_checks
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import Expectation, Mismatch
from tests.case_world import START, CaseWorld, account, build_case_world

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Staff:
    name: str
    role: str


LI, WANG, ZHAO, VIEW = (
    Staff("li", "operator"),
    Staff("wang", "operator"),
    Staff("zhao", "admin"),
    Staff("vi", "viewer"),
)


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    try:
        yield w
    finally:
        await w.gateway.aclose()


def service(world: CaseWorld, *, above: int = 500_000) -> ConcessionService:
    four_eyes = FourEyesSection.model_validate({"concession_approval": {"above": above}})
    return ConcessionService(
        db=world.db,
        clock=world.clock,
        agencies=world.gateway.agencies,
        concessions=world.gateway.settings.concessions,
        four_eyes=four_eyes,
    )


def move_to(world: CaseWorld, when: datetime) -> None:
    world.clock.advance(when.timestamp() - world.clock.now())


def cny(minor: int) -> dict[str, object]:
    return {"amount_minor": minor, "currency": "CNY"}


async def placed(world: CaseWorld, n: int = 1) -> list[dict[str, Any]]:
    """``n`` cases placed and acknowledged by the agency."""
    await world.intake([account(i) for i in range(1, n + 1)])
    assert await world.allocate() == n
    found = await world.placements()
    for p in found:
        status = await world.post(
            "placement.acknowledged",
            {
                "placement_id": p["id"],
                "agency_case_ref": f"REF-{p['id']}",
                "balance": cny(p["balance_minor"]),
            },
        )
        assert status == 200
    return found


async def mismatches(world: CaseWorld, kind: str) -> list[dict[str, Any]]:
    return await world.rows(
        sa.select(MISMATCHES).where(MISMATCHES.c.kind == kind).order_by(MISMATCHES.c.id)
    )


async def request_plan(world: CaseWorld, placement: dict[str, Any], request_id: str) -> date:
    """The agency asks for three monthly instalments of 3,000.00 in all on ``placement``;
    returns the first one's due date."""
    first = START.date() + timedelta(days=5)
    await world.post(
        "instalment.requested",
        {
            "placement_id": placement["id"],
            "request_id": request_id,
            "instalments": 3,
            "first_due_date": first.isoformat(),
            "frequency": "monthly",
            "total": cny(300_000),
            "reason": "salary is monthly",
        },
    )
    return first


async def test_a_waiver_approved_and_one_rejected_are_both_told_to_the_agency(
    world: CaseWorld,
) -> None:
    [p, q] = await placed(world, 2)
    settle = p["balance_minor"] - 50_000
    assert (
        await world.post(
            "waiver.requested",
            {
                "placement_id": p["id"],
                "request_id": "RQ-1",
                "settlement_amount": cny(settle),
                "reason": "unemployed; can pay the rest now",
            },
        )
        == 200
    )
    await world.post(
        "waiver.requested",
        {
            "placement_id": q["id"],
            "request_id": "RQ-2",
            "waive_amount": cny(90_000),
            "reason": "hardship",
        },
    )
    async with world.db.connect() as conn:
        queue = await list_requests(conn, states=["pending"])
    assert [(r.request_id, r.kind, r.terms.waive_minor, r.terms.settle_minor) for r in queue] == [
        ("RQ-1", "waiver", 50_000, settle),
        ("RQ-2", "waiver", 90_000, q["balance_minor"] - 90_000),
    ]
    decide = service(world)
    with pytest.raises(ConcessionRefused, match="vi is viewer, a role without"):
        await decide.decide("AGY_ONE/RQ-1", approve=True, person=VIEW)
    approved = await decide.decide("AGY_ONE/RQ-1", approve=True, person=LI, reason="ok")
    assert (approved.state, approved.decided_by) == ("approved", "li")
    assert approved.valid_until == START.date() + timedelta(days=30)
    with pytest.raises(ConcessionRefused, match="a rejection needs a reason"):
        await decide.decide("AGY_ONE/RQ-2", approve=False, person=LI, reason=" ")
    rejected = await decide.decide(
        "AGY_ONE/RQ-2", approve=False, person=LI, reason="debtor has assets"
    )
    assert rejected.state == "rejected"
    with pytest.raises(ConcessionRefused, match="request AGY_ONE/RQ-2 is rejected"):
        await decide.decide("AGY_ONE/RQ-2", approve=True, person=ZHAO)

    packets = {
        pk["data"]["request_id"]: pk["data"] for pk in await world.packets("request.decided")
    }
    assert packets["RQ-1"]["decision"] == "approved"
    assert packets["RQ-1"]["terms"] == {
        "waive_amount": cny(50_000),
        "settlement_amount": cny(settle),
    }
    assert packets["RQ-1"]["valid_until"] == approved.valid_until.isoformat()
    assert (packets["RQ-2"]["decision"], packets["RQ-2"]["reason"]) == (
        "rejected",
        "debtor has assets",
    )
    assert "terms" not in packets["RQ-2"]
    leaves = await world.leaves("concession", f"concession:{approved.id}")
    assert [(lf["event"], lf["by"], lf["role"]) for lf in leaves] == [("approve", "li", "operator")]


async def test_a_waiver_beyond_role_limits_needs_a_wider_role_and_above_threshold_two_people(
    world: CaseWorld,
) -> None:
    [p] = await placed(world)
    await world.post(
        "waiver.requested",
        {
            "placement_id": p["id"],
            "request_id": "RQ-9",
            "waive_amount": cny(150_000),
            "reason": "x",
        },
    )
    decide = service(world, above=100_000)
    # 150,000 of ~500,000 is 30%: above an operator's 20%.
    with pytest.raises(ConcessionRefused, match="above operator's max_waiver_bps 2000"):
        await decide.decide("AGY_ONE/RQ-9", approve=True, person=LI)
    first = await decide.decide("AGY_ONE/RQ-9", approve=True, person=ZHAO)
    assert (first.state, first.first_by) == ("awaiting_check", "zhao")
    assert await world.packets("request.decided") == []
    with pytest.raises(ConcessionRefused, match="zhao approved it first and cannot also check"):
        await decide.decide("AGY_ONE/RQ-9", approve=True, person=ZHAO)
    with pytest.raises(ConcessionRefused, match="above operator's max_waiver_bps"):
        await decide.decide("AGY_ONE/RQ-9", approve=True, person=WANG)
    second = await decide.decide("AGY_ONE/RQ-9", approve=True, person=Staff("qian", "admin"))
    assert (second.state, second.decided_by) == ("approved", "qian")
    async with world.db.connect() as conn:
        approval = await approvals.get(conn, second.approval_id or 0)
    assert (approval.action, approval.maker, approval.checker, approval.status) == (
        "concession_approval",
        "zhao",
        "qian",
        "approved",
    )
    assert [pk["data"]["decision"] for pk in await world.packets("request.decided")] == ["approved"]


async def test_two_checkers_approving_the_same_request_at_once_make_one_decision(
    world: CaseWorld,
) -> None:
    [p] = await placed(world)
    for n in (1, 2):
        await world.post(
            "waiver.requested",
            {
                "placement_id": p["id"],
                "request_id": f"RQ-{n}",
                "waive_amount": cny(20_000 * n),
                "reason": "x",
            },
        )
    decide = service(world, above=30_000)
    await decide.decide("AGY_ONE/RQ-2", approve=True, person=LI)  # awaiting a second person
    for ref, people in (("AGY_ONE/RQ-1", (LI, WANG)), ("AGY_ONE/RQ-2", (WANG, ZHAO))):
        results = await asyncio.gather(
            *(decide.decide(ref, approve=True, person=who) for who in people),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException)]
        lost = [r for r in results if isinstance(r, BaseException)]
        assert len(won) == 1 and won[0].state == "approved", results
        assert len(lost) == 1 and isinstance(lost[0], ConcessionRefused), results
    packets = await world.packets("request.decided")
    assert sorted(pk["data"]["request_id"] for pk in packets) == ["RQ-1", "RQ-2"]


async def test_an_approved_pause_holds_the_case_until_its_last_day_has_passed(
    world: CaseWorld,
) -> None:
    [p] = await placed(world)
    until = START.date() + timedelta(days=10)
    await world.post(
        "pause.requested",
        {
            "placement_id": p["id"],
            "request_id": "RQ-P",
            "pause_from": START.date().isoformat(),
            "pause_until": until.isoformat(),
            "reason": "hospitalisation",
        },
    )
    decide = service(world)
    record = await decide.decide("AGY_ONE/RQ-P", approve=True, person=LI)
    assert record.valid_until == until
    [hold] = await world.holds(p["case_id"])
    assert (hold["code"], hold["source"]) == ("PAUSE", "ops")
    assert await world.status(p["case_id"]) == "placed"  # the agency keeps the case
    [packet] = await world.packets("request.decided")
    assert packet["data"]["terms"] == {
        "pause_from": START.date().isoformat(),
        "pause_until": until.isoformat(),
    }
    move_to(world, START + timedelta(days=10))
    assert await decide.lift_pauses() == []
    move_to(world, START + timedelta(days=11))
    [lifted] = await decide.lift_pauses()
    assert lifted.request_id == "RQ-P"
    assert await world.holds(p["case_id"]) == []
    assert await decide.lift_pauses() == []


async def test_an_approved_plan_expects_each_instalment_and_a_missed_one_is_a_break(
    world: CaseWorld,
) -> None:
    [p] = await placed(world)
    first = await request_plan(world, p, "RQ-I")
    # Before the plan is approved a promise of part of the balance is an ordinary promise;
    # once it is, a promise must keep to an instalment: less than one is flagged.
    promise = {
        "placement_id": p["id"],
        "amount": cny(100_000),
        "promised_date": first.isoformat(),
    }
    await world.post("promise.made", {**promise, "promise_id": "PR-1"})
    assert await mismatches(world, "unapproved_terms") == []
    await service(world).decide("AGY_ONE/RQ-I", approve=True, person=LI)
    await world.post("promise.made", {**promise, "promise_id": "PR-2"})
    assert await mismatches(world, "unapproved_terms") == []
    await world.post("promise.made", {**promise, "promise_id": "PR-3", "amount": cny(60_000)})
    [short] = await mismatches(world, "unapproved_terms")
    assert (short["severity"], short["placement_id"]) == ("high", p["id"])

    plan = await world.rows(
        sa.select(EXPECTATIONS.c.ref, EXPECTATIONS.c.amount_minor, EXPECTATIONS.c.state)
        .where(EXPECTATIONS.c.ref.like("plan:%"))
        .order_by(EXPECTATIONS.c.ref)
    )
    assert plan == [
        {"ref": "plan:RQ-I:1", "amount_minor": 100_000, "state": "open"},
        {"ref": "plan:RQ-I:2", "amount_minor": 100_000, "state": "open"},
        {"ref": "plan:RQ-I:3", "amount_minor": 100_000, "state": "open"},
    ]
    move_to(world, START + timedelta(days=4))
    await world.post(
        "payment.reported",
        {
            "placement_id": p["id"],
            "payment_id": "PAY-1",
            "amount": cny(100_000),
            "paid_at": to_datetime(world.clock.now()).isoformat(),
        },
    )
    # The second instalment's due date and grace pass without a payment.
    move_to(world, START + timedelta(days=5 + 31 + 3))
    async with world.db.transaction() as conn:
        await run_sla_checks(conn, now=to_datetime(world.clock.now()))
    states = {
        r["ref"]: r["state"]
        for r in await world.rows(
            sa.select(EXPECTATIONS.c.ref, EXPECTATIONS.c.state).where(
                EXPECTATIONS.c.ref.like("plan:%")
            )
        )
    }
    assert states == {"plan:RQ-I:1": "met", "plan:RQ-I:2": "breached", "plan:RQ-I:3": "open"}
    broken = [m["detail"] for m in await mismatches(world, "broken_promise")]
    assert [d for d in broken if "plan:" in d] == [
        f"AGY_ONE sent no payment promised under plan:RQ-I:2 for {p['id']} by "
        f"{first + timedelta(days=31) + timedelta(days=2):%Y-%m-%d} 23:59 UTC"
    ]


async def test_a_settled_close_below_the_balance_needs_an_approved_waiver(
    world: CaseWorld,
) -> None:
    [p, q] = await placed(world, 2)
    for placement, rq in ((p, "RQ-W"), (q, None)):
        if rq:
            await world.post(
                "waiver.requested",
                {
                    "placement_id": placement["id"],
                    "request_id": rq,
                    "waive_amount": cny(50_000),
                    "reason": "x",
                },
            )
            await service(world).decide(f"AGY_ONE/{rq}", approve=True, person=LI)
        await world.post(
            "payment.reported",
            {
                "placement_id": placement["id"],
                "payment_id": f"PAY-{placement['id']}",
                "amount": cny(placement["balance_minor"] - 50_000),
                "paid_at": to_datetime(world.clock.now()).isoformat(),
            },
        )
        await world.post("case.closed", {"placement_id": placement["id"], "reason": "settled"})
    [found] = await mismatches(world, "unapproved_waiver")
    assert (found["placement_id"], found["severity"], found["delta_minor"]) == (
        q["id"],
        "high",
        -50_000,
    )


async def test_a_request_repeated_is_one_request_and_one_on_a_foreign_placement_is_none(
    world: CaseWorld,
) -> None:
    [p] = await placed(world)
    data = {
        "placement_id": p["id"],
        "request_id": "RQ-1",
        "pause_from": START.date().isoformat(),
        "pause_until": START.date().isoformat(),
        "reason": "dispute",
    }
    assert await world.post("pause.requested", data) == 200
    assert await world.post("pause.requested", {**data, "reason": "dispute (again)"}) == 200
    assert await world.post("pause.requested", {**data, "placement_id": "PL-NOPE-1"}) == 403
    rows = await world.rows(sa.select(REQUESTS.c.request_id, REQUESTS.c.reason))
    assert rows == [{"request_id": "RQ-1", "reason": "dispute"}]
    async with world.db.connect() as conn:
        record = await get_request(conn, "AGY_ONE/RQ-1")
    assert json.loads(json.dumps(record.as_dict()))["pause_until"] == START.date().isoformat()


async def test_the_demo_act_approves_one_waiver_and_rejects_the_other(world: CaseWorld) -> None:
    from gateway.demo.concessions import REJECT_REASON, waiver_act

    await placed(world, 3)
    act = await waiver_act(world.gateway)
    assert act.agency_id == "AGY_ONE"
    assert act.approved is not None and act.rejected is not None
    assert (act.approved.state, act.rejected.state) == ("approved", "rejected")
    assert act.rejected.decision_reason == REJECT_REASON
    decided = {p["data"]["request_id"]: p["data"] for p in await world.packets("request.decided")}
    assert {d["decision"] for d in decided.values()} == {"approved", "rejected"}
    assert decided[act.approved.request_id]["terms"]["waive_amount"]["amount_minor"] == (
        act.approved.terms.waive_minor
    )


async def test_a_run_raises_the_term_breaks_arrival_missed_and_never_twice(
    world: CaseWorld,
) -> None:
    [p, q] = await placed(world, 2)
    for placement in (p, q):
        # Closed as settled with nothing collected and no waiver approved.
        await world.post("case.closed", {"placement_id": placement["id"], "reason": "settled"})
    assert len(await mismatches(world, "unapproved_waiver")) == 2
    # As if the first had been stored before the check existed.
    async with world.db.transaction() as conn:
        await conn.execute(
            MISMATCHES.delete().where(
                MISMATCHES.c.kind == "unapproved_waiver", MISMATCHES.c.placement_id == p["id"]
            )
        )
    engine = world.gateway.recon_engine()
    first = await engine.run(full=True)
    assert first.run.counts["new"].get("unapproved_waiver") == 1
    assert sorted(
        m["placement_id"] for m in await mismatches(world, "unapproved_waiver")
    ) == sorted([p["id"], q["id"]])
    again = await engine.run(full=True)
    assert "unapproved_waiver" not in again.run.counts.get("new", ())
    assert len(await mismatches(world, "unapproved_waiver")) == 2


async def test_a_run_raises_a_short_promise_on_an_approved_plan_and_passes_ordinary_ones(
    world: CaseWorld,
) -> None:
    """The run re-checks promises only where terms were approved: a promise short of the
    approved plan is raised again after its arrival break is lost; a promise of part of the
    balance on a placement with nothing approved, before or after, is an ordinary promise."""
    [p, q] = await placed(world, 2)
    first = await request_plan(world, p, "RQ-R")
    await service(world).decide("AGY_ONE/RQ-R", approve=True, person=LI)
    for placement, promise_id in ((p, "PR-S"), (q, "PR-Q")):
        await world.post(
            "promise.made",
            {
                "placement_id": placement["id"],
                "promise_id": promise_id,
                "amount": cny(60_000),
                "promised_date": first.isoformat(),
            },
        )
    [short] = await mismatches(world, "unapproved_terms")
    assert short["placement_id"] == p["id"]
    async with world.db.transaction() as conn:
        await conn.execute(MISMATCHES.delete().where(MISMATCHES.c.kind == "unapproved_terms"))
    run = await world.gateway.recon_engine().run(full=True)
    assert run.run.counts["new"].get("unapproved_terms") == 1
    [again] = await mismatches(world, "unapproved_terms")
    assert (again["placement_id"], json.loads(again["theirs"])["promise_id"]) == (p["id"], "PR-S")


async def test_an_instalment_the_lender_received_is_kept_though_the_agency_reports_nothing(
    world: CaseWorld, tmp_path: Path
) -> None:
    """Under ``lender_collects`` the debtor pays the lender: an approved plan's instalment is
    met by the lender's receipt attributed to the placement in the instalment's window, with
    no ``payment.reported`` from the agency; a receipt short of the next instalment does not
    meet it, and a receipt and its report never count twice."""
    [p] = await placed(world)
    await request_plan(world, p, "RQ-L")
    await service(world).decide("AGY_ONE/RQ-L", approve=True, person=LI)

    def receipt(payment_id: str, amount: int, when: datetime) -> str:
        return f"{payment_id},debtor,{amount},CNY,{when.isoformat()},{p['case_id']}"

    feed = tmp_path / "lender-feed.csv"
    feed.write_text(
        "payment_id,kind,amount_minor,currency,received_at,case_id\n"
        + receipt("LR-1", 100_000, START + timedelta(days=3))
        + "\n"
        + receipt("LR-2", 60_000, START + timedelta(days=20))
        + "\n",
        encoding="utf-8",
    )
    move_to(world, START + timedelta(days=21))
    imported = await import_feed(feed, db=world.db, now=to_datetime(world.clock.now()))
    assert imported.errors == []
    await world.gateway.recon_engine().run()
    credited = await world.rows(
        sa.select(ATTRIBUTIONS.c.placement_id, ATTRIBUTIONS.c.amount_minor).order_by(
            ATTRIBUTIONS.c.id
        )
    )
    assert credited == [
        {"placement_id": p["id"], "amount_minor": 100_000},
        {"placement_id": p["id"], "amount_minor": 60_000},
    ]
    # The agency reports the second receipt too: it still counts once (60,000 < 100,000).
    await world.post(
        "payment.reported",
        {
            "placement_id": p["id"],
            "payment_id": "PAY-LR-2",
            "amount": cny(60_000),
            "paid_at": (START + timedelta(days=20)).isoformat(),
        },
    )
    move_to(world, START + timedelta(days=5 + 31 + 3))
    async with world.db.transaction() as conn:
        await run_sla_checks(conn, now=to_datetime(world.clock.now()))
    states = {
        r["ref"]: r["state"]
        for r in await world.rows(
            sa.select(EXPECTATIONS.c.ref, EXPECTATIONS.c.state).where(
                EXPECTATIONS.c.ref.like("plan:RQ-L:%")
            )
        )
    }
    assert states == {"plan:RQ-L:1": "met", "plan:RQ-L:2": "breached", "plan:RQ-L:3": "open"}
