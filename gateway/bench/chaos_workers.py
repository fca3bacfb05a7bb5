"""The chaos benchmark's dispatcher processes and the store they share.

Theory of operation
-------------------
A ``ChaosSetup`` names everything a worker process needs to build the same gateway through
the composition root (``gateway.bootstrap.build``): the store's URL, the counting agencies'
endpoints, the dispatch settings and how outcomes are recorded. ``seed`` fills a fresh store
the way production does (demo accounts → intake → allocation, which queues one
``placement.created`` packet per placement).

Each worker (``dispatch_worker``) is a spawned process that drains the outbox as ``serve``
does (``Dispatcher.drain_once`` in a loop, waiting ``poll_interval_seconds`` when nothing is
due) until no packet is ``pending`` or ``leased``, then says ``Finished``. A ``Fleet`` keeps
``size`` workers alive: when the benchmark SIGKILLs one, a fresh one takes its place and,
once the dead worker's leases expire, sends what it left unrecorded.

``recording="whole-batch"`` is the benchmark's baseline: the dispatcher as it was before
outcomes were group-committed (commit 0d8d557), which sent a whole batch and only then
recorded its outcomes in one transaction. Everything else is the production dispatcher.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.bench.child import Child, Finished, ParentLink, peak_rss_mb
from gateway.bench.dataset import import_and_place
from gateway.bootstrap import Gateway, build
from gateway.config.agencies import (
    BUCKETS,
    AgencyConfig,
    CapacitySection,
    EligibilitySection,
    EndpointSection,
    InboundSection,
    RetrySection,
    SigningSection,
    WebhookAgency,
)
from gateway.config.documents import DocumentsSection
from gateway.config.secrets import SecretRef
from gateway.config.settings import (
    DatabaseSection,
    DispatchSection,
    GatewaySettings,
    RegisterSection,
)
from gateway.demo.data import generate_accounts, write_csv
from gateway.dispatch.dispatcher import Dispatcher
from gateway.dispatch.hooks import ReconciliationHooks
from gateway.dispatch.outbox import ClaimedItem, counts_by_state
from gateway.dispatch.records import DrainStats
from gateway.errors import GatewayError
from gateway.keys import generate_missing
from gateway.store.database import normalise_url

Recording = Literal["group-commit", "whole-batch"]
RUN_TIMEOUT_SECONDS = 3600.0
"""How long one worker may run before the benchmark gives up on it."""


@dataclass(frozen=True, slots=True)
class ChaosSetup:
    """What every process of one chaos run needs to build the same gateway (picklable).

    Args:
        workdir: the benchmark's temp directory (keys, CSV, SQLite files).
        database_url: the run's store.
        endpoints: (agency id, URL) of each counting agency.
        recording: ``group-commit`` (the dispatcher) or ``whole-batch`` (the baseline).
        concurrency: each agency's ``retry.concurrency`` (sends in flight per worker).
        batch_size: the dispatcher's claim size.
        lease_seconds: how long a dead worker's claims keep their packets from the others.
    """

    workdir: Path
    database_url: str
    endpoints: tuple[tuple[str, str], ...]
    recording: Recording = "group-commit"
    concurrency: int = 8
    batch_size: int = 50
    lease_seconds: int = 10
    poll_interval_seconds: float = 0.2

    def with_run(
        self, database_url: str, endpoints: Sequence[tuple[str, str]], recording: Recording
    ) -> "ChaosSetup":
        return replace(
            self, database_url=database_url, endpoints=tuple(endpoints), recording=recording
        )


def agency_ids(count: int) -> list[str]:
    return [f"CHAOS{n}" for n in range(1, count + 1)]


def chaos_agency(agency_id: str, url: str, concurrency: int) -> WebhookAgency:
    """A webhook agency taking every bucket without a capacity limit; keys are files under
    the workdir."""
    return WebhookAgency(
        id=agency_id,
        name=f"Chaos agency {agency_id}",
        channel="webhook",
        endpoint=EndpointSection(url=url, allow_plain_http=True),
        signing=SigningSection(keys=(SecretRef(file=f"var/keys/{agency_id}/outbound.whsec"),)),
        inbound=InboundSection(keys=(SecretRef(file=f"var/keys/{agency_id}/inbound.whsec"),)),
        fields=("debtor.name", "debtor.phones", "debtor.region"),
        eligibility=EligibilitySection(buckets=BUCKETS),
        capacity=CapacitySection(max_open_placements=100_000_000),
        retry=RetrySection(concurrency=concurrency),
    )


def config(setup: ChaosSetup) -> tuple[GatewaySettings, dict[str, AgencyConfig]]:
    settings = GatewaySettings(
        database=DatabaseSection(url=setup.database_url),
        dispatch=DispatchSection(
            batch_size=setup.batch_size,
            lease_seconds=setup.lease_seconds,
            poll_interval_seconds=setup.poll_interval_seconds,
        ),
        # Benchmarks measure the pipeline, not the lender's letters (gateway.letters).
        documents=DocumentsSection(letters="off"),
        # The benchmark agency has no register entry (README "Agency register").
        register=RegisterSection(enforce=False),
        agencies_dir=str(setup.workdir / "agencies"),
        base_dir=setup.workdir,
    )
    agencies: dict[str, AgencyConfig] = {
        agency_id: chaos_agency(agency_id, url, setup.concurrency)
        for agency_id, url in setup.endpoints
    }
    return settings, agencies


def make_keys(setup: ChaosSetup) -> None:
    """Create the run's keys (the agencies' and the gateway's) under the workdir."""
    generate_missing(*config(setup))


