"""The chaos benchmark's dispatcher processes and the store they share.

Theory of operation
-------------------
A ``ChaosSetup`` names everything a worker process needs to build the same gateway through
the composition root (``gateway.bootstrap.build``): the store's URL, the counting agencies'
endpoints, the dispatch settings and how outcomes are recorded. ``seed`` fills a fresh store
the way production does (demo accounts → intake → allocation, which queues one
``placement.created`` packet per placement).

Each worker (``dispatch_worker``) is a spawned process that, once told to ``Go``, drains
the outbox as ``serve`` does (``Dispatcher.drain_once`` in a loop, waiting
``poll_interval_seconds`` when nothing is due) until no packet is ``pending`` or ``leased``,
then says ``Finished``. A ``Fleet`` keeps ``size`` workers dispatching: when the benchmark
SIGKILLs one, another takes its place (a standby one at once, if the fleet keeps any) and,
once the dead worker's leases expire, sends what it left unrecorded.

``recording="whole-batch"`` is the benchmark's baseline: the dispatcher as it was before
outcomes were group-committed (commit 0d8d557), which sent a whole batch and only then
recorded its outcomes in one transaction. Everything else is the production dispatcher.

On PostgreSQL a worker stages its evidence leaves as ``serve`` does (``[cluster]
stage_evidence``, on by default; gateway.runtime.run_workers), so its recording transactions
take no evidence lock; the benchmark runs the one sequencer beside the fleet.
``stage_evidence=False`` makes every recorder take the evidence append lock until it commits
(``serve`` with staging off), which serialises the recording of every lane of every worker.

Every worker also logs, for each outcome it records, when its answer came back, when the
recording transaction began and when it committed (``TimedRecorder``: one JSON line per
transaction, flushed at once, so a SIGKILLed worker's log is whole up to its last commit):
the benchmark reads how long answers wait before they are on record.
"""

import asyncio
import json
import multiprocessing
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

