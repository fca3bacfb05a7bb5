"""Real crashes at named crash points (gateway/crashpoints.py): a real process is started
with ``GATEWAY_CRASH_AT`` naming a point, dies there by SIGKILL, and a second one without it
finishes the work, against real loopback servers, on both databases.

* a dispatcher (tests/integration/crash_worker.py) between an agency's 200 and our record of
  it, and before the outcome commit: every placement reaches the agency, none twice except
  as a resend it can detect (same ``webhook-id``, same bytes), each delivery is recorded
  once, the evidence log verifies;
* a dispatcher uploading an SFTP batch, before the upload and after a file's remote rename:
  the second process finishes the same batch, every case in exactly one delivered file;
* ``agency-gateway reconcile`` before a pass's checkpoint: ``reconcile --resume`` finds the
  same breaks as a run never killed, none written twice;
* ``agency-gateway serve`` after an inbound message is stored, before its 2xx: the agency's
  retry is answered 2xx and the message is stored once.
"""

import asyncio
import json
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from adapters.sftp.layouts import ParsedRecord
from adapters.sftp.parsing import read_records
from gateway.bootstrap import build
from gateway.config.agencies import WebhookAgency
from gateway.keys import sandbox_keys
from gateway.signing import VerifyingKey, read_headers, sign, verify
from gateway.store.database import Database
from gateway.store.recon_tables import ReconRun
from gateway.store.tables import DeliveryAttempt, InboundMessage, Mismatch
from gateway.store.transfer_tables import FileBatch, RemoteFile
from tests.case_world import AGENCY, account, build_case_world
from tests.conftest import ConfigFactory
from tests.integration.sftp_harness import seed as seed_sftp, start_world
from tests.integration.test_crash import PLACEMENTS, crash_env, outbox_by_state, seed, spawn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
FILES = RemoteFile.__table__  # type: ignore[attr-defined]
BATCHES = FileBatch.__table__  # type: ignore[attr-defined]
RUNS = ReconRun.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
SFTP_CASES = 60
LEASE_SECONDS = 5
TIMEOUT = 120.0


@dataclass
class CountingAgency:
    """Answers 200 to every verified packet and counts each ``webhook-id`` it sees."""

    keys: list[VerifyingKey] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, bytes] = field(default_factory=dict)
    changed_bodies: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = read_headers(request.headers.items())
        verify(headers, body, self.keys, now=int(time.time()))
        self.seen[headers.msg_id] += 1
        self.changed_bodies += self.bodies.setdefault(headers.msg_id, body) != body
        return web.json_response({"received": headers.msg_id})


async def delivered_attempts(db: Database) -> Counter[int]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(ATTEMPTS.c.outbox_id).where(ATTEMPTS.c.outcome == "delivered")
        )
        return Counter(rows.scalars().all())