@asynccontextmanager
async def scratch_store(server_url: str | None, workdir: Path, name: str) -> AsyncIterator[str]:
    """A URL of an empty store for one run: a SQLite file under ``workdir``, or a database
    created on the PostgreSQL server of ``server_url`` and dropped afterwards (the database
    ``server_url`` names is only connected to, never written)."""
    if server_url is None:
        yield f"sqlite:///{workdir / name}.db"
        return
    url = make_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise GatewayError(f"--database-url must be a postgresql:// URL, got {url.drivername}")
    database = f"gateway_chaos_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(normalise_url(server_url, workdir), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{database}"'))
        try:
            yield url.set(database=database).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                # FORCE: connections a killed worker left behind must not block the drop.
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def seed(setup: ChaosSetup, placements: int, *, seed: int) -> None:
    """Fill the empty store of ``setup`` with ``placements`` placements, their packets queued."""
    settings, agencies = config(setup)
    csv_path = setup.workdir / f"accounts-{placements}-{seed}.csv"
    if not csv_path.exists():
        write_csv(
            generate_accounts(placements, seed=seed, as_of=datetime.now(UTC).date()), csv_path
        )
    await import_and_place(settings, agencies, csv_path, placements, what="chaos benchmark seeding")


class WholeBatchDispatcher(Dispatcher):
    """The baseline: sends a whole batch, then records all its outcomes in one transaction
    (the dispatcher before group commit), so a kill loses every answer of the batch."""

    async def _send_and_record(self, items: Sequence[ClaimedItem]) -> DrainStats:
        async with asyncio.TaskGroup() as tg:
            sends = [tg.create_task(self._send_one(item)) for item in items]
        return await self._recorder.record([send.result() for send in sends])


async def _dispatcher(gateway: Gateway, recording: Recording) -> Dispatcher:
    dispatcher = await gateway.dispatcher()
    if recording == "group-commit":
        return dispatcher
    # Wired as gateway.bootstrap wires the production dispatcher, on its adapters.
    return WholeBatchDispatcher(
        db=gateway.db,
        adapters=dispatcher.adapters,
        agencies=gateway.agencies,
        hooks=ReconciliationHooks(agencies=gateway.agencies),
        clock=gateway.clock,
        batch_size=gateway.settings.dispatch.batch_size,
        lease_seconds=gateway.settings.dispatch.lease_seconds,
    )


