"""The ``sftp-out`` benchmark's inbound half: pickup of an N-row result file by the
production SFTP adapter (list, readiness, claim by rename, download, manifest check, parse,
apply, archive) against a raw asyncssh ``get`` of the same file from the same server.

The file holds one acknowledgement per placement of a store a measured round left (every
placement delivered), so each row changes a placement and meets an expectation.
"""

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.bench.child import Finished, ParentLink, measure, peak_rss_mb
from gateway.bench.report import Progress
from gateway.bench.sftp_dataset import (
    AGENCY_ID,
    SftpBench,
    clear_folder,
    connect_client,
    result_file,
)
from gateway.bootstrap import build
from gateway.store.database import Database
from gateway.store.tables import Placement

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


async def picking_up(link: ParentLink, setup: SftpBench) -> None:
    """Child main (ours, inbound): one pickup pass over a folder holding one result file."""
    settings, agencies = setup.config()
    gateway = build(settings, agencies)
    try:
        adapter: Any = (await gateway.dispatcher()).adapters[AGENCY_ID]
        cpu0, started = time.process_time(), time.perf_counter()
        outcome = await adapter.pickup.poll_once()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        await gateway.aclose()
    link.send(Finished(peak_rss_mb(), {"seconds": seconds, "cpu_seconds": cpu, "outcome": outcome}))


async def raw_get(link: ParentLink, workdir: Path, port: int, remote: str) -> None:
    """Child main (baseline, inbound): connect, ``get`` the same file, disconnect."""
    target = workdir / "raw-download"
    cpu0, started = time.process_time(), time.perf_counter()
    async with await connect_client(workdir, port) as conn, conn.start_sftp_client() as sftp:
        await sftp.get(remote, str(target))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    target.unlink()
    link.send(Finished(peak_rss_mb(), {"seconds": seconds, "cpu_seconds": cpu}))


async def pickup_round(
    setup: SftpBench, delivered_db: Path, cpu: int | None, say: Progress
) -> dict[str, Any]:
    """Pickup of an N-row result file into the store a measured round left (all placements
    delivered), against a raw ``get`` of the same file."""
    db = Database(f"sqlite:///{delivered_db}")
    try:
        async with db.connect() as conn:
            rows = await conn.execute(
                sa.select(
                    PLACEMENTS.c.id, PLACEMENTS.c.balance_minor, PLACEMENTS.c.currency
                ).order_by(PLACEMENTS.c.id)
            )
            pids = [(r[0], r[1], r[2]) for r in rows.all()]
    finally:
        await db.dispose()
    clear_folder(setup.root / "results")
    name, size = result_file(setup.root, pids, setup)
    baseline = await measure(
        "bench-sftp-raw-get", raw_get, setup.workdir, setup.port, f"results/{name}", cpu=cpu
    )
    ours = await measure(
        "bench-sftp-pickup", picking_up, replace(setup, database_path=delivered_db), cpu=cpu
    )
    say(f"pickup of {len(pids)} rows: ours {ours['seconds']} s, raw get {baseline['seconds']} s")
    return {
        "rows": len(pids),
        "file_bytes": size,
        "ours": ours,
        "baseline_raw_get": baseline,
        "ours_rows_per_s": round(len(pids) / ours["seconds"], 1),
        "ratio": round(baseline["seconds"] / ours["seconds"], 3),
    }


__all__ = ["picking_up", "pickup_round", "raw_get"]
