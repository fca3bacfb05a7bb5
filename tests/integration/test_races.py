"""Check-then-act guards under real concurrency, on both databases: the competing calls are
started together (an ``asyncio.Barrier`` releases them at once) on separate connections of
the pool, so on PostgreSQL their transactions truly run in parallel. Each test fails when
its guard is taken out (see the note on each).

* recall: two recalls of one placement queue one ``placement.recalled`` packet
* allocation: two rounds at once never place one case twice
* claim confirmation: two checkers approving at once make one decision; the maker never checks
* bulk mismatch actions: two operators resolving the same set act on each mismatch once
* outbox: concurrent claims take disjoint items; a worker whose lease was taken over
  cannot record its outcome (fencing by lease token)
* notice resend: two resends at once queue each failed notice again once

The login throttle's race (40 parallel guesses) is in test_login_throttle.py.
"""

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer

from adapters.email.triage import VouchedReplyReader
from gateway.approvals.decisions import decide_batch
from gateway.clock import to_datetime
from gateway.console.accounts import User, add_user
from gateway.dispatch import outbox
from gateway.errors import GatewayError
from gateway.notices.content import NOTICE_SENDER
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import ActionRequest, MismatchFilter
from gateway.sandbox.messaging import NOTICES_PATH, SandboxMessagingService
from gateway.signing import parse_hmac_secret
from gateway.store.console_tables import MismatchAction
from gateway.store.tables import OutboxItem
from tests.case_world import AGENCY, CaseWorld, account, build_case_world
from tests.notice_world import NoticeWorld, build_notice_world

T = TypeVar("T")
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ACTIONS = MismatchAction.__table__  # type: ignore[attr-defined]
PASSWORD = "correct horse battery"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    yield w
    await w.gateway.aclose()


async def together(*calls: Callable[[], Awaitable[T]]) -> list[T | BaseException]:
    """Run ``calls`` concurrently, released at the same moment; their results or errors."""
    barrier = asyncio.Barrier(len(calls))

    async def run(call: Callable[[], Awaitable[T]]) -> T:
        await barrier.wait()
        return await call()

    return await asyncio.gather(*(run(c) for c in calls), return_exceptions=True)


def wins(outcomes: list[Any]) -> list[Any]:
    """The calls that succeeded; fails on anything but a GatewayError among the others."""
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, GatewayError):
            raise outcome
    return [o for o in outcomes if not isinstance(o, BaseException)]


# Guard: recall_in's open-placement read and its state change are one step (row lock on
# PostgreSQL, BEGIN IMMEDIATE on SQLite) and the lifecycle move is strict.
async def test_two_recalls_of_one_placement_queue_one_packet(world: CaseWorld) -> None:
    await world.intake([account(n) for n in range(1, 7)])
    assert await world.allocate() == 6
    placements = await world.placements()
    recall = world.gateway.placements.recall
    for placement in placements:
        case_id = str(placement["case_id"])
        outcomes = await together(
            functools.partial(recall, case_id, "R1"), functools.partial(recall, case_id, "R2")
        )
        assert wins(outcomes) == [placement["id"]], outcomes
    recalled = await world.packets("placement.recalled")
    assert Counter(p["data"]["placement_id"] for p in recalled) == Counter(
        {p["id"]: 1 for p in placements}
    )
    for placement in placements:
        history = [h["event"] for h in await world.history(placement["case_id"])]
        assert history.count("recall") == 1, history
        assert len(await world.leaves("recall", f"placement:{placement['id']}")) == 1


# Guard: a round holds the allocation-round lease from its read to its last write, and its
# commit re-checks each group (PlacementService._unchanged).
async def test_two_allocation_rounds_at_once_never_place_a_case_twice(world: CaseWorld) -> None:
    await world.intake([account(n) for n in range(1, 41)])
    outcomes = await together(world.gateway.placements.allocate, world.gateway.placements.allocate)
    reports = wins(outcomes)
    assert sum(r.placed for r in reports) == 40, outcomes
    placed = Counter(p["case_id"] for p in await world.placements())
    assert len(placed) == 40 and set(placed.values()) == {1}
    created = await world.packets("placement.created")
    assert len(created) == 40


async def people(world: CaseWorld, *specs: tuple[str, str]) -> list[User]:
    now = to_datetime(world.clock.now())
    return [await add_user(world.db, name, role, PASSWORD, now=now) for name, role in specs]