@dataclass(frozen=True, slots=True)
class Started:
    """Worker → parent: the dispatcher is built and about to claim, under this lease owner."""

    worker_id: str
    pid: int


async def dispatch_worker(link: ParentLink, setup: ChaosSetup) -> None:
    """Child main: drain the outbox until nothing is pending or leased (module docstring)."""
    settings, agencies = config(setup)
    gateway = build(settings, agencies)
    total = DrainStats()
    try:
        dispatcher = await _dispatcher(gateway, setup.recording)
        link.send(Started(dispatcher.worker_id, os.getpid()))
        while True:
            stats = await dispatcher.drain_once()
            total.add(stats)
            async with gateway.db.connect() as conn:
                counts = await counts_by_state(conn)
            if not counts.get("pending") and not counts.get("leased"):
                break
            if stats.claimed == 0:
                await asyncio.sleep(settings.dispatch.poll_interval_seconds)
    finally:
        await gateway.aclose()
    link.send(
        Finished(
            peak_rss_mb(),
            {"delivered": total.delivered, "reaped": total.reaped, "lease_lost": total.lease_lost},
        )
    )


@dataclass(eq=False)
class Worker:
    """One worker process; ``worker_id`` once it has said ``Started``."""

    child: Child
    worker_id: str | None = None
    killed: bool = False
    done: bool = False


@dataclass
class Fleet:
    """Keeps ``size`` worker processes of ``setup`` alive until they finish; ``kill`` SIGKILLs
    one and starts a fresh one in its place."""

    setup: ChaosSetup
    size: int
    spawned: int = 0
    finished: list[dict[str, object]] = field(default_factory=list)
    _workers: list[Worker] = field(default_factory=list)
    _tg: asyncio.TaskGroup | None = None

    async def run(self, chaos: Callable[["Fleet"], Coroutine[Any, Any, None]]) -> None:
        """Start the workers and run ``chaos`` beside them; return when every worker has
        finished (a worker that fails, or ``chaos`` raising, aborts the run)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for _ in range(self.size):
                self._spawn()
            tg.create_task(chaos(self))

    @property
    def done(self) -> bool:
        """Every worker started so far has finished (the outbox is settled)."""
        return all(w.done or w.killed for w in self._workers)

    def victims(self) -> list[Worker]:
        """Workers that are dispatching: started, not yet finished or killed."""
        return [w for w in self._workers if w.worker_id and not (w.done or w.killed)]

    async def kill(self, worker: Worker) -> None:
        """SIGKILL ``worker`` (the signal goes out before this first yields) and start a fresh
        worker in its place."""
        worker.killed = True
        await worker.child.kill()
        self._spawn()

    def _spawn(self) -> None:
        assert self._tg is not None, "Fleet.run starts the workers"
        self.spawned += 1
        worker = Worker(
            Child(f"chaos-worker-{self.spawned}", dispatch_worker, self.setup, cpu=None)
        )
        self._workers.append(worker)
        self._tg.create_task(self._supervise(worker))

    async def _supervise(self, worker: Worker) -> None:
        try:
            started = await worker.child.expect(Started)
            worker.worker_id = started.worker_id
            finished = await worker.child.expect(Finished, within=RUN_TIMEOUT_SECONDS)
            self.finished.append(dict(finished.result))
            worker.done = True
        except GatewayError:
            if not worker.killed:
                raise
        finally:
            await worker.child.close(grace=10 if worker.done else 0)


__all__ = [
    "RUN_TIMEOUT_SECONDS",
    "ChaosSetup",
    "Fleet",
    "Recording",
    "Started",
    "WholeBatchDispatcher",
    "Worker",
    "agency_ids",
    "chaos_agency",
    "config",
    "dispatch_worker",
    "make_keys",
    "scratch_store",
    "seed",
]
