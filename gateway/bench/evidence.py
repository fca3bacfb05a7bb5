"""Benchmark ``evidence``: leaves appended to the evidence log inside the caller's
transactions, against bare inserts of the same rows into a plain table, in the same run.

Ours is ``gateway.evidence.log.append_leaves`` as every writer of the gateway calls it: the
caller's ``LeafInput`` objects (each transaction's are built before its clock starts, as a
caller has them) encoded
as canonical JSON, hashed (RFC 9162 leaf hash), numbered under the writer lock from the log's
size, inserted with one ``executemany`` next to whatever else the transaction writes, and
committed (``Database.transaction``: SQLAlchemy on aiosqlite, WAL, ``synchronous=FULL``). The
baseline inserts the same bodies, already encoded, into a table with a rowid and the same
``(kind, ref)`` index, with ``sqlite3`` directly and the same durability; it hashes and numbers
nothing.

The headline is leaves per second at ``per_transaction`` leaves a transaction (1,000 by
default: what intake, batch recording and event import append at once); DESIGN.md's target is
at least 50,000 per second. The same is measured at 1, 10 and 100 leaves a transaction, where
the commit (an fsync) and not the log sets the pace, so the numbers say how a busy webhook
path fares. Each side runs in its own spawned process pinned to one CPU.
"""

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import sqlalchemy as sa

from gateway.bench.child import Finished, ParentLink, cpu_plan, peak_rss_mb, run_child
from gateway.bench.dataset import DATABASE_KIND
from gateway.bench.report import Progress, context, load_average, rate
from gateway.errors import GatewayError
from gateway.evidence.log import LEAVES, LeafInput, append_leaves
from gateway.store.database import SQLITE_PRAGMAS, Database
from gateway.store.migrate import upgrade

TARGET_LEAVES_PER_S = 50_000.0
SWEEP = (1, 10, 100)
"""Smaller transaction sizes measured besides the headline's."""
SWEEP_TRANSACTIONS = 1000
"""Transactions measured at each size of the sweep (fewer leaves when that is more)."""


def leaf(n: int) -> LeafInput:
    """The ``n``-th leaf: shaped like the packet leaf every queued packet gets."""
    return LeafInput(
        kind="packet",
        ref=f"outbox:{n}",
        fields={
            "agency_id": "BENCH",
            "dedupe_key": f"pkt_{n:040x}",
            "packet_type": "placement.created",
            "packet_version": 1,
            "placement_id": f"PL-AC{n:010d}-1",
            "payload_sha256": f"{n:064x}",
        },
    )


def plan(leaves: int, per_transaction: int) -> list[tuple[int, int]]:
    """(transaction size, leaves) measured: the sweep's sizes, then the headline's."""
    sizes = [s for s in SWEEP if s < per_transaction]
    runs = [(s, min(leaves, s * SWEEP_TRANSACTIONS)) for s in sizes]
    return [*runs, (per_transaction, leaves)]


async def appending(link: ParentLink, database: Path, runs: list[tuple[int, int]]) -> None:
    """Child main (ours): ``append_leaves`` in transactions of each size."""
    db = Database(f"sqlite:///{database}")
    results = []
    try:
        await upgrade(db)
        first = 0
        for size, count in runs:
            timer = _Timer()
            for start in range(first, first + count, size):
                batch = [leaf(n) for n in range(start, min(start + size, first + count))]
                now = datetime.now(UTC)
                with timer:
                    async with db.transaction() as conn:
                        await append_leaves(conn, batch, now=now)
            first += count
            results.append(timer.report(size, count))
        async with db.snapshot() as conn:
            query = sa.select(sa.func.count()).select_from(LEAVES)
            log_size = int((await conn.execute(query)).scalar_one())
    finally:
        await db.dispose()
    link.send(Finished(peak_rss_mb(), {"runs": results, "log_size": log_size}))


