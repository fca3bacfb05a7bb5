"""Proof of deletion over the law-firm email channel, against real servers on loopback.

A placement with a law firm ends (our recall); the privacy sweep queues a
``data.deletion_requested`` packet, and the dispatcher sends it as a signed, encrypted letter
through a capturing aiosmtpd server (STARTTLS and AUTH). The firm's signed reply, with a
``data.deleted`` row in its reply sheet, is APPENDed to a throwaway Dovecot; the gateway's
mailbox reader polls it over IMAPS, stores the event and applies it, which meets the deletion
request. Then the same loop with the sandbox law firm answering by itself. Skipped where
Dovecot cannot be started (not root, or not installed).
"""

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.email.adapter import build_email_adapter
from adapters.email.mailbox import build_mailbox_reader
from adapters.email.smime import decrypt
from gateway.allocation.placements import PlacementService
from gateway.bootstrap import build
from gateway.clock import ManualClock, to_datetime
from gateway.config.settings import AllocationSection
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.documents.store import FolderStore
from gateway.keys import self_signed
from gateway.ports import AdapterContext
from gateway.privacy.deletion import deletion_status, request_deletions
from gateway.privacy.pii import PiiKeyRing
from gateway.runtime import mailbox_readers
from gateway.sandbox.dovecot import ThrowawayDovecot, free_port, unavailable_reason
from gateway.sandbox.law_firm import (
    SandboxLawFirm,
    server_tls_context,
    smtp_server,
)
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from tests.integration.email_setup import (
    FIRM,
    OUTBOX,
    Capture,
    authenticator,
    firm_of,
    list_store_documents,
    secret,
    with_ports,
    write_firm_config,
    write_mailbox_keys,
)
from tests.integration.test_email_replies import (
    EVENTS,
    IMAP_LOGIN,
    IMAP_PASSWORD,
    MISMATCHES,
    PLACEMENTS,
    World,
    firm_signer,
    reply,
    sheet,
)

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no Dovecot: {unavailable_reason()}"
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
DAYS = 30


@pytest.fixture(scope="module")
def dovecot() -> Iterator[tuple[ThrowawayDovecot, str, str]]:
    cert, key = self_signed("agency-gateway test", loopback=True)
    server = ThrowawayDovecot(users={IMAP_LOGIN: IMAP_PASSWORD}, cert_pem=cert, key_pem=key)
    asyncio.run(server.start())
    yield server, cert, key
    asyncio.run(server.stop())


@dataclass
class Ended:
    """The firm's mailbox world, after a referral ended and its deletion letter went out."""

    world: World
    placement_id: str
    referral: bytes
    letter: bytes


@pytest.fixture
async def ended(
    tmp_path: Path, database_url: str, seed_placements, dovecot
) -> AsyncIterator[Ended]:
    server, cert, key = dovecot
    base = tmp_path / "config"
    ca = write_mailbox_keys(base, cert, key, IMAP_PASSWORD)
    _, _, agencies = write_firm_config(
        base,
        database_url=database_url,
        email={
            "imap": {"username": IMAP_LOGIN, "mailbox": f"T{uuid.uuid4().hex[:10]}"},
            "attach_documents": True,
        },
    )
    capture = Capture()
    smtp = await smtp_server(
        capture,
        tls_context=server_tls_context(ca, Path(f"{ca}.key")),
        authenticator=authenticator(secret(base, "smtp.password")),
    )
    agency = with_ports(firm_of(agencies), smtp=smtp.sockets[0].getsockname()[1], imap=server.port)
    db = Database(database_url)
    await upgrade(db)
    clock = ManualClock(START)
    [(pid, case_id, *_)] = await seed_placements(db, {FIRM: agency}, 1, clock)
    await list_store_documents(db, base / "store", [pid], {"contract.pdf": b"%PDF-1.4\n"})
    session = aiohttp.ClientSession()
    adapter = build_email_adapter(
        agency,
        AdapterContext(
            base_dir=base,
            http=session,
            clock=clock.now,
            db=db,
            documents=FolderStore(base / "store"),
        ),
    )
    dispatcher = Dispatcher(
        db=db,
        adapters={FIRM: adapter},
        agencies={FIRM: agency},
        hooks=ReconciliationHooks(agencies={FIRM: agency}),
        clock=clock,
    )
    try:
        assert (await dispatcher.drain_once()).delivered == 1
        placements = PlacementService(
            db=db,
            agencies={FIRM: agency},
            pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
            settings=AllocationSection(),
            clock=clock,
        )
        await placements.recall(case_id, "PAID_DIRECT")
        async with db.transaction() as conn:
            swept = await request_deletions(
                conn, {FIRM: agency}, days=DAYS, now=to_datetime(clock.now())
            )
        assert swept.requested == 1
        assert (await dispatcher.drain_once()).delivered == 2  # the recall and the letter
        async with db.connect() as conn:
            key_of_letter = (
                await conn.execute(
                    sa.select(OUTBOX.c.dedupe_key).where(
                        OUTBOX.c.packet_type == "data.deletion_requested"
                    )
                )
            ).scalar_one()
        refs = [message_from_bytes(m)["X-Gateway-Ref"] for m in capture.messages]
        world = World(
            base,
            agency,
            db,
            build_mailbox_reader(agency, base_dir=base, db=db, clock=clock.now),
            [message_from_bytes(m, policy=default_policy) for m in capture.messages],
            [pid],
            server,
            firm_signer(base),
        )
        yield Ended(world, pid, capture.messages[0], capture.messages[refs.index(key_of_letter)])
    finally:
        await session.close()
        smtp.close()
        await smtp.wait_closed()
        await db.dispose()