@pytest.mark.parametrize(
    "crash_at",
    ["dispatch.after_agency_ok@5", "dispatch.before_outcome_commit@2"],
    ids=["between-the-agencys-200-and-our-record", "before-the-outcome-commit"],
)
async def test_a_dispatcher_killed_at_a_crash_point_loses_and_hides_nothing(
    tmp_path: Path,
    database_url: str,
    make_config: ConfigFactory,
    aiohttp_server: AiohttpServer,
    crash_at: str,
) -> None:
    agency = CountingAgency()
    app = web.Application()
    app.router.add_post("/hooks", agency.handle)
    server = await aiohttp_server(app)
    config_path, settings, agencies = make_config(
        database_url=database_url,
        agencies={
            "AGY_CRASH": {
                "scheme": "v1",
                "url": str(server.make_url("/hooks")),
                "retry": {"concurrency": 4},
            }
        },
        dispatch={"batch_size": 8, "lease_seconds": LEASE_SECONDS},
    )
    crash_agency = agencies["AGY_CRASH"]
    assert isinstance(crash_agency, WebhookAgency)
    agency.keys = sandbox_keys(crash_agency, settings.base_dir)[0]
    await seed(settings, agencies, tmp_path)
    db = Database(database_url)
    workers: list[asyncio.subprocess.Process] = []
    try:
        first = await spawn(config_path, tmp_path / "worker-1.log", crash_at)
        workers.append(first)
        assert await asyncio.wait_for(first.wait(), TIMEOUT) == -signal.SIGKILL, (
            tmp_path / "worker-1.log"
        ).read_text()
        at_kill = await outbox_by_state(db)
        in_flight = at_kill.get("leased", set())
        seen_at_kill = set(agency.seen)
        assert in_flight & seen_at_kill, "the agency had answered packets we never recorded"
        assert seen_at_kill - at_kill.get("delivered", set()) <= in_flight
        assert len(at_kill.get("delivered", set())) < PLACEMENTS

        second = await spawn(config_path, tmp_path / "worker-2.log")
        workers.append(second)
        assert await asyncio.wait_for(second.wait(), TIMEOUT) == 0, (
            tmp_path / "worker-2.log"
        ).read_text()

        final = await outbox_by_state(db)
        assert set(final) == {"delivered"} and len(final["delivered"]) == PLACEMENTS
        assert set(agency.seen) == final["delivered"], "nothing lost"
        resent = {key for key, n in agency.seen.items() if n > 1}
        assert resent <= in_flight, "only what was in flight at the kill is sent again"
        assert agency.changed_bodies == 0, "a resend carries the same webhook-id and bytes"
        attempts = await delivered_attempts(db)
        assert len(attempts) == PLACEMENTS and set(attempts.values()) == {1}, (
            "each delivery is on record once"
        )
        gateway = build(settings, agencies)
        try:
            report = await gateway.evidence.verify([gateway.note_verifier])
        finally:
            await gateway.aclose()
        assert report.ok, report.problems
        assert report.leaves_checked >= PLACEMENTS * 2
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await db.dispose()


@pytest.mark.parametrize(
    ("crash_at", "on_server_at_kill", "states"),
    [
        (
            "sftp.before_upload@1",
            [],
            {"data": "uploaded", "manifest": "uploaded", "done": "uploaded"},
        ),
        (
            "sftp.after_rename@1",
            [".csv"],
            {"data": "present", "manifest": "uploaded", "done": "uploaded"},
        ),
        (
            "sftp.after_rename@2",
            [".csv", ".manifest.json"],
            {"data": "present", "manifest": "present", "done": "uploaded"},
        ),
        (
            "sftp.after_rename@3",  # every file up, nothing of it recorded
            [".csv", ".done", ".manifest.json"],
            {"data": "present", "manifest": "present", "done": "present"},
        ),
    ],
    ids=[
        "before-the-upload",
        "after-the-data-file-rename",
        "after-the-manifest-rename",
        "after-the-done-marker-rename",
    ],
)
async def test_an_sftp_upload_killed_at_a_crash_point_is_finished_as_one_batch(
    tmp_path: Path,
    database_url: str,
    crash_at: str,
    on_server_at_kill: list[str],
    states: dict[str, str],
) -> None:
    world = await start_world(
        tmp_path,
        database_url,
        dispatch={"lease_seconds": LEASE_SECONDS},
        sftp={"batch_lease_seconds": LEASE_SECONDS},
    )
    db = Database(database_url)
    workers: list[asyncio.subprocess.Process] = []
    try:
        await seed_sftp(world, SFTP_CASES)
        first = await spawn(world.config_path, tmp_path / "worker-1.log", crash_at)
        workers.append(first)
        assert await asyncio.wait_for(first.wait(), TIMEOUT) == -signal.SIGKILL, (
            tmp_path / "worker-1.log"
        ).read_text()
        at_kill = world.files("inbox")
        inbox = world.path("inbox")
        before = {n: ((inbox / n).stat().st_mtime_ns, (inbox / n).read_bytes()) for n in at_kill}
        assert sorted(n.partition(".")[2] for n in at_kill) == sorted(
            s.lstrip(".") for s in on_server_at_kill
        ), at_kill
        assert set(await outbox_by_state(db)) == {"leased"}

        second = await spawn(world.config_path, tmp_path / "worker-2.log")
        workers.append(second)
        assert await asyncio.wait_for(second.wait(), TIMEOUT) == 0, (
            tmp_path / "worker-2.log"
        ).read_text()

        final = await outbox_by_state(db)
        assert set(final) == {"delivered"} and len(final["delivered"]) == SFTP_CASES
        names = world.files("inbox")
        data = [n for n in names if n.endswith(".csv")]
        assert len(data) == 1, names
        stem = data[0].removesuffix(".csv")
        assert names == sorted([data[0], f"{stem}.done", f"{stem}.manifest.json"]), names
        assert set(at_kill) <= set(names), "the second process finished the same batch"
        assert {n: ((inbox / n).stat().st_mtime_ns, (inbox / n).read_bytes()) for n in at_kill} == (
            before
        ), "what had arrived was recognised by its hash: not uploaded again, not overwritten"
        with (inbox / data[0]).open("rb") as stream:
            carried = Counter(
                r.record["data"]["placement_id"]
                for r in read_records(stream, world.agency.sftp.layout, "placement.created")
                if isinstance(r, ParsedRecord)
            )
        async with db.connect() as conn:
            placements = set((await conn.execute(sa.text("select id from placements"))).scalars())
            rows = await conn.execute(sa.select(FILES.c.role, FILES.c.state))
            files = {str(role): str(state) for role, state in rows.all()}
            batches = (await conn.execute(sa.select(BATCHES.c.state))).scalars().all()
        assert set(carried) == placements and set(carried.values()) == {1}
        assert files == states
        assert batches == ["delivered"], "one batch, finished by the second process"
        gateway = world.gateway()
        try:
            report = await gateway.evidence.verify([gateway.note_verifier])
        finally:
            await gateway.aclose()
        assert report.ok, report.problems
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await db.dispose()
        await world.aclose()


