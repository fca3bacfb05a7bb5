"""The ops console served for real (aiohttp test server on loopback, real SQLite, real
dispatch and inbound): login, roles, CSRF, session expiry, every action's effect on the
record and its evidence leaf, bulk actions, the case timeline, PII masking and reveals, the
JSON API with tokens, and the CLI.
"""

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import TCPConnector, web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from pytest_aiohttp import AiohttpClient, AiohttpServer

from adapters.email.triage import VouchedReplyReader
from gateway.allocation.placements import PlacementService
from gateway.bootstrap import build, load_config
from gateway.cli import main
from gateway.clock import ManualClock, to_datetime
from gateway.config.settings import AllocationSection
from gateway.console import accounts, api_docs, personal_data
from gateway.console.sessions import Auth
from gateway.contracts.openapi import openapi_document
from gateway.dispatch.outbox import open_stored
from gateway.evidence.bundle import verify_bundle
from gateway.keys import self_signed
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches
from gateway.reporting.scorecards import period, report, scorecards
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import ActionRefused, ActionRequest, MismatchFilter
from gateway.server import create_app
from gateway.store.console_tables import (
    LoginAttempt,
    MismatchAction,
    MismatchAssignment,
    MismatchComment,
    PiiReveal,
)
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import (
    AgencyEventRow,
    EvidenceLeaf,
    Mismatch,
    OutboxItem,
    Placement,
)
from tests.console_world import (
    ALPHA,
    BETA,
    PASSWORD,
    START,
    ConsoleWorld,
    StubAgency,
    build_world,
)
from tests.factories import agency_config

Client = TestClient[web.Request, web.Application]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
ACTIONS = MismatchAction.__table__  # type: ignore[attr-defined]
COMMENTS = MismatchComment.__table__  # type: ignore[attr-defined]
ASSIGNMENTS = MismatchAssignment.__table__  # type: ignore[attr-defined]
REVEALS = PiiReveal.__table__  # type: ignore[attr-defined]
ATTEMPTS = LoginAttempt.__table__  # type: ignore[attr-defined]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@dataclass
class Console:
    world: ConsoleWorld
    server: TestServer
    make_client: Any

    async def client(self) -> Client:
        client: Client = await self.make_client(self.server)
        return client

    async def login(self, name: str, password: str = PASSWORD) -> "Session":
        client = await self.client()
        session = Session(client)
        response = await session.login(name, password)
        assert response.status == 303, await response.text()
        return session

    async def one(self, query: Any) -> Any:
        async with self.world.gateway.db.snapshot() as conn:
            return (await conn.execute(query)).one()

    def packet_bytes(self, row: Any) -> bytes:
        """An outbox row's packet bytes, opened (they are sealed at rest)."""
        return open_stored(self.world.gateway.pii, row.dedupe_key, row.payload)

    async def all(self, query: Any) -> list[Any]:
        async with self.world.gateway.db.snapshot() as conn:
            return list((await conn.execute(query)).all())

    async def mismatch(self, mismatch_id: int) -> Any:
        return await self.one(sa.select(MISMATCHES).where(MISMATCHES.c.id == mismatch_id))


@dataclass
class Session:
    client: Client
    csrf: str = ""

    async def login(self, name: str, password: str, next_: str = "/") -> Any:
        page = await self.client.get("/login")
        [token] = LOGIN_TOKEN.findall(await page.text())
        response = await self.client.post(
            "/login",
            data={"login_token": token, "name": name, "password": password, "next": next_},
            allow_redirects=False,
        )
        if response.status == 303:
            home = await self.client.get("/")
            self.csrf = CSRF.findall(await home.text())[0]
        return response

    async def act(self, mismatch_id: int, action: str, **fields: str) -> Any:
        data = {"csrf_token": self.csrf, "action": action, **fields}
        return await self.client.post(
            f"/mismatches/{mismatch_id}/actions", data=data, allow_redirects=False
        )

    async def api(self, method: str, path: str, body: object = None) -> Any:
        headers = {"X-CSRF-Token": self.csrf}
        return await self.client.request(method, f"/api/v1{path}", json=body, headers=headers)


@pytest.fixture
async def console(
    make_config: Any,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Console]:
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    world = await build_world(make_config, tmp_path, str(agency.make_url("/hooks")), stub)
    gateway = world.gateway
    app = create_app(
        inbound=gateway.inbound,
        db=gateway.db,
        metrics_=gateway.metrics,
        console=gateway.console_services(),
    )
    server = await aiohttp_server(app)
    yield Console(world, server, aiohttp_client)
    await gateway.aclose()


async def with_settings(
    console: Console, aiohttp_server: AiohttpServer, **settings: Any
) -> Console:
    """The same world served with other ``[console]`` settings."""
    gateway = console.world.gateway
    services = gateway.console_services()
    changed = services.settings.model_copy(update=settings)
    services = replace(
        services,
        settings=changed,
        auth=Auth(db=gateway.db, settings=changed, clock=gateway.clock),
    )
    app = create_app(
        inbound=gateway.inbound, db=gateway.db, metrics_=gateway.metrics, console=services
    )
    return Console(console.world, await aiohttp_server(app), console.make_client)


def _session_cookie(response: Any) -> str:
    [cookie] = [c for c in response.headers.getall("Set-Cookie") if "agw_session=" in c]
    return str(cookie)


# --- login, sessions, cookies -------------------------------------------------------------


