"""The inbound API served for real (``create_app`` on loopback) on real databases: agencies
sign with ``gateway.signing.sign``; what is stored, what is answered, what is reconciled.
"""

import asyncio
import copy
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from standardwebhooks.webhooks import Webhook

from gateway.allocation.placements import PlacementService
from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import BUCKETS, AgencyConfig, parse_agency
from gateway.config.settings import AllocationSection
from gateway.evidence.bundle import export_case, verify_bundle
from gateway.evidence.log import EvidenceLog
from gateway.evidence.signed_note import NoteSigner, NoteVerifier, generate_key
from gateway.inbound.service import InboundService, InboundTrust
from gateway.metrics import Metrics
from gateway.privacy.pii import PiiKeyRing
from gateway.server import create_app
from gateway.settlement.answers import ANSWER_TYPES
from gateway.signing import (
    HmacKey,
    SigningKey,
    VerifyingKey,
    generate_ed25519_pair,
    generate_hmac_secret,
    parse_ed25519_private,
    parse_ed25519_public,
    parse_hmac_secret,
    sign,
)
from gateway.store.database import Database
from gateway.store.tables import AgencyEventRow, EvidenceLeaf, InboundMessage, Mismatch, Placement
from schemas.base import MAX_MINOR
from schemas.events import EVENT_TYPES, example_event
from tests import hard_way

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
MAX_BODY = 4096
PROBLEM = "application/problem+json"
Client = TestClient[web.Request, web.Application]
Seeder = Callable[..., Awaitable[list[tuple[str, str, str, int]]]]
"""The ``seed_placements`` fixture (tests/conftest.py)."""


def key_pair(scheme: str) -> tuple[SigningKey, VerifyingKey]:
    if scheme == "v1":
        secret = parse_hmac_secret(generate_hmac_secret())
        return secret, secret
    private, public = generate_ed25519_pair()
    return parse_ed25519_private(private), parse_ed25519_public(public)


def agency_config(agency_id: str, scheme: str) -> AgencyConfig:
    return parse_agency(
        {
            "id": agency_id,
            "name": f"{agency_id} test agency",
            "channel": "webhook",
            "endpoint": {"url": "https://agency.invalid/hooks"},
            "signing": {"scheme": scheme, "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
            "inbound": {"scheme": scheme, "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
            "eligibility": {"buckets": list(BUCKETS)},
            "capacity": {"max_open_placements": 100_000},
        }
    )


@dataclass(frozen=True)
class Held:
    placement_id: str
    case_id: str
    balance_minor: int


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


TEST_CLIENT, HARD_WAY = "test-client", "hard-way"
BOTH_WAYS = pytest.mark.parametrize("world", [TEST_CLIENT, HARD_WAY], indirect=True)
"""For a test of an accepted event: run it with aiohttp's test client and again with every
request sent the hard way (tests/hard_way.py: chunked, seven bytes a chunk, with pauses)."""


@dataclass
class World:
    client: Client
    db: Database
    clock: ManualClock
    metrics: Metrics
    keys: dict[str, SigningKey]
    agencies: dict[str, AgencyConfig]
    held: dict[str, list[Held]]
    service: InboundService
    way: str = TEST_CLIENT

    async def post(
        self,
        agency_id: str,
        body: bytes,
        *,
        msg_id: str | None = None,
        timestamp: int | None = None,
        key: SigningKey | None = None,
        drop: Iterable[str] = (),
        headers: dict[str, str] | None = None,
    ) -> Answer:
        msg_id = msg_id or "evt_" + hashlib.sha256(body).hexdigest()[:24]
        ts = int(self.clock.now()) if timestamp is None else timestamp
        signing_key = key or self.keys.get(agency_id) or key_pair("v1")[0]
        sent = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(msg_id, ts, body, [signing_key]),
        }
        for name in drop:
            del sent[name]
        sent.update(headers or {})
        path = f"/v1/agencies/{agency_id}/events"
        if self.way == HARD_WAY:
            server = self.client.server
            raw = await hard_way.send(
                str(server.host),
                int(server.port or 0),
                path,
                sent,
                hard_way.pieces(body, 7),
                chunked=True,
                pause=0.001,
            )
            return Answer(raw.status, raw.content_type, raw.body)
        async with self.client.post(path, data=body, headers=sent) as response:
            return Answer(response.status, response.content_type, await response.read())

    async def rows(self, query: Any) -> list[Any]:
        async with self.db.connect() as conn:
            return list((await conn.execute(query)).all())

    async def inbound(self) -> list[Any]:
        return await self.rows(sa.select(INBOUND).order_by(INBOUND.c.id))

    async def mismatches(self, kind: str | None = None) -> list[Any]:
        query = sa.select(MISMATCHES).order_by(MISMATCHES.c.id)
        return await self.rows(query if kind is None else query.where(MISMATCHES.c.kind == kind))

    async def placement(self, placement_id: str) -> Any:
        [row] = await self.rows(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == placement_id))
        return row


