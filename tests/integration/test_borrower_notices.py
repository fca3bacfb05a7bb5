"""Borrower notices on SQLite and PostgreSQL: the scan finds placements without their notice
(placed, moved, recalled) and queues each once with its evidence leaf; the dispatcher delivers
them as signed webhooks to the sandbox messaging service (the signature checked again here by
hand from the Standard Webhooks rules); a notice given up flags its placement (CLI list,
/metrics) until it is resent."""

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from gateway.cli.root import main
from gateway.notices.content import NOTICE_SENDER, NoticeTemplates, notice_key
from gateway.notices.scan import NOTICES, NoticeScanner
from gateway.sandbox.messaging import NOTICES_PATH, SandboxMessagingService
from gateway.signing import parse_hmac_secret
from gateway.store.tables import DeliveryAttempt, OutboxItem
from tests.case_world import START, account
from tests.notice_world import REGISTRATIONS, NoticeWorld, build_notice_world

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def messaging(tmp_path: Path) -> AsyncIterator[tuple[SandboxMessagingService, TestServer]]:
    service = SandboxMessagingService(verify_keys=[])  # keys and clock set by the world
    server = TestServer(service.app(), host="127.0.0.1")
    await server.start_server()
    yield service, server
    await server.close()


@pytest.fixture
async def world(
    make_config: Any,
    tmp_path: Path,
    database_url: str,
    messaging: tuple[SandboxMessagingService, TestServer],
) -> AsyncIterator[NoticeWorld]:
    service, server = messaging
    w = await build_notice_world(
        make_config,
        tmp_path,
        database_url,
        messaging_url=str(server.make_url(NOTICES_PATH)),
    )
    service._keys = (parse_hmac_secret(w.notice_secret),)
    service._clock = w.clock
    yield w
    await w.gateway.aclose()


async def notices(world: NoticeWorld) -> list[dict[str, Any]]:
    return await world.rows(sa.select(NOTICES).order_by(NOTICES.c.id))


async def drain(world: NoticeWorld) -> None:
    dispatcher = await world.gateway.dispatcher()
    await dispatcher.drain_once()


