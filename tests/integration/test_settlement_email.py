"""A settlement statement on the law-firm email channel, against real servers on loopback
(a capturing aiosmtpd with STARTTLS and AUTH, a throwaway Dovecot over IMAPS): the statement
goes out as a ``settlement_statement`` letter, S/MIME signed and encrypted like the others,
with the XLSX and the PDF attached (their SHA-256 as stored) and a reply sheet pre-filled to
confirm; the firm's signed reply with ``结算确认`` / ``结算异议`` rows confirms or disputes
it; a confirmation of another hash is stored and changes nothing. Skipped where Dovecot
cannot be started."""

import hashlib
import json
from datetime import date
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from adapters.email.adapter import build_email_adapter
from adapters.email.smime import decrypt
from gateway.clock import ManualClock
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.ports import AdapterContext
from gateway.sandbox.dovecot import unavailable_reason
from gateway.sandbox.law_firm import server_tls_context, smtp_server
from gateway.settlement.documents import renderer
from gateway.settlement.packets import queue_statement
from gateway.settlement.statements import StatementService
from gateway.store.statement_tables import SettlementDocument
from tests.integration.email_setup import FIRM, Capture, authenticator, secret, with_ports
from tests.integration.test_email_replies import (
    START,
    World,
    firm_signer,
    reply,
    shared_dovecot,
    world,
)
from tests.settlement_world import Seeded, agency, seed

__all__ = ["shared_dovecot", "world"]

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"no Dovecot: {unavailable_reason()}"
)

ROWS = [
    Seeded("PS1", "M1", date(2026, 2, 1), date(2026, 3, 1), "primary", date(2026, 3, 5), 300_000),
    Seeded("PS2", "M1", date(2026, 1, 1), date(2026, 1, 20), "primary", date(2026, 3, 9), 12_345),
]
HEADER = "事件 event_type,委托编号 placement_id,结算单编号 statement_id,版本 revision,"
HEADER += "哈希 sha256,行号 line_nos,原因 reason,金额 amount,币种 currency"


async def _send_statement(world: World) -> tuple[int, str, EmailMessage, dict[str, bytes]]:
    """Issue FIRM's March statement, dispatch it through the email adapter to a capturing
    SMTP server; (statement id, sha256, the decrypted letter, stored documents by kind)."""
    firm = world.agency.model_copy(update={"commission": agency(FIRM).commission})
    await seed(world.db, FIRM, ROWS)
    clock = ManualClock(START)
    statements = StatementService(
        world.db, {FIRM: firm}, clock, renderer=renderer(None), sender=queue_statement
    )
    sid = await statements.build(FIRM, "2026-03", actor="ops:ann")
    sha = await statements.issue(sid, actor="ops:bob")
    capture = Capture()
    ca = world.base / "keys" / FIRM / "sandbox-tls.pem"
    server = await smtp_server(
        capture,
        tls_context=server_tls_context(ca, Path(f"{ca}.key")),
        authenticator=authenticator(secret(world.base, "smtp.password")),
    )
    session = aiohttp.ClientSession()
    try:
        sender = with_ports(firm, smtp=server.sockets[0].getsockname()[1])
        adapter = build_email_adapter(
            sender, AdapterContext(base_dir=world.base, http=session, clock=clock.now, db=world.db)
        )
        dispatcher = Dispatcher(
            db=world.db,
            adapters={FIRM: adapter},
            agencies={FIRM: sender},
            hooks=ReconciliationHooks(agencies={FIRM: sender}),
            clock=clock,
        )
        assert (await dispatcher.drain_once()).delivered == 1
    finally:
        await session.close()
        server.close()
        await server.wait_closed()
    [raw] = capture.messages
    outer = message_from_bytes(raw, policy=default_policy)
    assert outer.get_content_type() == "application/pkcs7-mime", "encrypted to the firm"
    firm_id = firm_signer(world.base)
    signed = decrypt(raw, firm_id.cert, firm_id.key)  # type: ignore[arg-type]
    letter = message_from_bytes(signed, policy=default_policy)
    assert isinstance(letter, EmailMessage)
    async with world.db.snapshot() as conn:
        d = SettlementDocument.__table__.c  # type: ignore[attr-defined]
        stored = {
            str(r.kind): bytes(r.body)
            for r in await conn.execute(sa.select(d.kind, d.body).where(d.statement_id == sid))
        }
    # the threading headers are on the outer message
    letter["Message-ID"] = outer["Message-ID"]
    letter["Subject"] = outer["Subject"]
    return sid, sha, letter, stored