@pytest.fixture
async def world(
    request: pytest.FixtureRequest,
    db: Database,
    seed_placements: Seeder,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[World]:
    """Agencies AGY_A (v1) and AGY_B (v1a), each holding placements, and the inbound API;
    ``world.post`` goes through aiohttp's test client unless a test asks for ``BOTH_WAYS``."""
    clock = ManualClock(START)
    agencies = {"AGY_A": agency_config("AGY_A", "v1"), "AGY_B": agency_config("AGY_B", "v1a")}
    await seed_placements(db, {"AGY_A": agencies["AGY_A"]}, 4, clock, seed=1)
    placed = await seed_placements(db, {"AGY_B": agencies["AGY_B"]}, 2, clock, seed=2)
    held: dict[str, list[Held]] = {"AGY_A": [], "AGY_B": []}
    for pid, case_id, agency_id, balance in placed:
        held[agency_id].append(Held(pid, case_id, balance))
    assert [len(held["AGY_A"]), len(held["AGY_B"])] == [4, 2]
    pairs = {"AGY_A": key_pair("v1"), "AGY_B": key_pair("v1a")}
    metrics = Metrics()
    inbound = InboundService(
        db=db,
        trust={a: InboundTrust(a, (pair[1],), 300) for a, pair in pairs.items()},
        clock=clock,
        metrics=metrics,
        max_body_bytes=MAX_BODY,
    )
    client = await aiohttp_client(create_app(inbound=inbound, db=db, metrics_=metrics))
    keys = {a: p[0] for a, p in pairs.items()}
    way = getattr(request, "param", TEST_CLIENT)
    yield World(client, db, clock, metrics, keys, agencies, held, inbound, way)
    await inbound.aclose()


def event(event_type: str, data: Mapping[str, object], at: float = START) -> bytes:
    envelope = {"type": event_type, "timestamp": to_datetime(at).isoformat(), "data": data}
    return json.dumps(envelope).encode()


def money(amount: int, currency: str = "CNY") -> dict[str, object]:
    return {"amount_minor": amount, "currency": currency}


def ack(placement: Held, *, balance: int | None = None, ref: str = "REF-1") -> bytes:
    amount = placement.balance_minor if balance is None else balance
    data = {
        "placement_id": placement.placement_id,
        "agency_case_ref": ref,
        "balance": money(amount),
    }
    return event("placement.acknowledged", data)


def payment(placement_id: str, payment_id: str, amount: int, currency: str = "CNY") -> bytes:
    return event(
        "payment.reported",
        {
            "placement_id": placement_id,
            "payment_id": payment_id,
            "amount": money(amount, currency),
            "paid_at": to_datetime(START).isoformat(),
        },
    )


def complaint(placement_id: str, n: int) -> bytes:
    data = {"placement_id": placement_id, "channel": "phone", "summary": f"complaint {n}"}
    return event("complaint.received", data)


def assert_problem(answer: Answer, status: int, slug: str | None = None) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.content_type == PROBLEM
    doc: dict[str, Any] = answer.json()
    assert {"type", "title", "status", "detail"} <= doc.keys()
    assert doc["status"] == status and doc["title"] and doc["detail"]
    if slug is not None:
        assert doc["type"].endswith("/" + slug)
    return doc


# -- accepted, replayed, conflicting ---------------------------------------------------------


@pytest.mark.parametrize("agency_id", ["AGY_A", "AGY_B"])
@BOTH_WAYS
async def test_an_accepted_event_is_stored_raw_with_evidence_before_the_answer(
    world: World, agency_id: str
) -> None:
    target = world.held[agency_id][0]
    # Odd spacing, escapes and a trailing newline: the stored bytes must be these bytes.
    body = (
        '{ "type" : "placement.acknowledged",\t"timestamp": "2026-03-02T09:00:00Z",\n'
        f' "data": {{"placement_id": "{target.placement_id}", "agency_case_ref": "\\u963f-7",'
        f' "balance": {{"amount_minor": {target.balance_minor}, "currency": "CNY"}}}} }}\n'
    ).encode()

    answer = await world.post(agency_id, body, msg_id="evt_first")

    assert answer.status == 200 and answer.content_type == "application/json"
    assert answer.json() == {
        "status": "accepted",
        "webhook_id": "evt_first",
        "event_type": "placement.acknowledged",
    }
    [row] = await world.inbound()
    assert (row.agency_id, row.external_id, row.body, row.status, row.response_status) == (
        agency_id,
        "evt_first",
        body,
        "accepted",
        200,
    )
    assert row.body_sha256 == hashlib.sha256(body).hexdigest()
    assert row.signature_scheme == ("v1" if agency_id == "AGY_A" else "v1a")
    assert row.event_type == "placement.acknowledged"
    [leaf] = await world.rows(sa.select(LEAVES).where(LEAVES.c.kind == "inbound"))
    assert leaf.ref == f"inbound:{row.id}"
    assert json.loads(leaf.body)["sha256"] == row.body_sha256
    placement = await world.placement(target.placement_id)
    assert (placement.state, placement.agency_case_ref) == ("acknowledged", "阿-7")
    assert placement.acked_balance_minor == target.balance_minor
    assert await world.mismatches() == []


@BOTH_WAYS
async def test_a_replay_gets_the_same_answer_and_is_stored_once(world: World) -> None:
    body = ack(world.held["AGY_A"][0])
    first = await world.post("AGY_A", body, msg_id="evt_replayed")
    world.clock.advance(120)  # the agency's retry: a new timestamp and signature
    second = await world.post("AGY_A", body, msg_id="evt_replayed")

    assert first == second and first.status == 200
    assert len(await world.inbound()) == 1
    assert len(await world.rows(sa.select(EVENTS))) == 1
    assert len(await world.rows(sa.select(LEAVES).where(LEAVES.c.kind == "inbound"))) == 1


async def test_a_refusal_is_replayed_too(world: World) -> None:
    body = payment("PL-NOWHERE-1", "pay_1", 100)
    first = await world.post("AGY_A", body, msg_id="evt_refused")
    second = await world.post("AGY_A", body, msg_id="evt_refused")
    assert first == second
    assert_problem(first, 403, "foreign-placement")
    assert len(await world.inbound()) == 1 and len(await world.mismatches()) == 1


@BOTH_WAYS
async def test_the_same_id_with_other_bytes_is_a_409_and_a_mismatch(world: World) -> None:
    target = world.held["AGY_A"][0]
    original = ack(target, ref="REF-1")
    assert (await world.post("AGY_A", original, msg_id="evt_dup")).status == 200

    conflicting = ack(target, ref="REF-2")
    answer = await world.post("AGY_A", conflicting, msg_id="evt_dup")
    doc = assert_problem(answer, 409, "conflicting-duplicate")
    assert doc["webhook_id"] == "evt_dup"
    assert assert_problem(await world.post("AGY_A", conflicting, msg_id="evt_dup"), 409)

    first, copy = await world.inbound()
    assert (first.external_id, first.body, first.status) == ("evt_dup", original, "accepted")
    assert copy.external_id.startswith("evt_dup~") and copy.body == conflicting
    assert copy.status == "conflict"
    [mismatch] = await world.mismatches()
    assert (mismatch.kind, mismatch.agency_id) == ("conflicting_duplicate", "AGY_A")
    # It names the placement and the kept copy, so the case's bundle carries the copy.
    assert mismatch.placement_id == target.placement_id
    assert json.loads(mismatch.theirs)["inbound_id"] == copy.id
    placement = await world.placement(target.placement_id)
    assert placement.agency_case_ref == "REF-1", "the conflicting copy changed nothing"
    signer_text, verifier_text = generate_key("lender.test")
    log = EvidenceLog(world.db, NoteSigner.from_text(signer_text), "lender.test/evidence")
    verifier = NoteVerifier.from_text(verifier_text)
    bundle = await export_case(
        world.db, log, verifier, target.case_id, now=to_datetime(world.clock.now())
    )
    attached = {e["ref"]: e.get("attested") for e in bundle["entries"] if e["kind"] == "inbound"}
    assert f"inbound:{copy.id}" in attached and "bytes_base64" in attached[f"inbound:{copy.id}"]
    assert verify_bundle(bundle, [verifier]).ok


# -- refusals ---------------------------------------------------------------------------------


async def test_an_unknown_agency_is_404(world: World) -> None:
    answer = await world.post("AGY_NOBODY", ack(world.held["AGY_A"][0]))
    assert_problem(answer, 404, "unknown-agency")
    assert await world.inbound() == []


async def test_a_bad_signature_is_401_and_nothing_is_stored(world: World) -> None:
    answer = await world.post("AGY_A", ack(world.held["AGY_A"][0]), key=key_pair("v1")[0])
    assert_problem(answer, 401, "invalid-signature")
    ed_answer = await world.post("AGY_B", ack(world.held["AGY_B"][0]), key=key_pair("v1a")[0])
    assert_problem(ed_answer, 401, "invalid-signature")
    assert await world.inbound() == []


@pytest.mark.parametrize("skew", [-301, 301])
async def test_a_timestamp_outside_the_window_is_401(world: World, skew: int) -> None:
    answer = await world.post("AGY_A", ack(world.held["AGY_A"][0]), timestamp=int(START) + skew)
    assert_problem(answer, 401, "stale-timestamp")
    assert await world.inbound() == []


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_missing_header_is_400(world: World, header: str) -> None:
    answer = await world.post("AGY_A", ack(world.held["AGY_A"][0]), drop=[header])
    doc = assert_problem(answer, 400, "missing-headers")
    assert header in doc["detail"]


async def test_malformed_json_is_400_and_kept_as_evidence(world: World) -> None:
    body = b'{"type": "placement.acknowledged", "data": '
    doc = assert_problem(
        await world.post("AGY_A", body, msg_id="evt_broken"), 400, "malformed-json"
    )
    # The parser's own words, with where it stopped, not pydantic's wrapper around them.
    assert doc["detail"] == "body is not valid JSON: EOF while parsing a value at line 1 column 43"
    [row] = await world.inbound()
    assert (row.body, row.status, row.response_status) == (body, "invalid", 400)
    assert row.event_type is None


async def test_a_schema_violation_is_422_naming_the_field(world: World) -> None:
    target = world.held["AGY_A"][0]
    body = event(
        "placement.acknowledged",
        {"placement_id": target.placement_id, "balance": money(target.balance_minor)},
    )
    doc = assert_problem(await world.post("AGY_A", body), 422, "schema-violation")
    missing = {"loc": "placement.acknowledged.data.agency_case_ref", "msg": "Field required"}
    assert missing in doc["errors"], doc["errors"]
    assert doc["detail"].startswith("placement.acknowledged.data.agency_case_ref: ")
    negative = event(
        "payment.reported",
        {
            "placement_id": target.placement_id,
            "payment_id": "pay_1",
            "amount": money(-5),
            "paid_at": to_datetime(START).isoformat(),
        },
    )
    doc = assert_problem(await world.post("AGY_A", negative), 422)
    assert any("amount" in e["loc"] for e in doc["errors"])
    assert (await world.placement(target.placement_id)).state == "placed"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_the_limit_is_413(world: World, chunked: bool) -> None:
    target = world.held["AGY_A"][0]
    data = {"placement_id": target.placement_id, "channel": "phone", "summary": "x" * 900}
    body = b" " * (MAX_BODY - 500) + event("complaint.received", data)
    assert len(body) > MAX_BODY
    if not chunked:
        assert_problem(await world.post("AGY_A", body), 413, "payload-too-large")
    else:

        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        ts = int(START)
        headers = {
            "content-type": "application/json",
            "webhook-id": "evt_big",
            "webhook-timestamp": str(ts),
            "webhook-signature": sign("evt_big", ts, body, [world.keys["AGY_A"]]),
        }
        async with world.client.post(
            "/v1/agencies/AGY_A/events", data=stream(), headers=headers
        ) as response:
            answer = Answer(response.status, response.content_type, await response.read())
        assert_problem(answer, 413, "payload-too-large")
    assert await world.inbound() == []


# -- the hard way: bodies as real networks deliver them (tests/hard_way.py) -------------------


def signed(world: World, agency_id: str, body: bytes, msg_id: str) -> dict[str, str]:
    ts = int(world.clock.now())
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(msg_id, ts, body, [world.keys[agency_id]]),
    }