# Guard: approvals.store._move changes the status only from the one it read (and the batch
# update is conditioned the same way); check_checker refuses the maker.
async def test_two_checkers_approving_a_claim_batch_at_once_make_one_decision(
    world: CaseWorld,
) -> None:
    ana, bo, cy = await people(world, ("ana", "operator"), ("bo", "admin"), ("cy", "admin"))
    report = await world.intake([account(n) for n in (1, 2, 3)], confirmation="four_eyes",
                                maker=ana.name)  # fmt: skip
    batch = report.claim_batch
    assert batch is not None and batch.status == "pending"
    four_eyes = world.gateway.settings.four_eyes
    now = to_datetime(world.clock.now())

    def approve(checker: User) -> Callable[[], Awaitable[Any]]:
        return lambda: decide_batch(
            world.db, batch.id, approve=True, checker=checker, four_eyes=four_eyes, now=now
        )

    outcomes = await together(approve(ana), approve(bo), approve(cy))
    [winner] = wins(outcomes)
    assert winner.status == "approved" and winner.decided_by in {"bo", "cy"}
    assert isinstance(outcomes[0], GatewayError), "the maker never checks her own batch"
    decisions = [
        leaf["event"] for leaf in await world.leaves("approval", f"approval:{batch.approval_id}")
    ]
    assert Counter(decisions) == Counter({"request": 1, "approve": 1, "execute": 1}), decisions
    assert await world.allocate() == 3


# Guard: ResolutionService._act reads the mismatch under a row lock (PostgreSQL) in the
# transaction that changes it, and refuses an action its state no longer allows. (A recall
# is also stopped by the placement's own guard; a dismissal has only this one.)
@pytest.mark.parametrize("action", ["dismiss", "recall"])
async def test_two_operators_resolving_the_same_mismatches_act_on_each_once(
    world: CaseWorld, action: str
) -> None:
    await people(world, ("ana", "operator"), ("bo", "operator"))
    await world.intake([account(n) for n in range(1, 9)])
    assert await world.allocate() == 8
    placements = [p["id"] for p in await world.placements()]
    now = to_datetime(world.clock.now())
    async with world.db.transaction() as conn:
        await insert_mismatches(
            conn,
            [
                (pid, MismatchDraft("unknown_placement", pid, "t", {}, {}), AGENCY, None, None)
                for pid in placements
            ],
            now=now,
        )
    service = ResolutionService(
        db=world.db,
        placements=world.gateway.placements,
        agencies=world.gateway.agencies,
        clock=world.clock,
        vouched_replies=VouchedReplyReader(base_dir=world.gateway.settings.base_dir),
        four_eyes=None,
    )
    everything = MismatchFilter(states=("open",))
    ana, bo = await together(
        lambda: service.bulk(everything, ActionRequest(action, "ana", "agency closed")),
        lambda: service.bulk(everything, ActionRequest(action, "bo", "agency closed")),
    )
    assert not isinstance(ana, BaseException) and not isinstance(bo, BaseException)
    acted = [d.mismatch_id for d in ana.done] + [d.mismatch_id for d in bo.done]
    assert len(acted) == len(set(acted)) == 8, (ana, bo)
    async with world.db.connect() as conn:
        per_mismatch = Counter(
            (await conn.execute(sa.select(ACTIONS.c.mismatch_id))).scalars().all()
        )
    assert set(per_mismatch.values()) == {1} and len(per_mismatch) == 8
    recalled = await world.packets("placement.recalled")
    assert sorted(p["data"]["placement_id"] for p in recalled) == (
        sorted(placements) if action == "recall" else []
    )


# Guard: the claim's inner SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL; BEGIN IMMEDIATE
# on SQLite) so concurrent claims take disjoint items.
async def test_concurrent_claims_take_disjoint_items(world: CaseWorld) -> None:
    await world.intake([account(n) for n in range(1, 41)])
    assert await world.allocate() == 40
    now = to_datetime(world.clock.now())

    def claimer(n: int) -> Callable[[], Awaitable[list[outbox.ClaimedItem]]]:
        async def claim() -> list[outbox.ClaimedItem]:
            async with world.db.transaction() as conn:
                return await outbox.claim(conn, worker=f"w{n}", limit=8, lease_seconds=60, now=now)

        return claim

    batches = wins(await together(*(claimer(n) for n in range(5))))
    claimed = [item.id for batch in batches for item in batch]
    assert len(claimed) == len(set(claimed)) == 40
    assert {item.lease_token for batch in batches for item in batch} == {1}


