"""SFTP placement files against a real asyncssh server on loopback (the sandbox server):
one batch per cycle, atomic uploads, never an overwrite, pinned host keys. Crash recovery is
tested by killing real processes (test_sftp_crash.py, test_crash_points.py)."""

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import sqlalchemy as sa

from adapters.sftp.layouts import ParsedRecord
from adapters.sftp.parsing import read_records
from gateway.bootstrap import Gateway
from gateway.console import accounts
from gateway.dispatch import outbox
from gateway.dispatch.dispatcher import DrainStats
from gateway.dispatch.outbox import open_stored
from gateway.errors import HostKeyChanged
from gateway.ports import OutboundPacket
from gateway.resolutions.rules import ActionRequest
from gateway.runtime import checkpoint
from gateway.store.tables import AgencyStatus, DeliveryAttempt, EvidenceLeaf, Mismatch, OutboxItem
from gateway.store.transfer_tables import FileBatch, FileBatchItem, RemoteFile
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
BATCHES = FileBatch.__table__  # type: ignore[attr-defined]
ITEMS = FileBatchItem.__table__  # type: ignore[attr-defined]
FILES = RemoteFile.__table__  # type: ignore[attr-defined]


def today() -> str:
    return f"{datetime.now(UTC):%Y%m%d}"


def base(seq: int) -> str:
    return f"LENDERX_{AGENCY_ID}_PLACEMENT_{today()}_{seq:04d}"


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(tmp_path, database_url, sftp={"block_size": 16384})
    yield w
    await w.aclose()


async def drain(gateway: Gateway) -> DrainStats:
    return await (await gateway.dispatcher()).drain_once()


async def states(gateway: Gateway) -> dict[str, int]:
    async with gateway.db.connect() as conn:
        return await outbox.counts_by_state(conn)


async def drain_until_delivered(gateway: Gateway, total: int, rounds: int = 60) -> None:
    for _ in range(rounds):
        await drain(gateway)
        if (await states(gateway)).get("delivered") == total:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not delivered: {await states(gateway)}")


def placements_in(world: SftpWorld, name: str) -> list[str]:
    with (world.path("inbox") / name).open("rb") as stream:
        return [
            r.record["data"]["placement_id"]
            for r in read_records(stream, world.agency.sftp.layout, "placement.created")
            if isinstance(r, ParsedRecord)
        ]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_cycle_drops_one_batch_data_manifest_marker_and_records_every_file(
    world: SftpWorld,
) -> None:
    await seed(world, 40)
    gateway = world.gateway()
    try:
        stats = await drain(gateway)
        assert (stats.claimed, stats.delivered) == (40, 40)
        b = base(1)
        assert world.files("inbox") == [f"{b}.csv", f"{b}.done", f"{b}.manifest.json"]
        inbox = world.path("inbox")
        manifest_bytes = (inbox / f"{b}.manifest.json").read_bytes()
        manifest = json.loads(manifest_bytes)
        assert (inbox / f"{b}.done").read_bytes() == (
            hashlib.sha256(manifest_bytes).hexdigest() + "\n"
        ).encode()
        [entry] = manifest["files"]
        assert entry["name"] == f"{b}.csv" and entry["record_count"] == 40
        assert entry["bytes"] == (inbox / f"{b}.csv").stat().st_size
        assert entry["sha256"] == entry["plaintext_sha256"] == sha256(inbox / f"{b}.csv")
        assert (manifest["seq"], manifest["file_type"], manifest["resend_of"]) == (
            1,
            "PLACEMENT",
            None,
        )
        async with gateway.db.connect() as conn:
            balances: dict[str, int] = dict(
                (
                    await conn.execute(
                        sa.text("select currency, sum(balance_minor) from placements group by 1")
                    )
                ).all()
            )
            assert manifest["control"]["case_count"] == 40
            assert {
                t["currency"]: t["amount_minor"]
                for t in manifest["control"]["total_outstanding_minor"]
            } == balances
            placed = set((await conn.execute(sa.text("select id from placements"))).scalars())
            assert sorted(placements_in(world, f"{b}.csv")) == sorted(placed)
            files = (
                await conn.execute(
                    sa.select(
                        FILES.c.id,
                        FILES.c.role,
                        FILES.c.remote_path,
                        FILES.c.size,
                        FILES.c.sha256,
                        FILES.c.state,
                    )
                )
            ).all()
            assert {(f.role, f.remote_path, f.state) for f in files} == {
                ("data", f"inbox/{b}.csv", "uploaded"),
                ("manifest", f"inbox/{b}.manifest.json", "uploaded"),
                ("done", f"inbox/{b}.done", "uploaded"),
            }
            for f in files:
                assert f.sha256 == sha256(world.root / f.remote_path)
            leaves = (
                await conn.execute(
                    sa.select(LEAVES.c.kind, LEAVES.c.body).where(
                        LEAVES.c.kind.in_(["receipt", "remote_file"])
                    )
                )
            ).all()
            receipts = [json.loads(body) for kind, body in leaves if kind == "receipt"]
            assert len(receipts) == 40 and {r["details"]["remote_path"] for r in receipts} == {
                f"inbox/{b}.csv"
            }
            assert {r["response_sha256"] for r in receipts} == {entry["sha256"]}
            assert sorted(int(r["details"]["line"]) for r in receipts) == list(range(2, 42))
            assert sum(kind == "remote_file" for kind, _ in leaves) == 3
        assert await states(gateway) == {"delivered": 40}
        await checkpoint(gateway)
        report = await gateway.evidence.verify([gateway.note_verifier])
        assert report.ok, report.problems
        # A second cycle with nothing due sends nothing.
        assert (await drain(gateway)).claimed == 0
        assert len(world.files("inbox")) == 3
        # The file records are attested: a changed size is found.
        [data_id] = [f.id for f in files if f.role == "data"]
        async with gateway.db.transaction() as conn:
            await conn.execute(
                FILES.update().where(FILES.c.id == data_id).values(size=FILES.c.size + 1)
            )
        [problem] = (await gateway.evidence.verify([gateway.note_verifier])).problems
        assert (problem.code, problem.row) == ("row_mismatch", f"remote_files {data_id}")
        assert problem.detail.startswith("size is ")
    finally:
        await gateway.aclose()


