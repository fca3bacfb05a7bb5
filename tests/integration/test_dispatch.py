"""The dispatch path on real databases: ``Dispatcher`` + ``WebhookAdapter`` sending to a real
aiohttp agency endpoint on loopback, time moved by a ``ManualClock``.

Also the SLA checks, whose expectations are created by delivery and met by acknowledgements
arriving through the real inbound API (sometimes before the delivery is even recorded).
"""

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from standardwebhooks.webhooks import Webhook

from adapters.webhook.adapter import WebhookAdapter
from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import BUCKETS, WebhookAgency
from gateway.dispatch import outbox
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.errors import InboundError
from gateway.inbound.service import InboundService, InboundTrust
from gateway.metrics import Metrics
from gateway.ports import ChannelAdapter
from gateway.reconciliation.sla import run_sla_checks
from gateway.server import create_app
from gateway.signing import (
    HmacKey,
    SigningKey,
    VerifyingKey,
    generate_ed25519_pair,
    generate_hmac_secret,
    parse_ed25519_private,
    parse_ed25519_public,
    parse_hmac_secret,
    read_headers,
    sign,
    verify,
)
from gateway.store.database import Database
from gateway.store.tables import (
    AgencyEventRow,
    AgencyStatus,
    DeliveryAttempt,
    EvidenceLeaf,
    Expectation,
    Mismatch,
    OutboxItem,
)

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0

Seeder = Callable[..., Awaitable[list[tuple[str, str, str, int]]]]
"""The ``seed_placements`` fixture (tests/conftest.py): returns (placement, case, agency,
balance) rows."""


def key_pair(scheme: str) -> tuple[SigningKey, VerifyingKey]:
    if scheme == "v1":
        secret = parse_hmac_secret(generate_hmac_secret())
        return secret, secret
    private, public = generate_ed25519_pair()
    return parse_ed25519_private(private), parse_ed25519_public(public)


def library_accepts(key: HmacKey, headers: Mapping[str, str], body: bytes) -> bool:
    """Whether the public Standard Webhooks library (``standardwebhooks``), which shares no
    code with ours, computes one of the ``v1`` signatures the request carries. Its ``verify``
    would also hold the timestamp to the wall clock; these tests run on a manual clock."""
    timestamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    expected = Webhook(key.secret).sign(headers["webhook-id"], timestamp, body)
    return expected in headers["webhook-signature"].split()


@dataclass
class Seen:
    agency_id: str
    webhook_id: str
    timestamp: int
    body: bytes
    status: int
    response: bytes