import psutil  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.bench.child import (
    Child,
    ChildMain,
    Finished,
    ParentLink,
    _child_entry,
    _main_module_hidden,
    peak_rss_mb,
)
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
from gateway.dispatch.records import DeliveryRecorder, DrainStats, SendOutcome
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
        stage_evidence: on PostgreSQL, stage evidence leaves as ``serve`` does (module doc).
        timings: the directory where each worker logs its recording times (module doc).
    """

    workdir: Path
    database_url: str
    endpoints: tuple[tuple[str, str], ...]
    recording: Recording = "group-commit"
    concurrency: int = 8
    batch_size: int = 50
    lease_seconds: int = 10
    poll_interval_seconds: float = 0.2
    stage_evidence: bool = True
    timings: Path | None = None

    def with_run(
        self,
        database_url: str,
        endpoints: Sequence[tuple[str, str]],
        recording: Recording,
        timings: Path | None = None,
    ) -> "ChaosSetup":
        return replace(
            self,
            database_url=database_url,
            endpoints=tuple(endpoints),
            recording=recording,
            timings=timings,
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


class TimedRecorder(DeliveryRecorder):
    """The dispatcher's recorder, unchanged, that also logs one JSON line per recording
    transaction: ``begin`` and ``commit`` (Unix seconds) and, for each outcome, its packet's
    dedupe key and when its answer came back (``started_at`` plus the send's duration)."""

    _log: TextIO

    @classmethod
    def around(cls, recorder: DeliveryRecorder, log: TextIO) -> "TimedRecorder":
        """``recorder`` itself (its state shared, not copied), logging to ``log``."""
        timed = cls.__new__(cls)
        timed.__dict__.update(recorder.__dict__)
        timed._log = log
        return timed

    async def record(
        self, outcomes: Sequence[SendOutcome], *, batch: str | None = None
    ) -> DrainStats:
        begin = time.time()
        stats = await super().record(outcomes, batch=batch)
        line = {
            "begin": begin,
            "commit": time.time(),
            "keys": [o.item.dedupe_key for o in outcomes],
            "answered": [o.started_at.timestamp() + o.duration_ms / 1000 for o in outcomes],
        }
        self._log.write(json.dumps(line) + "\n")
        self._log.flush()
        return stats


def read_timings(directory: Path) -> Iterator[dict[str, Any]]:
    """Every line the workers of one run logged (``TimedRecorder``); a line a SIGKILL cut
    short is skipped."""
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


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
    """Worker → parent: the dispatcher is built, under this lease owner; it claims nothing
    before the parent says ``Go``."""

    worker_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class Go:
    """Parent → worker: start dispatching."""


async def dispatch_worker(link: ParentLink, setup: ChaosSetup) -> None:
    """Child main: drain the outbox until nothing is pending or leased (module docstring)."""
    settings, agencies = config(setup)
    gateway = build(settings, agencies)
    # As serve does on PostgreSQL (gateway.runtime.run_workers); SQLite never stages.
    gateway.db.stage_evidence = setup.stage_evidence and not gateway.db.is_sqlite
    total = DrainStats()
    log: TextIO | None = None
    try:
        dispatcher = await _dispatcher(gateway, setup.recording)
        if setup.timings is not None:
            log = (setup.timings / f"{os.getpid()}.jsonl").open("a")
            dispatcher._recorder = TimedRecorder.around(dispatcher._recorder, log)
        link.send(Started(dispatcher.worker_id, os.getpid()))
        if not isinstance(message := await link.receive(), Go):
            raise GatewayError(f"chaos worker expected Go, got {message!r}")
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
        if log is not None:
            log.close()
    link.send(
        Finished(
            peak_rss_mb(),
            {"delivered": total.delivered, "reaped": total.reaped, "lease_lost": total.lease_lost},
        )
    )


FORK_PRELOAD = ["gateway.bench.chaos_workers"]
"""What the fork server imports once, before it forks the workers."""


class ForkedChild(Child):
    """A ``Child`` forked from a server process that imported the gateway once (the
    ``forkserver`` start method), not spawned: a fresh worker is up in a fraction of a second
    instead of the seconds its imports take (over a minute on a loaded machine), so the
    kills, not the imports, decide how often the fleet is short of a worker."""

    def __init__(self, name: str, main: ChildMain, *args: Any) -> None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(FORK_PRELOAD)
        self.name = name
        self._conn, child_conn = ctx.Pipe()
        # A ForkServerProcess: the same Process API as the parent class's SpawnProcess.
        self._process = ctx.Process(  # type: ignore[assignment]
            target=_child_entry, args=(child_conn, None, main, args), name=name, daemon=True
        )
        with _main_module_hidden():
            self._process.start()
        child_conn.close()
        self._ps = psutil.Process(self._process.pid)


@dataclass(eq=False)
class Worker:
    """One worker process; ``worker_id`` once it has said ``Started``, ``active`` once told
    to ``Go``."""

    child: Child
    worker_id: str | None = None
    active: bool = False
    killed: bool = False
    done: bool = False


@dataclass
class Fleet:
    """Keeps ``size`` worker processes of ``setup`` dispatching until the outbox is settled;
    ``kill`` SIGKILLs one and another takes its place: one of ``standby`` workers started
    ahead (built and connected, waiting for ``Go``) at once, as a supervisor restarting a
    crashed service would if starting took no time; else a fresh one once it has started
    (which takes seconds: the gateway's imports, more on a loaded machine)."""

    setup: ChaosSetup
    size: int
    standby: int = 0
    spawned: int = 0
    finished: list[dict[str, object]] = field(default_factory=list)
    _workers: list[Worker] = field(default_factory=list)
    _tg: asyncio.TaskGroup | None = None
    _slots: asyncio.Semaphore | None = None
    _settled: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, chaos: Callable[["Fleet"], Coroutine[Any, Any, None]]) -> None:
        """Start the workers and run ``chaos`` beside them; return when the outbox is settled
        and every active worker has finished (a worker that fails, or ``chaos`` raising,
        aborts the run)."""
        self._slots = asyncio.Semaphore(self.size)
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for _ in range(self.size + self.standby):
                self._spawn()
            tg.create_task(chaos(self))

    @property
    def done(self) -> bool:
        """The outbox is settled and every worker that dispatched has finished or died (or,
        before that, every worker started so far has)."""
        if self._settled.is_set():
            return all(w.done or w.killed for w in self._workers if w.active)
        return all(w.done or w.killed for w in self._workers)

    def victims(self) -> list[Worker]:
        """Workers that are dispatching: told to go, not yet finished or killed."""
        return [w for w in self._workers if w.active and not (w.done or w.killed)]

    async def kill(self, worker: Worker) -> None:
        """SIGKILL ``worker`` (the signal goes out before this first yields) and let another
        take its place (class docstring)."""
        worker.killed = True
        await worker.child.kill()
        if worker.active:
            assert self._slots is not None
            self._slots.release()
        self._spawn()

    def _spawn(self) -> None:
        assert self._tg is not None, "Fleet.run starts the workers"
        self.spawned += 1
        worker = Worker(ForkedChild(f"chaos-worker-{self.spawned}", dispatch_worker, self.setup))
        self._workers.append(worker)
        self._tg.create_task(self._supervise(worker))

    async def _supervise(self, worker: Worker) -> None:
        assert self._slots is not None
        try:
            started = await worker.child.expect(Started)
            worker.worker_id = started.worker_id
            if not await self._take_slot(self._slots):
                return
            worker.active = True
            worker.child.send(Go())
            finished = await worker.child.expect(Finished, within=RUN_TIMEOUT_SECONDS)
            self.finished.append(dict(finished.result))
            worker.done = True
            self._settled.set()
        except (GatewayError, OSError):
            # A killed worker's pipe ends in EOF, or in a reset when it died with a message
            # (its Go) unread.
            if not worker.killed:
                raise
        finally:
            await worker.child.close(grace=10 if worker.done else 0)

    async def _take_slot(self, slots: asyncio.Semaphore) -> bool:
        """Wait for a place among the ``size`` dispatching; False once the outbox is settled
        (a standby worker is then closed, never having claimed anything)."""
        take = asyncio.ensure_future(slots.acquire())
        settled = asyncio.ensure_future(self._settled.wait())
        await asyncio.wait((take, settled), return_when=asyncio.FIRST_COMPLETED)
        settled.cancel()
        if take.done() and not self._settled.is_set():
            return True
        if take.done():
            slots.release()
        else:
            take.cancel()
        return False


__all__ = [
    "RUN_TIMEOUT_SECONDS",
    "ChaosSetup",
    "Fleet",
    "ForkedChild",
    "Go",
    "Recording",
    "Started",
    "TimedRecorder",
    "WholeBatchDispatcher",
    "Worker",
    "agency_ids",
    "chaos_agency",
    "config",
    "dispatch_worker",
    "make_keys",
    "read_timings",
    "scratch_store",
    "seed",
]