async def bare_inserts(link: ParentLink, database: Path, runs: list[tuple[int, int]]) -> None:
    """Child main (baseline): the same bodies inserted with ``sqlite3``, no hash, no seq."""
    con = sqlite3.connect(database, isolation_level=None)
    results = []
    try:
        for pragma in SQLITE_PRAGMAS:
            con.execute(pragma)
        con.execute(
            "CREATE TABLE leaves (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
            "ref TEXT NOT NULL, body BLOB NOT NULL, created_at TEXT NOT NULL)"
        )
        con.execute("CREATE INDEX ix_leaves_ref ON leaves (kind, ref)")
        first = 0
        for size, count in runs:
            timer = _Timer()
            for start in range(first, first + count, size):
                now = datetime.now(UTC).isoformat()
                rows = [
                    (x.kind, x.ref, x.body(), now)
                    for x in map(leaf, range(start, min(start + size, first + count)))
                ]
                with timer:
                    con.execute("BEGIN IMMEDIATE")
                    con.executemany(
                        "INSERT INTO leaves (kind, ref, body, created_at) VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    con.execute("COMMIT")
            first += count
            results.append(timer.report(size, count))
    finally:
        con.close()
    link.send(Finished(peak_rss_mb(), {"runs": results}))


class _Timer:
    """Wall and CPU time summed over the timed blocks (building the rows is not timed)."""

    def __init__(self) -> None:
        self.seconds = self.cpu_seconds = 0.0
        self._wall = self._cpu = 0.0

    def __enter__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def __exit__(self, *_exc: object) -> None:
        self.seconds += time.perf_counter() - self._wall
        self.cpu_seconds += time.process_time() - self._cpu

    def report(self, size: int, count: int) -> dict[str, Any]:
        return {
            "per_transaction": size,
            "leaves": count,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "leaves_per_s": rate(count, self.seconds),
        }


async def run(
    *, leaves: int = 200_000, per_transaction: int = 1000, progress: bool = False
) -> dict[str, Any]:
    """Run the benchmark; return the report (see the module docstring)."""
    if leaves < 1 or per_transaction < 1:
        raise GatewayError("leaves and per_transaction must be at least 1")
    say = Progress(progress, "evidence")
    cpu, _ = cpu_plan()
    started, load_at_start = time.perf_counter(), load_average()
    runs = plan(leaves, per_transaction)
    with TemporaryDirectory(prefix="gateway-bench-evidence-") as tmp:
        workdir = Path(tmp)
        say(f"baseline: {', '.join(f'{n} rows {s} a transaction' for s, n in runs)}")
        baseline = await run_child(
            "bench-evidence-bare", bare_inserts, workdir / "bare.db", runs, cpu=cpu
        )
        say("ours: the same through append_leaves")
        ours = await run_child("bench-evidence", appending, workdir / "ours.db", runs, cpu=cpu)
    by_size = [
        {
            "per_transaction": o["per_transaction"],
            "leaves": o["leaves"],
            "ours_leaves_per_s": o["leaves_per_s"],
            "baseline_rows_per_s": b["leaves_per_s"],
            "ratio": round(b["seconds"] / o["seconds"], 3) if o["seconds"] else None,
        }
        for o, b in zip(ours["runs"], baseline["runs"], strict=True)
    ]
    appended = sum(count for _, count in runs)
    if ours["log_size"] != appended:
        raise GatewayError(f"the log holds {ours['log_size']} leaves, {appended} were appended")
    headline, bare = ours["runs"][-1], baseline["runs"][-1]
    say(f"ours {headline['leaves_per_s']} leaves/s, bare {bare['leaves_per_s']} rows/s")
    return {
        "benchmark": "evidence",
        "measure": "leaves appended in the caller's transactions vs bare inserts of the rows",
        "leaves": leaves,
        "per_transaction": per_transaction,
        "log_size": ours["log_size"],
        "ours": {**headline, "peak_rss_mb": ours["peak_rss_mb"]},
        "baseline": {**bare, "peak_rss_mb": baseline["peak_rss_mb"]},
        "ratio": round(bare["seconds"] / headline["seconds"], 3) if headline["seconds"] else None,
        "target_leaves_per_s": TARGET_LEAVES_PER_S,
        "meets_target": headline["leaves_per_s"] >= TARGET_LEAVES_PER_S,
        "by_transaction_size": by_size,
        "setup": {
            "ours": "gateway.evidence.log.append_leaves in Database.transaction (SQLAlchemy, "
            "aiosqlite), packet-shaped leaves",
            "baseline": "sqlite3 executemany of the encoded bodies into a rowid table with a "
            "(kind, ref) index, same transaction sizes",
        },
        "context": context(
            database=DATABASE_KIND, load_at_start=load_at_start, pinning={"append": cpu}
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


__all__ = ["TARGET_LEAVES_PER_S", "plan", "run"]