async def send_hard_way(
    world: World, agency_id: str, body: bytes, msg_id: str, **how: Any
) -> hard_way.RawAnswer:
    size = how.pop("size", None)
    body_pieces = hard_way.pieces(body, size) if size else [body[:40], body[40:]]
    server = world.client.server
    return await hard_way.send(
        str(server.host),
        int(server.port or 0),
        f"/v1/agencies/{agency_id}/events",
        how.pop("headers", None) or signed(world, agency_id, body, msg_id),
        body_pieces,
        **how,
    )


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({"pause": 0.2}, id="two-writes-200ms-apart"),
        pytest.param({"chunked": True, "pause": 0.05}, id="chunked-with-pauses"),
        pytest.param({"size": 7, "pause": 0.002}, id="seven-bytes-at-a-time"),
        pytest.param({"chunked": True, "size": 1}, id="one-byte-chunks"),
    ],
)
async def test_a_signed_event_arriving_in_pieces_is_accepted_whole(
    world: World, how: dict[str, Any]
) -> None:
    body = ack(world.held["AGY_A"][0])
    answer = await send_hard_way(world, "AGY_A", body, "evt_pieces", **how)
    assert (answer.status, json.loads(answer.body)["status"]) == (200, "accepted"), answer.body
    [row] = await world.inbound()
    assert row.body == body and row.status == "accepted"