def opened(world: World, raw: bytes) -> EmailMessage:
    """The mail as the firm reads it: decrypted with the firm's key."""
    firm = world.firm
    assert isinstance(firm.key, rsa.RSAPrivateKey)
    message = message_from_bytes(decrypt(raw, firm.cert, firm.key), policy=default_policy)
    assert isinstance(message, EmailMessage)
    return message


def attachment_names(message: EmailMessage) -> list[str]:
    return [str(p.get_filename()) for p in message.walk() if p.get_filename()]


async def test_the_deletion_letter_goes_out_and_the_firms_confirmation_meets_it(ended: Ended):
    world, pid = ended.world, ended.placement_id
    letter = message_from_bytes(ended.letter, policy=default_policy)
    assert str(letter["subject"]) == f"[案件 {pid}] 委托终止，请删除个人信息：{pid.split('-')[1]}"
    inside = opened(world, ended.letter)
    body = next(p for p in inside.walk() if p.get_content_type() == "text/plain")
    text = str(body.get_content())
    assert f"委托编号 {pid}" in text and "因我司撤回委托而终止" in text
    assert "姓名（debtor.name）" in text and "电话号码（debtor.phones）" in text
    assert "第二十一条" in text and "请于 2026-04-01 前" in text
    assert "事件 event_type 填 data.deleted" in text
    # The referral carried the case's documents; the letter asking to delete them does not.
    assert "contract.pdf" in attachment_names(opened(world, ended.referral))
    assert attachment_names(inside) == [f"案件资料_{pid}.csv", f"回复表_{pid}.csv", "smime.p7s"]

    sent = next(m for m in world.sent if "删除个人信息" in str(m["subject"]))
    await world.append(
        reply(
            sent,
            sheet=sheet(
                f"data.deleted,{pid},2026-03-20,,,,,,,,deleted",
                f"data.deleted,{pid},2026-03-20,,,,,,,,shredded",
            ),
        )
    )
    stats = await world.reader.poll()
    assert stats.kinds == {"reply": 1}
    [event] = await world.rows(EVENTS, EVENTS.c.placement_id == pid)
    assert event["event_type"] == "data.deleted" and event["applied"]
    assert json.loads(event["data"]) == {
        "placement_id": pid,
        "method": "deleted",
        "reference": None,
    }
    # The firm's local date (Asia/Shanghai) of the deletion is the event's time.
    assert event["occurred_at"].replace(tzinfo=UTC) == datetime(2026, 3, 19, 16, 0, tzinfo=UTC)
    [refused] = await world.rows(MISMATCHES, MISMATCHES.c.kind == "unparsed_reply")
    assert json.loads(refused["theirs"])["errors"] == [
        "line 3: 回复表.csv: reason: 'shredded' is not a deletion method; use deleted or returned"
    ]
    async with world.db.connect() as conn:
        [status] = await deletion_status(conn)
    assert status["placement_id"] == pid and status["state"] == "met"
    assert status["confirmed_by_event_id"] == event["id"]
    assert str(status["due_at"]).startswith(date(2026, 4, 1).isoformat())
    [placement] = await world.rows(PLACEMENTS, PLACEMENTS.c.id == pid)
    assert placement["state"] == "recalled"  # confirming a deletion changes nothing else


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_the_sandbox_firm_confirms_a_deletion_by_itself(tmp_path: Path, seed_placements):
    base = tmp_path / "config"
    _, settings, agencies = write_firm_config(
        base,
        database_url="sqlite:///" + str(tmp_path / "g.db"),
        smtp_port=free_port(),
        imap_port=free_port(),
    )
    firm = SandboxLawFirm(agency=firm_of(agencies), base_dir=base, seed=5, fault_rate=0)
    await firm.start()
    try:
        agencies[FIRM] = firm.updated_agency()
        clock = ManualClock(START)
        gateway = build(settings, agencies, clock=clock)
        try:
            await upgrade(gateway.db)
            [(pid, case_id, *_)] = await seed_placements(gateway.db, agencies, 1, clock)
            dispatcher = await gateway.dispatcher()
            await gateway.placements.recall(case_id, "PAID_DIRECT")
            assert (await gateway.request_deletions()).requested == 1
            # The referral, the recall and the deletion letter, in that order.
            assert (await dispatcher.drain_once()).delivered == 3
            assert await firm.drain(timeout=30)
            if firm.reply_path_skipped is not None:
                pytest.skip(f"reply path skipped: {firm.reply_path_skipped}")
            [reader] = mailbox_readers(gateway)
            assert await reader.poll_once() == {"reply": 3}
            async with gateway.db.connect() as conn:
                events = (
                    (await conn.execute(sa.select(EVENTS).order_by(EVENTS.c.id))).mappings().all()
                )
                [status] = await deletion_status(conn)
            [deleted] = [e for e in events if e["event_type"] == "data.deleted"]
            assert deleted["placement_id"] == pid and deleted["applied"]
            assert json.loads(deleted["data"])["method"] == "deleted"
            assert status["state"] == "met" and status["confirmed_by_event_id"] == deleted["id"]
        finally:
            await gateway.aclose()
    finally:
        await firm.aclose()
