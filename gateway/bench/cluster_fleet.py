"""Real ``agency-gateway serve`` processes on one PostgreSQL database, for the cluster
benchmark (gateway.bench.cluster) and the cluster chaos test.

Theory of operation
-------------------
``write_config`` writes a ``gateway.toml`` and one counting agency's file under a workdir
(keys created there too), as an operator would for each machine of a deployment. A
``ServeProcess`` is ``python -m gateway --config ... serve --port 0`` in a subprocess: its
stdout goes to a file, where it announces its URL; its log goes to another. A ``ServeFleet``
keeps processes running and can SIGKILL one and start a fresh one in its place.

``post_balanced`` is the load balancer: each signed event goes to the next live process;
a refused connection or a 5xx (a process killed mid-request) sends it to the next one, as a
balancer retries, until every event has had a 2xx.
"""

import asyncio
import contextlib
import itertools
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from gateway.bench.counting_agency import CountingAgency
from gateway.bench.dataset import SeededPlacement, import_and_place, placements
from gateway.bench.load import PreparedRequest, client_session
from gateway.bench.webhook_in import event_bodies, signed_requests
from gateway.bootstrap import load_config
from gateway.config.agencies import WebhookAgency
from gateway.demo.data import generate_accounts, write_csv
from gateway.dispatch.outbox import counts_by_state
from gateway.errors import GatewayError
from gateway.keys import generate_missing, sandbox_keys
from gateway.store.database import Database
from gateway.store.tables import Placement

AGENCY_ID = "CLUSTER1"
EVENT_PATH = f"/v1/agencies/{AGENCY_ID}/events"
START_TIMEOUT_SECONDS = 120.0
"""How long a ``serve`` process may take to announce its URL (a loaded 2-CPU machine)."""
_SERVING = re.compile(r"serving on (http://\S+)")
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ClusterSetup:
    """One deployment's settings, written to ``workdir`` by ``write_config``."""

    workdir: Path
    database_url: str
    agency_url: str
    concurrency: int = 8
    """The agency's ``retry.concurrency``: sends in flight per process."""
    dispatch_lease_seconds: int = 5
    cluster_lease_seconds: float = 4.0
    checkpoint_every_seconds: float = 1.0
    reconcile_every_seconds: float = 2.0
    poll_interval_seconds: float = 0.1

    @property
    def config_path(self) -> Path:
        return self.workdir / "gateway.toml"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(setup: ClusterSetup) -> WebhookAgency:
    """Write the deployment's configuration and keys; return its agency."""
    (setup.workdir / "agencies").mkdir(parents=True, exist_ok=True)
    setup.config_path.write_text(
        f"""agencies_dir = "agencies"

[database]
url = {_q(setup.database_url)}
pool_size = 5

[server]
host = "127.0.0.1"
port = 0

[dispatch]
batch_size = 50
lease_seconds = {setup.dispatch_lease_seconds}
poll_interval_seconds = {setup.poll_interval_seconds}

[schedules]
checkpoint_every_seconds = {setup.checkpoint_every_seconds}
reconcile_every_seconds = {setup.reconcile_every_seconds}
engine_every_seconds = 0

[cluster]
lease_seconds = {setup.cluster_lease_seconds}

[console]
enabled = false

[documents]
letters = "off"

[register]   # the benchmark agency has no register entry
enforce = false
""",
        encoding="utf-8",
    )
    (setup.workdir / "agencies" / "cluster1.toml").write_text(
        f"""id = "{AGENCY_ID}"
name = "Cluster benchmark agency"
channel = "webhook"
fields = ["debtor.name", "debtor.phones", "debtor.region"]

[endpoint]
url = {_q(setup.agency_url)}
allow_plain_http = true

[signing]
keys = [{{ file = "var/keys/{AGENCY_ID}/outbound.whsec" }}]

[inbound]
keys = [{{ file = "var/keys/{AGENCY_ID}/inbound.whsec" }}]

[eligibility]
buckets = ["M1", "M2", "M3", "M4-6", "M6+", "LEGAL"]

[capacity]
max_open_placements = 100000000

[retry]
concurrency = {setup.concurrency}
""",
        encoding="utf-8",
    )
    settings, agencies = load_config(setup.config_path, base_dir=setup.workdir)
    generate_missing(settings, agencies)
    agency = agencies[AGENCY_ID]
    assert isinstance(agency, WebhookAgency)
    return agency


def counting_agency(setup: ClusterSetup, agency: WebhookAgency, latency: float) -> CountingAgency:
    """The counting endpoint verifying our packets with the agency's keys."""
    verify, _ = sandbox_keys(agency, setup.workdir)
    return CountingAgency(AGENCY_ID, verify, latency=latency)


async def seed(setup: ClusterSetup, count: int, *, seed_value: int = 20260101) -> None:
    """Migrate the store and place ``count`` cases with the agency: ``count`` packets wait."""
    settings, agencies = load_config(setup.config_path, base_dir=setup.workdir)
    csv_path = setup.workdir / f"accounts-{count}.csv"
    write_csv(generate_accounts(count, seed=seed_value, as_of=datetime.now(UTC).date()), csv_path)
    await import_and_place(settings, agencies, csv_path, count, what="cluster seeding")