async def test_an_event_signed_by_the_public_standard_webhooks_library_is_accepted(
    world: World,
) -> None:
    """An agency that signs with the reference library (``standardwebhooks``, no code shared
    with ours) is understood; a body it did not sign is refused."""
    key = world.keys["AGY_A"]
    assert isinstance(key, HmacKey)
    body = ack(world.held["AGY_A"][0])
    when = datetime.fromtimestamp(int(world.clock.now()), UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": "evt_library",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(key.secret).sign("evt_library", when, body),
    }
    answer = await send_hard_way(world, "AGY_A", body, "evt_library", headers=headers)
    assert (answer.status, json.loads(answer.body)["status"]) == (200, "accepted"), answer.body
    tampered = body.replace(b'"REF-1"', b'"REF-2"')
    assert tampered != body
    refused = await send_hard_way(world, "AGY_A", tampered, "evt_library", headers=headers)
    assert refused.status == 401
    [row] = await world.inbound()
    assert row.body == body and row.external_id == "evt_library"


async def test_an_event_near_the_limit_streamed_in_small_chunks_is_accepted(world: World) -> None:
    target = world.held["AGY_A"][0]
    summary = "complaint " * 90
    data = {"placement_id": target.placement_id, "channel": "phone", "summary": summary}
    compact = event("complaint.received", data)
    body = b" " * (MAX_BODY - len(compact) - 3) + compact  # JSON may lead with whitespace
    assert MAX_BODY - 10 < len(body) <= MAX_BODY
    answer = await send_hard_way(world, "AGY_A", body, "evt_near_limit", chunked=True, size=97)
    assert answer.status == 200, answer.body
    [row] = await world.inbound()
    assert row.body == body


async def test_an_oversized_chunked_body_is_413_naming_the_webhook_id(world: World) -> None:
    body = complaint(world.held["AGY_A"][0].placement_id, 1) + b" " * MAX_BODY
    answer = await send_hard_way(world, "AGY_A", body, "evt_too_big", chunked=True, size=512)
    assert (answer.status, answer.content_type) == (413, PROBLEM)
    assert json.loads(answer.body)["webhook_id"] == "evt_too_big"
    assert await world.inbound() == []


async def test_a_webhook_id_that_is_not_utf8_is_a_problem_not_a_crash(world: World) -> None:
    body = ack(world.held["AGY_A"][0])
    headers = signed(world, "AGY_A", body, "evt_plain")
    headers["webhook-id"] = "evt_\udcff\udcfe"  # two bytes that are not UTF-8
    answer = await send_hard_way(world, "AGY_A", body, "", headers=headers)
    assert (answer.status, answer.content_type) == (400, PROBLEM), answer.body
    assert "webhook-id" in json.loads(answer.body)["detail"]
    assert await world.inbound() == []


@pytest.mark.parametrize("stamp", ["+1772442000", "-1", "1_772_442_000", "١٧٧٢٤٤٢٠٠٠"])
async def test_a_timestamp_header_must_be_ascii_digits(world: World, stamp: str) -> None:
    body = ack(world.held["AGY_A"][0])
    answer = await world.post("AGY_A", body, headers={"webhook-timestamp": stamp})
    doc = assert_problem(answer, 400, "missing-headers")
    assert "ASCII digits" in doc["detail"]


async def test_every_refusal_names_the_webhook_id_it_had(world: World) -> None:
    body = ack(world.held["AGY_A"][0])
    refusals = [
        await world.post("NOPE", body, msg_id="evt_unknown"),
        await world.post("AGY_A", body, msg_id="evt_stale", timestamp=int(START) - 3600),
        await world.post("AGY_A", b" " * (MAX_BODY + 1), msg_id="evt_large"),
        await world.post("AGY_A", body, msg_id="evt_nosig", drop=["webhook-signature"]),
    ]
    assert [(a.status, a.json().get("webhook_id")) for a in refusals] == [
        (404, "evt_unknown"),
        (401, "evt_stale"),
        (413, "evt_large"),
        (400, "evt_nosig"),
    ]