async def cli(
    config_path: Path, log_path: Path, *args: str, crash_at: str | None = None
) -> tuple[int, str]:
    """Run ``agency-gateway --config ... ARGS`` in a process of its own; (exit code, stdout)."""
    env = crash_env(crash_at)
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "--config",
            str(config_path),
            *args,
            cwd=config_path.parent,  # the config's relative paths start there
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def mismatch_kinds(db: Database) -> Counter[str]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(MISMATCHES.c.kind, sa.func.count()).group_by(MISMATCHES.c.kind)
        )
        return Counter({str(kind): int(n) for kind, n in rows.all()})


async def test_a_reconciliation_run_killed_before_its_checkpoint_resumes_to_the_same_breaks(
    tmp_path: Path, database_url: str, make_config: ConfigFactory
) -> None:
    # The remit model: a payment the agency reports and the lender never receives is a break.
    remits = {"money_model": "agency_remits"}
    world = await build_case_world(make_config, tmp_path, database_url, settlement=remits)
    config_path = tmp_path / "config" / "gateway.toml"
    try:
        await world.intake([account(n) for n in range(1, 6)])
        assert await world.allocate() == 5
        for placement in await world.placements():
            # An acknowledgement of another balance (flagged as it arrives) and a payment the
            # lender's feed never shows (a break the run finds).
            balance = {"amount_minor": placement["balance_minor"] + 100, "currency": "CNY"}
            data = {"placement_id": placement["id"], "agency_case_ref": "X", "balance": balance}
            assert await world.post("placement.acknowledged", data) == 200
            payment = {
                "placement_id": placement["id"],
                "payment_id": f"PAY-{placement['id']}",
                "amount": {"amount_minor": 5_000, "currency": "CNY"},
                "paid_at": "2026-03-01T06:40:12Z",
            }
            assert await world.post("payment.reported", payment) == 200
    finally:
        await world.gateway.aclose()
    db = Database(database_url)
    before = await mismatch_kinds(db)  # the inbound side flags some at once
    await db.dispose()
    code, out = await cli(config_path, tmp_path / "dry.log", "reconcile", "--dry-run", "--json")
    assert code == 0, (tmp_path / "dry.log").read_text()
    expected = json.loads(out)["counts"]["new"]
    assert sum(expected.values()) >= 5, expected

    # The events pass commits its breaks chunk by chunk with the checkpoint; the kill lands
    # at the second commit, before its checkpoint.
    code, _ = await cli(
        config_path, tmp_path / "crash.log", "reconcile", crash_at="reconcile.before_checkpoint@2"
    )
    assert code == -signal.SIGKILL, (tmp_path / "crash.log").read_text()
    db = Database(database_url)
    try:
        async with db.connect() as conn:
            [(run_id, state, checkpoint)] = (
                await conn.execute(
                    sa.select(RUNS.c.id, RUNS.c.state, RUNS.c.checkpoint).where(
                        RUNS.c.dry_run.is_(False)
                    )
                )
            ).all()
        assert state == "running", "a killed run is left running, to be resumed"
        assert json.loads(checkpoint)["pass"] == "events", "killed inside the events pass"

        code, out = await cli(
            config_path, tmp_path / "resume.log", "reconcile", "--resume", str(run_id), "--json"
        )
        assert code == 0, (tmp_path / "resume.log").read_text()
        resumed = json.loads(out)
        assert resumed["state"] == "completed" and resumed["resumes"] == 1
        assert resumed["counts"]["new"] == expected, "the same breaks as a run never killed"
        kinds = await mismatch_kinds(db)
        assert kinds == before + Counter(expected), "nothing written twice, nothing lost"
    finally:
        await db.dispose()
    code, out = await cli(config_path, tmp_path / "verify.log", "evidence", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"], out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(config_path: Path, log_path: Path, port: int, crash_at: str | None = None) -> Any:
    """``agency-gateway serve`` in a process of its own, once it answers on ``port``."""
    env = crash_env(crash_at) | {"GATEWAY_LISTEN": f"127.0.0.1:{port}"}
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--config", str(config_path), "serve",
            cwd=config_path.parent, env=env, stdout=log, stderr=log,
        )  # fmt: skip

    async def listening() -> None:
        while True:
            assert process.returncode is None, f"serve exited before listening; see {log_path}"
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return

    await asyncio.wait_for(listening(), TIMEOUT)
    return process


