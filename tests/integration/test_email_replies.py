"""Replies and bounces read back from a real Dovecot over IMAPS, into events and ops items.

Referral mail is sent through the dispatcher to a capturing aiosmtpd server; the firm's
answers are APPENDed to a throwaway Dovecot, and the gateway's mailbox reader does the rest.
Skipped where Dovecot cannot be started (not root, or not installed).
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP, default as default_policy
from email.utils import format_datetime, make_msgid
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import sqlalchemy as sa
from aioimaplib import IMAP4_SSL  # type: ignore[import-untyped]

from adapters.email.adapter import build_email_adapter
from adapters.email.imap import close_imap
from adapters.email.inbox_store import mailbox_position
from adapters.email.mailbox import MailboxReader, build_mailbox_reader, client_tls_context
from adapters.email.reply_signature import fingerprint
from adapters.email.smime import (
    Signer,
    decrypt,
    encrypt,
    load_certificate,
    load_signer,
    sign_message,
)
from adapters.email.triage import VouchedReplyReader
from gateway.allocation.placements import PlacementService
from gateway.clock import ManualClock
from gateway.concessions.decisions import ConcessionService
from gateway.config.agencies import EmailAgency
from gateway.config.settings import AllocationSection, ConcessionsSection, FourEyesSection
from gateway.console import accounts
from gateway.console.timeline import case_timeline
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.errors import ActionRefused
from gateway.keys import self_signed
from gateway.ports import AdapterContext
from gateway.privacy.pii import PiiKeyRing
from gateway.resolutions.actions import ResolutionService
from gateway.resolutions.rules import ActionRequest
from gateway.sandbox.dovecot import ThrowawayDovecot, unavailable_reason
from gateway.sandbox.law_firm import server_tls_context, smtp_server
from gateway.store.database import Database
from gateway.store.mail_tables import MailMessage, MailReply
from gateway.store.migrate import upgrade
from gateway.store.tables import (
    AgencyEventRow,
    EvidenceLeaf,
    InboundMessage,
    Mismatch,
    Placement,
)
from tests.integration.email_setup import (
    FIRM,
    OUTBOX,
    Capture,
    authenticator,
    firm_of,
    secret,
    with_ports,
    write_firm_config,
    write_mailbox_keys,
)

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no Dovecot: {unavailable_reason()}"
)

START_DT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
START = START_DT.timestamp()
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
MAILS = MailMessage.__table__  # type: ignore[attr-defined]
REPLIES = MailReply.__table__  # type: ignore[attr-defined]
SHEET_HEADER = "事件 event_type,委托编号 placement_id,日期 occurred_at,律所案号 agency_case_ref,"
SHEET_HEADER += "行动 action,法院 court,案号 court_case_number,payment_id,amount,currency,reason"


@dataclass
class World:
    base: Path
    agency: EmailAgency
    db: Database
    reader: MailboxReader
    sent: list[EmailMessage]
    placements: list[str]
    dovecot: ThrowawayDovecot
    firm: Signer
    dispatcher: Dispatcher | None = None
    capture: Capture | None = None

    async def append(self, raw: bytes, *, signed: bool = True) -> bytes:
        """Put a message in the firm-facing mailbox, signed by the firm unless told not to;
        the bytes put there."""
        if signed:
            raw = sign_message(raw, self.firm)
        imap = self.agency.email.imap
        assert imap is not None
        client = IMAP4_SSL(
            host="127.0.0.1",
            port=self.dovecot.port,
            timeout=10,
            ssl_context=client_tls_context(self.base / "keys" / FIRM / "sandbox-tls.pem"),
        )
        try:
            await client.wait_hello_from_server()
            assert (await client.login(imap.username, IMAP_PASSWORD)).result == "OK"
            await client.create(imap.mailbox)  # answers NO when it exists; that is fine
            assert (await client.append(raw, mailbox=imap.mailbox)).result == "OK"
        finally:
            await close_imap(client)
        return raw

    async def rows(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> list[dict]:
        async with self.db.connect() as conn:
            query = sa.select(table).where(*where).order_by(table.c[next(iter(table.c.keys()))])
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]


IMAP_LOGIN = "replies"
IMAP_PASSWORD = uuid.uuid4().hex


@pytest.fixture(scope="module")
def shared_dovecot() -> Iterator[tuple[ThrowawayDovecot, str, str]]:
    """One Dovecot for the module (stopping one takes seconds); each test reads its own,
    new mailbox folder, so it starts empty with its own UIDVALIDITY."""
    cert, key = self_signed("agency-gateway test", loopback=True)
    dovecot = ThrowawayDovecot(users={IMAP_LOGIN: IMAP_PASSWORD}, cert_pem=cert, key_pem=key)
    asyncio.run(dovecot.start())
    yield dovecot, cert, key
    asyncio.run(dovecot.stop())


@pytest.fixture
async def world(
    tmp_path: Path, database_url: str, seed_placements, shared_dovecot
) -> AsyncIterator[World]:
    dovecot, cert, key = shared_dovecot
    base = tmp_path / "config"
    ca = write_mailbox_keys(base, cert, key, IMAP_PASSWORD)
    folder = f"T{uuid.uuid4().hex[:10]}"
    _, _, agencies = write_firm_config(
        base,
        database_url=database_url,
        email={"imap": {"username": IMAP_LOGIN, "mailbox": folder}},
    )
    agency = firm_of(agencies)
    capture = Capture()
    server = await smtp_server(
        capture,
        tls_context=server_tls_context(ca, Path(f"{ca}.key")),
        authenticator=authenticator(secret(base, "smtp.password")),
    )
    agency = with_ports(agency, smtp=server.sockets[0].getsockname()[1], imap=dovecot.port)
    db = Database(database_url)
    await upgrade(db)
    clock = ManualClock(START)
    placed = await seed_placements(db, {FIRM: agency}, 3, clock)
    session = aiohttp.ClientSession()
    adapter = build_email_adapter(
        agency, AdapterContext(base_dir=base, http=session, clock=clock.now, db=db)
    )
    dispatcher = Dispatcher(
        db=db,
        adapters={FIRM: adapter},
        agencies={FIRM: agency},
        hooks=ReconciliationHooks(agencies={FIRM: agency}),
        clock=clock,
    )
    assert (await dispatcher.drain_once()).delivered == 3
    sent = [message_from_bytes(m, policy=default_policy) for m in capture.messages]
    reader = build_mailbox_reader(agency, base_dir=base, db=db, clock=clock.now)
    try:
        yield World(
            base,
            agency,
            db,
            reader,
            sent,
            [p for p, *_ in placed],  # type: ignore[misc]
            dovecot,
            firm_signer(base),
            dispatcher,
            capture,
        )
    finally:
        await session.close()
        server.close()
        await server.wait_closed()
        await db.dispose()


def firm_signer(base: Path) -> Signer:
    """The firm's S/MIME identity, as keygen made it for the sandbox."""
    cert = base / "keys" / FIRM / "firm.pem"
    return load_signer(cert.read_bytes(), Path(f"{cert}.sandbox").read_bytes(), what="firm")


