"""Packets at rest: the outbox keeps each packet's exact bytes sealed under the PII key ring,
sends them exactly as rendered, and purges them after their retention while every proof
still verifies. Checked on a real SQLite file (and PostgreSQL for the behaviour), with an
agency configured and packets written and delivered: the file holds no name, national id or
phone in clear."""

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web
from prometheus_client import generate_latest
from pytest_aiohttp import AiohttpServer

from gateway.bootstrap import build
from gateway.clock import ManualClock
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import GatewaySettings
from gateway.demo.data import generate_accounts, write_csv
from gateway.evidence.bundle import export_case, verify_bundle
from gateway.intake.service import import_file
from gateway.store.migrate import upgrade
from gateway.store.tables import OutboxItem
from tests.conftest import import_and_allocate

ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_packets_are_sealed_at_rest_sent_exactly_and_purged_with_proofs_intact(
    tmp_path: Path,
    database_url: str,
    make_config: ConfigFactory,
    aiohttp_server: AiohttpServer,
) -> None:
    received: dict[str, bytes] = {}

    async def hooks(request: web.Request) -> web.Response:
        received[request.headers["webhook-id"]] = await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hooks", hooks)
    server = await aiohttp_server(app)
    _path, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGY_REST": {"scheme": "v1", "url": str(server.make_url("/hooks"))}},
    )
    accounts = list(generate_accounts(12, seed=3, as_of=date(2026, 3, 1)))
    write_csv(accounts, tmp_path / "accounts.csv")
    secrets = [s for a in accounts for s in (a.name, a.national_id, a.phones[0])]
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    try:
        await upgrade(gateway.db)
        assert await import_and_allocate(gateway, tmp_path / "accounts.csv") == 12
        stats = await (await gateway.dispatcher()).drain_once()
        assert stats.delivered == 12
        async with gateway.db.connect() as conn:
            rows = (await conn.execute(sa.select(OUTBOX))).mappings().all()
        # On the wire: the exact bytes rendered (their hash is the one attested), in clear,
        # with the personal data the agency's allowlist permits.
        for row in rows:
            body = received[row["dedupe_key"]]
            assert hashlib.sha256(body).hexdigest() == row["payload_sha256"]
            assert json.loads(body)["data"]["debtor"]["name"]
            assert bytes(row["payload"]) != body and bytes(row["payload"])[:1] == b"\x01"
        report = await gateway.evidence.verify([gateway.note_verifier])
        assert report.problems == [] and report.rows_checked >= 24

        if database_url.startswith("sqlite"):
            db_file = Path(gateway.db.engine.url.database or "")
            stored = b"".join(
                p.read_bytes()
                for p in (db_file, db_file.with_name(db_file.name + "-wal"))
                if p.exists()
            )
            assert rows[0]["placement_id"].encode() in stored  # the scan sees plain columns
            leaked = [s for s in secrets if s.encode() in stored]
            assert leaked == [], f"{len(leaked)} personal values in clear in the database file"

        metrics = generate_latest(gateway.metrics.registry).decode()
        assert "gateway_" in metrics  # the scan reads the real exposition
        assert [s for s in secrets if s in metrics] == []

        # Retention: a year after delivery the bytes go, their proofs stay.
        clock.advance(timedelta(days=settings.privacy.packet_retention_days + 1).total_seconds())
        assert await gateway.purge_packets() == 12
        assert await gateway.purge_packets() == 0
        async with gateway.db.connect() as conn:
            purged = (await conn.execute(sa.select(OUTBOX))).mappings().all()
        assert {bytes(r["payload"]) for r in purged} == {b""}
        assert all(r["payload_purged_at"] is not None for r in purged)
        report = await gateway.evidence.verify([gateway.note_verifier])
        assert report.problems == [], report.problems
        case_id = accounts[0].account_id
        bundle = await export_case(
            gateway.db,
            gateway.evidence,
            gateway.note_verifier,
            str(case_id),
            now=datetime.fromtimestamp(clock.now(), UTC),
        )
        [packet] = [e for e in bundle["entries"] if e["kind"] == "packet"]
        assert "purged_at" in packet["attested"]
        checked = verify_bundle(bundle, [gateway.note_verifier])
        assert checked.ok and checked.withheld == 1, checked.problems
    finally:
        await gateway.aclose()


async def test_an_emptied_payload_that_was_not_purged_is_caught(
    tmp_path: Path, database_url: str, make_config: ConfigFactory
) -> None:
    _path, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGY_REST": {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
    write_csv(list(generate_accounts(2, seed=4, as_of=date(2026, 3, 1))), tmp_path / "a.csv")
    gateway = build(settings, agencies, clock=ManualClock(START.timestamp()))
    try:
        await upgrade(gateway.db)
        await import_file(
            tmp_path / "a.csv",
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=settings.allocation,
            clock=gateway.clock,
            confirmation="off",
        )
        await gateway.placements.allocate()
        async with gateway.db.transaction() as conn:
            await conn.execute(sa.update(OUTBOX).values(payload=b""))
        report = await gateway.evidence.verify([gateway.note_verifier])
        assert any(p.code == "row_mismatch" for p in report.problems), report.problems
    finally:
        await gateway.aclose()