@dataclass
class Receiver:
    """Agency endpoints on loopback (``POST /hooks/{agency_id}``).

    Verifies every signature, records every request, and answers from a per-agency script
    of statuses (then ``always``, default 200). ``hold`` requests are parked until
    ``release`` is set; ``on_packet`` runs before a 2xx answer (an agency reporting back
    faster than the gateway records the delivery)."""

    clock: ManualClock
    base_url: str = ""
    agencies: dict[str, WebhookAgency] = field(default_factory=dict)
    signing: dict[str, SigningKey] = field(default_factory=dict)
    verifying: dict[str, VerifyingKey] = field(default_factory=dict)
    event_keys: dict[str, tuple[SigningKey, VerifyingKey]] = field(default_factory=dict)
    script: dict[str, list[int]] = field(default_factory=dict)
    always: dict[str, int] = field(default_factory=dict)
    retry_after: str | None = None
    delay: float = 0.0
    hold: int = 0
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    on_packet: Callable[[str, bytes], Awaitable[None]] | None = None
    seen: list[Seen] = field(default_factory=list)
    bad_signatures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def register(
        self,
        agency_id: str,
        *,
        scheme: str = "v1",
        retry: dict[str, object] | None = None,
        sla: dict[str, object] | None = None,
    ) -> WebhookAgency:
        agency = WebhookAgency.model_validate(
            {
                "id": agency_id,
                "name": f"{agency_id} test agency",
                "channel": "webhook",
                "endpoint": {"url": f"{self.base_url}/hooks/{agency_id}", "allow_plain_http": True},
                "signing": {"scheme": scheme, "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
                "inbound": {"scheme": scheme, "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
                "fields": ["debtor.name", "debtor.region"],
                "eligibility": {"buckets": list(BUCKETS)},
                "capacity": {"max_open_placements": 100_000},
                "retry": retry or {},
                "sla": sla or {},
            }
        )
        self.agencies[agency_id] = agency
        self.signing[agency_id], self.verifying[agency_id] = key_pair(scheme)
        self.event_keys[agency_id] = key_pair(scheme)
        return agency

    def requests(self, agency_id: str) -> list[Seen]:
        return [s for s in self.seen if s.agency_id == agency_id]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/{agency_id}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        agency_id = request.match_info["agency_id"]
        body = await request.read()
        try:
            headers = read_headers(request.headers.items())
            verify(headers, body, [self.verifying[agency_id]], now=int(self.clock.now()))
        except InboundError:
            self.bad_signatures += 1
            return web.Response(status=401)
        key = self.verifying[agency_id]
        if isinstance(key, HmacKey) and not library_accepts(key, request.headers, body):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold > 0:
                self.hold -= 1
                self.held.set()
                await self.release.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            queued = self.script.get(agency_id)
            status = queued.pop(0) if queued else self.always.get(agency_id, 200)
            if status < 300 and self.on_packet is not None:
                await self.on_packet(agency_id, body)
        finally:
            self.in_flight -= 1
        answer = json.dumps({"received": headers.msg_id, "status": status}).encode()
        self.seen.append(Seen(agency_id, headers.msg_id, headers.timestamp, body, status, answer))
        extra = {"Retry-After": self.retry_after} if self.retry_after and status >= 500 else {}
        return web.Response(
            status=status, body=answer, content_type="application/json", headers=extra
        )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer, clock: ManualClock) -> Receiver:
    rx = Receiver(clock=clock)
    server = await aiohttp_server(rx.app())
    rx.base_url = str(server.make_url("")).rstrip("/")
    return rx


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def make_dispatcher(
    db: Database,
    rx: Receiver,
    session: aiohttp.ClientSession,
    *,
    worker_id: str = "worker-1",
    batch_size: int = 50,
    lease_seconds: float = 60,
    hooks: ReconciliationHooks | None = None,
) -> Dispatcher:
    adapters: dict[str, ChannelAdapter] = {
        a.id: WebhookAdapter(agency=a, keys=[rx.signing[a.id]], session=session, clock=rx.clock.now)
        for a in rx.agencies.values()
    }
    return Dispatcher(
        db=db,
        adapters=adapters,
        agencies=rx.agencies,
        hooks=hooks or ReconciliationHooks(agencies=rx.agencies),
        clock=rx.clock,
        batch_size=batch_size,
        lease_seconds=lease_seconds,
        worker_id=worker_id,
    )


async def select(db: Database, query: Any) -> list[Any]:
    async with db.connect() as conn:
        return list((await conn.execute(query)).all())


async def outbox_rows(db: Database) -> list[Any]:
    return await select(db, sa.select(OUTBOX).order_by(OUTBOX.c.id))


async def attempt_rows(db: Database) -> list[Any]:
    return await select(db, sa.select(ATTEMPTS).order_by(ATTEMPTS.c.id))


async def mismatch_rows(db: Database, kind: str | None = None) -> list[Any]:
    query = sa.select(MISMATCHES).order_by(MISMATCHES.c.id)
    if kind is not None:
        query = query.where(MISMATCHES.c.kind == kind)
    return await select(db, query)


# -- delivery -------------------------------------------------------------------------------


async def test_a_drain_reports_its_running_totals_after_each_batch(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    """What `agency-gateway dispatch` draws its progress bar from: the items due before the
    drain, then the running totals batch by batch."""
    agency = receiver.register("AGY_A", scheme="v1")
    await seed_placements(db, {agency.id: agency}, 23, clock)
    async with db.connect() as conn:
        assert await outbox.due_count(conn, now=to_datetime(START)) == 23
    dispatcher = make_dispatcher(db, receiver, session, batch_size=5)
    heard: list[tuple[int, int]] = []

    stats = await dispatcher.drain_once(
        on_progress=lambda so_far: heard.append((so_far.claimed, so_far.delivered))
    )

    assert stats.delivered == 23
    assert len(heard) == 5 and heard[-1] == (23, 23)
    assert [c for c, _ in heard] == sorted(c for c, _ in heard)
    async with db.connect() as conn:
        assert await outbox.due_count(conn, now=to_datetime(START)) == 0


@pytest.mark.parametrize("scheme", ["v1", "v1a"])
async def test_queued_packets_are_delivered_with_receipts_evidence_and_expectations(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
    scheme: str,
) -> None:
    agency = receiver.register("AGY_A", scheme=scheme, sla={"ack_hours": 24})
    placed = await seed_placements(db, {agency.id: agency}, 6, clock)
    dispatcher = make_dispatcher(db, receiver, session)

    stats = await dispatcher.drain_once()

    assert (stats.claimed, stats.delivered, stats.retried, stats.dead) == (6, 6, 0, 0)
    assert receiver.bad_signatures == 0
    items = await outbox_rows(db)
    assert [i.state for i in items] == ["delivered"] * 6
    assert all(i.attempts == 1 and i.delivered_at == to_datetime(START) for i in items)
    sent = {s.webhook_id: s for s in receiver.seen}
    assert set(sent) == {i.dedupe_key for i in items}
    for item in items:
        assert sent[item.dedupe_key].body == item.payload
        assert sent[item.dedupe_key].timestamp == int(START)
    attempts = await attempt_rows(db)
    assert sorted(a.outbox_id for a in attempts) == sorted(i.id for i in items)
    by_item = {i.id: i for i in items}
    for a in attempts:
        seen = sent[by_item[a.outbox_id].dedupe_key]
        assert (a.outcome, a.http_status, a.attempt_no, a.lease_token) == ("delivered", 200, 1, 1)
        assert a.response_sha256 == hashlib.sha256(seen.response).hexdigest()
        assert a.request_timestamp == int(START)
    leaves = await select(db, sa.select(LEAVES).where(LEAVES.c.kind == "receipt"))
    assert sorted(leaf.ref for leaf in leaves) == sorted(f"attempt:{a.id}" for a in attempts)
    for leaf in leaves:
        fields = json.loads(leaf.body)
        assert (fields["outcome"], fields["http_status"]) == ("delivered", 200)
    expectations = await select(db, sa.select(EXPECTATIONS))
    assert sorted((x.placement_id, x.kind) for x in expectations) == sorted(
        (pid, kind) for pid, *_ in placed for kind in ("ack", "first_activity")
    )
    due = {x.kind: x.due_at for x in expectations}
    assert due["ack"] == to_datetime(START + 24 * HOUR)
    assert due["first_activity"] == to_datetime(START + 72 * HOUR)

    again = await dispatcher.drain_once()
    assert again.claimed == 0 and len(receiver.seen) == 6


async def test_503_is_retried_later_with_the_same_webhook_id_and_a_fresh_timestamp(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A", retry={"base_seconds": 2, "cap_seconds": 600})
    await seed_placements(db, {agency.id: agency}, 1, clock)
    receiver.script["AGY_A"] = [503]
    receiver.retry_after = "30"
    dispatcher = make_dispatcher(db, receiver, session)

    first = await dispatcher.drain_once()
    assert (first.retried, first.delivered) == (1, 0)
    [item] = await outbox_rows(db)
    # Our own backoff after attempt 1 is 1-2 s; the agency's Retry-After (30 s) wins.
    assert (item.state, item.attempts, item.run_at) == ("pending", 1, to_datetime(START + 30))
    assert (await dispatcher.drain_once()).claimed == 0, "claimed before run_at"

    clock.advance(31)
    second = await dispatcher.drain_once()
    assert second.delivered == 1
    [item] = await outbox_rows(db)
    assert (item.state, item.attempts) == ("delivered", 2)
    one, two = receiver.seen
    assert one.webhook_id == two.webhook_id == item.dedupe_key
    assert one.body == two.body == item.payload
    assert (one.timestamp, two.timestamp) == (int(START), int(START) + 31)
    attempts = await attempt_rows(db)
    assert [(a.attempt_no, a.outcome, a.http_status, a.lease_token) for a in attempts] == [
        (1, "transient", 503, 1),
        (2, "delivered", 200, 2),
    ]
    assert [a.request_timestamp for a in attempts] == [int(START), int(START) + 31]
    leaves = await select(db, sa.select(LEAVES.c.ref).where(LEAVES.c.kind == "receipt"))
    assert sorted(r.ref for r in leaves) == sorted(f"attempt:{a.id}" for a in attempts)


async def test_400_is_dead_at_once_and_raises_a_dead_delivery_mismatch(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A")
    [(pid, *_)] = await seed_placements(db, {agency.id: agency}, 1, clock)
    receiver.always["AGY_A"] = 400
    dispatcher = make_dispatcher(db, receiver, session)

    stats = await dispatcher.drain_once()

    assert (stats.dead, stats.retried, stats.delivered) == (1, 0, 0)
    [item] = await outbox_rows(db)
    assert item.state == "dead" and "HTTP 400" in item.last_error
    [mismatch] = await mismatch_rows(db)
    assert (mismatch.kind, mismatch.outbox_id, mismatch.placement_id, mismatch.agency_id) == (
        "dead_delivery",
        item.id,
        pid,
        "AGY_A",
    )
    assert await select(db, sa.select(EXPECTATIONS)) == []
    clock.advance(24 * HOUR)
    assert (await dispatcher.drain_once()).claimed == 0
    assert len(receiver.seen) == 1


async def test_exhausting_max_attempts_is_dead(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register(
        "AGY_A", retry={"max_attempts": 3, "base_seconds": 1, "cap_seconds": 2}
    )
    await seed_placements(db, {agency.id: agency}, 1, clock)
    receiver.always["AGY_A"] = 500
    dispatcher = make_dispatcher(db, receiver, session)

    outcomes = []
    for _ in range(4):
        stats = await dispatcher.drain_once()
        outcomes.append((stats.claimed, stats.retried, stats.dead))
        clock.advance(10)

    assert outcomes == [(1, 1, 0), (1, 1, 0), (1, 0, 1), (0, 0, 0)]
    [item] = await outbox_rows(db)
    assert (item.state, item.attempts) == ("dead", 3)
    attempts = await attempt_rows(db)
    assert [(a.attempt_no, a.outcome, a.http_status) for a in attempts] == [
        (n, "transient", 500) for n in (1, 2, 3)
    ]
    assert [m.outbox_id for m in await mismatch_rows(db, "dead_delivery")] == [item.id]
    assert len({s.webhook_id for s in receiver.seen}) == 1 and len(receiver.seen) == 3


async def test_410_disables_the_endpoint_and_its_items_are_no_longer_claimed(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    gone = receiver.register("AGY_GONE")
    fine = receiver.register("AGY_FINE")
    await seed_placements(db, {gone.id: gone}, 2, clock, seed=1)
    await seed_placements(db, {fine.id: fine}, 2, clock, seed=2)
    receiver.always["AGY_GONE"] = 410
    dispatcher = make_dispatcher(db, receiver, session)

    stats = await dispatcher.drain_once()

    assert stats.delivered == 2 and stats.by_agency == {"AGY_FINE": 2}
    [status] = await select(db, sa.select(STATUS))
    assert (status.agency_id, status.endpoint_disabled) == ("AGY_GONE", True)
    assert "410" in status.disabled_reason
    # The packets are not at fault: they wait, undelivered and not dead, for ops.
    waiting = [i for i in await outbox_rows(db) if i.agency_id == "AGY_GONE"]
    assert [(i.state, i.attempts) for i in waiting] == [("pending", 1), ("pending", 1)]

    await seed_placements(db, {fine.id: fine}, 1, clock, seed=3)
    clock.advance(HOUR)
    later = await dispatcher.drain_once()
    assert later.by_agency == {"AGY_FINE": 1} and later.claimed == 1
    restarted = make_dispatcher(db, receiver, session, worker_id="worker-2")
    assert (await restarted.drain_once()).claimed == 0, "the switch must survive a restart"
    assert len(receiver.requests("AGY_GONE")) == 2


async def test_circuit_breaker_stops_claims_for_the_agency_until_reset(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    flaky = receiver.register(
        "AGY_FLAKY",
        retry={
            "circuit_failure_threshold": 3,
            "circuit_reset_seconds": 300,
            "base_seconds": 1,
            "cap_seconds": 2,
            "max_attempts": 20,
        },
    )
    fine = receiver.register("AGY_FINE")
    await seed_placements(db, {flaky.id: flaky}, 3, clock, seed=1)
    receiver.always["AGY_FLAKY"] = 503
    dispatcher = make_dispatcher(db, receiver, session)

    first = await dispatcher.drain_once()
    assert (first.claimed, first.retried) == (3, 3)
    assert dispatcher.circuits["AGY_FLAKY"].state == "open"

    await seed_placements(db, {fine.id: fine}, 2, clock, seed=2)
    clock.advance(60)  # the retries are due, the circuit is still open
    while_open = await dispatcher.drain_once()
    assert while_open.claimed == 2 and while_open.by_agency == {"AGY_FINE": 2}
    assert len(receiver.requests("AGY_FLAKY")) == 3

    receiver.always["AGY_FLAKY"] = 200
    clock.advance(300)
    after_reset = await dispatcher.drain_once()
    assert after_reset.by_agency == {"AGY_FLAKY": 3}
    assert dispatcher.circuits["AGY_FLAKY"].state == "closed"
    assert {i.state for i in await outbox_rows(db)} == {"delivered"}


async def test_a_completion_with_a_stale_lease_token_changes_nothing(
    db: Database, receiver: Receiver, clock: ManualClock, seed_placements: Seeder
) -> None:
    agency = receiver.register("AGY_A")
    await seed_placements(db, {agency.id: agency}, 1, clock)
    t0 = to_datetime(START)
    async with db.transaction() as conn:
        [stale] = await outbox.claim(conn, worker="w-old", limit=10, lease_seconds=30, now=t0)
    t1 = t0 + timedelta(seconds=31)
    async with db.transaction() as conn:
        assert await outbox.reap(conn, now=t1) == 1
        [fresh] = await outbox.claim(conn, worker="w-new", limit=10, lease_seconds=30, now=t1)
    assert fresh.id == stale.id and fresh.lease_token == stale.lease_token + 1

    async with db.transaction() as conn:
        assert await outbox.mark_delivered(conn, [(stale.id, stale.lease_token)], now=t1) == set()
        assert not await outbox.mark_failed(
            conn, item_id=stale.id, lease_token=stale.lease_token, state="dead", error="late"
        )
    [row] = await outbox_rows(db)
    assert (row.state, row.lease_owner, row.lease_token, row.last_error) == (
        "leased",
        "w-new",
        fresh.lease_token,
        None,
    )
    async with db.transaction() as conn:
        done = await outbox.mark_delivered(conn, [(fresh.id, fresh.lease_token)], now=t1)
    assert done == {fresh.id}


async def test_a_dispatcher_whose_lease_was_taken_over_cannot_complete(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A")
    await seed_placements(db, {agency.id: agency}, 1, clock)
    slow = make_dispatcher(db, receiver, session, worker_id="slow", lease_seconds=30)
    fast = make_dispatcher(db, receiver, session, worker_id="fast", lease_seconds=30)
    receiver.hold = 1

    # One batch, not drain_once: its other lanes could claim the item once it is reaped.
    slow_run = asyncio.create_task(slow.run_batch())
    await asyncio.wait_for(receiver.held.wait(), 10)
    clock.advance(31)
    taken_over = await fast.drain_once()
    receiver.release.set()
    late = await slow_run

    assert late is not None
    assert (taken_over.reaped, taken_over.delivered) == (1, 1)
    assert (late.delivered, late.lease_lost) == (0, 1)
    [item] = await outbox_rows(db)
    assert (item.state, item.attempts, item.lease_token) == ("delivered", 2, 2)
    attempts = await attempt_rows(db)
    assert sorted((a.lease_token, a.outcome) for a in attempts) == [
        (1, "delivered"),
        (2, "delivered"),
    ]
    assert len(await select(db, sa.select(EXPECTATIONS))) == 2
    assert [s.webhook_id for s in receiver.seen] == [item.dedupe_key] * 2


async def test_per_agency_concurrency_limit_is_respected(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A", retry={"concurrency": 3})
    await seed_placements(db, {agency.id: agency}, 12, clock)
    receiver.delay = 0.05
    stats = await make_dispatcher(db, receiver, session).drain_once()
    assert stats.delivered == 12
    assert receiver.max_in_flight == 3


class SlowRecording(ReconciliationHooks):
    """The domain hooks, with the first recorded group held until ``release``: a recorder
    that has fallen behind the agency's answers."""

    def __init__(self, agencies: Mapping[str, WebhookAgency]) -> None:
        super().__init__(agencies=agencies)
        self.recording = asyncio.Event()
        self.release = asyncio.Event()

    async def on_delivered(self, conn: Any, items: Any, *, now: datetime) -> None:
        self.recording.set()
        await self.release.wait()
        await super().on_delivered(conn, items, now=now)


async def test_senders_wait_for_a_recorder_that_falls_behind(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    """An agency that answers faster than the gateway records gets at most two packets a
    sender ahead of the record, not the rest of the batch: what a crash at that moment
    would send again. Once the recorder catches up, the batch goes out whole."""
    agency = receiver.register("AGY_A", retry={"concurrency": 2})
    await seed_placements(db, {agency.id: agency}, 30, clock)
    hooks = SlowRecording(receiver.agencies)
    drain = asyncio.create_task(
        make_dispatcher(db, receiver, session, batch_size=30, hooks=hooks).drain_once()
    )
    await asyncio.wait_for(hooks.recording.wait(), 30)
    for _ in range(50):  # time for senders that would not wait to run on
        await asyncio.sleep(0.01)
    assert len(receiver.seen) == 4  # 2 senders x UNRECORDED_PER_SENDER
    hooks.release.set()
    stats = await asyncio.wait_for(drain, 60)
    assert stats.delivered == 30
    assert len({s.webhook_id for s in receiver.seen}) == len(receiver.seen) == 30


async def test_the_reaper_returns_expired_leases(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A")
    await seed_placements(db, {agency.id: agency}, 3, clock)
    async with db.transaction() as conn:
        crashed = await outbox.claim(
            conn, worker="crashed", limit=10, lease_seconds=30, now=to_datetime(START)
        )
    assert len(crashed) == 3
    dispatcher = make_dispatcher(db, receiver, session)

    clock.advance(10)
    early = await dispatcher.drain_once()
    assert (early.reaped, early.claimed) == (0, 0)
    clock.advance(21)
    late = await dispatcher.drain_once()
    assert (late.reaped, late.delivered) == (3, 3)
    assert [(a.attempt_no, a.lease_token) for a in await attempt_rows(db)] == [(2, 2)] * 3


async def test_two_dispatchers_on_two_engines_deliver_every_item_exactly_once(
    db: Database,
    database_url: str,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A", retry={"concurrency": 16})
    await seed_placements(db, {agency.id: agency}, 60, clock)
    receiver.delay = 0.02
    other_db = Database(database_url)
    try:
        one = make_dispatcher(db, receiver, session, worker_id="w1", batch_size=5)
        two = make_dispatcher(other_db, receiver, session, worker_id="w2", batch_size=5)
        s1, s2 = await asyncio.gather(one.drain_once(), two.drain_once())
    finally:
        await other_db.dispose()

    assert s1.claimed > 0 and s2.claimed > 0, "both workers must have taken batches"
    assert s1.claimed + s2.claimed == 60
    assert s1.lease_lost == s2.lease_lost == 0
    assert s1.delivered + s2.delivered == 60
    items = await outbox_rows(db)
    assert {i.state for i in items} == {"delivered"}
    counts = Counter(s.webhook_id for s in receiver.seen)
    assert set(counts) == {i.dedupe_key for i in items}
    assert set(counts.values()) == {1}
    per_item = Counter(a.outbox_id for a in await attempt_rows(db))
    assert set(per_item.values()) == {1} and len(per_item) == 60


async def test_a_claim_skips_rows_another_open_claim_holds(
    db: Database, database_url: str, receiver: Receiver, clock: ManualClock, seed_placements: Seeder
) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: BEGIN IMMEDIATE serialises claims instead")
    agency = receiver.register("AGY_A")
    await seed_placements(db, {agency.id: agency}, 10, clock)
    other_db = Database(database_url)
    now = to_datetime(START)
    try:
        async with db.transaction() as first_conn:
            first = await outbox.claim(first_conn, worker="w1", limit=4, lease_seconds=30, now=now)
            async with other_db.transaction() as second_conn:
                # Without SKIP LOCKED this claim would wait for the first transaction to end.
                second = await asyncio.wait_for(
                    outbox.claim(second_conn, worker="w2", limit=4, lease_seconds=30, now=now),
                    timeout=10,
                )
    finally:
        await other_db.dispose()
    assert len(first) == len(second) == 4
    assert not {i.id for i in first} & {i.id for i in second}


# -- SLA --------------------------------------------------------------------------------------


async def post_ack(
    session: aiohttp.ClientSession,
    base_url: str,
    rx: Receiver,
    agency_id: str,
    placement_id: str,
    balance_minor: int,
) -> int:
    body = json.dumps(
        {
            "type": "placement.acknowledged",
            "timestamp": to_datetime(rx.clock.now()).isoformat(),
            "data": {
                "placement_id": placement_id,
                "agency_case_ref": f"REF-{placement_id}",
                "balance": {"amount_minor": balance_minor, "currency": "CNY"},
            },
        }
    ).encode()
    msg_id = f"evt_ack_{hashlib.sha256(placement_id.encode()).hexdigest()[:16]}"
    ts = int(rx.clock.now())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(msg_id, ts, body, [rx.event_keys[agency_id][0]]),
    }
    async with session.post(
        f"{base_url}/v1/agencies/{agency_id}/events", data=body, headers=headers
    ) as response:
        await response.read()
        return response.status


@asynccontextmanager
async def served_inbound(db: Database, rx: Receiver, clock: ManualClock) -> AsyncIterator[str]:
    """The gateway's real inbound API for the receiver's agencies, served on loopback."""
    trust = {
        agency_id: InboundTrust(agency_id, (keys[1],), 300)
        for agency_id, keys in rx.event_keys.items()
    }
    metrics = Metrics()
    inbound = InboundService(
        db=db, trust=trust, clock=clock, metrics=metrics, max_body_bytes=64 * 1024
    )
    runner = web.AppRunner(create_app(inbound=inbound, db=db, metrics_=metrics), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await inbound.aclose()


async def sla_checks(db: Database, at: float) -> dict[str, int]:
    async with db.transaction() as conn:
        return await run_sla_checks(conn, now=to_datetime(at))


async def test_sla_checks_raise_missing_ack_and_missing_activity_once(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A", sla={"ack_hours": 24, "first_activity_hours": 72})
    placed = await seed_placements(db, {agency.id: agency}, 3, clock)
    async with served_inbound(db, receiver, clock) as base_url:
        assert (await make_dispatcher(db, receiver, session).drain_once()).delivered == 3
        acked_pid, _, _, acked_balance = placed[0]
        clock.advance(HOUR)
        status = await post_ack(session, base_url, receiver, "AGY_A", acked_pid, acked_balance)
        assert status == 200

    assert await sla_checks(db, START + 23 * HOUR) == {}
    assert await sla_checks(db, START + 25 * HOUR) == {"missing_ack": 2}
    assert await sla_checks(db, START + 26 * HOUR) == {}
    missing = await mismatch_rows(db, "missing_ack")
    assert sorted(m.placement_id for m in missing) == sorted(p[0] for p in placed[1:])
    assert await sla_checks(db, START + 73 * HOUR) == {"missing_activity": 3}
    assert await sla_checks(db, START + 100 * HOUR) == {}
    assert len(await mismatch_rows(db)) == 5


async def test_an_ack_that_arrives_before_the_delivery_is_recorded_meets_the_expectation(
    db: Database,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    clock: ManualClock,
    seed_placements: Seeder,
) -> None:
    agency = receiver.register("AGY_A", sla={"ack_hours": 24, "first_activity_hours": 72})
    [(pid, _, _, balance)] = await seed_placements(db, {agency.id: agency}, 1, clock)
    expectations_when_acked: list[int] = []

    async with served_inbound(db, receiver, clock) as base_url:

        async def ack_first(agency_id: str, body: bytes) -> None:
            assert await post_ack(session, base_url, receiver, agency_id, pid, balance) == 200
            rows = await select(db, sa.select(EXPECTATIONS))
            expectations_when_acked.append(len(rows))

        receiver.on_packet = ack_first
        assert (await make_dispatcher(db, receiver, session).drain_once()).delivered == 1

    assert expectations_when_acked == [0]
    [event_id] = [r.id for r in await select(db, sa.select(EVENTS.c.id))]
    ack = await select(db, sa.select(EXPECTATIONS).where(EXPECTATIONS.c.kind == "ack"))
    assert [(x.state, x.met_by_event_id) for x in ack] == [("met", event_id)]
    assert await sla_checks(db, START + 25 * HOUR) == {}
    assert await sla_checks(db, START + 73 * HOUR) == {"missing_activity": 1}
