"""Crash recovery on the SFTP channel: a dispatcher process is SIGKILLed while a batch is
being uploaded (in the middle of the data file, or after data file and manifest reached
their final names, while the done marker is written). A second process takes the items over
once their lease expires and finishes the SAME batch: every case ends up in exactly one
delivered file on the server, nothing partial is ever visible under a final name."""

import asyncio
import hashlib
import json
import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sftp.layouts import ParsedRecord
from adapters.sftp.parsing import read_records
from gateway.store.database import Database
from gateway.store.tables import OutboxItem
from gateway.store.transfer_tables import FileBatch, RemoteFile
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
BATCHES = FileBatch.__table__  # type: ignore[attr-defined]
FILES = RemoteFile.__table__  # type: ignore[attr-defined]
CASES = 400
LEASE_SECONDS = 5
TIMEOUT = 120.0


async def spawn(world: SftpWorld, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.crash_worker",
            str(world.config_path),
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )


async def outbox_states(db: Database) -> Counter[str]:
    async with db.connect() as conn:
        return Counter(
            dict(
                (
                    await conn.execute(
                        sa.select(OUTBOX.c.state, sa.func.count()).group_by(OUTBOX.c.state)
                    )
                ).all()
            )
        )


@pytest.mark.parametrize(
    ("pattern", "hold_after", "final_at_kill"),
    [(".*.csv.part", 30_000, {"manifest": False}), (".*.done.part", 1, {"manifest": True})],
    ids=["killed-mid-data-file", "killed-writing-the-done-marker"],
)
async def test_a_killed_dispatcher_leaves_every_case_in_exactly_one_delivered_file(
    tmp_path: Path,
    database_url: str,
    pattern: str,
    hold_after: int,
    final_at_kill: dict[str, bool],
) -> None:
    world = await start_world(
        tmp_path,
        database_url,
        dispatch={"lease_seconds": LEASE_SECONDS},
        sftp={"batch_lease_seconds": LEASE_SECONDS, "block_size": 16384},
    )
    db = Database(database_url)
    workers: list[asyncio.subprocess.Process] = []
    try:
        await seed(world, CASES)
        world.faults.pattern = pattern
        world.faults.hold_after_bytes = hold_after
        first = await spawn(world, tmp_path / "worker-1.log")
        workers.append(first)
        held = asyncio.ensure_future(world.faults.held.wait())
        exited = asyncio.ensure_future(first.wait())
        await asyncio.wait([held, exited], timeout=TIMEOUT, return_when="FIRST_COMPLETED")
        assert world.faults.held.is_set(), (tmp_path / "worker-1.log").read_text()
        first.send_signal(signal.SIGKILL)
        assert await exited == -signal.SIGKILL

        base = f"LENDERX_{AGENCY_ID}_PLACEMENT_"
        finals = [n for n in world.files("inbox") if n.startswith(base)]
        expected_at_kill = (
            [n for n in finals if n.endswith(".csv")] if final_at_kill["manifest"] else []
        )
        assert [n for n in finals if n.endswith(".csv")] == expected_at_kill
        assert not [n for n in finals if n.endswith(".done")], "no marker before the batch is whole"
        assert (await outbox_states(db)) == Counter({"leased": CASES})

        # Let the stalled write of the dead connection finish before anyone else writes.
        world.faults.hold_after_bytes = None
        world.faults.release.set()
        for _ in range(100):
            if world.faults.holding == 0:
                break
            await asyncio.sleep(0.05)
        second = await spawn(world, tmp_path / "worker-2.log")
        workers.append(second)
        assert await asyncio.wait_for(second.wait(), TIMEOUT) == 0, (
            tmp_path / "worker-2.log"
        ).read_text()

        assert await outbox_states(db) == Counter({"delivered": CASES})
        inbox = world.path("inbox")
        names = world.files("inbox")
        data = [n for n in names if n.endswith(".csv")]
        assert len(data) == 1, names
        stem = data[0].removesuffix(".csv")
        assert names == sorted([data[0], f"{stem}.done", f"{stem}.manifest.json"]), (
            "no temporary file is left, nothing else was written"
        )
        with (inbox / data[0]).open("rb") as stream:
            carried = Counter(
                r.record["data"]["placement_id"]
                for r in read_records(stream, world.agency.sftp.layout, "placement.created")
                if isinstance(r, ParsedRecord)
            )
        async with db.connect() as conn:
            placements = set((await conn.execute(sa.text("select id from placements"))).scalars())
            batches = (await conn.execute(sa.select(BATCHES.c.state))).scalars().all()
            files: dict[str, str] = {
                role: state
                for role, state in (await conn.execute(sa.select(FILES.c.role, FILES.c.state)))
            }
        assert set(carried) == placements and set(carried.values()) == {1}
        assert batches == ["delivered"]
        manifest = (inbox / f"{stem}.manifest.json").read_bytes()
        assert (
            json.loads(manifest)["files"][0]["sha256"]
            == hashlib.sha256((inbox / data[0]).read_bytes()).hexdigest()
        )
        assert (inbox / f"{stem}.done").read_bytes() == (
            hashlib.sha256(manifest).hexdigest() + "\n"
        ).encode()
        if final_at_kill["manifest"]:
            # Data file and manifest had arrived before the kill: recognised by their hash.
            assert files == {"data": "present", "manifest": "present", "done": "uploaded"}
        else:
            assert files == {"data": "uploaded", "manifest": "uploaded", "done": "uploaded"}
    finally:
        world.faults.release.set()
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
        await db.dispose()
        await world.aclose()
