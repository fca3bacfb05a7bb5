"""Claim confirmation and four eyes on both databases: an intake makes a pending batch with its
totals and differences; nothing of it is allocated until a second person approves it; the
maker's own approval is refused; the approval and the rejection are evidence leaves."""

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.email.triage import VouchedReplyReader
from gateway.approvals import store as approvals
from gateway.approvals.decisions import decide, decide_batch
from gateway.approvals.gates import gate
from gateway.claims import batches
from gateway.clock import to_datetime
from gateway.console.accounts import User, add_user
from gateway.errors import ActionRefused, ApprovalRequired, FourEyesRefused
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import ActionRequest, MismatchFilter
from gateway.store.tables import Case, Mismatch
from tests.case_world import AGENCY, CaseWorld, account, build_case_world

CASES = Case.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PASSWORD = "correct horse battery"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    yield w
    await w.gateway.aclose()


async def people(world: CaseWorld) -> tuple[User, User, User]:
    now = to_datetime(world.clock.now())
    ana = await add_user(world.db, "ana", "operator", PASSWORD, now=now)
    bo = await add_user(world.db, "bo", "admin", PASSWORD, now=now)
    vi = await add_user(world.db, "vi", "viewer", PASSWORD, now=now)
    return ana, bo, vi


def now_of(world: CaseWorld) -> datetime:
    return to_datetime(world.clock.now())


def split(n: int, balance: int) -> dict[str, object]:
    """An account whose balance is broken down (principal due takes the rest)."""
    return account(
        n,
        balance_minor=balance,
        principal_due_minor=balance - 3_000,
        interest_minor=2_000,
        penalty_minor=700,
        fees_minor=300,
        contract_no=f"LC-{n}",
        disbursed_on="2025-01-15",
        annual_rate_bp=2400,
    )


COLUMNS = ["principal_due_minor", "interest_minor", "penalty_minor", "fees_minor"]


async def test_no_case_is_placed_before_a_second_person_approves_its_batch(
    world: CaseWorld,
) -> None:
    ana, bo, vi = await people(world)
    rows = [split(1, 500_000), split(2, 600_000), account(3, holds="DISPUTE")]
    report = await world.intake(rows, confirmation="four_eyes", maker=ana.name)
    batch = report.claim_batch
    assert batch is not None and batch.status == "pending" and batch.maker == "ana"
    assert batch.cases == 3 and batch.differences["new"] == {"cases": 3, "total_minor": 1_600_003}
    [line] = [t for t in batch.totals if t["bucket"] == "M2"]
    assert (line["cases"], line["unbroken"]) == (3, 1)
    assert [line[c] for c in COLUMNS] == [1_094_000, 4_000, 1_400, 600]
    assert batch.holds == {"DISPUTE": 1}
    [stored] = await world.rows(sa.select(CASES).where(CASES.c.id == "ACC-0001"))
    assert (stored["contract_no"], stored["annual_rate_bp"], stored["interest_minor"]) == (
        "LC-1",
        2400,
        2_000,
    )
    assert stored["claim_batch_id"] == batch.id

    preview = await world.gateway.placements.preview()
    assert preview.placed == 0 and preview.reasons["unconfirmed"] == 2  # the third is held
    assert await world.allocate() == 0
    [waiting] = await world.rows(
        sa.select(CASES.c.unallocated_reason).where(CASES.c.id == "ACC-0001")
    )
    assert batch.id in waiting["unallocated_reason"]

    four_eyes = world.gateway.settings.four_eyes
    with pytest.raises(FourEyesRefused, match="ana made this request"):
        await decide_batch(
            world.db, batch.id, approve=True, checker=ana, four_eyes=four_eyes, now=now_of(world)
        )
    with pytest.raises(FourEyesRefused, match="vi is viewer"):
        await decide_batch(
            world.db, batch.id, approve=True, checker=vi, four_eyes=four_eyes, now=now_of(world)
        )
    assert await world.allocate() == 0

    approved = await decide_batch(
        world.db, batch.id, approve=True, checker=bo, four_eyes=four_eyes, now=now_of(world)
    )
    assert (approved.status, approved.decided_by) == ("approved", "bo")
    assert await world.allocate() == 2

    [leaf] = [
        leaf
        for leaf in await world.leaves("approval", f"approval:{batch.approval_id}")
        if leaf["event"] == "approve"
    ]
    assert (leaf["maker"], leaf["checker"], leaf["batch"]) == ("ana", "bo", batch.id)
    assert leaf["by_currency"]["CNY"]["balance_minor"] == 1_600_003
    with pytest.raises(ActionRefused, match="approved"):
        await decide_batch(
            world.db, batch.id, approve=False, checker=bo, four_eyes=four_eyes, now=now_of(world)
        )