def placement_of(sent: EmailMessage) -> str:
    return str(sent["subject"]).split()[1].rstrip("]")


def reply(
    to: EmailMessage | None,
    *,
    sheet: str | None = None,
    body: str = "贵司来函收悉。\n",
    threaded: bool = True,
    subject: str | None = None,
    message_id: str | None = None,
) -> bytes:
    message = EmailMessage(policy=default_policy)
    message["From"] = "intake@zhengyi.test"
    message["To"] = "legal@lender.test"
    message["Subject"] = subject if subject is not None else f"回复: {to['subject'] if to else ''}"
    message["Date"] = format_datetime(datetime(2026, 3, 3, 10, 0, tzinfo=UTC))
    message["Message-ID"] = message_id or make_msgid(domain="zhengyi.test")
    if to is not None and threaded:
        message["In-Reply-To"] = str(to["message-id"])
        message["References"] = str(to["message-id"])
    message.set_content(body, cte="base64")
    if sheet is not None:
        message.add_attachment(
            ("\ufeff" + sheet).encode(), maintype="text", subtype="csv", filename="回复表.csv"
        )
    return message.as_bytes(policy=SMTP)


def sheet(*rows: str) -> str:
    return "\r\n".join([SHEET_HEADER, *rows]) + "\r\n"