async def _state(world: World, sid: int) -> str:
    async with world.db.snapshot() as conn:
        return str(
            (
                await conn.execute(
                    sa.text("SELECT state FROM settlement_statements WHERE id = :i"), {"i": sid}
                )
            ).scalar_one()
        )


async def test_the_letter_carries_the_signed_statement_files_and_a_confirming_reply_locks_it(
    world: World,
) -> None:
    sid, sha, letter, stored = await _send_statement(world)
    assert letter.get_content_type() == "multipart/signed"
    assert "佣金结算单 2026-03" in str(letter["Subject"])
    parts = {
        str(p.get_filename()): bytes(p.get_payload(decode=True))
        for p in letter.walk()
        if p.get_filename()
    }
    attached = {n: data for n, data in parts.items() if n.endswith((".xlsx", ".pdf"))}
    assert sorted(attached) == [
        f"statement-{FIRM}-2026-03-r1.pdf",
        f"statement-{FIRM}-2026-03-r1.xlsx",
    ]
    assert {hashlib.sha256(b).hexdigest() for b in attached.values()} == {
        hashlib.sha256(b).hexdigest() for b in stored.values()
    }
    [sheet_name] = [n for n in parts if n.endswith(".csv")]
    sheet_text = parts[sheet_name].decode("utf-8-sig")
    assert f",{sid},1,{sha}," in sheet_text, "pre-filled to confirm"
    body = next(p for p in letter.walk() if p.get_content_type() == "text/plain")
    assert sha in body.get_content()

    wrong = f"结算确认,,{sid},1,{'0' * 64},,,,"
    unknown = f"结算异议,,{sid + 99},1,,1,不对,1.00,CNY"
    await world.append(reply(letter, sheet="\r\n".join([HEADER, wrong, unknown]) + "\r\n"))
    assert (await world.reader.poll()).kinds == {"reply": 1}
    assert await _state(world, sid) == "issued", "another hash changes nothing"
    # Never dropped silently: both answers are refused rows of the reply, in front of ops.
    async with world.db.snapshot() as conn:
        detail, theirs = (
            await conn.execute(
                sa.text("SELECT detail, theirs FROM mismatches WHERE kind = 'unparsed_reply'")
            )
        ).one()
        outcome = (
            await conn.execute(sa.text("SELECT detail FROM mail_replies ORDER BY id DESC"))
        ).scalar()
    assert f"settlement.confirmed: sha256: statement {sid} revision 1 has SHA-256 {sha}" in detail
    errors = json.loads(theirs)["errors"]
    assert errors[1] == (
        f"settlement.disputed: statement_id: agency {FIRM} has no settlement statement {sid + 99}"
    )
    assert json.loads(theirs)["events_applied"] == 2
    assert outcome is not None and "settlement.disputed: statement_id" in outcome
    right = f"结算确认,,{sid},1,{sha},,,,"
    await world.append(
        reply(letter, sheet="\r\n".join([HEADER, right]) + "\r\n", message_id="<c2@zhengyi.test>")
    )
    assert (await world.reader.poll()).kinds == {"reply": 1}
    assert await _state(world, sid) == "confirmed"


async def test_a_dispute_row_in_the_reply_disputes_the_statement(world: World) -> None:
    sid, _, letter, _ = await _send_statement(world)
    row = f'结算异议,,{sid},1,,"1;2",两笔应按深度费率,"600.00",CNY'
    await world.append(reply(letter, sheet="\r\n".join([HEADER, row]) + "\r\n"))
    assert (await world.reader.poll()).kinds == {"reply": 1}
    assert await _state(world, sid) == "disputed"
    async with world.db.snapshot() as conn:
        theirs = (
            await conn.execute(
                sa.text("SELECT theirs FROM mismatches WHERE kind = 'settlement_disputed'")
            )
        ).scalar_one()
    assert '"claimed_minor": 60000' in theirs and "两笔应按深度费率" in theirs
