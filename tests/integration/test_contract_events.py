"""The published event schemas against the parser that serves them: events drawn from each
``schemas/json/<type>.json`` (hypothesis-jsonschema) and mutations of them are signed and
POSTed to the real inbound API on loopback, on both databases. The verdict of an independent
validator (``tests.contract``: jsonschema plus the protocol's written rules) decides the
answer: accepted exactly when the contract accepts, 400 for bytes that are not this API's
JSON (a repeated key named), 422 naming a field at fault otherwise, never a 5xx.

Examples are drawn derandomised with a fixed count per schema, so every run posts the same
bodies; ``GATEWAY_TEST_LONG_CONTRACT=1`` adds a longer run (marked ``slow``).
"""

import copy
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.clock import ManualClock
from gateway.config.agencies import BUCKETS, parse_agency
from gateway.inbound.service import InboundService, InboundTrust
from gateway.metrics import Metrics
from gateway.server import create_app
from gateway.settlement.answers import ANSWER_TYPES
from gateway.signing import (
    SigningKey,
    generate_ed25519_pair,
    parse_ed25519_private,
    parse_ed25519_public,
    sign,
)
from gateway.store.database import Database
from schemas.events import EVENT_TYPES, example_event
from tests.conftest import Seeder
from tests.contract import (
    Mutation,
    RawNumber,
    Verdict,
    apply,
    drawn,
    dumps,
    judge_event,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
PROBLEM = "application/problem+json"
VALID_PER_SCHEMA = 12
MUTATED_PER_SCHEMA = 24
Client = TestClient[web.Request, web.Application]


@dataclass
class Inbound:
    client: Client
    key: SigningKey
    held: list[str]
    clock: ManualClock
    sent: int = 0

    async def post(self, body: bytes) -> tuple[int, str, bytes]:
        self.sent += 1
        msg_id = f"evt_contract_{self.sent}_{hashlib.sha256(body).hexdigest()[:12]}"
        ts = int(self.clock.now())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(msg_id, ts, body, [self.key]),
        }
        async with self.client.post("/v1/agencies/AGY_C/events", data=body, headers=headers) as r:
            return r.status, r.content_type, await r.read()


@pytest.fixture
async def inbound(
    db: Database, seed_placements: Seeder, aiohttp_client: AiohttpClient
) -> AsyncIterator[Inbound]:
    """AGY_C (Ed25519, ``v1a``) holding three placements, and the inbound API."""
    clock = ManualClock(START)
    agency = parse_agency(
        {
            "id": "AGY_C",
            "name": "contract test agency",
            "channel": "webhook",
            "endpoint": {"url": "https://agency.invalid/hooks"},
            "signing": {"scheme": "v1a", "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
            "inbound": {"scheme": "v1a", "keys": [{"env": "UNUSED_IN_THIS_TEST"}]},
            "eligibility": {"buckets": list(BUCKETS)},
            "capacity": {"max_open_placements": 100_000},
        }
    )
    placed = await seed_placements(db, {"AGY_C": agency}, 3, clock, seed=11)
    private, public = generate_ed25519_pair()
    metrics = Metrics()
    service = InboundService(
        db=db,
        trust={"AGY_C": InboundTrust("AGY_C", (parse_ed25519_public(public),), 300)},
        clock=clock,
        metrics=metrics,
        max_body_bytes=1 << 20,
    )
    client = await aiohttp_client(create_app(inbound=service, db=db, metrics_=metrics))
    yield Inbound(client, parse_ed25519_private(private), [p[0] for p in placed], clock)
    await service.aclose()


def on_held(document: Any, held: list[str]) -> Any:
    """The document with its placement ids replaced by ones the agency holds (an event for
    someone else's placement is refused for that reason, not the contract's)."""
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, dict):
        if "placement_id" in data:
            data["placement_id"] = held[0]
        for n, item in enumerate(data.get("items") or []):
            if isinstance(item, dict) and "placement_id" in item:
                item["placement_id"] = held[n % len(held)]
    return document