async def test_a_threaded_reply_becomes_events_and_is_read_once(world: World):
    sent = world.sent[0]
    pid = placement_of(sent)
    raw = reply(
        sent,
        sheet=sheet(
            f'placement.acknowledged,{pid},2026-03-03,ZY-001,,,,,"1,234.50",CNY,',
            f"legal.action,{pid},2026-03-05,,lawyer_letter,,,,,,",
            f"legal.action,{pid},2026-03-20,,起诉,上海市浦东新区人民法院,(2026)沪0115民初12345号,,,,",
        ),
    )
    raw = await world.append(raw)
    stats = await world.reader.poll()
    assert stats.kinds == {"reply": 1}

    [placement] = await world.rows(PLACEMENTS, PLACEMENTS.c.id == pid)
    assert placement["state"] == "legal" and placement["agency_case_ref"] == "ZY-001"
    events = await world.rows(EVENTS, EVENTS.c.placement_id == pid)
    assert [e["event_type"] for e in events] == [
        "placement.acknowledged",
        "legal.action",
        "legal.action",
    ]
    suit = json.loads(events[2]["data"])
    assert suit["action"] == "suit_filed"
    assert suit["court_case_number"] == "(2026)沪0115民初12345号"
    assert events[0]["amount_minor"] == 123450
    [stored] = await world.rows(INBOUND, INBOUND.c.channel == "email")
    assert stored["body"] == raw and stored["status"] == "reply"
    assert stored["signature_scheme"] == "smime"
    leaves = await world.rows(LEAVES, LEAVES.c.ref == f"inbound:{stored['id']}")
    assert len(leaves) == 1
    [record] = await world.rows(REPLIES)
    assert record["signature"] == "verified"
    assert record["signer_sha256"] == fingerprint(world.firm.cert)
    async with world.db.connect() as conn:
        case_id = placement["case_id"]
        timeline = await case_timeline(conn, case_id)
    received = [e for e in timeline["entries"] if e["type"] == "event"]
    assert len(received) == 3 and {e["channel"] for e in received} == {"email"}
    assert {e["webhook_id"] for e in received} == {stored["external_id"]}
    signature = {"status": "verified", "signer_sha256": fingerprint(world.firm.cert)}
    assert all(e["reply_signature"] == signature for e in received)

    again = await world.reader.poll()
    assert again.fetched == 0
    async with world.db.connect() as conn:
        assert world.agency.email.imap is not None
        position = await mailbox_position(conn, FIRM, world.agency.email.imap.mailbox)
    assert position is not None and position[0] == stats.uidvalidity and position[1] == 1


async def test_the_subject_tag_matches_when_a_client_drops_threading(world: World):
    sent = world.sent[1]
    pid = placement_of(sent)
    form = (
        "> 原邮件内容\n"
        "---- REPLY FORM 回复表 ----\n"
        "事件 event_type: placement.acknowledged\n"
        "律所案号 agency_case_ref: ZY-002\n"
        "金额 amount: 100.00\n"
        "---- END ----\n"
    )
    await world.append(reply(sent, threaded=False, body=form))
    stats = await world.reader.poll()
    assert stats.kinds == {"reply": 1}
    [event] = await world.rows(EVENTS, EVENTS.c.placement_id == pid)
    assert event["event_type"] == "placement.acknowledged"
    [record] = await world.rows(REPLIES)
    assert record["matched_message_id"] == str(sent["message-id"])


async def test_a_reply_the_firm_did_not_sign_is_kept_for_ops_and_never_read(world: World):
    sent, other = world.sent[0], world.sent[1]
    pid = placement_of(sent)
    forged = await world.append(
        reply(sent, sheet=sheet(f"case.returned,{pid},2026-03-04,,,,,,,,paid_in_full")),
        signed=False,
    )
    stranger = load_signer(*self_signed("Not the firm", email="x@elsewhere.test"), what="x")
    await world.append(sign_message(reply(other, sheet=sheet()), stranger), signed=False)
    stats = await world.reader.poll()
    assert stats.kinds == {"unverified": 2}
    assert await world.rows(EVENTS) == []  # nothing in either was read
    [placement] = await world.rows(PLACEMENTS, PLACEMENTS.c.id == pid)
    assert placement["state"] != "returned"
    unsigned, unknown = await world.rows(MISMATCHES)
    assert unsigned["kind"] == "unverified_reply" and unsigned["severity"] == "high"
    assert unsigned["placement_id"] == pid
    assert "not signed" in unsigned["detail"] and "reply_signature = required" in unsigned["detail"]
    assert json.loads(unknown["theirs"])["signature"] == "unknown_signer"
    assert json.loads(unknown["theirs"])["signer_sha256"] == fingerprint(stranger.cert)
    stored = await world.rows(INBOUND, INBOUND.c.channel == "email")
    assert stored[0]["body"] == forged and [s["status"] for s in stored] == ["unverified"] * 2
    records = await world.rows(REPLIES)
    assert [r["signature"] for r in records] == ["unsigned", "unknown_signer"]
    assert [r["kind"] for r in records] == ["unverified", "unverified"]


