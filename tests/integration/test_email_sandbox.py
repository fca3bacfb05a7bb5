"""The whole email loop against the sandbox law firm: composition root, dispatcher, SMTP with
STARTTLS and AUTH, the firm decrypting and verifying, replies through Dovecot, events back."""

import json
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.bootstrap import build
from gateway.clock import ManualClock
from gateway.runtime import mailbox_readers
from gateway.sandbox.dovecot import free_port, unavailable_reason
from gateway.sandbox.law_firm import SandboxLawFirm
from gateway.store.mail_tables import MailReply
from gateway.store.migrate import upgrade
from gateway.store.tables import AgencyEventRow, Mismatch, Placement
from tests.integration.email_setup import FIRM, firm_of, outbox_states, write_firm_config

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
REPLIES = MailReply.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_the_sandbox_firm_reads_our_mail_and_its_replies_become_events(
    tmp_path: Path, seed_placements
):
    base = tmp_path / "config"
    _, settings, agencies = write_firm_config(
        base,
        database_url="sqlite:///" + str(tmp_path / "g.db"),
        smtp_port=free_port(),
        imap_port=free_port(),
    )
    firm = SandboxLawFirm(agency=firm_of(agencies), base_dir=base, seed=3, fault_rate=0.5)
    await firm.start()
    try:
        agencies[FIRM] = firm.updated_agency()
        clock = ManualClock(START)
        gateway = build(settings, agencies, clock=clock)
        try:
            await upgrade(gateway.db)
            placed = await seed_placements(gateway.db, agencies, 12, clock)
            dispatcher = await gateway.dispatcher()
            assert (await dispatcher.drain_once()).delivered == len(placed)
            assert await firm.drain(timeout=30)
            stats = firm.stats
            assert stats.mails_received == stats.decrypted == len(placed)
            assert stats.signatures_verified == len(placed) and stats.signatures_unverified == 0
            if firm.reply_path_skipped is not None:
                assert unavailable_reason() is not None
                pytest.skip(f"reply path skipped: {firm.reply_path_skipped}")

            [reader] = mailbox_readers(gateway)
            polled = await reader.poll_once()
            assert sum(polled.values()) == stats.replies_appended
            async with gateway.db.connect() as conn:
                kinds = Counter((await conn.execute(sa.select(REPLIES.c.kind))).scalars().all())
                events = (await conn.execute(sa.select(EVENTS))).mappings().all()
                mismatches = Counter(
                    (await conn.execute(sa.select(MISMATCHES.c.kind))).scalars().all()
                )
                states = Counter(
                    (await conn.execute(sa.select(PLACEMENTS.c.state))).scalars().all()
                )
            faults = stats.faults
            assert kinds["duplicate"] == faults["duplicate"]
            assert kinds["unmatched"] == mismatches["unmatched_reply"] == faults["unthreaded"]
            assert mismatches["unparsed_reply"] == faults["unparseable"] + faults["bad_line"]
            # Threaded replies and subject-tag replies are both matched.
            unsigned = faults["unsigned"]
            assert (
                unsigned >= 1 and kinds["unverified"] == mismatches["unverified_reply"] == unsigned
            )
            assert kinds["reply"] == (
                len(placed) - faults["unparseable"] - faults["unthreaded"] - unsigned
            )
            suits = [
                json.loads(e["data"])
                for e in events
                if e["event_type"] == "legal.action" and e["applied"]
            ]
            assert any((s["court_case_number"] or "").startswith("(2026)") for s in suits)
            assert states["legal"] + states["returned"] >= 1
            assert await outbox_states(gateway.db) == {"delivered": len(placed)}
        finally:
            await gateway.aclose()
    finally:
        await firm.aclose()
