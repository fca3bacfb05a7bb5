"""The sandbox webhook agency over real loopback HTTP: packets in, signed events out."""

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import TypeAdapter
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.dispatch.packets import render_deletion_request
from gateway.errors import InboundError
from gateway.sandbox import (
    PLACEMENT_FAULTS,
    EventPlanner,
    PlannedEvent,
    SandboxWebhookAgency,
    plan_placement,
)
from gateway.sandbox.agency_script import LENDER_RULES
from gateway.signing import (
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
from schemas.base import Money
from schemas.events import (
    AGENCY_EVENT_ADAPTER,
    AgencyEvent,
    PaymentReported,
    PlacementAcknowledged,
)
from schemas.packets import (
    CasePacket,
    Debtor,
    PaymentDirect,
    PaymentDirectData,
    PlacementAmended,
    PlacementAmendedData,
    PlacementCreated,
    PlacementCreatedData,
    PlacementRecalled,
    PlacementRecalledData,
)

CASE_PACKET: TypeAdapter[CasePacket] = TypeAdapter(CasePacket)
AGENCY = "acme-collect"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SCHEMES = ["v1", "v1a"]
Packet = PlacementCreated | PlacementAmended | PlacementRecalled
Client = TestClient[web.Request, web.Application]


def key_pair(scheme: str) -> tuple[SigningKey, VerifyingKey]:
    if scheme == "v1":
        secret = parse_hmac_secret(generate_hmac_secret())
        return secret, secret
    private, public = generate_ed25519_pair()
    return parse_ed25519_private(private), parse_ed25519_public(public)


def created(placement_id: str, **overrides: object) -> PlacementCreated:
    currency = str(overrides.pop("currency", "CNY"))
    balance = int(str(overrides.pop("balance", 250_000)))
    fields: dict[str, object] = {
        "packet_id": f"pkt_created_{placement_id}",
        "placement_id": placement_id,
        "case_id": f"C-{placement_id}",
        "bucket": "M2",
        "dpd": 45,
        "balance": Money(amount_minor=balance, currency=currency),
        "principal": Money(amount_minor=balance, currency=currency),
        "due_date": date(2026, 1, 15),
        "product": "consumer-loan",
        "credit_grade": "C",
        "debtor": Debtor(debtor_id=f"D-{placement_id}", region="CN-31"),
        "placed_at": NOW,
        "return_by": date(2026, 6, 30),
    }
    fields.update(overrides)
    return PlacementCreated(
        type="placement.created", timestamp=NOW, data=PlacementCreatedData.model_validate(fields)
    )


def recalled(placement_id: str) -> PlacementRecalled:
    data = PlacementRecalledData(
        packet_id=f"pkt_recalled_{placement_id}",
        placement_id=placement_id,
        case_id=f"C-{placement_id}",
        reason_code="LENDER_RECALL",
        recalled_at=datetime.now(UTC),
    )
    return PlacementRecalled(type="placement.recalled", timestamp=datetime.now(UTC), data=data)


def amended(placement_id: str, balance: int, previous: int) -> PlacementAmended:
    data = PlacementAmendedData(
        packet_id=f"pkt_amended_{placement_id}",
        placement_id=placement_id,
        case_id=f"C-{placement_id}",
        version=2,
        balance=Money(amount_minor=balance, currency="CNY"),
        previous_balance=Money(amount_minor=previous, currency="CNY"),
        reason="hardship settlement",
    )
    return PlacementAmended(type="placement.amended", timestamp=NOW, data=data)


def body_of(packet: Packet) -> bytes:
    return packet.model_dump_json(exclude_none=True).encode()


def signed(msg_id: str, body: bytes, key: SigningKey, *, at: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(msg_id, timestamp, body, [key]),
    }


async def post_packet(client: Client, packet: Packet, key: SigningKey) -> aiohttp.ClientResponse:
    body = body_of(packet)
    return await client.post("/hooks", data=body, headers=signed(packet.data.packet_id, body, key))


@dataclass
class StandInGateway:
    """The gateway's inbound events route, reduced to: verify, dedupe, validate, record."""

    agency_id: str
    keys: list[VerifyingKey]
    fail_first: int = 0
    stored: dict[str, bytes] = field(default_factory=dict)
    events: list[AgencyEvent] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    conflicts: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/agencies/{agency_id}/events", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.match_info["agency_id"] != self.agency_id:
            return web.json_response({"title": "Unknown agency"}, status=404)
        try:
            headers = read_headers(request.headers.items())
            verify(headers, body, self.keys, now=int(time.time()))
        except InboundError as exc:
            return web.json_response({"title": exc.title}, status=exc.status)
        self.attempts[headers.msg_id] += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.json_response({}, status=503, headers={"Retry-After": "0"})
        previous = self.stored.get(headers.msg_id)
        if previous is not None:
            if previous != body:
                self.conflicts.append(headers.msg_id)
                return web.json_response({"title": "Conflicting duplicate"}, status=409)
            return web.json_response({"duplicate": True})
        event = AGENCY_EVENT_ADAPTER.validate_json(body)
        self.stored[headers.msg_id] = body
        self.events.append(event)
        return web.json_response({"stored": headers.msg_id}, status=202)

    def by_placement(self) -> dict[str, list[AgencyEvent]]:
        grouped: dict[str, list[AgencyEvent]] = defaultdict(list)
        for event in self.events:
            grouped[getattr(event.data, "placement_id", "")].append(event)
        return grouped


# -- receiving packets ---------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_a_signed_packet_is_accepted_and_a_duplicate_is_not_processed_again(
    aiohttp_client: AiohttpClient, scheme: str
) -> None:
    gateway_key, our_verify_key = key_pair(scheme)
    agency_key, _ = key_pair(scheme)
    agency = SandboxWebhookAgency(
        agency_id=AGENCY,
        verify_keys=[our_verify_key],
        signing_keys=[agency_key],
        seed=1,
        fault_rate=0.0,
    )
    client = await aiohttp_client(agency.app())
    packet = created("PL-1", balance=123_456)

    first = await post_packet(client, packet, gateway_key)
    assert first.status == 200
    assert await first.json() == {"received": packet.data.packet_id}
    pending = agency.pending_events
    assert pending > 0

    again = await post_packet(client, packet, gateway_key)
    assert again.status == 200
    assert (await again.json())["duplicate"] is True

    stats = await (await client.get("/stats")).json()
    assert stats["packets_received"] == 1
    assert stats["duplicates"] == 1
    assert stats["packets_by_type"] == {"placement.created": 1}
    assert stats["pending_events"] == pending
    assert agency.planner.cases["PL-1"].loaded_balance == 123_456


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_signature_and_timestamp_failures_are_401(
    aiohttp_client: AiohttpClient, scheme: str
) -> None:
    gateway_key, our_verify_key = key_pair(scheme)
    stranger_key, _ = key_pair(scheme)
    agency = SandboxWebhookAgency(
        agency_id=AGENCY,
        verify_keys=[our_verify_key],
        signing_keys=[key_pair(scheme)[0]],
        seed=1,
        fault_rate=0.0,
    )
    client = await aiohttp_client(agency.app())
    body = body_of(created("PL-1"))

    forged = await client.post("/hooks", data=body, headers=signed("pkt_a", body, stranger_key))
    assert forged.status == 401
    assert forged.content_type == "application/problem+json"
    assert (await forged.json())["type"].endswith("invalid-signature")

    stale = int(time.time()) - 1_000
    late = await client.post(
        "/hooks", data=body, headers=signed("pkt_a", body, gateway_key, at=stale)
    )
    assert late.status == 401
    assert (await late.json())["type"].endswith("stale-timestamp")

    headers = signed("pkt_a", body, gateway_key)
    del headers["webhook-signature"]
    bare = await client.post("/hooks", data=body, headers=headers)
    assert bare.status == 400

    assert agency.stats.packets_received == 0
    assert agency.planner.cases == {}