async def test_an_unexpected_error_is_problem_json_with_a_logged_request_id(
    db: Database, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    inbound = InboundService(
        db=db, trust={}, clock=ManualClock(START), metrics=Metrics(), max_body_bytes=MAX_BODY
    )
    app = create_app(inbound=inbound, db=db, metrics_=Metrics())

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    async with client.get("/broken") as response:
        doc = await response.json(content_type=None)
        assert (response.status, response.content_type) == (500, PROBLEM)
        assert response.headers["X-Request-Id"] == doc["request_id"]
    assert doc["request_id"] in doc["detail"] and "Traceback" not in json.dumps(doc)
    assert any(doc["request_id"] in r.getMessage() for r in caplog.records)
    await inbound.aclose()


# -- strict wire types: exactly what the published JSON Schemas allow ------------------------


def example_for(world: World, event_type: str, **data: object) -> dict[str, Any]:
    envelope = copy.deepcopy(example_event(event_type))
    envelope["data"]["placement_id"] = world.held["AGY_A"][0].placement_id
    envelope["data"].update(data)
    return envelope


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("payment.reported", {"amount": {"amount_minor": True, "currency": "CNY"}}, "amount"),
        ("payment.reported", {"amount": {"amount_minor": "500", "currency": "CNY"}}, "amount"),
        ("payment.reported", {"amount": {"amount_minor": 100.0, "currency": "CNY"}}, "amount"),
        ("payment.reported", {"paid_at": 1772442000}, "paid_at"),
        ("contact.attempted", {"effective": "yes"}, "effective"),
        ("contact.attempted", {"effective": 1}, "effective"),
        ("promise.made", {"promised_date": "9999-12-31"}, "promised_date"),
        ("payment.reported", {"paid_at": "9999-12-31T23:59:59Z"}, "paid_at"),
        ("placement.acknowledged", {"agency_case_ref": "REF\u0000-1"}, "agency_case_ref"),
    ],
)
async def test_a_value_the_schema_does_not_allow_is_422_naming_the_field(
    world: World, event_type: str, data: dict[str, object], field: str
) -> None:
    body = json.dumps(example_for(world, event_type, **data)).encode()
    doc = assert_problem(await world.post("AGY_A", body), 422, "schema-violation")
    assert field in doc["errors"][0]["loc"], doc
    [row] = await world.inbound()
    assert (row.status, row.response_status) == ("invalid", 422)
    assert await world.rows(sa.select(EVENTS)) == []


async def test_the_same_key_twice_in_an_object_is_refused(world: World) -> None:
    target = world.held["AGY_A"][0]
    body = (
        '{"type": "payment.reported", "timestamp": "2026-03-02T09:00:00Z", "data": '
        f'{{"placement_id": "{target.placement_id}", "payment_id": "P-1", "paid_at": '
        '"2026-03-02T09:00:00Z", "amount": {"currency": "CNY", "amount_minor": 1, '
        '"amount_minor": 500000}}}'
    ).encode()
    doc = assert_problem(await world.post("AGY_A", body), 400, "malformed-json")
    assert "'amount_minor' appears twice" in doc["detail"]
    assert await world.rows(sa.select(EVENTS)) == []


@BOTH_WAYS
async def test_a_timestamp_with_an_offset_is_accepted_in_utc(world: World) -> None:
    envelope = example_for(world, "payment.reported", paid_at="2026-03-02T17:00:00+08:00")
    answer = await world.post("AGY_A", json.dumps(envelope).encode())
    assert answer.status == 200, answer.body


async def test_an_event_for_another_agencys_placement_is_403_and_changes_nothing(
    world: World,
) -> None:
    theirs = world.held["AGY_A"][0]
    before = await world.placement(theirs.placement_id)

    answer = await world.post("AGY_B", payment(theirs.placement_id, "pay_x", 1000))
    assert_problem(answer, 403, "foreign-placement")
    answer = await world.post("AGY_B", ack(theirs, ref="HIJACK"))
    assert_problem(answer, 403, "foreign-placement")

    assert await world.placement(theirs.placement_id) == before
    mismatches = await world.mismatches("wrong_agency")
    assert [(m.agency_id, m.placement_id) for m in mismatches] == [
        ("AGY_B", theirs.placement_id)
    ] * 2
    assert {r.status for r in await world.inbound()} == {"refused"}


async def test_an_event_for_an_unknown_placement_is_403(world: World) -> None:
    answer = await world.post("AGY_A", payment("PL-GHOST-1", "pay_g", 500))
    assert_problem(answer, 403, "foreign-placement")
    [mismatch] = await world.mismatches()
    assert (mismatch.kind, mismatch.placement_id) == ("unknown_placement", "PL-GHOST-1")


# -- reconciliation on arrival ----------------------------------------------------------------