async def test_a_dropped_connection_never_leaves_a_partial_file_under_a_final_name(
    world: SftpWorld,
) -> None:
    await seed(world, 300)
    world.faults.drop_after_bytes = 40_000
    gateway = world.gateway()
    try:
        stats = await drain(gateway)
        assert world.faults.drops == 1
        assert (stats.delivered, stats.retried) == (0, 300)
        b = base(1)
        assert world.files("inbox") == [f".{b}.csv.part"], "only the temporary name exists"
        # Parallel writes: the damaged temporary file may even have full length, with a hole.
        damaged = (world.path("inbox") / f".{b}.csv.part").read_bytes()
        await drain_until_delivered(gateway, 300)
        assert world.files("inbox") == [f"{b}.csv", f"{b}.done", f"{b}.manifest.json"]
        manifest = json.loads((world.path("inbox") / f"{b}.manifest.json").read_bytes())
        data = world.path("inbox") / f"{b}.csv"
        assert data.read_bytes() != damaged
        assert manifest["files"][0]["sha256"] == sha256(data)
        assert len(placements_in(world, f"{b}.csv")) == 300
        async with gateway.db.connect() as conn:
            assert (
                await conn.execute(sa.select(sa.func.count()).select_from(BATCHES))
            ).scalar() == 1
    finally:
        await gateway.aclose()


async def test_without_posix_rename_the_plain_rename_delivers(world: SftpWorld) -> None:
    await seed(world, 10)
    world.faults.posix_rename_unsupported = True
    gateway = world.gateway()
    try:
        assert (await drain(gateway)).delivered == 10
        b = base(1)
        assert world.files("inbox") == [f"{b}.csv", f"{b}.done", f"{b}.manifest.json"]
    finally:
        await gateway.aclose()