async def test_a_rejected_batch_keeps_its_cases_until_a_later_file_is_approved(
    world: CaseWorld,
) -> None:
    _ana, bo, _vi = await people(world)
    four_eyes = world.gateway.settings.four_eyes
    first = await world.intake([account(1), account(2)], confirmation="four_eyes", maker="ana")
    assert first.claim_batch is not None
    async with world.db.transaction() as conn:
        await batches.decide_batch(
            conn,
            first.claim_batch.id,
            approve=False,
            checker=bo.name,
            checker_role=bo.role,
            four_eyes=four_eyes,
            now=now_of(world),
            note="totals do not match the ledger",
        )
    [rejection] = [
        leaf
        for leaf in await world.leaves("approval", f"approval:{first.claim_batch.approval_id}")
        if leaf["event"] == "reject"
    ]
    assert rejection["note"] == "totals do not match the ledger"
    assert await world.allocate() == 0

    # The same file again, one balance lower and one account gone: every listed case joins
    # the new batch (the unchanged one too, as its batch was rejected).
    second = await world.intake(
        [account(1, balance_minor=400_000)], confirmation="four_eyes", maker="ana"
    )
    batch = second.claim_batch
    assert batch is not None
    assert batch.differences["balance_down"] == {"cases": 1, "total_minor": 100_001}
    assert batch.differences["gone"] == {"cases": 1, "total_minor": 500_002}
    assert batch.differences["new"]["cases"] == 0
    await decide(
        world.db,
        int(str(batch.approval_id)),
        approve=True,
        checker=bo,
        four_eyes=four_eyes,
        now=now_of(world),
    )
    assert (await world.gateway.placements.preview()).reasons["unconfirmed"] == 1
    assert await world.allocate() == 1  # ACC-0002 still waits: its batch was rejected
    assert (await world.status("ACC-0001"), await world.status("ACC-0002")) == (
        "placed",
        "open",
    )

    third = await world.intake([account(2)], confirmation="four_eyes", maker="ana")
    assert third.claim_batch is not None and third.unchanged == 1
    [case] = await world.rows(sa.select(CASES.c.claim_batch_id).where(CASES.c.id == "ACC-0002"))
    assert case["claim_batch_id"] == third.claim_batch.id


async def test_confirmation_off_approves_as_system_with_a_leaf_saying_so(world: CaseWorld) -> None:
    report = await world.intake([account(1)], confirmation="off")
    batch = report.claim_batch
    assert batch is not None and (batch.status, batch.decided_by) == ("approved", "system")
    leaves = await world.leaves("claim_batch", f"claim_batch:{batch.id}")
    assert [leaf["event"] for leaf in leaves] == ["imported", "approve"]
    assert leaves[1]["automatic"] is True
    assert await world.allocate() == 1


async def test_large_actions_wait_for_an_approval_that_still_matches(world: CaseWorld) -> None:
    ana, bo, _vi = await people(world)
    four_eyes = world.gateway.settings.four_eyes.model_copy(
        update={
            "bulk_recall": world.gateway.settings.four_eyes.bulk_recall.model_copy(
                update={"above": 1}
            )
        }
    )
    payload = {"agency": "AGY_ONE", "placements": ["P1", "P2"]}

    async def run(approval_id: int | None, what: object = payload) -> int | None:
        return await gate(
            world.db,
            four_eyes,
            action="bulk_recall",
            subject="agency:AGY_ONE",
            size=2,
            payload=what,
            maker=ana,
            approval_id=approval_id,
            now=now_of(world),
            count=2,
        )

    assert (
        await gate(
            world.db,
            four_eyes,
            action="bulk_recall",
            subject="agency:AGY_ONE",
            size=1,
            payload={},
            maker=None,
            approval_id=None,
            now=now_of(world),
        )
        is None
    )  # at the threshold: no second person, no known user needed
    with pytest.raises(FourEyesRefused, match="known maker"):
        await gate(
            world.db,
            four_eyes,
            action="bulk_recall",
            subject="agency:AGY_ONE",
            size=2,
            payload=payload,
            maker=None,
            approval_id=None,
            now=now_of(world),
        )
    with pytest.raises(ApprovalRequired) as asked:
        await run(None)
    approval_id = asked.value.approval_id
    assert approval_id is not None
    with pytest.raises(ActionRefused, match="pending"):
        await run(approval_id)
    with pytest.raises(FourEyesRefused):
        await decide(
            world.db, approval_id, approve=True, checker=ana, four_eyes=four_eyes, now=now_of(world)
        )
    await decide(
        world.db, approval_id, approve=True, checker=bo, four_eyes=four_eyes, now=now_of(world)
    )
    with pytest.raises(ActionRefused, match="different bulk_recall"):
        await run(approval_id, {"agency": "AGY_ONE", "placements": ["P1", "P3"]})
    assert await run(approval_id) == approval_id
    with pytest.raises(ActionRefused, match="executed"):
        await run(approval_id)
    async with world.db.connect() as conn:
        done = await approvals.get(conn, approval_id)
    assert (done.status, done.maker, done.checker) == ("executed", "ana", "bo")
    events = [leaf["event"] for leaf in await world.leaves("approval", f"approval:{approval_id}")]
    assert events == ["request", "approve", "execute"]