async def inbound_requests(
    setup: ClusterSetup, agency: WebhookAgency, count: int
) -> list[PreparedRequest]:
    """``count`` signed agency events over the seeded placements: one in eight acknowledges
    a fresh placement, the rest report contact and payments on placements made active."""
    db = Database(setup.database_url)
    try:
        seeded = await placements(db)
        acks = max(1, min(len(seeded) // 2, count // 8))
        fresh, worked = seeded[:acks], seeded[acks:] or seeded[:1]
        async with db.transaction() as conn:
            await conn.execute(
                PLACEMENTS.update()
                .where(PLACEMENTS.c.id.in_([p.placement_id for p in worked]))
                .values(state="active")
            )
    finally:
        await db.dispose()
    bodies = event_bodies(fresh, worked, count, now=datetime.now(UTC))
    _, keys = sandbox_keys(agency, setup.workdir)
    return signed_requests(bodies, keys, EVENT_PATH)


@dataclass(eq=False)
class ServeProcess:
    """One ``serve`` subprocess (module docstring)."""

    setup: ClusterSetup
    name: str
    process: asyncio.subprocess.Process | None = None
    url: str | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    killed: bool = False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.setup.workdir / f"{self.name}.log"

    async def start(self) -> None:
        out_path = self.setup.workdir / f"{self.name}.out"
        env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "400"}
        with out_path.open("wb") as out, self.log_path.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "--config",
                str(self.setup.config_path),
                "serve",
                "--port",
                "0",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=self.setup.workdir,
            )
        self.started_at = time.time()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if found := _SERVING.search(out_path.read_text(errors="replace")):
                self.url = found.group(1)
                return
            if self.process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        await self.kill()
        raise GatewayError(f"{self.name} did not start serving: {self.tail()}")

    async def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, as on a power cut."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            self.killed = True
            self.ended_at = time.time()
            await self.process.wait()

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM, as an operator stops it; SIGKILL after ``grace`` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=grace)
        except TimeoutError:
            await self.kill()
            return
        self.ended_at = time.time()

    def peak_rss_mb(self) -> float | None:
        """VmHWM of the live process (Linux), in MB."""
        with contextlib.suppress(OSError, AssertionError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class ServeFleet:
    """``size`` serve processes of ``setup``; ``replace`` kills one and starts another."""

    setup: ClusterSetup
    size: int
    processes: list[ServeProcess] = field(default_factory=list)
    _names: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    _starting: set["asyncio.Task[ServeProcess]"] = field(default_factory=set)

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    def live(self) -> list[ServeProcess]:
        return [
            p
            for p in self.processes
            if p.url and p.process is not None and p.process.returncode is None
        ]

    def urls(self) -> list[str]:
        return [str(p.url) for p in self.live()]

    async def replace(self, victim: ServeProcess) -> None:
        """SIGKILL ``victim`` and start a fresh process in its place, in the background (a
        start takes seconds; the load goes on to the others meanwhile)."""
        await victim.kill()
        task = asyncio.create_task(self._spawn())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def started(self) -> None:
        """Wait until the processes being started in the background are serving."""
        await asyncio.gather(*list(self._starting))

    async def stop(self) -> None:
        """Stop every process, those still starting included."""
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        await asyncio.gather(*(p.stop() for p in self.processes))

    async def _spawn(self) -> ServeProcess:
        process = ServeProcess(self.setup, f"serve-{next(self._names)}")
        self.processes.append(process)
        await process.start()
        return process


@dataclass(frozen=True, slots=True)
class BalancedResult:
    statuses: dict[str, int]
    """webhook-id → the 2xx status it finally got."""
    retries: int
    seconds: float


async def post_balanced(
    urls: Callable[[], Sequence[str]],
    requests: Sequence[PreparedRequest],
    *,
    concurrency: int,
    deadline_seconds: float = 300.0,
) -> BalancedResult:
    """POST every request to the live processes in turn, retrying a refused connection or a
    5xx on the next one, until each has a 2xx (module docstring). Raise GatewayError for a
    4xx (the event itself was refused) or when ``deadline_seconds`` pass."""
    statuses: dict[str, int] = {}
    retries = 0
    pending = iter(requests)
    turn = itertools.count()
    give_up = time.monotonic() + deadline_seconds
    async with client_session(concurrency) as session:

        async def send(r: PreparedRequest) -> None:
            nonlocal retries
            while True:
                live = urls()
                if time.monotonic() > give_up:
                    raise GatewayError(f"event {r.headers['webhook-id']} got no 2xx in time")
                if not live:
                    await asyncio.sleep(0.05)
                    continue
                base = live[next(turn) % len(live)]
                try:
                    async with session.post(base + r.path, data=r.body, headers=r.headers) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 599
                if 200 <= status < 300:
                    statuses[r.headers["webhook-id"]] = status
                    return
                if status < 500:
                    raise GatewayError(f"event {r.headers['webhook-id']} refused: {status}")
                retries += 1
                await asyncio.sleep(0.02)

        async def worker() -> None:
            for r in pending:
                await send(r)

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
        seconds = time.perf_counter() - started
    return BalancedResult(statuses, retries, seconds)


async def outbox_settled(database_url: str) -> bool:
    """No packet is pending or leased."""
    db = Database(database_url)
    try:
        async with db.connect() as conn:
            counts = await counts_by_state(conn)
    finally:
        await db.dispose()
    return not counts.get("pending") and not counts.get("leased")


async def row_count(database_url: str, table: str, where: str = "") -> int:
    db = Database(database_url)
    try:
        async with db.connect() as conn:
            sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
            return int((await conn.execute(sa.text(sql))).scalar_one())
    finally:
        await db.dispose()


def status_counts(result: BalancedResult) -> dict[int, int]:
    return dict(Counter(result.statuses.values()))


__all__ = [
    "AGENCY_ID",
    "EVENT_PATH",
    "BalancedResult",
    "ClusterSetup",
    "SeededPlacement",
    "ServeFleet",
    "ServeProcess",
    "counting_agency",
    "inbound_requests",
    "outbox_settled",
    "post_balanced",
    "row_count",
    "seed",
    "status_counts",
    "write_config",
]
