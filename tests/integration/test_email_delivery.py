"""Referral mail through the real dispatcher to a real aiosmtpd server on loopback.

STARTTLS and AUTH are required by the server; what arrives is opened with ``openssl smime``
exactly as a law firm's mail client would, and the Chinese subject, body and attachment
names are read back.
"""

import asyncio
import email
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.email.adapter import build_email_adapter
from gateway.clock import ManualClock
from gateway.config.agencies import EmailAgency
from gateway.dispatch import outbox
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.documents.store import FolderStore
from gateway.ports import AdapterContext
from gateway.sandbox.law_firm import server_tls_context, smtp_server
from gateway.store.database import Database
from gateway.store.mail_tables import MailMessage
from gateway.store.migrate import upgrade
from gateway.store.tables import DeliveryAttempt, Mismatch
from tests.integration.email_setup import (
    FIRM,
    OUTBOX,
    Capture,
    authenticator,
    firm_of,
    list_store_documents,
    outbox_states,
    secret,
    with_ports,
    write_firm_config,
)

MAILS = MailMessage.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()
OPENSSL = shutil.which("openssl")


@dataclass
class Firm:
    base: Path
    agency: EmailAgency
    db: Database
    clock: ManualClock
    dispatcher: Dispatcher
    capture: Capture


@pytest.fixture
async def firm_setup(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Path, EmailAgency, Database]]:
    """The firm's config and keys, and a migrated database (SQLite, and PostgreSQL when
    ``GATEWAY_TEST_POSTGRES_URL`` is set)."""
    base = tmp_path / "config"
    _, _, agencies = write_firm_config(
        base,
        database_url=database_url,
        email={"attach_documents": True},
    )
    db = Database(database_url)
    await upgrade(db)
    yield base, firm_of(agencies), db
    await db.dispose()