async def test_schema_violations_are_422_and_do_not_burn_the_webhook_id(
    aiohttp_client: AiohttpClient,
) -> None:
    gateway_key, our_verify_key = key_pair("v1")
    agency = SandboxWebhookAgency(
        agency_id=AGENCY,
        verify_keys=[our_verify_key],
        signing_keys=[gateway_key],
        seed=1,
        fault_rate=0.0,
    )
    client = await aiohttp_client(agency.app())
    good = body_of(created("PL-1"))
    document = json.loads(good)
    document["data"]["balance"]["amount_minor"] = -5
    bad = json.dumps(document).encode()
    msg_id = "pkt_created_PL-1"

    refused = await client.post("/hooks", data=bad, headers=signed(msg_id, bad, gateway_key))
    assert refused.status == 422
    problem = await refused.json()
    assert "data.balance" in problem["detail"]

    garbage = b"{not json"
    malformed = await client.post(
        "/hooks", data=garbage, headers=signed(msg_id, garbage, gateway_key)
    )
    assert malformed.status == 400

    wrong_id = await client.post(
        "/hooks", data=good, headers=signed("pkt_other", good, gateway_key)
    )
    assert wrong_id.status == 422

    accepted = await client.post("/hooks", data=good, headers=signed(msg_id, good, gateway_key))
    assert accepted.status == 200
    assert await accepted.json() == {"received": msg_id}
    assert agency.stats.packets_refused == {"422": 2, "400": 1}