def signature_holds(secret: str, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """The Standard Webhooks v1 rule, written out independently of gateway.signing."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.digest(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    expected = "v1," + base64.b64encode(mac).decode()
    # The public reference library (standardwebhooks) must agree with the rule written out.
    when = datetime.fromtimestamp(int(timestamp), UTC)
    assert Webhook(key).sign(msg_id, when, body) == expected
    return any(hmac.compare_digest(expected, part) for part in header.split())


async def test_placed_cases_get_one_signed_notice_each_with_the_letter_and_the_disclosure(
    world: NoticeWorld, messaging: tuple[SandboxMessagingService, TestServer]
) -> None:
    service, _server = messaging
    await world.intake([account(n) for n in range(4)])
    assert await world.allocate() == 4
    # No letter yet: the notice waits for it (it quotes the letter).
    await world.drop_letters()
    assert (await world.gateway.notices.scan()).total() == 0
    letters = await world.issue_letters()
    first = await world.gateway.notices.scan()
    assert first.queued == {"placed": 4}
    assert (await world.gateway.notices.scan()).total() == 0  # idempotent

    rows = await notices(world)
    assert {r["placement_id"] for r in rows} == set(letters)
    assert {r["state"] for r in rows} == {"queued"}
    for row in rows:
        [leaf] = await world.leaves("packet", f"outbox:{row['outbox_id']}")
        assert (leaf["agency_id"], leaf["packet_type"]) == (NOTICE_SENDER, "borrower.notice")
        assert leaf["dedupe_key"] == notice_key(row["placement_id"], "placed")

    await drain(world)
    assert len(service.received) == 4 and service.rejected == 0
    assert {r["state"] for r in await notices(world)} == {"delivered"}
    placements = {p["id"]: p for p in await world.placements()}
    for msg_id, notice in service.received.items():
        data = notice.data
        placement = placements[data.placement_id]
        registration = REGISTRATIONS[placement["agency_id"]]
        assert data.notice_id == msg_id and data.kind == "placed"
        assert (data.agency.legal_name, data.agency.phone) == (
            registration.legal_name,
            registration.phone,
        )
        assert data.letter is not None and data.letter.letter_no == letters[data.placement_id]
        assert data.letter.verify_url.endswith(f"/verify?letter={data.letter.letter_no}")
        assert data.disclosure is not None
        assert data.disclosure.categories[0] == "debtor.debtor_id"
        assert "debt.details" in data.disclosure.categories
        zh, en = data.messages
        assert (zh.language, en.language) == ("zh-CN", "en")
        assert registration.legal_name in zh.text and data.letter.letter_no in zh.text
        assert data.letter.verify_url in en.text and "ID number" in en.text
        # No personal data beyond the lender's own ids travels to the messaging service.
        raw = service.raw[msg_id].decode()
        assert "1101011990010" not in raw and "+86138" not in raw

    # Every attempt is on record with its receipt leaf.
    async with world.db.connect() as conn:
        attempts = (
            await conn.execute(
                sa.select(ATTEMPTS.c.id, ATTEMPTS.c.outcome).where(
                    ATTEMPTS.c.agency_id == NOTICE_SENDER
                )
            )
        ).all()
    assert sorted(o for _, o in attempts) == ["delivered"] * 4
    for attempt_id, _ in attempts:
        [leaf] = await world.leaves("receipt", f"attempt:{attempt_id}")
        assert (leaf["agency_id"], leaf["outcome"]) == (NOTICE_SENDER, "delivered")


async def test_the_signature_verifies_by_the_standard_webhooks_rule(
    world: NoticeWorld, messaging: tuple[SandboxMessagingService, TestServer]
) -> None:
    service, _server = messaging
    await world.intake([account(1)])
    await world.allocate()
    await world.issue_letters()
    await world.gateway.notices.scan()
    await drain(world)
    [msg_id] = service.received
    body, headers = service.raw[msg_id], service.headers[msg_id]
    assert headers["webhook-id"] == msg_id == json.loads(body)["data"]["notice_id"]
    assert headers["webhook-timestamp"] == str(int(world.clock.now()))
    args = (world.notice_secret, msg_id, headers["webhook-timestamp"])
    assert signature_holds(*args, body, headers["webhook-signature"])
    assert not signature_holds(*args, body + b" ", headers["webhook-signature"])


async def test_a_recall_and_a_move_are_told_once_each(
    world: NoticeWorld, messaging: tuple[SandboxMessagingService, TestServer]
) -> None:
    service, _server = messaging
    await world.intake([account(n) for n in range(2)])
    assert await world.allocate() == 2
    await world.issue_letters()
    assert (await world.gateway.notices.scan()).queued == {"placed": 2}
    [first] = await world.placements("ACC-0000")

    # Recalled and not placed again (yet): the borrower hears the agency no longer acts.
    world.clock.advance(86_400)
    await world.gateway.placements.recall("ACC-0000", "OPS_REVIEW")
    assert (await world.gateway.notices.scan()).queued == {"recalled": 1}

    # Placed again with the other agency: a "moved" notice names both.
    await world.gateway.cases.reopen("ACC-0000", actor="ops:olga")
    assert await world.allocate() == 1
    await world.issue_letters()
    assert (await world.gateway.notices.scan()).queued == {"moved": 1}
    assert (await world.gateway.notices.scan()).total() == 0

    # Recalled and placed again before any scan: one "moved" notice says it all.
    [other] = await world.placements("ACC-0001")
    await world.gateway.placements.recall("ACC-0001", "OPS_REVIEW")
    await world.gateway.cases.reopen("ACC-0001", actor="ops:olga")
    assert await world.allocate() == 1
    await world.issue_letters()
    assert (await world.gateway.notices.scan()).queued == {"moved": 1}

    await drain(world)
    kinds = service.by_kind()
    assert kinds == {"placed": 2, "recalled": 1, "moved": 2}
    recalled = next(n for n in service.received.values() if n.data.kind == "recalled")
    assert recalled.data.placement_id == first["id"]
    assert recalled.data.disclosure is None and recalled.data.ended_on is not None
    assert recalled.data.letter is not None  # the letter that no longer holds
    moved = [n for n in service.received.values() if n.data.kind == "moved"]
    for notice in moved:
        assert notice.data.previous_agency is not None
        assert notice.data.previous_agency.agency_id != notice.data.agency.agency_id
        zh = notice.data.messages[0].text
        assert notice.data.previous_agency.legal_name in zh
    ended = {n.data.placement_id for n in service.received.values() if n.data.kind == "recalled"}
    assert other["id"] not in ended


@pytest.mark.parametrize("status", [400, 503])
async def test_a_notice_given_up_flags_the_placement_until_resent(
    world: NoticeWorld,
    messaging: tuple[SandboxMessagingService, TestServer],
    status: int,
) -> None:
    service, _server = messaging
    service.refuse_with = status
    await world.intake([account(7)])
    await world.allocate()
    await world.issue_letters()
    await world.gateway.notices.scan()
    for _ in range(3):  # 400 is refused at once; 503 is retried until max_attempts (3)
        await drain(world)
        world.clock.advance(10)
    [row] = await notices(world)
    assert row["state"] == "failed" and f"HTTP {status}" in row["error"]
    [failed] = await world.gateway.notices.rows(failed=True)
    assert failed.placement_id == row["placement_id"]
    assert (await world.gateway.notices.counts())["failed"] == 1

    # Resent once the messaging service is fixed: the same notice id, delivered.
    service.refuse_with = None
    assert await world.gateway.notices.resend_failed() == 1
    await drain(world)
    [row] = await notices(world)
    assert row["state"] == "delivered"
    assert list(service.received) == [row["dedupe_key"]]
    assert await world.gateway.notices.rows(failed=True) == []


async def test_notices_list_failed_prints_a_table_and_json(
    world: NoticeWorld,
    messaging: tuple[SandboxMessagingService, TestServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, _server = messaging
    service.refuse_with = 422
    await world.intake([account(3)])
    await world.allocate()
    await world.issue_letters()
    await world.gateway.notices.scan()
    await drain(world)
    config = world.gateway.settings.config_path
    assert config is not None
    runner = CliRunner()
    # The CLI runs its own event loop: in a thread, as from a shell in the config's folder.
    monkeypatch.chdir(config.parent)
    args = ["--config", str(config), "notices", "list", "--failed"]
    out = await asyncio.to_thread(runner.invoke, main, [*args, "--json"])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert payload["counts"]["failed"] == 1
    [entry] = payload["notices"]
    assert (entry["case_id"], entry["kind"], entry["state"]) == ("ACC-0003", "placed", "failed")
    table = await asyncio.to_thread(runner.invoke, main, args)
    assert table.exit_code == 0, table.output
    assert "1 failed notice(s) (0 queued, 0 delivered, 1 failed)" in table.output
    assert "agency-gateway notices resend" in table.output


async def test_placements_of_an_agency_without_registration_wait_for_it(
    world: NoticeWorld,
) -> None:
    await world.intake([account(n) for n in range(2)])
    assert await world.allocate() == 2
    await world.issue_letters()
    settings = world.gateway.settings
    unnamed = {
        a: config.model_copy(update={"registration": None})
        for a, config in world.gateway.agencies.items()
    }
    scanner = NoticeScanner(
        agencies=unnamed,
        lender=settings.lender,
        settings=settings.notices,
        templates=NoticeTemplates(["zh-CN"]),
        lender_id="LENDERX",
        zone=ZoneInfo("Asia/Shanghai"),
    )
    async with world.db.transaction() as conn:
        assert (await scanner.scan(conn, now=START)).total() == 0
    # Once the agency is registered (the configured gateway), they are told.
    assert (await world.gateway.notices.scan()).queued == {"placed": 2}