async def test_pages_need_a_login_and_come_back_after_it(console: Console) -> None:
    client = await console.client()
    response = await client.get("/mismatches?kind=missing_ack", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=%2Fmismatches%3Fkind%3Dmissing_ack"
    api = await client.get("/api/v1/dashboard")
    assert api.status == 401
    assert api.content_type == "application/problem+json"
    assert api.headers["WWW-Authenticate"].startswith("Bearer")


async def test_login_sets_a_hardened_session_cookie_and_security_headers(console: Console) -> None:
    session = Session(await console.client())
    response = await session.login("olga", PASSWORD)
    cookie = _session_cookie(response)
    assert cookie.startswith("agw_session=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http and cookie_secure = "auto"
    page = await session.client.get("/")
    assert page.status == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    # The session id is stored hashed: the cookie value is nowhere in the database.
    value = cookie.split(";")[0].split("=", 1)[1]
    sessions = await console.all(sa.text("SELECT id FROM console_sessions"))
    assert value not in {row[0] for row in sessions}


@pytest.mark.parametrize("path", ["/no-such-page", "/mismatches/999999999", "/static/nope.css"])
async def test_every_answer_carries_the_security_headers_even_a_404(
    console: Console, path: str
) -> None:
    session = Session(await console.client())
    await session.login("olga", PASSWORD)
    response = await session.client.get(path)
    assert response.status == 404
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_failed_login_keeps_the_name_and_where_the_user_was_going(
    console: Console,
) -> None:
    session = Session(await console.client())
    response = await session.login("olga", "wrong password!!", next_="/agencies")
    assert response.status == 401
    page = await response.text()
    assert 'name="name" value="olga"' in page
    assert 'name="next" value="/agencies"' in page
    assert (await session.login("olga", PASSWORD, next_="/agencies")).headers["Location"] == (
        "/agencies"
    )


async def test_cookies_are_secure_over_https(
    console: Console, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    cert, key = self_signed("console test", loopback=True)
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client_tls = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    gateway = console.world.gateway
    app = create_app(
        inbound=gateway.inbound,
        db=gateway.db,
        metrics_=gateway.metrics,
        console=gateway.console_services(),  # cookie_secure = "auto"
    )
    server = await aiohttp_server(app, ssl=server_tls)
    client = await console.make_client(server, connector=TCPConnector(ssl=client_tls))
    session = Session(client)
    response = await session.login("olga", PASSWORD)
    assert response.status == 303
    cookie = _session_cookie(response)
    assert cookie.startswith("__Host-agw_session=") and "Secure" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert (await client.get("/", allow_redirects=False)).status == 200


async def test_cookie_secure_always_marks_cookies_secure_even_over_http(
    console: Console, aiohttp_server: AiohttpServer
) -> None:
    always = await with_settings(console, aiohttp_server, cookie_secure="always")
    client = await always.client()
    page = await client.get("/login")
    [cookie] = page.headers.getall("Set-Cookie")
    assert "Secure" in cookie
    # A browser never returns a Secure cookie over plain http, so login cannot work there.
    session = Session(client)
    assert (await session.login("olga", PASSWORD)).status == 403


async def test_wrong_passwords_are_refused_then_rate_limited(console: Console) -> None:
    session = Session(await console.client())
    for _ in range(5):
        response = await session.login("olga", "wrong password!!")
        assert response.status == 401
        assert "Wrong name or password." in await response.text()
    unknown = await session.login("nobody", "wrong password!!")
    assert unknown.status == 401
    throttled = await session.login("olga", PASSWORD)
    assert throttled.status == 429
    assert "too many failed logins" in await throttled.text()
    attempts = await console.all(sa.select(ATTEMPTS.c.name, ATTEMPTS.c.succeeded))
    assert ("olga", True) not in attempts and len(attempts) == 7


@pytest.mark.parametrize(
    ("target", "lands"),
    [
        ("/mismatches?kind=missing_ack", "/mismatches?kind=missing_ack"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("/\t/evil.example/", "/"),
        ("/\n/evil.example/", "/"),
        ("\\\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
    ],
)
async def test_login_follows_next_only_to_a_path_on_this_site(
    console: Console, target: str, lands: str
) -> None:
    session = Session(await console.client())
    response = await session.login("olga", PASSWORD, next_=target)
    assert (response.status, response.headers["Location"]) == (303, lands)


async def test_login_form_without_its_token_is_refused(console: Console) -> None:
    client = await console.client()
    response = await client.post(
        "/login", data={"name": "olga", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 403
    assert "Set-Cookie" not in response.headers or "agw_session" not in response.headers.get(
        "Set-Cookie", ""
    )


async def test_sessions_expire_when_idle_and_absolutely(console: Console) -> None:
    clock = console.world.clock
    session = await console.login("vic")
    clock.advance(31 * 60)
    idle = await session.client.get("/", allow_redirects=False)
    assert idle.status == 303 and idle.headers["Location"].startswith("/login")

    session = await console.login("vic")
    for _ in range(24):  # active every 29 minutes: the idle limit never hits ...
        clock.advance(29 * 60)
        assert (await session.client.get("/", allow_redirects=False)).status == 200
    clock.advance(29 * 60)  # ... but 12 hours after login the session ends anyway
    ended = await session.client.get("/", allow_redirects=False)
    assert ended.status == 303


async def test_logout_ends_the_session(console: Console) -> None:
    session = await console.login("vic")
    response = await session.client.post(
        "/logout", data={"csrf_token": session.csrf}, allow_redirects=False
    )
    assert response.status == 303
    assert (await session.client.get("/", allow_redirects=False)).status == 303
    assert await console.all(sa.text("SELECT id FROM console_sessions")) == []


async def test_disabling_a_user_ends_their_session_and_tokens(console: Console) -> None:
    session = await console.login("olga")
    token = await accounts.create_token(console.world.gateway.db, "olga", "test", now=_dt(console))
    client = await console.client()
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.json())["role"] == "operator"
    await accounts.set_disabled(console.world.gateway.db, "olga", disabled=True, now=_dt(console))
    assert (await session.client.get("/", allow_redirects=False)).status == 303
    refused = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status == 401


def _dt(console: Console) -> datetime:
    return to_datetime(console.world.clock.now())


# --- roles and CSRF -----------------------------------------------------------------------


async def test_a_viewer_reads_but_is_refused_every_action(console: Console) -> None:
    mismatch_id = await console.world.mismatch_id("ack_balance_differs")
    viewer = await console.login("vic")
    page = await viewer.client.get(f"/mismatches/{mismatch_id}")
    text = await page.text()
    assert page.status == 200 and "Read-only" in text and 'name="action"' not in text
    refused = await viewer.act(mismatch_id, "dismiss", reason="not mine to decide")
    assert refused.status == 403
    assert "This needs the operator role" in await refused.text()
    api = await viewer.api("POST", f"/mismatches/{mismatch_id}/actions", {"action": "dismiss"})
    assert api.status == 403
    assert (await console.mismatch(mismatch_id)).state == "open"
    assert await console.all(sa.select(ACTIONS)) == []


async def test_forms_without_the_session_csrf_token_are_refused(console: Console) -> None:
    mismatch_id = await console.world.mismatch_id("ack_balance_differs")
    operator = await console.login("olga")
    for token in ("", "forged-token"):
        response = await operator.client.post(
            f"/mismatches/{mismatch_id}/actions",
            data={"csrf_token": token, "action": "dismiss", "reason": "x"},
            allow_redirects=False,
        )
        assert response.status == 403
        assert "Form expired" in await response.text()
    other = await console.login("ada")  # another session's token is not this session's
    response = await operator.client.post(
        f"/mismatches/{mismatch_id}/actions",
        data={"csrf_token": other.csrf, "action": "dismiss", "reason": "x"},
    )
    assert response.status == 403
    cross = await operator.client.post(
        f"/mismatches/{mismatch_id}/actions",
        data={"csrf_token": operator.csrf, "action": "dismiss", "reason": "x"},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status == 403
    api = await operator.client.post(
        f"/api/v1/mismatches/{mismatch_id}/actions", json={"action": "dismiss", "reason": "x"}
    )
    assert api.status == 403
    assert (await console.mismatch(mismatch_id)).state == "open"


async def test_only_admins_manage_users(console: Console) -> None:
    operator = await console.login("olga")
    assert (await operator.client.get("/users")).status == 403
    admin = await console.login("ada")
    added = await admin.client.post(
        "/users",
        data={
            "csrf_token": admin.csrf,
            "name": "nina",
            "role": "operator",
            "password": "another long password",
        },
        allow_redirects=False,
    )
    assert added.status == 303
    await console.login("nina", "another long password")
    short = await admin.client.post(
        "/users",
        data={"csrf_token": admin.csrf, "name": "pat", "role": "viewer", "password": "short"},
    )
    assert short.status == 400 and "at least 12 characters" in await short.text()
    disabled = await admin.client.post(
        "/users/nina/disable", data={"csrf_token": admin.csrf}, allow_redirects=False
    )
    assert disabled.status == 303
    assert (
        await Session(await console.client()).login("nina", "another long password")
    ).status == 401


# --- actions and their evidence -----------------------------------------------------------


async def _leaf(console: Console, seq: int) -> dict[str, Any]:
    row = await console.one(sa.select(LEAVES).where(LEAVES.c.seq == seq))
    body: dict[str, Any] = json.loads(row.body)
    assert (row.kind, row.ref) == (body["kind"], body["ref"])
    return body


async def _action_row(console: Console, mismatch_id: int) -> Any:
    [row] = await console.all(sa.select(ACTIONS).where(ACTIONS.c.mismatch_id == mismatch_id))
    return row


async def _evidence_verifies(console: Console) -> None:
    gateway = console.world.gateway
    report = await gateway.evidence.verify([gateway.note_verifier])
    assert report.ok, report.problems


async def test_accepting_the_agencys_loaded_balance_adjusts_our_record(console: Console) -> None:
    mismatch_id = await console.world.mismatch_id("ack_balance_differs")
    before = await console.mismatch(mismatch_id)
    placement = await console.one(
        sa.select(PLACEMENTS).where(PLACEMENTS.c.id == before.placement_id)
    )
    operator = await console.login("olga")
    response = await operator.act(mismatch_id, "accept", reason="agency includes the late fee")
    assert response.status == 303
    assert response.headers["Location"] == f"/mismatches/{mismatch_id}?done=accept"
    after = await console.one(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == placement.id))
    assert after.balance_minor == placement.acked_balance_minor == placement.balance_minor + 5_000
    assert (await console.mismatch(mismatch_id)).state == "resolved"
    row = await _action_row(console, mismatch_id)
    assert (row.actor, row.reason, row.from_state, row.to_state) == (
        "olga",
        "agency includes the late fee",
        "open",
        "resolved",
    )
    leaf = await _leaf(console, row.evidence_seq)
    assert leaf["kind"] == "action" and leaf["ref"] == f"mismatch:{mismatch_id}"
    assert leaf["actor"] == "olga" and leaf["reason"] == "agency includes the late fee"
    assert leaf["action_id"] == row.id
    assert leaf["details"]["balance_minor"] == {
        "before": placement.balance_minor,
        "after": placement.balance_minor + 5_000,
    }
    page = await operator.client.get(response.headers["Location"])
    text = await page.text()
    assert "Accept agency figure: recorded" in text and "agency includes the late fee" in text
    again = await operator.act(mismatch_id, "accept", reason="twice")
    assert again.status == 409
    assert "it is resolved" in await again.text()
    # The timeline shows what each step recorded at the time: the placement as sent.
    case_id = (await (await operator.api("GET", f"/mismatches/{mismatch_id}")).json())["case_id"]
    timeline = await (await operator.api("GET", f"/cases/{case_id}/timeline")).json()
    [placed] = [e for e in timeline["entries"] if e["type"] == "placed"]
    assert placed["balance_minor"] == placement.balance_minor != after.balance_minor
    await _evidence_verifies(console)


async def test_accepting_a_re_reported_payment_counts_it(console: Console) -> None:
    mismatch_id = await console.world.mismatch_id("conflicting_duplicate")
    m = await console.mismatch(mismatch_id)
    before = await console.one(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == m.placement_id))
    operator = await console.login("olga")
    result = await operator.api(
        "POST",
        f"/mismatches/{mismatch_id}/actions",
        {"action": "accept", "reason": "bank statement shows 120.00"},
    )
    assert result.status == 200, await result.text()
    body = await result.json()
    assert body["to_state"] == "resolved" and body["details"]["applied_event_id"] == m.event_id
    after = await console.one(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == m.placement_id))
    assert after.collected_minor == before.collected_minor + 2_000 == 12_000
    event = await console.one(sa.select(EVENTS.c.applied).where(EVENTS.c.id == m.event_id))
    assert event.applied is True
    assert (await _leaf(console, body["evidence_seq"]))["action"] == "accept"


async def test_resending_a_dead_packet_requeues_it_and_a_repeat_failure_is_raised_again(
    console: Console,
) -> None:
    world = console.world
    mismatch_id = await world.mismatch_id("dead_delivery")
    m = await console.mismatch(mismatch_id)
    item = await console.one(sa.select(OUTBOX).where(OUTBOX.c.id == m.outbox_id))
    assert item.state == "dead"
    operator = await console.login("olga")
    response = await operator.act(mismatch_id, "resend", reason="agency fixed the product code")
    assert response.status == 303
    again = await console.one(sa.select(OUTBOX).where(OUTBOX.c.id == item.id))
    assert (again.state, again.dedupe_key, again.attempts) == ("pending", item.dedupe_key, 0)
    resolved = await console.mismatch(mismatch_id)
    assert resolved.state == "resolved" and resolved.dedupe_key != m.dedupe_key
    leaf = await _leaf(console, (await _action_row(console, mismatch_id)).evidence_seq)
    assert leaf["details"] == {"requeued_outbox_ids": [item.id]}
    # The agency still refuses it: the packet dies again and ops hear about it again.
    dispatcher = await world.gateway.dispatcher()
    await dispatcher.drain_once()
    dead = await console.all(
        sa.select(MISMATCHES.c.id, MISMATCHES.c.state).where(
            MISMATCHES.c.kind == "dead_delivery", MISMATCHES.c.outbox_id == item.id
        )
    )
    assert [state for _id, state in dead] == ["resolved", "open"]


async def test_recalling_a_placement_queues_the_recall_packet(console: Console) -> None:
    world = console.world
    mismatch_id = await world.mismatch_id("missing_ack")
    m = await console.mismatch(mismatch_id)
    operator = await console.login("olga")
    response = await operator.act(
        mismatch_id, "recall", reason="agency unreachable for a week", recall_code="NO_RESPONSE"
    )
    assert response.status == 303
    placement = await console.one(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == m.placement_id))
    assert (placement.state, placement.recall_reason) == ("recalled", "NO_RESPONSE")
    packet = await console.one(
        sa.select(OUTBOX).where(
            OUTBOX.c.placement_id == m.placement_id, OUTBOX.c.packet_type == "placement.recalled"
        )
    )
    assert packet.state == "pending"
    assert json.loads(console.packet_bytes(packet))["data"]["reason_code"] == "NO_RESPONSE"
    packet_leaf = await console.one(
        sa.select(LEAVES.c.seq).where(
            LEAVES.c.kind == "packet", LEAVES.c.ref == f"outbox:{packet.id}"
        )
    )
    action = await _action_row(console, mismatch_id)
    assert action.evidence_seq > packet_leaf.seq  # same transaction, the action attested last
    assert (await _leaf(console, action.evidence_seq))["details"]["recall_code"] == "NO_RESPONSE"
    await _evidence_verifies(console)


async def test_amending_queues_the_next_version_with_the_new_balance(console: Console) -> None:
    mismatch_id = await console.world.mismatch_id("missing_activity")
    m = await console.mismatch(mismatch_id)
    before = await console.one(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == m.placement_id))
    operator = await console.login("olga")
    response = await operator.act(
        mismatch_id, "amend", reason="restructured after a partial payment", balance="1234.56"
    )
    assert response.status == 303, await response.text()
    after = await console.one(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == m.placement_id))
    assert (after.version, after.balance_minor) == (before.version + 1, 123_456)
    packet = await console.one(
        sa.select(OUTBOX).where(
            OUTBOX.c.placement_id == m.placement_id, OUTBOX.c.packet_type == "placement.amended"
        )
    )
    data = json.loads(console.packet_bytes(packet))["data"]
    assert data["version"] == 2 and data["balance"]["amount_minor"] == 123_456
    assert data["previous_balance"]["amount_minor"] == before.balance_minor
    assert data["reason"] == "restructured after a partial payment"
    bad = await operator.act(mismatch_id, "amend", reason="x", balance="12.345")
    assert bad.status in (400, 409)


async def test_dismiss_and_write_off_need_a_reason_and_close_the_mismatch(console: Console) -> None:
    world = console.world
    operator = await console.login("olga")
    unknown = await world.mismatch_id("unknown_placement")
    refused = await operator.act(unknown, "dismiss", reason="")
    assert refused.status == 409
    assert "dismiss needs a reason" in await refused.text()
    assert (await console.mismatch(unknown)).state == "open"
    assert (await operator.act(unknown, "dismiss", reason="agency test message")).status == 303
    assert (await console.mismatch(unknown)).state == "dismissed"
    duplicate = await world.mismatch_id("conflicting_duplicate")
    assert (await operator.act(duplicate, "write_off", reason="20.00 lost")).status == 303
    assert (await console.mismatch(duplicate)).state == "written_off"


async def test_investigate_assign_comment_reopen(console: Console) -> None:
    mismatch_id = await console.world.mismatch_id("missing_ack")
    operator = await console.login("olga")
    assert (await operator.act(mismatch_id, "investigate")).status == 303
    assert (await operator.act(mismatch_id, "assign", assignee="ada")).status == 303
    assert (
        await operator.act(mismatch_id, "comment", reason="called their ops desk")
    ).status == 303
    assert (await operator.act(mismatch_id, "assign", assignee="ghost")).status == 409
    assert (await operator.act(mismatch_id, "reopen")).status == 303
    assert (await console.mismatch(mismatch_id)).state == "open"
    [assignment] = await console.all(sa.select(ASSIGNMENTS))
    assert (assignment.mismatch_id, assignment.assignee, assignment.assigned_by) == (
        mismatch_id,
        "ada",
        "olga",
    )
    [comment] = await console.all(sa.select(COMMENTS))
    leaf = await _leaf(console, comment.evidence_seq)
    assert leaf["action"] == "comment" and leaf["actor"] == "olga"
    assert leaf["details"]["comment_sha256"]
    actions = await console.all(
        sa.select(ACTIONS.c.action, ACTIONS.c.from_state, ACTIONS.c.to_state).order_by(ACTIONS.c.id)
    )
    assert actions == [
        ("investigate", "open", "investigating"),
        ("assign", "investigating", "investigating"),
        ("reopen", "investigating", "open"),
    ]
    queue = await operator.api("GET", "/mismatches?assignee=ada")
    assert [m["id"] for m in (await queue.json())["items"]] == [mismatch_id]
    detail = await (await operator.api("GET", f"/mismatches/{mismatch_id}")).json()
    assert [h["type"] for h in detail["history"]] == ["action", "action", "comment", "action"]


async def test_bulk_actions_on_a_filtered_set(console: Console) -> None:
    operator = await console.login("olga")
    targets = await console.all(
        sa.select(MISMATCHES.c.id).where(
            MISMATCHES.c.kind == "missing_activity", MISMATCHES.c.agency_id == BETA
        )
    )
    assert len(targets) >= 3
    response = await operator.api(
        "POST",
        "/mismatches/bulk",
        {
            "action": "dismiss",
            "reason": "statement shows activity",
            "filter": {"kind": ["missing_activity"], "agency": BETA},
        },
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["matched"] == len(targets) and not body["refused"]
    rows = await console.all(sa.select(ACTIONS).where(ACTIONS.c.batch == body["batch"]))
    assert sorted(r.mismatch_id for r in rows) == sorted(t.id for t in targets)
    assert len({r.evidence_seq for r in rows}) == len(rows)
    states = await console.all(
        sa.select(MISMATCHES.c.state).where(MISMATCHES.c.id.in_([t.id for t in targets]))
    )
    assert {s for (s,) in states} == {"dismissed"}
    # The HTML queue: tick two rows, one of them already closed.
    open_one = await console.world.mismatch_id("missing_ack")
    page = await operator.client.post(
        "/mismatches/bulk",
        data=[
            ("csrf_token", operator.csrf),
            ("scope", "picked"),
            ("action", "investigate"),
            ("reason", ""),
            ("pick", str(open_one)),
            ("pick", str(targets[0].id)),
        ],
    )
    text = await page.text()
    assert page.status == 200
    assert "1 of 2 mismatch(es) done, 1 refused" in text and "it is dismissed" in text
    await _evidence_verifies(console)


async def test_all_matching_acts_on_the_rows_the_page_counted_after_confirming(
    console: Console,
) -> None:
    operator = await console.login("olga")
    query = f"kind=missing_activity&agency={BETA}"
    page = await (await operator.client.get(f"/mismatches?{query}")).text()
    [upto] = re.findall(r'name="upto" value="(\d+)"', page)
    counted = await console.all(
        sa.select(MISMATCHES.c.id).where(
            MISMATCHES.c.kind == "missing_activity",
            MISMATCHES.c.agency_id == BETA,
            MISMATCHES.c.state.in_(["open", "investigating"]),
        )
    )
    assert f"all {len(counted)} matching" in page
    # A mismatch of the same kind arrives after the page was shown.
    async with console.world.gateway.db.transaction() as conn:
        await insert_mismatches(
            conn,
            [
                (
                    "test:late",
                    MismatchDraft("missing_activity", None, "late", {}, {}),
                    BETA,
                    None,
                    None,
                )
            ],
            now=START,
        )
    form = [
        ("csrf_token", operator.csrf),
        ("scope", "filter"),
        ("kind", "missing_activity"),
        ("agency", BETA),
        ("upto", upto),
        ("action", "write_off"),
        ("reason", "agreed with the agency"),
    ]
    ask = await operator.client.post("/mismatches/bulk", data=form)
    text = await ask.text()
    assert ask.status == 200 and "Confirm" in text
    assert re.findall(r'id="confirm-count">(\d+)<', text) == [str(len(counted))]
    assert (
        await console.all(sa.select(MISMATCHES.c.id).where(MISMATCHES.c.state == "written_off"))
        == []
    ), "nothing happens before the confirmation"
    done = await operator.client.post(
        "/mismatches/bulk", data=[*form, ("confirm_count", str(len(counted)))]
    )
    assert f"{len(counted)} of {len(counted)} mismatch(es) done" in await done.text()
    late = await console.one(
        sa.select(MISMATCHES.c.state).where(MISMATCHES.c.dedupe_key == "test:late")
    )
    assert late.state == "open", "the row raised after the page counted is untouched"


# --- reading: dashboard, queue, timeline, agencies, PII -----------------------------------


async def test_dashboard_counts_match_the_record(console: Console) -> None:
    viewer = await console.login("vic")
    data = await (await viewer.api("GET", "/dashboard")).json()
    open_count = await console.one(
        sa.select(sa.func.count()).where(MISMATCHES.c.state.in_(["open", "investigating"]))
    )
    assert data["open_mismatches"] == open_count[0]
    by_agency = {a["agency_id"]: a for a in data["agencies"]}
    assert by_agency[BETA]["dead"] == 1 and data["dead"] == 1
    assert data["delivered_today"] == 0  # the world's clock is days past the dispatch
    assert by_agency[BETA]["circuit"]["state"] in ("closed", "open", "half_open")
    html = await (await viewer.client.get("/")).text()
    assert "Open mismatches by kind and agency" in html and "ack balance differs" in html


async def test_the_scorecards_api_answers_what_the_scorecards_are(console: Console) -> None:
    viewer = await console.login("vic")
    today = _dt(console).date()
    data = await (await viewer.api("GET", "/scorecards")).json()
    start, end = period(None, None, today=today)
    gateway = console.world.gateway
    expected = report(
        await scorecards(gateway.db, gateway.agencies, start=start, end=end), start, end
    )
    assert data == json.loads(json.dumps(expected))
    assert sum(card["placements"] for card in data["agencies"]) > 0
    assert data["period"]["to"] == f"{today + timedelta(days=1)}T00:00:00+00:00"
    old = await (await viewer.api("GET", "/scorecards?from=2020-01-01&to=2020-02-01")).json()
    assert old["period"]["from"].startswith("2020-01-01")
    assert {card["placements"] for card in old["agencies"]} == {0}
    for query, field in (
        ("from=yesterday", "from: 'yesterday'"),
        ("from=2030-01-02&to=2030-01-01", "from: the period"),
    ):
        bad = await viewer.api("GET", f"/scorecards?{query}")
        assert bad.status == 400 and bad.content_type == "application/problem+json"
        assert (await bad.json())["detail"].startswith(field)


async def test_the_queue_filters_sorts_and_pages(console: Console) -> None:
    viewer = await console.login("vic")
    page = await (await viewer.api("GET", f"/mismatches?kind=missing_ack&agency={BETA}")).json()
    assert page["total"] > 0
    assert {(m["kind"], m["agency_id"]) for m in page["items"]} == {("missing_ack", BETA)}
    severities = await (await viewer.api("GET", "/mismatches?sort=severity&per_page=200")).json()
    ranks = [{"high": 3, "medium": 2, "low": 1}[m["severity"]] for m in severities["items"]]
    assert ranks == sorted(ranks, reverse=True)
    first = await (await viewer.api("GET", "/mismatches?per_page=5&dir=asc")).json()
    second = await (await viewer.api("GET", "/mismatches?per_page=5&page=2&dir=asc")).json()
    ids = [m["id"] for m in first["items"]] + [m["id"] for m in second["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert first["pages"] == -(-first["total"] // 5)
    html = await (await viewer.client.get("/mismatches?kind=dead_delivery")).text()
    assert "1 matching" in html and "dead delivery" in html


async def test_the_case_timeline_shows_every_packet_receipt_event_and_action(
    console: Console,
) -> None:
    mismatch_id = await console.world.mismatch_id("conflicting_duplicate")
    m = await console.mismatch(mismatch_id)
    operator = await console.login("olga")
    detail = await (await operator.api("GET", f"/mismatches/{mismatch_id}")).json()
    case_id = detail["case_id"]
    timeline = await (await operator.api("GET", f"/cases/{case_id}/timeline")).json()
    steps = [e["event"] for e in timeline["entries"] if e["type"] == "status"]
    assert steps[:1] == ["place"]  # the case's lifecycle is merged in
    types = [e["type"] for e in timeline["entries"] if e["type"] != "status"]
    assert types[:3] == ["placed", "packet", "attempt"]
    assert types.count("event") == 3 and "mismatch" in types
    packet = next(e for e in timeline["entries"] if e["type"] == "packet")
    item = await console.one(sa.select(OUTBOX).where(OUTBOX.c.id == packet["outbox_id"]))
    assert packet["sha256"] == item.payload_sha256 and packet["evidence_seq"] is not None
    attempt = next(e for e in timeline["entries"] if e["type"] == "attempt")
    assert attempt["outcome"] == "delivered" and attempt["http_status"] == 200
    assert all(e["evidence_seq"] is not None for e in timeline["entries"] if e["type"] == "event")
    received = [e for e in timeline["entries"] if e["type"] == "event"]
    assert {(e["channel"], e["reply_signature"]) for e in received} == {("webhook", None)}
    assert [e["at"] for e in timeline["entries"]] == sorted(e["at"] for e in timeline["entries"])
    assert "name" not in json.dumps(timeline["case"])  # no personal data in the timeline
    await operator.act(mismatch_id, "comment", reason="asked the agency for the receipt")
    after = await (await operator.api("GET", f"/cases/{case_id}/timeline")).json()
    assert after["entries"][-1]["type"] == "comment"
    assert after["entries"][-1]["body"] == "asked the agency for the receipt"
    html = await (await operator.client.get(f"/cases/{case_id}")).text()
    assert item.payload_sha256[:16] in html and m.placement_id in html


async def test_what_the_agency_wrote_is_on_the_timeline_escaped(console: Console) -> None:
    [(placement_id, case_id, _balance), *_] = console.world.placements["AGY_ALPHA"]
    summary = '<script>alert("x")</script> 借款人投诉催收员态度恶劣'
    status = await console.world.post_event(
        "AGY_ALPHA",
        "complaint.received",
        {"placement_id": placement_id, "channel": "12378 hotline", "summary": summary},
    )
    assert status == 200
    operator = await console.login("olga")
    timeline = await (await operator.api("GET", f"/cases/{case_id}/timeline")).json()
    [complaint] = [e for e in timeline["entries"] if e.get("event_type") == "complaint.received"]
    assert ["summary", summary] in complaint["agency_text"]
    assert ["channel", "12378 hotline"] in complaint["agency_text"]
    html = await (await operator.client.get(f"/cases/{case_id}")).text()
    assert "借款人投诉催收员态度恶劣" in html and "12378 hotline" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html


async def test_personal_data_is_masked_and_each_reveal_is_audited(console: Console) -> None:
    gateway = console.world.gateway
    mismatch_id = await console.world.mismatch_id("ack_balance_differs")
    operator = await console.login("olga")
    case_id = (await (await operator.api("GET", f"/mismatches/{mismatch_id}")).json())["case_id"]
    async with gateway.db.snapshot() as conn:
        blob = (
            await conn.execute(sa.text(f"SELECT pii FROM cases WHERE id = '{case_id}'"))
        ).scalar()
    assert isinstance(blob, bytes)
    clear = gateway.pii.decrypt(blob, bound_to=case_id)
    page = await (await operator.client.get(f"/cases/{case_id}")).text()
    assert str(clear["name"]) not in page and str(clear["national_id"]) not in page
    assert str(clear["national_id"])[-4:] in page  # masked, not gone
    assert "Reveal" not in page  # operators may not see personal data by default
    refused = await operator.client.post(
        f"/cases/{case_id}/reveal", data={"csrf_token": operator.csrf, "reason": "call"}
    )
    assert refused.status == 403
    admin = await console.login("ada")
    revealed = await admin.client.post(
        f"/cases/{case_id}/reveal",
        data={"csrf_token": admin.csrf, "reason": "debtor called the hotline"},
    )
    text = await revealed.text()
    assert revealed.status == 200 and str(clear["name"]) in text and "revealed, audited" in text
    api = await admin.api("POST", f"/cases/{case_id}/pii", {"reason": "complaint follow-up"})
    assert (await api.json())["debtor"]["national_id"] == clear["national_id"]
    rows = await console.all(sa.select(REVEALS).order_by(REVEALS.c.id))
    assert [(r.user_name, r.case_id, r.reason) for r in rows] == [
        ("ada", case_id, "debtor called the hotline"),
        ("ada", case_id, "complaint follow-up"),
    ]
    leaf = await _leaf(console, rows[0].evidence_seq)
    assert leaf["kind"] == "pii_reveal" and leaf["user"] == "ada"
    assert str(clear["name"]) not in json.dumps(leaf, ensure_ascii=False)
    audit = await (await admin.client.get("/audit/pii")).text()
    assert "debtor called the hotline" in audit
    assert (await operator.client.get("/audit/pii")).status == 403


async def test_an_evidence_bundle_is_downloaded_by_an_allowed_role_with_a_reason(
    console: Console,
) -> None:
    gateway = console.world.gateway
    mismatch_id = await console.world.mismatch_id("ack_balance_differs")
    operator = await console.login("olga")
    case_id = (await (await operator.api("GET", f"/mismatches/{mismatch_id}")).json())["case_id"]
    assert (
        "Download evidence bundle"
        not in await (await operator.client.get(f"/cases/{case_id}")).text()
    )
    refused = await operator.client.post(
        f"/cases/{case_id}/evidence", data={"csrf_token": operator.csrf, "reason": "court"}
    )
    assert refused.status == 403
    admin = await console.login("ada")
    assert "Download evidence bundle" in await (await admin.client.get(f"/cases/{case_id}")).text()
    no_reason = await admin.client.post(
        f"/cases/{case_id}/evidence", data={"csrf_token": admin.csrf, "reason": " "}
    )
    assert no_reason.status == 400
    forged = await admin.client.post(f"/cases/{case_id}/evidence", data={"reason": "court"})
    assert forged.status == 403  # no CSRF token, no bundle
    got = await admin.client.post(
        f"/cases/{case_id}/evidence",
        data={"csrf_token": admin.csrf, "reason": "court order 2026-88"},
    )
    assert got.status == 200
    assert got.headers["Content-Disposition"] == f'attachment; filename="evidence-{case_id}.json"'
    bundle = await got.json()
    report = verify_bundle(bundle, [gateway.note_verifier])
    assert report.ok, report.problems
    kinds = {e["kind"] for e in bundle["entries"]}
    assert {"packet", "receipt", "pii_reveal"} <= kinds  # the download itself is in it
    [reveal] = [json.loads(e["body"]) for e in bundle["entries"] if e["kind"] == "pii_reveal"]
    assert (reveal["user"], reveal["fields"], reveal["reason"]) == (
        "ada",
        "evidence_bundle",
        "court order 2026-88",
    )
    missing = await admin.client.post(
        "/cases/AC-NOBODY/evidence", data={"csrf_token": admin.csrf, "reason": "court"}
    )
    assert missing.status == 404
    rows = await console.all(sa.select(REVEALS.c.case_id, REVEALS.c.fields))
    assert rows == [(case_id, "evidence_bundle")]  # refused and unknown cases leave no audit


async def test_the_agency_page_shows_health_backlog_attempts_and_sla_breaches(
    console: Console,
) -> None:
    viewer = await console.login("vic")
    data = await (await viewer.api("GET", f"/agencies/{BETA}")).json()
    assert data["dead"] == 1
    assert data["health"]["attempts_24h"] == 0  # the world's clock moved on four days
    outcomes = {a["outcome"] for a in data["recent_attempts"]}
    assert outcomes == {"delivered", "permanent"}
    assert data["sla_breaches_open"]["missing_ack"] > 0
    assert {b["kind"] for b in data["sla_breaches"]} <= {"missing_ack", "missing_activity"}
    html = await (await viewer.client.get(f"/agencies/{ALPHA}")).text()
    assert "Recent delivery attempts" in html and "SLA breaches" in html
    assert (await viewer.client.get("/agencies/NOPE")).status == 404
    listing = await (await viewer.client.get("/agencies")).text()
    assert "Scorecards: placements of the last 30 days" in listing
    assert listing.count('<td><a href="/agencies/') == 2 * len(console.world.gateway.agencies)


async def test_api_tokens_act_without_csrf_and_are_stored_hashed(console: Console) -> None:
    gateway = console.world.gateway
    token = await accounts.create_token(gateway.db, "olga", "script", now=_dt(console))
    client = await console.client()
    auth = {"Authorization": f"Bearer {token}"}
    mismatch_id = await console.world.mismatch_id("unknown_placement")
    response = await client.post(
        f"/api/v1/mismatches/{mismatch_id}/actions",
        json={"action": "dismiss", "reason": "scripted clean-up"},
        headers=auth,
    )
    assert response.status == 200
    assert (await response.json())["to_state"] == "dismissed"
    stored = await console.all(sa.text("SELECT token_hash FROM console_api_tokens"))
    assert token not in {row[0] for row in stored}
    bad = await client.get("/api/v1/me", headers={"Authorization": "Bearer agw_not-a-token"})
    assert bad.status == 401
    refused = await client.post(
        f"/api/v1/mismatches/{mismatch_id}/actions",
        json={"action": "dismiss", "reason": "again"},
        headers=auth,
    )
    assert refused.status == 409
    assert (await refused.json())["detail"].startswith(f"mismatch {mismatch_id}: it is dismissed")


# --- passwords and the CLI ----------------------------------------------------------------


def test_passwords_are_scrypt_hashed_with_a_salt_each() -> None:
    first, second = (
        accounts.hash_password("same password!"),
        accounts.hash_password("same password!"),
    )
    assert first.startswith("scrypt$15$8$1$") and first != second
    assert accounts.verify_password("same password!", first)
    assert not accounts.verify_password("same password?", first)
    assert not accounts.verify_password("same password!", "md5$abc")
    assert accounts.password_problem("short") is not None


def test_cli_users_and_mismatches(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, settings, _agencies = make_config(
        database_url="sqlite:///" + str(tmp_path / "cli.db"),
        agencies={ALPHA: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )

    async def seed() -> None:
        gateway = build(*load_config(config_path, base_dir=settings.base_dir))
        try:
            await upgrade(gateway.db)
            async with gateway.db.transaction() as conn:
                draft = MismatchDraft("unknown_placement", "PL-X-1", "test", {}, {"x": 1})
                await insert_mismatches(conn, [("k1", draft, ALPHA, None, None)], now=START)
        finally:
            await gateway.aclose()

    asyncio.run(seed())
    monkeypatch.chdir(settings.base_dir)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(main, ["--config", str(config_path), *args], input=stdin)

    added = run("users", "add", "zoe", "--role", "operator", "--password-stdin", stdin=PASSWORD)
    assert added.exit_code == 0, added.output
    listed = json.loads(run("users", "list", "--json").output)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("zoe", "operator", False)]
    assert "scrypt" not in run("users", "list", "--json").output
    assert (
        run("users", "add", "zoe", "--role", "viewer", "--password-stdin", stdin=PASSWORD).exit_code
        == 1
    )
    mismatches = json.loads(run("mismatches", "list", "--json").output)
    assert [(m["kind"], m["theirs"]) for m in mismatches] == [("unknown_placement", {"x": 1})]
    mismatch_id = str(mismatches[0]["id"])
    no_reason = run("mismatches", "resolve", mismatch_id, "--action", "dismiss", "--as", "zoe")
    assert no_reason.exit_code == 1 and "needs a reason" in no_reason.output
    done = run(
        "mismatches", "resolve", mismatch_id, "--action", "dismiss",
        "--reason", "test traffic", "--as", "zoe", "--json",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["done"][0]["to_state"] == "dismissed"
    shown = json.loads(run("mismatches", "show", mismatch_id, "--json").output)
    assert shown["state"] == "dismissed" and shown["history"][0]["actor"] == "zoe"
    assert run("users", "disable", "zoe").exit_code == 0
    refused = run(
        "mismatches", "resolve", mismatch_id, "--action", "comment",
        "--reason", "late note", "--as", "zoe",
    )  # fmt: skip
    assert refused.exit_code == 1 and "no active console user" in refused.output
    token = run("users", "token", "zoe")
    assert token.exit_code == 1


async def test_every_documented_api_path_is_served_and_answers_as_documented(
    console: Console,
) -> None:
    gateway = console.world.gateway
    token = await accounts.create_token(gateway.db, "ada", "docs", now=_dt(console))
    auth = {"Authorization": f"Bearer {token}"}
    mismatch_id = await console.world.mismatch_id("conflicting_duplicate")
    client = await console.client()
    detail = await (await client.get(f"/api/v1/mismatches/{mismatch_id}", headers=auth)).json()
    document = openapi_document()
    values = {"mismatch_id": str(mismatch_id), "case_id": detail["case_id"], "agency_id": BETA}
    for path, operations in api_docs.paths().items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        for method, operation in operations.items():
            body = {} if method == "post" else None
            response = await client.request(method.upper(), concrete, json=body, headers=auth)
            assert response.status not in (404, 405), (method, path)
            if method != "get":
                assert response.status in (400, 409), (method, path, await response.text())
                continue
            assert response.status == 200, (path, await response.text())
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            validator = Draft202012Validator({**schema, "components": document["components"]})
            errors = [e.message for e in validator.iter_errors(await response.json())]
            assert errors == [], (path, errors[:3])


async def test_actions_and_bulk_on_each_database_backend(db: Database) -> None:
    """The resolution service alone, on SQLite and (when configured) PostgreSQL: row locks,
    savepoints per bulk item, audit rows and evidence leaves."""
    agency = agency_config(id=ALPHA)
    clock = ManualClock(START.timestamp())
    placements = PlacementService(
        db=db,
        agencies={ALPHA: agency},
        pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
        settings=AllocationSection(),
        clock=clock,
    )
    service = ResolutionService(
        db=db,
        placements=placements,
        agencies={ALPHA: agency},
        clock=clock,
        vouched_replies=VouchedReplyReader(base_dir=Path.cwd()),  # no law firm here
    )
    await accounts.add_user(db, "olga", "operator", PASSWORD, now=START)
    await accounts.add_user(db, "vic", "viewer", PASSWORD, now=START)
    async with db.transaction() as conn:
        drafts = [
            (
                f"k{i}",
                MismatchDraft("unknown_placement", f"PL-X-{i}", "t", {}, {}),
                ALPHA,
                None,
                None,
            )
            for i in range(5)
        ]
        await insert_mismatches(conn, drafts, now=START)
    with pytest.raises(ActionRefused, match="vic is a viewer"):
        await service.act(1, ActionRequest("dismiss", "vic", "no"))
    done = await service.act(1, ActionRequest("dismiss", "olga", "test traffic"))
    assert (done.from_state, done.to_state) == ("open", "dismissed")
    result = await service.bulk(
        MismatchFilter(states=()), ActionRequest("write_off", "olga", "cleanup")
    )
    assert result.matched == 5 and sorted(result.refused) == [1]
    assert [r.mismatch_id for r in result.done] == [2, 3, 4, 5]
    async with db.snapshot() as conn:
        states = dict((await conn.execute(sa.select(MISMATCHES.c.id, MISMATCHES.c.state))).all())
        leaves = (
            await conn.execute(sa.select(sa.func.count()).where(LEAVES.c.kind == "action"))
        ).scalar_one()
    assert states == {
        1: "dismissed",
        2: "written_off",
        3: "written_off",
        4: "written_off",
        5: "written_off",
    }
    assert leaves == 5  # the refused one left nothing behind
    first_two = await service.bulk(
        MismatchFilter(states=()), ActionRequest("comment", "olga", "seen"), limit=2
    )
    assert (first_two.matched, first_two.total, first_two.truncated) == (2, 5, True)


def test_masking_keeps_enough_to_tell_debtors_apart_and_no_more() -> None:
    record: dict[str, object] = {
        "name": "张三丰",
        "national_id": "110101199003074514",
        "phones": ["13800138000", "+86 139 0013 9000"],
        "address": "上海市浦东新区世纪大道100号",
    }
    assert personal_data.masked(record) == {
        "name": "张**",
        "national_id": "110***********4514",
        "phones": ["138****8000", "861****9000"],
        "address": "上海市浦东新…",
    }
    assert personal_data.mask_name("Jane Doe") == "J*** D**"
    assert personal_data.masked({"phones": None})["phones"] == []