async def test_ops_can_vouch_for_an_unsigned_reply_and_it_is_read_then(world: World):
    sent = world.sent[0]
    pid = placement_of(sent)
    unsigned = reply(
        sent, sheet=sheet(f"placement.acknowledged,{pid},2026-03-03,ZY-009,,,,,1234.50,,")
    )
    await world.append(unsigned, signed=False)
    assert (await world.reader.poll()).kinds == {"unverified": 1}
    [mismatch] = await world.rows(MISMATCHES)
    service = resolution_service(world)
    await accounts.add_user(world.db, "olga", "operator", "correct horse battery", now=START_DT)
    with pytest.raises(ActionRefused, match="needs a reason"):
        await service.act(mismatch["id"], ActionRequest("accept", "olga"))
    done = await service.act(
        mismatch["id"], ActionRequest("accept", "olga", "confirmed by phone with the firm")
    )
    assert (done.from_state, done.to_state) == ("open", "resolved")
    assert done.details == {"inbound_id": mismatch_inbound(mismatch), "events_applied": 1,
                            "read_as": "reply"}  # fmt: skip
    [event] = await world.rows(EVENTS, EVENTS.c.placement_id == pid)
    assert event["event_type"] == "placement.acknowledged" and event["applied"]
    [placement] = await world.rows(PLACEMENTS, PLACEMENTS.c.id == pid)
    assert placement["agency_case_ref"] == "ZY-009"
    [stored] = await world.rows(INBOUND, INBOUND.c.channel == "email")
    assert stored["status"] == "reply" and stored["body"] == unsigned
    assert stored["signature_scheme"] == "none"  # ops vouched; nothing was verified
    leaves = await world.rows(LEAVES, LEAVES.c.ref == f"mismatch:{mismatch['id']}")
    assert [json.loads(leaf["body"])["actor"] for leaf in leaves] == ["olga"]


async def test_ops_can_vouch_for_an_encrypted_reply_from_an_unknown_signer(world: World):
    """What held the reply back is its signature; vouching must still open the envelope
    and read the content inside the signed entity, or there is nothing to apply."""
    sent = world.sent[0]
    pid = placement_of(sent)
    new_key = load_signer(*self_signed("律所 新证书", email="intake@zhengyi.test"), what="new")
    signed = sign_message(
        reply(sent, sheet=sheet(f"placement.acknowledged,{pid},2026-03-03,ZY-010,,,,,987.00,,")),
        new_key,
    )
    outer, _, _ = signed.partition(b"MIME-Version:")
    lender = load_certificate(world.agency.email.smime.sign_cert.resolve(world.base), what="us")
    raw = await world.append(outer + encrypt(signed[len(outer) :], lender), signed=False)
    assert (await world.reader.poll()).kinds == {"unverified": 1}
    [record] = await world.rows(REPLIES)
    assert record["signature"] == "unknown_signer"  # decrypted, then judged
    [mismatch] = await world.rows(MISMATCHES)
    await accounts.add_user(world.db, "olga", "operator", "correct horse battery", now=START_DT)
    done = await resolution_service(world).act(
        mismatch["id"], ActionRequest("accept", "olga", "the firm renewed its certificate")
    )
    assert done.details["events_applied"] == 1 and done.to_state == "resolved"
    [event] = await world.rows(EVENTS, EVENTS.c.placement_id == pid)
    assert event["event_type"] == "placement.acknowledged" and event["applied"]
    [placement] = await world.rows(PLACEMENTS, PLACEMENTS.c.id == pid)
    assert placement["agency_case_ref"] == "ZY-010"
    [stored] = await world.rows(INBOUND, INBOUND.c.channel == "email")
    assert stored["body"] == raw and stored["status"] == "reply"