@BOTH_WAYS
async def test_activity_after_a_recall_is_a_mismatch_and_not_applied(world: World) -> None:
    target = world.held["AGY_A"][0]
    assert (await world.post("AGY_A", ack(target))).status == 200
    service = PlacementService(
        db=world.db,
        agencies=world.agencies,
        pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
        settings=AllocationSection(),
        clock=world.clock,
    )
    await service.recall(target.case_id, "PAID_DIRECT")

    answer = await world.post("AGY_A", payment(target.placement_id, "pay_late", 500))

    assert answer.status == 200, "recorded: the agency is told we have it"
    [mismatch] = await world.mismatches()
    assert (mismatch.kind, mismatch.placement_id, mismatch.delta_minor) == (
        "activity_after_recall",
        target.placement_id,
        500,
    )
    placement = await world.placement(target.placement_id)
    assert (placement.state, placement.collected_minor) == ("recalled", 0)
    [late] = await world.rows(sa.select(EVENTS).where(EVENTS.c.event_type == "payment.reported"))
    assert late.applied is False


@BOTH_WAYS
async def test_over_collection_is_a_mismatch_and_the_money_is_recorded(world: World) -> None:
    target = world.held["AGY_A"][0]
    assert (await world.post("AGY_A", ack(target))).status == 200
    over = target.balance_minor + 700
    assert (await world.post("AGY_A", payment(target.placement_id, "pay_1", over))).status == 200
    [mismatch] = await world.mismatches()
    assert (mismatch.kind, mismatch.delta_minor) == ("over_collection", 700)
    assert (await world.placement(target.placement_id)).collected_minor == over


@BOTH_WAYS
async def test_a_payment_in_another_currency_is_a_mismatch_and_not_applied(world: World) -> None:
    target = world.held["AGY_A"][0]
    assert (await world.post("AGY_A", ack(target))).status == 200
    answer = await world.post("AGY_A", payment(target.placement_id, "pay_usd", 100, "USD"))
    assert answer.status == 200
    [mismatch] = await world.mismatches()
    assert mismatch.kind == "currency_mismatch"
    placement = await world.placement(target.placement_id)
    assert (placement.collected_minor, placement.state) == (0, "acknowledged")


@BOTH_WAYS
async def test_an_ack_with_another_balance_is_a_mismatch(world: World) -> None:
    target = world.held["AGY_A"][0]
    answer = await world.post("AGY_A", ack(target, balance=target.balance_minor + 100))
    assert answer.status == 200
    [mismatch] = await world.mismatches()
    assert (mismatch.kind, mismatch.delta_minor) == ("ack_balance_differs", 100)
    placement = await world.placement(target.placement_id)
    assert (placement.state, placement.acked_balance_minor) == (
        "acknowledged",
        target.balance_minor + 100,
    )


# -- never a 500 ------------------------------------------------------------------------------


async def test_every_error_is_problem_json_and_never_500(world: World) -> None:
    target = world.held["AGY_A"][0]
    good = ack(target)
    cases: list[tuple[Answer, int]] = [
        (await world.post("AGY_A", good, headers={"webhook-timestamp": "soon"}), 400),
        (await world.post("AGY_A", good, headers={"webhook-id": "evt.with.dots"}), 400),
        (await world.post("AGY_A", good, msg_id="x" * 300), 400),
        (await world.post("AGY_A", good, headers={"webhook-signature": "v1,%%%"}), 401),
        (await world.post("AGY_A", good, headers={"webhook-signature": ""}), 401),
        (await world.post("AGY_A", b""), 400),
        (await world.post("AGY_A", b"\xff\xfe\x00garbage"), 400),
        (await world.post("AGY_A", b'{"type": "case.closed", "x": "\\ud800"}'), 400),
        (await world.post("AGY_A", b"[1, 2, 3]"), 422),
        (await world.post("AGY_A", b'"just a string"'), 422),
        (await world.post("AGY_A", event("no.such.type", {})), 422),
        (await world.post("AGY_A", good[:-1] + b', "extra": 1}'), 422),
        (await world.post("AGY_A", b'{"type": "placement.acknowledged", "data": null}'), 422),
        (await world.post("agy_lowercase", good), 404),
        (await world.post("AGY_A", "中文".encode() * 2000), 413),
    ]
    for path, method, expected in [
        ("/v1/agencies/AGY_A/events", "GET", 405),
        ("/v1/agencies/AGY_A", "POST", 404),
        ("/nothing-here", "GET", 404),
    ]:
        async with world.client.request(method, path) as response:
            cases.append(
                (Answer(response.status, response.content_type, await response.read()), expected)
            )
    for answer, expected in cases:
        assert_problem(answer, expected)


NASTY_VALUES: tuple[object, ...] = (
    None,
    "",
    " ",
    "x" * 1500,
    "\u0000",
    "\U0001d518nicode \u2713 中文",
    "../../etc/passwd",
    -1,
    0,
    1.5,
    10**30,
    -(10**30),
    2**63,
    MAX_MINOR + 1,
    True,
    [],
    {},
    [None],
    {"amount_minor": 10**20, "currency": "CNY"},
    {"amount_minor": 5, "currency": "cny"},
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-05:00",
    "2026-02-30",
    "2026-01-16T09:00:00",
    "2026-01-16",
    "NaN",
)