# Guard: mark_delivered and mark_failed complete only WHERE lease_token = the worker's.
async def test_a_worker_whose_lease_was_taken_over_cannot_record_its_outcome(
    world: CaseWorld,
) -> None:
    await world.intake([account(n) for n in range(1, 5)])
    assert await world.allocate() == 4
    now = to_datetime(world.clock.now())
    stale: list[outbox.ClaimedItem] = []
    for round_ in range(4):  # four workers in turn let their lease expire
        at = now + timedelta(minutes=round_)
        async with world.db.transaction() as conn:
            await outbox.reap(conn, now=at)
            stale += await outbox.claim(
                conn, worker=f"stale{round_}", limit=4, lease_seconds=30, now=at
            )
    later = now + timedelta(minutes=10)
    async with world.db.transaction() as conn:
        await outbox.reap(conn, now=later)
        current = await outbox.claim(conn, worker="current", limit=4, lease_seconds=60, now=later)
    assert len(stale) == 16 and len(current) == 4

    def delivered(item: outbox.ClaimedItem) -> Callable[[], Awaitable[bool]]:
        async def record() -> bool:
            async with world.db.transaction() as conn:
                held = await outbox.mark_delivered(conn, [(item.id, item.lease_token)], now=later)
                return item.id in held

        return record

    def failed(item: outbox.ClaimedItem) -> Callable[[], Awaitable[bool]]:
        async def record() -> bool:
            async with world.db.transaction() as conn:
                return await outbox.mark_failed(
                    conn, item_id=item.id, lease_token=item.lease_token, state="dead", error="x"
                )

        return record

    stale_outcomes = await together(
        *(delivered(i) if n % 2 else failed(i) for n, i in enumerate(stale))
    )
    assert stale_outcomes == [False] * 16, "no stale worker may record an outcome"
    async with world.db.connect() as conn:
        rows = (await conn.execute(sa.select(OUTBOX.c.state, OUTBOX.c.lease_owner))).all()
    assert set(rows) == {("leased", "current")}
    assert await together(*(delivered(i) for i in current)) == [True] * 4


@pytest.fixture
async def messaging() -> AsyncIterator[tuple[SandboxMessagingService, TestServer]]:
    service = SandboxMessagingService(verify_keys=[])
    server = TestServer(service.app(), host="127.0.0.1")
    await server.start_server()
    yield service, server
    await server.close()


@pytest.fixture
async def notice_world(
    make_config: Any,
    tmp_path: Path,
    database_url: str,
    messaging: tuple[SandboxMessagingService, TestServer],
) -> AsyncIterator[NoticeWorld]:
    service, server = messaging
    w = await build_notice_world(
        make_config, tmp_path, database_url, messaging_url=str(server.make_url(NOTICES_PATH))
    )
    service._keys = (parse_hmac_secret(w.notice_secret),)
    yield w
    await w.gateway.aclose()


# Guard: resend_failed changes only notices still ``failed`` (and outbox.requeue only items
# still dead or unknown), so a second resend at the same moment finds nothing to resend.
async def test_two_resends_at_once_queue_each_failed_notice_once(
    notice_world: NoticeWorld, messaging: tuple[SandboxMessagingService, TestServer]
) -> None:
    world = notice_world
    service, _server = messaging
    service.refuse_with = 400
    await world.intake([account(n) for n in range(1, 5)])
    assert await world.allocate() == 4
    await world.issue_letters()
    await world.gateway.notices.scan()
    dispatcher = await world.gateway.dispatcher()
    await dispatcher.drain_once()
    assert (await world.gateway.notices.counts())["failed"] == 4

    service.refuse_with = None
    outcomes = await together(
        world.gateway.notices.resend_failed, world.gateway.notices.resend_failed
    )
    assert sorted(wins(outcomes)) == [0, 4], "the second resend found nothing left to resend"
    assert (await world.gateway.notices.counts())["queued"] == 4
    async with world.db.connect() as conn:
        requeued = (
            await conn.execute(
                sa.select(OUTBOX.c.state, OUTBOX.c.attempts).where(
                    OUTBOX.c.agency_id == NOTICE_SENDER
                )
            )
        ).all()
    assert requeued == [("pending", 0)] * 4