def resolution_service(world: World) -> ResolutionService:
    clock = ManualClock(START + 86_400)
    return ResolutionService(
        db=world.db,
        placements=PlacementService(
            db=world.db,
            agencies={FIRM: world.agency},
            pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
            settings=AllocationSection(),
            clock=clock,
        ),
        agencies={FIRM: world.agency},
        clock=clock,
        vouched_replies=VouchedReplyReader(base_dir=world.base),
    )


def mismatch_inbound(mismatch: dict) -> int:
    return int(json.loads(mismatch["theirs"])["inbound_id"])


async def test_an_unmatched_reply_goes_to_ops_and_is_kept(world: World):
    raw = reply(None, subject="关于贵司委托案件的回复", sheet=sheet())
    raw = await world.append(raw)
    stats = await world.reader.poll()
    assert stats.kinds == {"unmatched": 1}
    [mismatch] = await world.rows(MISMATCHES)
    assert mismatch["kind"] == "unmatched_reply" and mismatch["severity"] == "medium"
    [stored] = await world.rows(INBOUND, INBOUND.c.channel == "email")
    assert stored["body"] == raw and json.loads(mismatch["theirs"])["inbound_id"] == stored["id"]
    assert await world.rows(EVENTS) == []


async def test_an_unreadable_reply_goes_to_ops_and_good_lines_still_count(world: World):
    first, second = world.sent[0], world.sent[1]
    await world.append(reply(first, body="收到。稍后回复。\n"))
    pid = placement_of(second)
    await world.append(
        reply(
            second,
            sheet=sheet(
                f"placement.acknowledged,{pid},2026-03-03,ZY-9,,,,,99.999,CNY,",
                f"legal.action,{pid},2026-03-05,,suit_filed,某法院,,,,,",
                f"legal.action,{pid},2026-03-05,,lawyer_letter,,,,,,",
            ),
        )
    )
    stats = await world.reader.poll()
    assert stats.kinds == {"unparsed": 1, "reply": 1}
    mismatches = await world.rows(MISMATCHES, MISMATCHES.c.kind == "unparsed_reply")
    assert [m["placement_id"] for m in mismatches] == [placement_of(first), pid]
    errors = json.loads(mismatches[1]["theirs"])["errors"]
    assert errors == [
        "line 2: 回复表.csv: amount: '99.999' has more than 2 decimal places",
        "line 3: 回复表.csv: court_case_number: required for suit_filed",
    ]
    # The one good line was applied (and is illegal before an acknowledgement: reconciled).
    [event] = await world.rows(EVENTS, EVENTS.c.placement_id == pid)
    assert event["event_type"] == "legal.action" and event["applied"] is False


async def test_the_same_reply_delivered_twice_is_applied_once(world: World):
    sent = world.sent[2]
    pid = placement_of(sent)
    raw = reply(
        sent,
        message_id="<reply-1@zhengyi.test>",
        sheet=sheet(f"placement.acknowledged,{pid},2026-03-03,ZY-3,,,,,10.00,CNY,"),
    )
    await world.append(raw)
    raw = await world.append(raw)
    stats = await world.reader.poll()
    assert stats.kinds == {"reply": 1, "duplicate": 1}
    assert len(await world.rows(EVENTS, EVENTS.c.placement_id == pid)) == 1
    assert len(await world.rows(INBOUND, INBOUND.c.channel == "email")) == 1

    # A renumbered mailbox is read again from the start without applying anything twice.
    async with world.db.transaction() as conn:
        await conn.execute(sa.text("UPDATE mailbox_state SET uidvalidity = 1"))
    rescan = await world.reader.poll()
    assert rescan.rescanned and rescan.kinds == {"duplicate": 2}
    assert len(await world.rows(EVENTS, EVENTS.c.placement_id == pid)) == 1


def delivery_report(sent: EmailMessage, ref: str, action: str, status: str, code: str) -> bytes:
    boundary = "dsn-boundary-1"
    text = (
        "From: MAILER-DAEMON@mx.lender.test\r\n"
        "To: bounces+" + ref + "@lender.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{action}-{ref[:8]}@mx.lender.test>\r\n"
        "Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "Your message could not be delivered.\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.zhengyi.test\r\n"
        f"Original-Envelope-Id: {ref}\r\n"
        "\r\n"
        "Final-Recipient: rfc822; intake@zhengyi.test\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: smtp; {code}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {sent['message-id']}\r\n"
        "From: legal@lender.test\r\n"
        f"--{boundary}--\r\n"
    )
    return text.encode()