async def test_fault_switches_answer_503_then_accept(aiohttp_client: AiohttpClient) -> None:
    gateway_key, our_verify_key = key_pair("v1")
    agency = SandboxWebhookAgency(
        agency_id=AGENCY,
        verify_keys=[our_verify_key],
        signing_keys=[gateway_key],
        seed=1,
        fault_rate=0.0,
        fail_next=2,
    )
    client = await aiohttp_client(agency.app())
    packet = created("PL-1")

    for _ in range(2):
        busy = await post_packet(client, packet, gateway_key)
        assert busy.status == 503
        assert busy.headers["Retry-After"] == "1"
    agency.status_override = 500
    assert (await post_packet(client, packet, gateway_key)).status == 500
    agency.status_override = None
    assert (await post_packet(client, packet, gateway_key)).status == 200
    assert agency.stats.packets_received == 1


async def test_a_slow_answer_times_the_sender_out_but_the_resend_is_a_duplicate(
    aiohttp_client: AiohttpClient,
) -> None:
    gateway_key, our_verify_key = key_pair("v1")
    agency = SandboxWebhookAgency(
        agency_id=AGENCY,
        verify_keys=[our_verify_key],
        signing_keys=[gateway_key],
        seed=1,
        fault_rate=0.0,
        delay_seconds=1.5,
    )
    client = await aiohttp_client(agency.app())
    packet = created("PL-1")
    body = body_of(packet)
    with pytest.raises(TimeoutError):
        await client.post(
            "/hooks",
            data=body,
            headers=signed(packet.data.packet_id, body, gateway_key),
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    agency.delay_seconds = 0
    resent = await post_packet(client, packet, gateway_key)
    assert (await resent.json())["duplicate"] is True
    assert agency.stats.packets_received == 1


# -- pushing events -------------------------------------------------------------------------


async def run_agency(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    *,
    scheme: str = "v1",
    fault_rate: float = 0.0,
    fail_first: int = 0,
    seed: int = 7,
    connect: bool = True,
) -> tuple[SandboxWebhookAgency, StandInGateway, Client, SigningKey, str]:
    gateway_key, our_verify_key = key_pair("v1")
    agency_key, agency_public = key_pair(scheme)
    standin = StandInGateway(AGENCY, [agency_public], fail_first=fail_first)
    server = await aiohttp_server(standin.app())
    url = str(server.make_url("/"))
    agency = SandboxWebhookAgency(
        agency_id=AGENCY,
        verify_keys=[our_verify_key],
        signing_keys=[agency_key],
        gateway_url=url if connect else None,
        seed=seed,
        fault_rate=fault_rate,
        backoff_base=0.01,
    )
    client = await aiohttp_client(agency.app())
    return agency, standin, client, gateway_key, url


def payments_of(events: list[AgencyEvent]) -> list[PaymentReported]:
    return [e for e in events if isinstance(e, PaymentReported)]


def acks_of(events: list[AgencyEvent]) -> list[PlacementAcknowledged]:
    return [e for e in events if isinstance(e, PlacementAcknowledged)]


@pytest.mark.parametrize("scheme", SCHEMES)
async def test_honest_events_reach_the_gateway_signed_and_in_order(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, scheme: str
) -> None:
    agency, standin, client, gateway_key, _ = await run_agency(
        aiohttp_client, aiohttp_server, scheme=scheme
    )
    sent = {f"PL-{i}": created(f"PL-{i}", balance=10_000 + 7_919 * i) for i in range(12)}
    sent["PL-usd"] = created("PL-usd", balance=50_000, currency="USD")
    for packet in sent.values():
        assert (await post_packet(client, packet, gateway_key)).status == 200

    assert await agency.drain(30)

    stats = agency.stats_json()
    assert stats["events_refused"] == {}
    assert stats["faults_sent"] == {}
    assert stats["events_abandoned"] == 0
    assert stats["pending_events"] == 0
    assert len(standin.events) == sum(agency.stats.events_sent.values())
    assert standin.conflicts == []
    grouped = standin.by_placement()
    assert set(grouped) == set(sent)
    for placement_id, events in grouped.items():
        balance = sent[placement_id].data.balance
        acks = acks_of(events)
        assert len(acks) == 1
        assert events[0] is acks[0]
        assert acks[0].data.balance == balance
        paid = [p.data.amount for p in payments_of(events)]
        assert all(m.currency == balance.currency for m in paid)
        total = sum(m.amount_minor for m in paid)
        assert total <= balance.amount_minor
        closed = [e for e in events if e.type == "case.closed"]
        assert bool(closed) == (total == balance.amount_minor)
        if closed:
            assert events[-1] is closed[0]
    assert Counter(e.type for e in standin.events)["payment.reported"] > 0


async def test_every_fault_kind_is_delivered_with_fault_rate_one(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> None:
    agency, standin, client, gateway_key, _ = await run_agency(
        aiohttp_client, aiohttp_server, fault_rate=1.0
    )
    sent = {f"PL-{i}": created(f"PL-{i}", balance=40_000 + 101 * i) for i in range(30)}
    for packet in sent.values():
        assert (await post_packet(client, packet, gateway_key)).status == 200
    assert await agency.drain(30)
    before_recall = len(standin.events)
    to_recall = ["PL-0", "PL-1", "PL-2"]
    for placement_id in to_recall:
        assert (await post_packet(client, recalled(placement_id), gateway_key)).status == 200
    assert await agency.drain(30)

    assert set(agency.stats.faults_sent) == {*PLACEMENT_FAULTS, "activity_after_recall"}
    assert agency.stats.faults_sent["activity_after_recall"] == len(to_recall)
    assert agency.stats.events_refused == {}
    assert {f.kind for f in agency.fault_log} == set(agency.stats.faults_sent)

    # Each fault is visible in what the gateway received.
    grouped = standin.by_placement()
    assert set(grouped) - set(sent), "a payment on a placement that was never sent"
    acks = acks_of(standin.events)
    assert any(a.data.balance != sent[a.data.placement_id].data.balance for a in acks)
    payments = [p for p in payments_of(standin.events) if p.data.placement_id in sent]
    assert any(p.data.amount.currency == "USD" for p in payments)
    totals: Counter[str] = Counter()
    for p in payments:
        if p.data.amount.currency == "CNY":
            totals[p.data.placement_id] += p.data.amount.amount_minor
    assert any(totals[pid] > sent[pid].data.balance.amount_minor for pid in totals)
    assert standin.conflicts, "the conflicting duplicate reached the gateway and got 409"
    after = payments_of(standin.events[before_recall:])
    assert {p.data.placement_id for p in after} == set(to_recall)


async def test_a_503_from_the_gateway_is_retried_with_the_same_id(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> None:
    agency, standin, client, gateway_key, _ = await run_agency(
        aiohttp_client, aiohttp_server, fail_first=3
    )
    for i in range(3):
        assert (await post_packet(client, created(f"PL-{i}"), gateway_key)).status == 200
    assert await agency.drain(30)

    assert agency.stats.retries == 3
    assert agency.stats.events_refused == {}
    assert agency.stats.events_abandoned == 0
    assert len(standin.stored) == sum(agency.stats.events_sent.values())
    assert sum(standin.attempts.values()) == len(standin.stored) + 3
    assert max(standin.attempts.values()) >= 2


async def test_amendment_and_recall_before_sending_change_what_is_sent(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> None:
    agency, standin, client, gateway_key, url = await run_agency(
        aiohttp_client, aiohttp_server, connect=False
    )
    paying = next(
        f"PL-{i}"
        for i in range(200)
        if any(
            e.type == "case.closed"
            for e in plan_placement(
                created(f"PL-{i}"), agency_id=AGENCY, seed=7, fault_rate=0.0, now=NOW
            )
        )
    )
    assert (await post_packet(client, created(paying, balance=100_000), gateway_key)).status == 200
    assert (await post_packet(client, amended(paying, 40_000, 100_000), gateway_key)).status == 200
    assert (await post_packet(client, created("PL-gone"), gateway_key)).status == 200
    assert (await post_packet(client, recalled("PL-gone"), gateway_key)).status == 200
    assert not await agency.drain(0.2), "nothing can be sent before the gateway URL is known"

    agency.set_gateway_url(url)
    assert await agency.drain(30)

    events = standin.by_placement()
    assert "PL-gone" not in events
    assert events[paying][0] == acks_of(events[paying])[0]
    assert acks_of(events[paying])[0].data.balance.amount_minor == 100_000
    paid = sum(p.data.amount.amount_minor for p in payments_of(events[paying]))
    assert paid == 40_000
    assert events[paying][-1].type == "case.closed"


async def test_the_pusher_can_be_stopped_and_started_by_hand(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> None:
    agency, standin, client, gateway_key, _ = await run_agency(aiohttp_client, aiohttp_server)
    await agency.aclose()
    for i in range(4):
        assert (await post_packet(client, created(f"PL-{i}"), gateway_key)).status == 200
    assert not await agency.drain(0.2)
    assert standin.events == []

    await agency.start()
    assert await agency.drain(30)
    assert set(standin.by_placement()) == {f"PL-{i}" for i in range(4)}


# -- the pure planner -------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_plan() -> None:
    packets = [created(f"PL-{i}", balance=20_000 + 313 * i) for i in range(25)]

    def plans(seed: int, fault_rate: float) -> list[list[PlannedEvent]]:
        return [
            plan_placement(p, agency_id=AGENCY, seed=seed, fault_rate=fault_rate, now=NOW)
            for p in packets
        ]

    assert plans(11, 0.3) == plans(11, 0.3)
    assert plans(11, 0.3) != plans(12, 0.3)
    for plan in plans(11, 0.0):
        events = [AGENCY_EVENT_ADAPTER.validate_json(e.body) for e in plan]
        assert events[0].type == "placement.acknowledged"


def test_a_direct_payment_reduces_what_the_agency_collects() -> None:
    planner = EventPlanner(agency_id=AGENCY, seed=7, fault_rate=0.0)
    paying = next(
        f"PL-{i}"
        for i in range(200)
        if any(
            e.type == "case.closed"
            for e in plan_placement(
                created(f"PL-{i}"), agency_id=AGENCY, seed=7, fault_rate=0.0, now=NOW
            )
        )
    )
    case = planner.on_packet(created(paying, balance=90_000))
    assert case is not None
    direct = PaymentDirect(
        type="payment.direct",
        timestamp=NOW,
        data=PaymentDirectData(
            packet_id="pkt_direct",
            placement_id=paying,
            case_id=f"C-{paying}",
            payment_id="LP-1",
            amount=Money(amount_minor=30_000, currency="CNY"),
            paid_at=NOW,
        ),
    )
    planner.on_packet(direct)
    collected = 0
    while (event := planner.next_event(case, NOW)) is not None:
        if event.type == "payment.reported":
            collected += json.loads(event.body)["data"]["amount"]["amount_minor"]
    assert collected == 60_000


def test_a_deletion_request_drops_the_rest_of_the_script_and_is_confirmed() -> None:
    planner = EventPlanner(agency_id=AGENCY, seed=7, fault_rate=0.0)
    case = planner.on_packet(created("PL-erase"))
    assert case is not None and planner.next_event(case, NOW) is not None  # the ack
    assert case.steps  # more of the script was still to come
    planner.on_packet(recalled("PL-erase"))
    request = render_deletion_request(
        agency_id=AGENCY,
        placement_id="PL-erase",
        case_id="C-PL-erase",
        version=1,
        reason="recalled",
        ended_at=NOW,
        delete_by=date(2026, 3, 1),
        categories=("debtor.debtor_id",),
        at=NOW,
    )
    planner.on_packet(CASE_PACKET.validate_json(request.payload))
    events = []
    while (event := planner.next_event(case, NOW)) is not None:
        events.append(event)
    [deleted] = events
    body = AGENCY_EVENT_ADAPTER.validate_json(deleted.body)
    assert body.type == "data.deleted" and body.data.placement_id == "PL-erase"
    assert body.data.method == "deleted" and body.data.reference


def test_the_sandbox_agency_writes_instead_of_calling_in_the_quiet_hours() -> None:
    """At 23:30 in Shanghai the scripted calls, texts and visits go out as emails (the
    gateway would rightly raise them on arrival); at 10:30 they are what the script says."""
    night = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    day = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
    assert LENDER_RULES.quiet_at(night, "call") and not LENDER_RULES.quiet_at(day, "call")
    assert not LENDER_RULES.quiet_at(night, "email")

    def channels(at: datetime) -> list[str]:
        planner = EventPlanner(agency_id=AGENCY, seed=7, fault_rate=0.0, max_contacts_per_debtor=99)
        seen = []
        for i in range(40):
            case = planner.on_packet(created(f"PL-q{i}"))
            assert case is not None
            while (event := planner.next_event(case, at)) is not None:
                if event.type == "contact.attempted":
                    seen.append(json.loads(event.body)["data"]["channel"])
        return seen

    by_night, by_day = channels(night), channels(day)
    assert len(by_night) == len(by_day) > 0
    assert set(by_night) <= {"email", "letter"}
    assert {"call", "sms"} <= set(by_day)