def _paths(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key and list index of a JSON document, outermost first."""
    found: list[tuple[str | int, ...]] = []
    children: Iterable[tuple[str | int, object]] = ()
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _mutated(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``document`` with one thing changed: a value replaced by a nasty one, a key removed,
    or an unknown key added."""
    doc = copy.deepcopy(document)
    path = rng.choice(_paths(doc))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    move = rng.random()
    if move < 0.75:
        parent[path[-1]] = rng.choice(NASTY_VALUES)
    elif move < 0.9 and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent["unexpected_" + str(rng.randrange(100))] = rng.choice(NASTY_VALUES)
    else:
        parent.append(rng.choice(NASTY_VALUES))
    return doc


async def test_every_documented_example_is_accepted_and_no_mutation_of_one_is_a_500(
    world: World,
) -> None:
    """The examples in the JSON Schemas and the OpenAPI document, on a placement the agency
    holds, are accepted; 600 mutations of them (seeded, so a failure repeats) each get a
    definite answer: accepted, refused for the placement, or 422 naming what is wrong."""
    target = world.held["AGY_A"][0]

    def on_target(event_type: str) -> dict[str, Any]:
        doc = copy.deepcopy(example_event(event_type, to_datetime(START).isoformat()))
        data = doc["data"]
        if "placement_id" in data:
            data["placement_id"] = target.placement_id
        for item in data.get("items", []):
            item["placement_id"] = target.placement_id
        return doc

    for event_type in EVENT_TYPES:
        body = json.dumps(on_target(event_type)).encode()
        answer = await world.post("AGY_A", body)
        if event_type in ANSWER_TYPES:  # AGY_A was issued no settlement statement 42
            assert_problem(answer, 422, "settlement-answer-refused")
            continue
        assert answer.status == 200, (event_type, answer.body)
        assert answer.json()["event_type"] == event_type

    rng = random.Random(20261204)
    seen: dict[int, int] = {}
    for n in range(600):
        doc = _mutated(on_target(rng.choice(EVENT_TYPES)), rng)
        body = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode()
        answer = await world.post("AGY_A", body, msg_id=f"evt_fuzz_{n}")
        seen[answer.status] = seen.get(answer.status, 0) + 1
        assert answer.status in (200, 403, 413, 422), (answer.status, body, answer.body)
        if answer.status != 200:
            doc = assert_problem(answer, answer.status)
            if answer.status == 422:
                assert doc["errors"] and all(e["loc"] for e in doc["errors"]), answer.body
    # Both sides of the line were exercised, and the writer is still there.
    assert seen.get(200, 0) > 0 and seen.get(422, 0) > 300, seen
    assert (await world.post("AGY_A", ack(target, ref="AFTER-FUZZ"))).status == 200


@BOTH_WAYS
async def test_health_readiness_and_metrics(world: World) -> None:
    async with world.client.get("/healthz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ok"
    async with world.client.get("/readyz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ready"
    assert (await world.post("AGY_A", ack(world.held["AGY_A"][0]))).status == 200
    assert (await world.post("AGY_NOBODY", b"{}")).status == 404
    async with world.client.get("/metrics") as response:
        assert response.status == 200 and response.content_type == "text/plain"
        text = await response.text()
    assert 'gateway_inbound_requests_total{agency="AGY_A",status="200"} 1.0' in text
    assert "gateway_inbound_commit_batch_size_count 1.0" in text
    assert 'gateway_outbox_items{state="pending"} 6.0' in text


# -- many at once -----------------------------------------------------------------------------


@BOTH_WAYS
async def test_two_hundred_concurrent_requests_are_each_stored_once_with_the_right_answer(
    world: World,
) -> None:
    own = world.held["AGY_A"]
    distinct = [(f"evt_c{n}", complaint(own[n % len(own)].placement_id, n)) for n in range(150)]
    foreign = [(f"evt_f{n}", complaint(own[n % len(own)].placement_id, n)) for n in range(25)]
    requests = [("AGY_A", msg_id, body, 200) for msg_id, body in distinct]
    requests += [("AGY_A", msg_id, body, 200) for msg_id, body in distinct[:25]]  # replays
    requests += [("AGY_B", msg_id, body, 403) for msg_id, body in foreign]
    random.Random(5).shuffle(requests)
    assert len(requests) == 200

    answers = await asyncio.gather(
        *(world.post(agency, body, msg_id=msg_id) for agency, msg_id, body, _ in requests)
    )

    by_id: dict[tuple[str, str], set[bytes]] = {}
    for (agency, msg_id, _, expected), answer in zip(requests, answers, strict=True):
        assert answer.status == expected, (msg_id, answer.body)
        by_id.setdefault((agency, msg_id), set()).add(answer.body)
    assert all(len(bodies) == 1 for bodies in by_id.values()), "a replay got another answer"
    stored = await world.inbound()
    assert len(stored) == 175
    assert {(r.agency_id, r.external_id) for r in stored} == set(by_id)
    assert all(r.body == dict((m, b) for m, b in distinct + foreign)[r.external_id] for r in stored)
    assert len(await world.rows(sa.select(EVENTS))) == 175
    leaves = await world.rows(sa.select(LEAVES.c.ref).where(LEAVES.c.kind == "inbound"))
    assert sorted(r.ref for r in leaves) == sorted(f"inbound:{r.id}" for r in stored)
    assert len(await world.mismatches("wrong_agency")) == 25
    batches = world.metrics.registry.get_sample_value("gateway_inbound_commit_batch_size_count")
    messages = world.metrics.registry.get_sample_value("gateway_inbound_commit_batch_size_sum")
    assert messages == 200 and batches is not None and batches < messages, "no group commit"


REFUSE_POISON = {
    "sqlite": [
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON inbound_messages "
        "WHEN NEW.external_id LIKE 'evt_poison%' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
        "IF NEW.external_id LIKE 'evt_poison%' THEN RAISE EXCEPTION 'refused by the test'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON inbound_messages "
        "FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
    ],
}


async def test_a_message_the_database_refuses_costs_no_other_message_its_answer(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A real trigger makes the database refuse one message. Sent among 60 others at once it
    shares their group commit; it alone gets 503 and is not stored, they are all stored."""
    async with world.db.transaction() as conn:
        for statement in REFUSE_POISON[conn.dialect.name]:
            await conn.exec_driver_sql(statement)
    own = world.held["AGY_A"]
    requests = [(f"evt_ok{n}", complaint(own[n % len(own)].placement_id, n)) for n in range(60)]
    requests.insert(30, ("evt_poison", complaint(own[0].placement_id, 999)))

    answers = await asyncio.gather(*(world.post("AGY_A", b, msg_id=m) for m, b in requests))

    statuses = {
        msg_id: answer.status for (msg_id, _), answer in zip(requests, answers, strict=True)
    }
    assert statuses.pop("evt_poison") == 503
    poisoned = assert_problem(answers[30], 503, "store-unavailable")
    assert poisoned["instance"] == "/v1/agencies/AGY_A/events"
    assert poisoned["webhook_id"] == "evt_poison"
    assert set(statuses.values()) == {200}
    stored = {r.external_id for r in await world.inbound()}
    assert stored == set(statuses)
    assert "inbound commit of evt_poison from AGY_A failed" in caplog.text
    # The database's error is logged without the statement's parameters.
    assert "refused by the test" in caplog.text and "evt_poison'" not in caplog.text
    assert "[SQL parameters hidden" in caplog.text
    messages = world.metrics.registry.get_sample_value("gateway_inbound_commit_batch_size_sum")
    assert messages == 60


async def _refuse_poison(world: World) -> None:
    async with world.db.transaction() as conn:
        for statement in REFUSE_POISON[conn.dialect.name]:
            await conn.exec_driver_sql(statement)


async def _one_group(world: World, ids: list[str]) -> list[int]:
    """Hand ``ids`` to the service at once: none of them awaits anything before it is queued,
    so the writer takes all of them, in this order, as one group commit."""
    own = world.held["AGY_A"]
    calls = []
    for n, msg_id in enumerate(ids):
        body = complaint(own[n % len(own)].placement_id, n)
        ts = int(world.clock.now())
        headers = [
            ("webhook-id", msg_id),
            ("webhook-timestamp", str(ts)),
            ("webhook-signature", sign(msg_id, ts, body, [world.keys["AGY_A"]])),
        ]
        calls.append(world.service.receive("AGY_A", headers, body))
    return [response.status for response in await asyncio.gather(*calls)]


async def test_two_refusals_in_a_row_mean_the_database_is_away_and_the_rest_is_not_tried(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await _refuse_poison(world)

    statuses = await _one_group(world, ["evt_ok0", "evt_poison1", "evt_poison2", "evt_ok3"])

    assert statuses == [200, 503, 503, 503]
    assert {r.external_id for r in await world.inbound()} == {"evt_ok0"}
    assert "inbound commit of 4 message(s) failed" in caplog.text
    tried = [
        m for m in ("evt_ok0", "evt_poison1", "evt_poison2", "evt_ok3") if f"of {m} " in caplog.text
    ]
    assert tried == ["evt_poison1", "evt_poison2"], "evt_ok3 was tried after two failures"
    observed = world.metrics.registry.get_sample_value("gateway_inbound_commit_batch_size_count")
    assert observed == 1, "each message stored alone is one commit of one"


async def test_a_message_stored_between_two_refusals_starts_the_count_again(
    world: World,
) -> None:
    await _refuse_poison(world)

    statuses = await _one_group(
        world, ["evt_poison1", "evt_ok1", "evt_poison2", "evt_ok2", "evt_ok3"]
    )

    assert statuses == [503, 200, 503, 200, 200]
    stored = {r.external_id for r in await world.inbound()}
    assert stored == {"evt_ok1", "evt_ok2", "evt_ok3"}
    assert world.metrics.registry.get_sample_value("gateway_inbound_commit_batch_size_sum") == 3


async def test_a_lone_message_the_database_refuses_is_not_tried_twice(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await _refuse_poison(world)

    assert await _one_group(world, ["evt_poison1"]) == [503]

    assert "inbound commit of 1 message(s) failed" in caplog.text
    assert "inbound commit of evt_poison1" not in caplog.text
    assert await world.inbound() == []
    assert world.metrics.registry.get_sample_value("gateway_inbound_commit_batch_size_count") in (
        None,
        0,
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"timestamp": "2026-03-02T09:00:00+00:00", "data": {}}', "type"),
        (b'{"type": "no.such", "timestamp": "2026-03-02T09:00:00+00:00", "data": {}}', "type"),
        (b"[]", "body"),
        (b'"an event"', "body"),
    ],
)
async def test_an_envelope_error_names_the_type_or_the_body(
    world: World, body: bytes, where: str
) -> None:
    doc = assert_problem(await world.post("AGY_A", body), 422, "schema-violation")
    assert doc["errors"][0]["loc"] == where
    assert doc["detail"].startswith(f"{where}: ")


async def test_a_schema_violation_counts_every_error_and_lists_the_first_twenty(
    world: World,
) -> None:
    def statement(bad_items: int) -> bytes:
        item = {"placement_id": "pl-1", "balance": money(-1), "status": "active"}
        items = [item] * bad_items
        data = {
            "statement_id": "st-1",
            "period_start": "2026-02-01",
            "period_end": "2026-02-28",
            "items": items,
        }
        return event("statement.submitted", data)

    one = assert_problem(await world.post("AGY_A", statement(1)), 422, "schema-violation")
    assert len(one["errors"]) == 1 and "more)" not in one["detail"]
    two = assert_problem(await world.post("AGY_A", statement(2)), 422, "schema-violation")
    assert len(two["errors"]) == 2 and two["detail"].endswith(" (and 1 more)")
    many = assert_problem(await world.post("AGY_A", statement(25)), 422, "schema-violation")
    assert len(many["errors"]) == 20 and many["detail"].endswith(" (and 24 more)")