def _placement_ids(body: bytes) -> set[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return set()
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        return set()
    found = {data.get("placement_id")} if "placement_id" in data else set()
    items = data.get("items")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            found.add(item.get("placement_id"))
    return {p for p in found if isinstance(p, str)}


ANSWER_REFUSED = "/settlement-answer-refused"


def _answers_a_statement(body: bytes) -> bool:
    try:
        return json.loads(body).get("type") in ANSWER_TYPES
    except (ValueError, AttributeError):
        return False


def named(loc: str, event_type: object) -> str:
    """A parser error location without the union's tag in front (``payment.reported.data``
    → ``data``)."""
    prefix = f"{event_type}."
    return loc[len(prefix) :] if isinstance(event_type, str) and loc.startswith(prefix) else loc


def check(body: bytes, verdict: Verdict, answer: tuple[int, str, bytes], held: set[str]) -> None:
    status, content_type, raw = answer
    where = f"body {body!r}\nverdict {verdict}\nanswer {status} {raw!r}"
    assert status < 500, where
    if verdict.outcome == "valid":
        if _answers_a_statement(body):
            # The statement it answers must exist, at that revision and hash: a check no
            # schema can state, refused with its own 422.
            refused = status == 422 and json.loads(raw)["type"].endswith(ANSWER_REFUSED)
            assert status == 200 or refused, where
        elif _placement_ids(body) <= held:
            assert status == 200, where
        else:
            assert status in (200, 403), where
        return
    assert content_type == PROBLEM, where
    problem = json.loads(raw)
    if verdict.outcome == "malformed":
        assert status == 400, where
        if verdict.key is not None:
            assert repr(verdict.key) in problem["detail"], where
        return
    assert status == 422, where
    event_type = None
    try:
        event_type = json.loads(body).get("type")
    except (ValueError, AttributeError):
        pass
    locs = {named(e["loc"], event_type) for e in problem.get("errors", [])}
    assert locs & verdict.fields, where


async def run_contract(
    inbound: Inbound, event_type: str, valid: int, mutated: int
) -> dict[str, int]:
    seen: dict[str, int] = {}
    held = set(inbound.held)
    documents_, pairs = drawn(event_type, valid, mutated)
    for document in documents_:
        body = dumps(on_held(copy.deepcopy(document), inbound.held))
        verdict = judge_event(body)
        assert verdict.outcome == "valid", (body, verdict)
        check(body, verdict, await inbound.post(body), held)
        seen["valid"] = seen.get("valid", 0) + 1
    for document, mutation in pairs:
        body = apply(on_held(copy.deepcopy(document), inbound.held), mutation)
        verdict = judge_event(body)
        check(body, verdict, await inbound.post(body), held)
        seen[verdict.outcome] = seen.get(verdict.outcome, 0) + 1
    return seen


@pytest.mark.parametrize("event_type", EVENT_TYPES)
async def test_the_api_accepts_exactly_what_the_published_schema_accepts(
    inbound: Inbound, event_type: str
) -> None:
    seen = await run_contract(inbound, event_type, VALID_PER_SCHEMA, MUTATED_PER_SCHEMA)
    # Both sides of the line were exercised for every schema.
    assert seen["valid"] >= VALID_PER_SCHEMA and seen.get("invalid", 0) > 0, seen


LONG_RUN = "GATEWAY_TEST_LONG_CONTRACT"
"""Set to run the long profile (360 examples per schema, minutes per database); the suite
marks ``slow`` but runs it everywhere, so this one also waits to be asked for."""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(LONG_RUN), reason=f"set {LONG_RUN}=1 for the long run")
@pytest.mark.parametrize("event_type", EVENT_TYPES)
async def test_the_long_contract_run(inbound: Inbound, event_type: str) -> None:
    seen = await run_contract(inbound, event_type, 60, 300)
    assert seen.get("malformed", 0) > 0 and seen.get("invalid", 0) > 0, seen


ISSUE_EXAMPLES = [
    ("payment.reported", ("data", "amount", "amount_minor"), value)
    for value in (True, "5000", "5_000", 5000.0, RawNumber("5e3"), RawNumber("5000.00"))
] + [
    ("contact.attempted", ("data", "effective"), 1),
    ("payment.reported", ("data", "paid_at"), "2000-01-01T00:30:00+01:00"),
    ("promise.made", ("data", "promised_date"), "1999-12-31"),
    ("placement.rejected", ("data", "placement_id"), "PL-1\n"),
]


@pytest.mark.parametrize(("event_type", "path", "value"), ISSUE_EXAMPLES, ids=repr)
async def test_the_wrong_types_the_issue_names_are_422_by_the_contract_and_the_api(
    inbound: Inbound, event_type: str, path: tuple[str, ...], value: object
) -> None:
    document = on_held(json.loads(json.dumps(example_event(event_type))), inbound.held)
    body = apply(document, Mutation("replace", path, value))
    verdict = judge_event(body)
    assert verdict == Verdict("invalid", frozenset({".".join(path)})), verdict
    check(body, verdict, await inbound.post(body), set(inbound.held))


async def test_a_repeated_key_is_400_by_the_contract_and_the_api(inbound: Inbound) -> None:
    document = on_held(json.loads(json.dumps(example_event("payment.reported"))), inbound.held)
    body = apply(document, Mutation("duplicate", ("data", "amount", "amount_minor")))
    assert body.count(b'"amount_minor"') == 2
    verdict = judge_event(body)
    assert verdict == Verdict("malformed", key="amount_minor")
    check(body, verdict, await inbound.post(body), set(inbound.held))