async def start_firm(
    setup: tuple[Path, EmailAgency, Database],
    seed_placements,
    capture: Capture,
    *,
    tls: bool = True,
    server_class: type[SMTP] | None = None,
    smtp_timeout: float | None = None,
    count: int = 2,
) -> AsyncIterator[Firm]:
    base, agency, db = setup
    ca = base / "keys" / FIRM / "sandbox-tls.pem"
    tls_context = server_tls_context(ca, Path(f"{ca}.key")) if tls else None
    auth = authenticator(secret(base, "smtp.password"))
    if server_class is None:
        server = await smtp_server(capture, tls_context=tls_context, authenticator=auth)
    else:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: server_class(
                capture,
                hostname="dsn.test",
                tls_context=tls_context,
                require_starttls=True,
                authenticator=auth,
                loop=loop,
            ),
            "127.0.0.1",
            0,
        )
    port = server.sockets[0].getsockname()[1]
    agency = with_ports(agency, smtp=port)
    if smtp_timeout is not None:
        email_cfg = agency.email
        agency = agency.model_copy(
            update={
                "email": email_cfg.model_copy(
                    update={
                        "smtp": email_cfg.smtp.model_copy(update={"timeout_seconds": smtp_timeout})
                    }
                )
            }
        )
    clock = ManualClock(START)
    placed = await seed_placements(db, {FIRM: agency}, count, clock)
    store = base / "store"
    await list_store_documents(
        db, store, [p[0] for p in placed], {"借款合同.pdf": b"%PDF-1.4\n% contract\n"}
    )
    session = aiohttp.ClientSession()
    adapter = build_email_adapter(
        agency,
        AdapterContext(
            base_dir=base, http=session, clock=clock.now, db=db, documents=FolderStore(store)
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
        yield Firm(base, agency, db, clock, dispatcher, capture)
    finally:
        await adapter.aclose()
        await session.close()
        server.close()
        await server.wait_closed()


def openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, check=False)


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
async def test_chinese_referral_is_signed_encrypted_and_reads_back(
    firm_setup, seed_placements, tmp_path
):
    capture = Capture()
    async for firm in start_firm(firm_setup, seed_placements, capture):
        stats = await firm.dispatcher.drain_once()
        assert stats.delivered == 2
        assert await outbox_states(firm.db) == {"delivered": 2}
        raw = capture.messages[0]

        outer = email.message_from_bytes(raw, policy=default_policy)
        assert "委托律师催收函" in str(outer["subject"])
        assert str(outer["subject"]).startswith("[案件 PL-")
        assert outer.get_content_type() == "application/pkcs7-mime"
        assert str(outer["message-id"]).startswith("<pkt_")

        sent = tmp_path / "sent.eml"
        sent.write_bytes(raw)
        keys = firm.base / "keys" / FIRM
        decrypted = openssl(
            "smime",
            "-decrypt",
            "-in",
            str(sent),
            "-recip",
            str(keys / "firm.pem"),
            "-inkey",
            str(keys / "firm.pem.sandbox"),
        )
        assert decrypted.returncode == 0, decrypted.stderr
        signed = tmp_path / "signed.eml"
        signed.write_bytes(decrypted.stdout)
        verified = openssl(
            "smime",
            "-verify",
            "-in",
            str(signed),
            "-CAfile",
            str(keys / "lender.pem"),
            "-purpose",
            "any",
        )
        assert verified.returncode == 0, verified.stderr

        content = email.message_from_bytes(verified.stdout, policy=default_policy)
        names = [p.get_filename() for p in content.walk() if p.get_filename()]
        placement_id = str(outer["subject"]).split()[1].rstrip("]")
        assert names == [
            f"案件资料_{placement_id}.csv",
            "借款合同.pdf",
            f"回复表_{placement_id}.csv",
        ]
        # Clients that ignore RFC 2231 still find an RFC 2047 name on every attachment.
        assert verified.stdout.count(b'name="=?utf-8?b?') == 3
        assert verified.stdout.count(b"filename*=utf-8''") == 3
        body = next(p for p in content.walk() if p.get_content_type() == "text/plain")
        assert body["content-transfer-encoding"] == "base64"
        text = body.get_content()
        assert "正义律师事务所" in text and f"委托编号：{placement_id}" in text
        assert "sha256=" in text
        case_file = next(
            p for p in content.walk() if (p.get_filename() or "").startswith("案件资料")
        )
        header = case_file.get_content().splitlines()[0]
        assert "debtor_name" in header
        # The firm's contract does not allow national ids or addresses.
        assert "national_id" not in header and "address" not in header

        async with firm.db.connect() as conn:
            mails = (await conn.execute(sa.select(MAILS).order_by(MAILS.c.id))).mappings().all()
            attempts = (await conn.execute(sa.select(ATTEMPTS))).mappings().all()
        assert [m["state"] for m in mails] == ["accepted", "accepted"]
        [record] = [m for m in mails if m["message_id"] == outer["message-id"]]
        assert record["body"] == raw  # the bytes on record are the bytes sent
        assert record["smtp_code"] == 250 and record["dsn"] is False
        assert {a["http_status"] for a in attempts} == {250}
        assert all(a["response_excerpt"].startswith("250 2.0.0 Ok") for a in attempts)
        # The server offers no DSN, so none of its parameters were sent; VERP sender.
        assert capture.envelopes[0].mail_options == []
        assert capture.envelopes[0].mail_from.startswith("bounces+pkt_")


async def test_a_server_that_does_not_offer_starttls_gets_nothing(firm_setup, seed_placements):
    capture = Capture()
    async for firm in start_firm(firm_setup, seed_placements, capture, tls=False, count=1):
        stats = await firm.dispatcher.drain_once()
        assert stats.dead == 1
        assert capture.data_commands == 0 and capture.messages == []
        async with firm.db.connect() as conn:
            error = (await conn.execute(sa.select(OUTBOX.c.last_error))).scalar_one()
            mails = (await conn.execute(sa.select(sa.func.count()).select_from(MAILS))).scalar()
        assert "does not offer STARTTLS" in error
        assert mails == 0


async def test_a_4xx_answer_is_retried_and_the_next_250_delivers(firm_setup, seed_placements):
    capture = Capture(answers=["451 4.3.0 Mailbox busy, try later"])
    async for firm in start_firm(firm_setup, seed_placements, capture, count=1):
        first = await firm.dispatcher.drain_once()
        assert first.retried == 1 and await outbox_states(firm.db) == {"pending": 1}
        firm.clock.advance(60)
        second = await firm.dispatcher.drain_once()
        assert second.delivered == 1 and await outbox_states(firm.db) == {"delivered": 1}
        async with firm.db.connect() as conn:
            mails = (await conn.execute(sa.select(MAILS).order_by(MAILS.c.id))).mappings().all()
        assert [(m["state"], m["smtp_code"]) for m in mails] == [
            ("deferred", 451),
            ("accepted", 250),
        ]
        assert mails[0]["message_id"] == mails[1]["message_id"]
        # A refused attempt never reached the firm: the resend is not a possible duplicate.
        assert mails[1]["possible_duplicate"] is False
        assert len(capture.messages) == 1


async def test_a_5xx_answer_is_dead_and_ops_are_told(firm_setup, seed_placements):
    capture = Capture(answers=["554 5.7.1 Rejected by policy"])
    async for firm in start_firm(firm_setup, seed_placements, capture, count=1):
        stats = await firm.dispatcher.drain_once()
        assert stats.dead == 1
        async with firm.db.connect() as conn:
            kinds = (await conn.execute(sa.select(MISMATCHES.c.kind))).scalars().all()
            state = (await conn.execute(sa.select(MAILS.c.state))).scalar_one()
        assert kinds == ["dead_delivery"] and state == "refused"


class HangingCapture(Capture):
    """Takes the message and never answers (the client's timeout fires after DATA)."""

    release: asyncio.Event | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.release is not None:
            await self.release.wait()
            self.release = None
        return await super().handle_DATA(server, session, envelope)


async def test_an_unanswered_mail_is_parked_and_its_resend_is_flagged(firm_setup, seed_placements):
    capture = HangingCapture()
    capture.release = asyncio.Event()
    async for firm in start_firm(firm_setup, seed_placements, capture, count=1, smtp_timeout=0.5):
        stats = await firm.dispatcher.drain_once()
        assert stats.unknown == 1 and await outbox_states(firm.db) == {"unknown": 1}
        assert capture.release is not None
        capture.release.set()
        async with firm.db.transaction() as conn:
            ids = (await conn.execute(sa.select(OUTBOX.c.id))).scalars().all()
            assert await outbox.requeue(conn, ids, now=datetime.fromtimestamp(START, UTC)) == 1
        again = await firm.dispatcher.drain_once()
        assert again.delivered == 1
        resent = email.message_from_bytes(capture.messages[-1], policy=default_policy)
        async with firm.db.connect() as conn:
            mails = (await conn.execute(sa.select(MAILS).order_by(MAILS.c.id))).mappings().all()
        assert [m["state"] for m in mails] == ["unknown", "accepted"]
        assert mails[0]["message_id"] == mails[1]["message_id"] == resent["message-id"]
        assert mails[1]["possible_duplicate"] is True
        assert resent["x-gateway-possible-duplicate"] == "yes"
        assert str(resent["subject"]).startswith("[可能重复]")


class DsnSMTP(SMTP):
    """An aiosmtpd server that accepts the DSN parameters of RFC 3461."""

    def _getparams(self, params):  # type: ignore[no-untyped-def]
        result = super()._getparams(params)
        if result is not None:
            for key in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(key, None)
        return result


class DsnCapture(Capture):
    async def handle_EHLO(self, _server, session, _envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname  # the hook owns this when it is defined
        return [*responses[:-1], "250-DSN", responses[-1]]


async def test_dsn_parameters_go_only_to_a_server_that_offers_dsn(firm_setup, seed_placements):
    capture = DsnCapture()
    async for firm in start_firm(
        firm_setup, seed_placements, capture, server_class=DsnSMTP, count=1
    ):
        assert (await firm.dispatcher.drain_once()).delivered == 1
        envelope = capture.envelopes[0]
        ref = envelope.mail_from.split("+", 1)[1].split("@")[0]
        assert envelope.mail_options == ["RET=HDRS", f"ENVID={ref}".upper()]
        assert envelope.rcpt_options == ["NOTIFY=FAILURE,DELAY", "ORCPT=RFC822;INTAKE@ZHENGYI.TEST"]
        async with firm.db.connect() as conn:
            assert (await conn.execute(sa.select(MAILS.c.dsn))).scalar_one() is True


async def test_per_batch_mode_sends_one_mail_for_the_referrals_of_a_cycle(
    firm_setup, seed_placements
):
    base, agency, db = firm_setup
    email_cfg = agency.email.model_copy(update={"mode": "per_batch", "batch_window_seconds": 0.2})
    batched = agency.model_copy(
        update={"email": email_cfg, "retry": agency.retry.model_copy(update={"concurrency": 8})}
    )
    capture = Capture()
    async for firm in start_firm((base, batched, db), seed_placements, capture, count=3):
        assert (await firm.dispatcher.drain_once()).delivered == 3
        [raw] = capture.messages
        subject = str(email.message_from_bytes(raw, policy=default_policy)["subject"])
        assert subject.startswith("[批次 batch_") and "（3 件）" in subject
        async with firm.db.connect() as conn:
            carried = (
                await conn.execute(sa.text("SELECT message_id, outbox_id FROM mail_dispatches"))
            ).all()
        assert len(carried) == 3 and len({m for m, _ in carried}) == 1


async def test_implicit_tls_relay(firm_setup, seed_placements):
    base, agency, db = firm_setup
    ca = base / "keys" / FIRM / "sandbox-tls.pem"
    capture = Capture()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            capture,
            hostname="smtps.test",
            authenticator=authenticator(secret(base, "smtp.password")),
            auth_require_tls=False,  # the whole connection is TLS
            loop=loop,
        ),
        "127.0.0.1",
        0,
        ssl=server_tls_context(ca, Path(f"{ca}.key")),
    )
    port = server.sockets[0].getsockname()[1]
    smtp = agency.email.smtp.model_copy(update={"tls": "implicit", "port": port})
    implicit = agency.model_copy(update={"email": agency.email.model_copy(update={"smtp": smtp})})
    clock = ManualClock(START)
    await seed_placements(db, {FIRM: implicit}, 1, clock)
    async with aiohttp.ClientSession() as session:
        adapter = build_email_adapter(
            implicit, AdapterContext(base_dir=base, http=session, clock=clock.now, db=db)
        )
        dispatcher = Dispatcher(
            db=db,
            adapters={FIRM: adapter},
            agencies={FIRM: implicit},
            hooks=ReconciliationHooks(agencies={FIRM: implicit}),
            clock=clock,
        )
        try:
            assert (await dispatcher.drain_once()).delivered == 1
        finally:
            await adapter.aclose()
            server.close()
            await server.wait_closed()
    assert len(capture.messages) == 1
