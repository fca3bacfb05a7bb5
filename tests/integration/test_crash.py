"""Crash recovery: a dispatcher process is SIGKILLed in the middle of a batch, a new one
recovers the leased items after their lease expires, and every placement reaches the agency
exactly once as the agency counts it (deduplicating on ``webhook-id``), none lost.
"""

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from gateway.bootstrap import build
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.crashpoints import ENV as CRASH_ENV
from gateway.demo.data import generate_accounts, write_csv
from gateway.intake.service import import_file
from gateway.keys import sandbox_keys
from gateway.signing import VerifyingKey, read_headers, verify
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import OutboxItem

pytestmark = pytest.mark.slow

ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
"""The ``make_config`` fixture (tests/conftest.py)."""

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ROOT = Path(__file__).resolve().parents[2]
PLACEMENTS = 40
BATCH = 8
HOLD_FROM = 6  # the 6th request and later ones wait until the worker is dead
LEASE_SECONDS = 5
TIMEOUT = 120.0


@dataclass
class CountingAgency:
    """An agency endpoint that counts every ``webhook-id`` it sees, duplicates included.

    From the ``HOLD_FROM``-th request on, it does not answer until ``released``: those
    packets have reached the agency, but the dispatcher never hears back."""

    keys: list[VerifyingKey] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    answered: set[str] = field(default_factory=set)
    bodies: dict[str, bytes] = field(default_factory=dict)
    changed_bodies: int = 0
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = read_headers(request.headers.items())
        verify(headers, body, self.keys, now=int(time.time()))
        self.seen[headers.msg_id] += 1
        self.changed_bodies += self.bodies.setdefault(headers.msg_id, body) != body
        if self.seen.total() >= HOLD_FROM and not self.released.is_set():
            self.holding.set()
            await self.released.wait()
        else:
            await asyncio.sleep(0.05)
        if not self.released.is_set():
            self.answered.add(headers.msg_id)
        return web.json_response({"received": headers.msg_id})


def crash_env(crash_at: str | None) -> dict[str, str]:
    """This process's environment for a child that kills itself at the crash point
    ``crash_at`` (``gateway.crashpoints``), or at none."""
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return env


async def spawn(
    config_path: Path, log_path: Path, crash_at: str | None = None
) -> asyncio.subprocess.Process:
    """A dispatcher worker in a process of its own, killing itself at ``crash_at`` if given."""
    env = crash_env(crash_at)
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.crash_worker",
            str(config_path),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
        )


async def outbox_by_state(db: Database) -> dict[str, set[str]]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(OUTBOX.c.state, OUTBOX.c.dedupe_key))
        grouped: dict[str, set[str]] = {}
        for state, key in rows.all():
            grouped.setdefault(state, set()).add(key)
        return grouped


async def seed(settings: GatewaySettings, agencies: dict[str, AgencyConfig], tmp: Path) -> None:
    gateway = build(settings, agencies)
    try:
        await upgrade(gateway.db)
        accounts = tmp / "accounts.csv"
        write_csv(generate_accounts(PLACEMENTS, seed=9, as_of=datetime.now(UTC).date()), accounts)
        await import_file(
            accounts,
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=settings.allocation,
            clock=gateway.clock,
            confirmation="off",
        )
        assert (await gateway.placements.allocate()).placed == PLACEMENTS
    finally:
        await gateway.aclose()


async def test_a_killed_dispatcher_loses_nothing_and_duplicates_only_what_was_in_flight(
    tmp_path: Path,
    database_url: str,
    make_config: ConfigFactory,
    aiohttp_server: AiohttpServer,
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
        dispatch={"batch_size": BATCH, "lease_seconds": LEASE_SECONDS},
    )
    crash_agency = agencies["AGY_CRASH"]
    assert isinstance(crash_agency, WebhookAgency)
    agency.keys = sandbox_keys(crash_agency, settings.base_dir)[0]
    await seed(settings, agencies, tmp_path)
    db = Database(database_url)
    workers: list[asyncio.subprocess.Process] = []
    try:
        first = await spawn(config_path, tmp_path / "worker-1.log")
        workers.append(first)
        holding = asyncio.ensure_future(agency.holding.wait())
        exited = asyncio.ensure_future(first.wait())
        await asyncio.wait([holding, exited], timeout=TIMEOUT, return_when="FIRST_COMPLETED")
        assert agency.holding.is_set(), (tmp_path / "worker-1.log").read_text()
        # Outcomes are recorded as they complete: every answer the agency gave is on record
        # while later packets of the same batch are still held (group commit).
        answered = set(agency.answered)
        assert await recorded_within(db, answered, seconds=10), "answers wait for the batch"
        first.send_signal(signal.SIGKILL)
        assert await exited == -signal.SIGKILL

        at_kill = await outbox_by_state(db)
        in_flight = at_kill.get("leased", set())
        seen_at_kill = set(agency.seen)
        assert in_flight, "the kill must land in the middle of a batch"
        assert len(seen_at_kill) < PLACEMENTS
        assert seen_at_kill - at_kill.get("delivered", set()) <= in_flight
        assert seen_at_kill & in_flight, "some in-flight packets had reached the agency"

        agency.released.set()
        second = await spawn(config_path, tmp_path / "worker-2.log")
        workers.append(second)
        returncode = await asyncio.wait_for(second.wait(), TIMEOUT)
        assert returncode == 0, (tmp_path / "worker-2.log").read_text()

        final = await outbox_by_state(db)
        assert set(final) == {"delivered"} and len(final["delivered"]) == PLACEMENTS
        assert set(agency.seen) == final["delivered"], "every placement reached the agency"
        duplicates = {key for key, n in agency.seen.items() if n > 1}
        assert duplicates <= in_flight, "only packets in flight at the kill may be resent"
        assert not duplicates & answered, "a packet the agency answered is never sent again"
        assert all(n <= 2 for n in agency.seen.values())
        assert agency.changed_bodies == 0, "a resend carries the same bytes"
        tokens = await _lease_tokens(db)
        assert {key for key, token in tokens.items() if token > 1} == in_flight
    finally:
        agency.released.set()
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await db.dispose()


async def recorded_within(db: Database, keys: set[str], *, seconds: float) -> bool:
    """Whether every one of ``keys`` is ``delivered`` in the outbox within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if keys <= (await outbox_by_state(db)).get("delivered", set()):
            return True
        await asyncio.sleep(0.1)
    return False


async def _lease_tokens(db: Database) -> dict[str, Any]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(OUTBOX.c.dedupe_key, OUTBOX.c.lease_token))
        return {key: token for key, token in rows.all()}