async def test_a_large_write_off_waits_for_a_second_person(world: CaseWorld) -> None:
    ana, bo, _vi = await people(world)
    big, small = 2_000_000, 500  # [four_eyes] write_off: above 1,000,000 minor units
    async with world.db.transaction() as conn:
        await insert_mismatches(
            conn,
            [
                (
                    f"k{n}",
                    MismatchDraft("unknown_placement", None, "t", {}, {}, delta),
                    AGENCY,
                    None,
                    None,
                )
                for n, delta in ((1, big), (2, small))
            ],
            now=now_of(world),
        )
        ids = sorted((await conn.execute(sa.select(MISMATCHES.c.id))).scalars())
    service = world.gateway.resolutions()
    done = await service.act(ids[1], ActionRequest("write_off", "ana", "rounding"))
    assert done.to_state == "written_off"  # below the amount: one person is enough
    with pytest.raises(ApprovalRequired) as asked:
        await service.act(ids[0], ActionRequest("write_off", "ana", "lost"))
    approval_id = asked.value.approval_id
    assert approval_id is not None
    async with world.db.connect() as conn:
        state = (
            await conn.execute(sa.select(MISMATCHES.c.state).where(MISMATCHES.c.id == ids[0]))
        ).scalar_one()
        request = await approvals.get(conn, approval_id)
    assert state == "open" and (request.action, request.amount_minor) == ("write_off", big)
    four_eyes = world.gateway.settings.four_eyes
    with pytest.raises(FourEyesRefused):
        await decide(
            world.db, approval_id, approve=True, checker=ana, four_eyes=four_eyes, now=now_of(world)
        )
    await decide(
        world.db, approval_id, approve=True, checker=bo, four_eyes=four_eyes, now=now_of(world)
    )
    written = await service.act(
        ids[0], ActionRequest("write_off", "ana", "lost", approval_id=approval_id)
    )
    assert written.to_state == "written_off"
    async with world.db.connect() as conn:
        assert (await approvals.get(conn, approval_id)).status == "executed"


async def test_a_bulk_recall_of_many_mismatches_waits_for_a_second_person(
    world: CaseWorld,
) -> None:
    _ana, bo, _vi = await people(world)
    await world.intake([account(n) for n in (1, 2, 3)])
    assert await world.allocate() == 3
    placements = [p["id"] for p in await world.placements()]
    async with world.db.transaction() as conn:
        await insert_mismatches(
            conn,
            [
                (pid, MismatchDraft("unknown_placement", pid, "t", {}, {}), AGENCY, None, None)
                for pid in placements
            ],
            now=now_of(world),
        )
    settings = world.gateway.settings.four_eyes
    four_eyes = settings.model_copy(
        update={"bulk_recall": settings.bulk_recall.model_copy(update={"above": 2})}
    )
    service = ResolutionService(
        db=world.db,
        placements=world.gateway.placements,
        agencies=world.gateway.agencies,
        clock=world.clock,
        vouched_replies=VouchedReplyReader(base_dir=world.gateway.settings.base_dir),
        four_eyes=four_eyes,
    )
    everything = MismatchFilter(states=("open",))
    with pytest.raises(ApprovalRequired, match="bulk_recall of 3 placements") as asked:
        await service.bulk(everything, ActionRequest("recall", "ana", "agency closed"))
    approval_id = asked.value.approval_id
    assert approval_id is not None
    assert {p["state"] for p in await world.placements()} == {"placed"}
    await decide(
        world.db, approval_id, approve=True, checker=bo, four_eyes=four_eyes, now=now_of(world)
    )
    done = await service.bulk(
        everything, ActionRequest("recall", "ana", "agency closed", approval_id=approval_id)
    )
    assert len(done.done) == 3 and not done.refused
    assert {p["state"] for p in await world.placements()} == {"recalled"}