async def test_serve_killed_after_storing_a_message_before_its_2xx_keeps_it_once(
    tmp_path: Path, database_url: str, make_config: ConfigFactory
) -> None:
    world = await build_case_world(make_config, tmp_path, database_url)
    config_path = tmp_path / "config" / "gateway.toml"
    try:
        await world.intake([account(1)])
        assert await world.allocate() == 1
        [placement] = await world.placements()
        agency = world.gateway.agencies[AGENCY]
        assert isinstance(agency, WebhookAgency)
        _verify, signing = sandbox_keys(agency, world.gateway.settings.base_dir)
    finally:
        await world.gateway.aclose()
    body = json.dumps(
        {
            "type": "placement.acknowledged",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "placement_id": placement["id"],
                "agency_case_ref": "EXT-1",
                "balance": {"amount_minor": placement["balance_minor"], "currency": "CNY"},
            },
        }
    ).encode()
    msg_id = "evt_crash_after_store"

    async def post(port: int) -> tuple[int, bytes]:
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(msg_id, ts, body, signing),
        }
        url = f"http://127.0.0.1:{port}/v1/agencies/{AGENCY}/events"
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
            ) as response,
        ):
            return response.status, await response.read()

    port = free_port()
    first = await serve(config_path, tmp_path / "serve-1.log", port, "inbound.after_store")
    try:
        with pytest.raises(aiohttp.ClientError):
            await post(port)  # the agency never hears back: it will retry
        assert await asyncio.wait_for(first.wait(), TIMEOUT) == -signal.SIGKILL
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    db = Database(database_url)
    try:
        assert await stored(db, msg_id) == 1, "stored before the answer that never went out"
        port = free_port()
        second = await serve(config_path, tmp_path / "serve-2.log", port)
        try:
            status, answer = await post(port)  # the agency's retry, same webhook-id
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.wait_for(second.wait(), TIMEOUT)
        assert 200 <= status < 300, answer
        assert await stored(db, msg_id) == 1, "the retry is recognised, not stored again"
        async with db.connect() as conn:
            query = sa.select(INBOUND.c.status).where(INBOUND.c.external_id == msg_id)
            assert (await conn.execute(query)).scalar_one() == "accepted"
    finally:
        await db.dispose()
    code, out = await cli(config_path, tmp_path / "verify.log", "evidence", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"], out


async def stored(db: Database, external_id: str) -> int:
    async with db.connect() as conn:
        query = sa.select(sa.func.count()).where(INBOUND.c.external_id == external_id)
        return int((await conn.execute(query)).scalar_one())