async def test_a_bounce_marks_the_dispatch_dead_with_its_reason(world: World):
    sent = world.sent[0]
    ref = str(sent["x-gateway-ref"])
    await world.append(
        delivery_report(sent, ref, "delayed", "4.4.1", "451 4.4.1 no answer"), signed=False
    )
    await world.append(
        delivery_report(sent, ref, "failed", "5.1.1", "550 5.1.1 <intake@zhengyi.test>: unknown"),
        signed=False,
    )
    stats = await world.reader.poll()
    assert stats.kinds == {"delivery_report": 1, "bounce": 1}
    [item] = await world.rows(OUTBOX, OUTBOX.c.dedupe_key == ref)
    assert item["state"] == "dead"
    assert "550 5.1.1" in item["last_error"] and item["last_error"].startswith("bounced: failed")
    [mismatch] = await world.rows(MISMATCHES)
    assert mismatch["kind"] == "dead_delivery" and mismatch["outbox_id"] == item["id"]
    [mail] = await world.rows(MAILS, MAILS.c.ref == ref)
    assert mail["state"] == "bounced" and "unknown" in mail["bounce_reason"]


async def test_a_firm_asks_for_a_waiver_a_plan_and_a_pause_in_its_reply_sheet(
    world: World,
) -> None:
    from gateway.concessions.requests import list_requests

    sent = world.sent[0]
    pid = placement_of(sent)
    header = SHEET_HEADER + ",申请编号 request_id,期数 instalments,开始日期 start,截止日期 until"
    rows = [
        f'受理,{pid},2026-03-03,ZY-9,,,,,"1,234.50",CNY,,,,,',
        f'减免,{pid},2026-03-03,,,,,,"800.00",CNY,失业,ZY-W1,,,',
        f"分期,{pid},2026-03-03,,,,,,1200.00,CNY,按月发薪,ZY-I1,3,2026-04-10,",
        f"停催,{pid},2026-03-03,,,,,,,,住院,ZY-P1,,2026-03-05,2026-03-20",
    ]
    await world.append(reply(sent, sheet="\r\n".join([header, *rows]) + "\r\n"))
    assert (await world.reader.poll()).kinds == {"reply": 1}
    async with world.db.connect() as conn:
        found = {r.request_id: r for r in await list_requests(conn, states=["pending"])}
    assert found.keys() == {"ZY-W1", "ZY-I1", "ZY-P1"}
    assert found["ZY-W1"].terms.settle_minor == 80_000
    assert [(str(i.due_date), i.amount_minor) for i in found["ZY-I1"].terms.schedule] == [
        ("2026-04-10", 40_000),
        ("2026-05-10", 40_000),
        ("2026-06-10", 40_000),
    ]
    pause = found["ZY-P1"].terms
    assert (str(pause.pause_from), str(pause.pause_until)) == ("2026-03-05", "2026-03-20")
    # The lender decides; each decision reaches the firm as a signed, encrypted letter.
    decide = ConcessionService(
        db=world.db,
        clock=ManualClock(START),
        agencies={FIRM: world.agency},
        concessions=ConcessionsSection(),
        four_eyes=FourEyesSection(),
    )
    staff = SimpleNamespace(name="li", role="operator")
    await decide.decide(found["ZY-W1"].id, approve=False, person=staff, reason="减免过多")
    await decide.decide(found["ZY-I1"].id, approve=True, person=staff)
    await decide.decide(found["ZY-P1"].id, approve=True, person=staff)
    assert world.dispatcher is not None and world.capture is not None
    before = len(world.capture.messages)
    stats = await world.dispatcher.drain_once()
    assert (stats.delivered, stats.dead) == (3, 0)
    firm = firm_signer(world.base)
    letters = [
        "\n".join(
            part.get_content()
            for part in message_from_bytes(
                decrypt(raw, firm.cert, firm.key),  # type: ignore[arg-type]
                policy=default_policy,
            ).walk()
            if part.get_content_type() in ("text/plain", "text/html")
        )
        for raw in world.capture.messages[before:]
    ]
    assert len(letters) == 3
    for request_id in ("ZY-W1", "ZY-I1", "ZY-P1"):
        assert any(request_id in text for text in letters), request_id
    assert any("ZY-W1" in text and "减免过多" in text for text in letters), "the reason is told"