async def test_a_server_presenting_another_host_key_is_refused_and_the_agency_stops(
    tmp_path: Path, database_url: str
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    world = await start_world(tmp_path, database_url, host_key=impostor)
    try:
        await seed(world, 5)
        gateway = world.gateway()
        try:
            stats = await drain(gateway)
            assert stats.delivered == 0 and stats.dead == 0
            assert world.files("inbox") == []
            assert await states(gateway) == {"pending": 5}
            async with gateway.db.connect() as conn:
                status = (
                    await conn.execute(sa.select(STATUS).where(STATUS.c.agency_id == AGENCY_ID))
                ).one()
            assert status.endpoint_disabled and "host key" in status.disabled_reason
            # Not retried blindly: further cycles do not even connect.
            connections = world.server.connections
            assert (await drain(gateway)).claimed == 0
            assert world.server.connections == connections
            adapter = (await gateway.dispatcher()).adapters[AGENCY_ID]
            pickup = adapter.pickup  # type: ignore[attr-defined]
            assert await pickup.poll_once() == {"skipped_disabled": 1}
            # The refusal is its own error: a kind of EndpointGone, never retried.
            with pytest.raises(HostKeyChanged, match="not pinned"):
                async with adapter.remote.session():  # type: ignore[attr-defined]
                    pass
        finally:
            await gateway.aclose()
    finally:
        await world.aclose()


async def test_another_file_under_our_final_name_is_a_conflict_and_a_resend_gets_a_new_seq(
    world: SftpWorld,
) -> None:
    await seed(world, 8)
    squatter = world.path("inbox") / f"{base(1)}.csv"
    squatter.write_bytes(b"somebody else's file\n")
    gateway = world.gateway()
    try:
        stats = await drain(gateway)
        assert (stats.delivered, stats.dead) == (0, 8)
        assert squatter.read_bytes() == b"somebody else's file\n", "never overwritten"
        async with gateway.db.connect() as conn:
            batch = (await conn.execute(sa.select(BATCHES))).one()
            assert batch.state == "conflict" and "already exists" in batch.error
            # One refused file is one finding, naming every case it carried.
            [mismatch] = (await conn.execute(sa.select(MISMATCHES))).all()
            dead = (await conn.execute(sa.select(OUTBOX.c.id))).scalars().all()
            pids = (await conn.execute(sa.select(OUTBOX.c.placement_id))).scalars().all()
        assert mismatch.kind == "dead_delivery" and mismatch.placement_id is None
        ours = json.loads(mismatch.ours)
        assert ours["outbox_ids"] == sorted(dead) and ours["placement_ids"] == sorted(pids)
        assert "8 case(s)" in mismatch.detail and "already exists" in mismatch.detail
        # Ops resend the whole batch from that one finding.
        await accounts.add_user(
            gateway.db, "olga", "operator", "correct horse battery staple", now=datetime.now(UTC)
        )
        result = await gateway.resolutions().act(
            mismatch.id, ActionRequest("resend", "olga", "the squatter file was removed")
        )
        assert sorted(result.details["requeued_outbox_ids"]) == sorted(dead)
        assert (await drain(gateway)).delivered == 8
        second = base(2)
        manifest = json.loads((world.path("inbox") / f"{second}.manifest.json").read_bytes())
        assert manifest["seq"] == 2 and manifest["resend_of"] == [f"{base(1)}.csv"]
        assert sorted(placements_in(world, f"{second}.csv")) == sorted(
            placements_in_db := await _placement_ids(gateway)
        )
        assert len(placements_in_db) == 8
    finally:
        await gateway.aclose()


async def _placement_ids(gateway: Gateway) -> list[str]:
    async with gateway.db.connect() as conn:
        return list((await conn.execute(sa.text("select id from placements"))).scalars())


async def test_amendments_and_recalls_travel_in_their_own_batches(world: SftpWorld) -> None:
    await seed(world, 6)
    gateway = world.gateway()
    try:
        assert (await drain(gateway)).delivered == 6
        cases = list((await _cases(gateway))[:2])
        await gateway.placements.recall(cases[0], "PAID_DIRECT")
        await gateway.placements.recall(cases[1], "PAID_DIRECT")
        assert (await drain(gateway)).delivered == 2
        recall = f"LENDERX_{AGENCY_ID}_RECALL_{today()}_0001"
        assert f"{recall}.csv" in world.files("inbox")
        with (world.path("inbox") / f"{recall}.csv").open("rb") as stream:
            rows = [
                r.record
                for r in read_records(stream, world.agency.sftp.layout, "placement.recalled")
                if isinstance(r, ParsedRecord)
            ]
        assert {r["data"]["reason_code"] for r in rows} == {"PAID_DIRECT"}
    finally:
        await gateway.aclose()


async def _cases(gateway: Gateway) -> list[Any]:
    async with gateway.db.connect() as conn:
        return list(
            (await conn.execute(sa.text("select case_id from placements order by id"))).scalars()
        )


async def test_when_the_days_sequence_numbers_are_used_up_the_batch_waits(
    tmp_path: Path, database_url: str
) -> None:
    world = await start_world(tmp_path, database_url, sftp={"naming": {"max_seq": 1}})
    try:
        await seed(world, 3)
        gateway = world.gateway()
        try:
            assert (await drain(gateway)).delivered == 3
            cases = await _cases(gateway)
            await gateway.placements.recall(cases[0], "PAID_DIRECT")
            assert (await drain(gateway)).delivered == 1, "RECALL has its own sequence"
            await gateway.placements.recall(cases[1], "PAID_DIRECT")
            stats = await drain(gateway)
            assert (stats.delivered, stats.retried) == (0, 1)
            async with gateway.db.connect() as conn:
                error = (
                    await conn.execute(
                        sa.select(OUTBOX.c.last_error).where(OUTBOX.c.state == "pending")
                    )
                ).scalar_one()
            assert "sequence numbers" in error and "waits for tomorrow" in error
            assert len([n for n in world.files("inbox") if n.endswith(".csv")]) == 2
        finally:
            await gateway.aclose()
    finally:
        await world.aclose()


async def test_send_delivers_one_packet_as_a_batch_of_one(world: SftpWorld) -> None:
    await seed(world, 1)
    gateway = world.gateway()
    try:
        async with gateway.db.connect() as conn:
            row = (await conn.execute(sa.select(OUTBOX))).one()
        adapter = (await gateway.dispatcher()).adapters[AGENCY_ID]
        receipt = await adapter.send(
            OutboundPacket(
                row.id,
                row.dedupe_key,
                AGENCY_ID,
                row.packet_type,
                open_stored(gateway.pii, row.dedupe_key, row.payload),
                1,
            )
        )
        assert receipt.details["remote_path"] == f"inbox/{base(1)}.csv"
        assert receipt.response_sha256 == sha256(world.path("inbox") / f"{base(1)}.csv")
        assert receipt.details["line"] == "2"
    finally:
        await gateway.aclose()
