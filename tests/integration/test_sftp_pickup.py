"""Result pickup against a real asyncssh server: readiness, claim, dedupe by content hash,
row errors, statements, one transaction per file, archive and error folders."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.sftp.batches import Manifest, ManifestFile, done_marker, sha256_hex
from adapters.sftp.layouts import RecordWriter
from adapters.sftp.pickup import ResultPickup
from gateway.bootstrap import Gateway
from gateway.store.tables import AgencyEventRow, EvidenceLeaf, InboundMessage, Mismatch
from gateway.store.transfer_tables import FilePickup
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PICKUPS = FilePickup.__table__  # type: ignore[attr-defined]
NOW = "2026-01-16T09:00:00Z"


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(
        tmp_path,
        database_url,
        # This module tests readiness without markers, which an agency must opt into.
        sftp={"readiness": {"min_age_seconds": 0.5, "stable_polls": 2, "require_marker": False}},
    )
    yield w
    await w.aclose()


@pytest.fixture
async def gateway(world: SftpWorld) -> AsyncIterator[Gateway]:
    await seed(world, 6)
    gw = world.gateway()
    await (await gw.dispatcher()).drain_once()
    yield gw
    await gw.aclose()


async def pickup_of(gateway: Gateway) -> ResultPickup:
    adapter: Any = (await gateway.dispatcher()).adapters[AGENCY_ID]
    pickup: ResultPickup = adapter.pickup
    return pickup


async def placement_ids(gateway: Gateway) -> list[str]:
    async with gateway.db.connect() as conn:
        return list(
            (await conn.execute(sa.text("select id from placements order by id"))).scalars()
        )


def ack(pid: str, n: int) -> dict[str, Any]:
    return {
        "type": "placement.acknowledged",
        "timestamp": NOW,
        "data": {
            "placement_id": pid,
            "agency_case_ref": f"REF-{n}",
            "balance": {"amount_minor": 1, "currency": "CNY"},
        },
    }


def contact(pid: str) -> dict[str, Any]:
    return {
        "type": "contact.attempted",
        "timestamp": NOW,
        "data": {
            "placement_id": pid,
            "channel": "call",
            "outcome": "no_answer",
            "attempted_at": NOW,
            "effective": False,
        },
    }


def render(world: SftpWorld, kind: str, records: list[dict[str, Any]]) -> bytes:
    writer = RecordWriter(world.agency.sftp.layout, kind)  # type: ignore[arg-type]
    chunk, errors = writer.write_records(records)
    assert errors == []
    return writer.start() + chunk + writer.finish()


def put(world: SftpWorld, name: str, body: bytes, *, marker: bool = True) -> None:
    """Write a result file the way a careful agency does (temporary name, rename,
    manifest, done marker)."""
    results = world.path("results")
    rows = body.count(b"\n") - world.agency.sftp.layout.header
    temp = results / f".{name}.part"
    temp.write_bytes(body)
    temp.rename(results / name)
    if marker:
        base = name.split(".", 1)[0]
        manifest = Manifest(
            batch_id=base,
            sender=AGENCY_ID,
            receiver="LENDERX",
            file_type="RESULT",
            business_date=datetime.now(UTC).date(),
            seq=1,
            created_at=datetime.now(UTC),
            files=(
                ManifestFile(
                    name, len(body), sha256_hex(body), sha256_hex(body), rows, "csv", "utf-8"
                ),
            ),
            case_count=rows,
        ).render()
        (results / f"{base}.manifest.json").write_bytes(manifest)
        (results / f"{base}.done").write_bytes(done_marker(sha256_hex(manifest)))


async def count(gateway: Gateway, table: Any, *where: Any) -> int:
    async with gateway.db.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table)
        return int((await conn.execute(query.where(*where) if where else query)).scalar_one())


def archived(world: SftpWorld) -> list[str]:
    return sorted(p.name for p in world.path("archive").rglob("*") if p.is_file())


async def test_a_result_file_is_stored_evidenced_reconciled_and_archived(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0001.csv"
    put(world, name, render(world, "result", [ack(p, n) for n, p in enumerate(pids)]))
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    base = name.split(".")[0]
    assert archived(world) == sorted([name, f"{base}.done", f"{base}.manifest.json"])
    day = datetime.now(UTC)
    assert (world.path("archive") / f"{day:%Y/%m/%d}" / name).exists()
    assert world.files("results") == [] and world.files("processing") == []
    async with gateway.db.connect() as conn:
        inbound = (await conn.execute(sa.select(INBOUND))).one()
        assert (inbound.channel, inbound.status) == ("sftp", "accepted")
        assert inbound.body == (world.path("archive") / f"{day:%Y/%m/%d}" / name).read_bytes()
        assert inbound.external_id == f"sha256:{sha256_hex(inbound.body)}"
        events = (await conn.execute(sa.select(EVENTS.c.event_type, EVENTS.c.inbound_id))).all()
        assert events == [("placement.acknowledged", inbound.id)] * len(pids)
        states = set((await conn.execute(sa.text("select state from placements"))).scalars())
        assert states == {"acknowledged"}
        leaf = (
            await conn.execute(sa.select(LEAVES.c.body).where(LEAVES.c.kind == "inbound"))
        ).scalar_one()
        assert json.loads(leaf)["sha256"] == inbound.body_sha256
        pickup = (await conn.execute(sa.select(PICKUPS))).one()
        assert (pickup.state, pickup.rows_total, pickup.rows_ok, pickup.inbound_id) == (
            "done",
            len(pids),
            len(pids),
            inbound.id,
        )
    # The acknowledged balance (1 fen) differs from what we sent: reconciliation saw it.
    assert await count(gateway, MISMATCHES, MISMATCHES.c.kind == "ack_balance_differs") == len(pids)


async def test_bad_rows_are_reported_with_line_and_column_and_good_rows_still_count(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    good = [contact(p) for p in pids]
    bad_channel = {**contact(pids[0]), "data": {**contact(pids[0])["data"], "channel": "fax"}}
    bad_type = {**contact(pids[1]), "type": "contact.attemptd"}
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0002.csv"
    put(world, name, render(world, "result", [good[0], bad_channel, *good[1:], bad_type]))
    assert await (await pickup_of(gateway)).poll_once() == {"partial": 1}
    async with gateway.db.connect() as conn:
        pickup = (await conn.execute(sa.select(PICKUPS))).one()
    assert (pickup.rows_total, pickup.rows_ok, pickup.rows_failed) == (len(pids) + 2, len(pids), 2)
    assert json.loads(pickup.errors) == [
        {
            "line": 3,
            "field": "CHANNEL",
            "message": "Input should be 'call', 'sms', 'visit', 'letter', 'email' or 'app'",
        },
        {
            "line": len(pids) + 3,
            "field": "EVENT_TYPE",
            "message": "unknown event type 'contact.attemptd'; see schemas/json for the types",
        },
    ]
    assert await count(gateway, EVENTS) == len(pids)
    assert name in archived(world)


async def test_a_statement_file_becomes_one_statement_submitted_event(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    rows = [
        {
            "placement_id": p,
            "balance": {"amount_minor": 100 * n, "currency": "CNY"},
            "status": "active",
            "period_start": "2026-01-01",
            "period_end": "2026-01-31",
        }
        for n, p in enumerate(pids)
    ]
    name = f"{AGENCY_ID}_LENDERX_STATEMENT_20260131_0001.csv"
    put(world, name, render(world, "statement", rows))
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    async with gateway.db.connect() as conn:
        event_type, data = (await conn.execute(sa.select(EVENTS.c.event_type, EVENTS.c.data))).one()
    statement = json.loads(data)
    assert event_type == "statement.submitted"
    assert statement["statement_id"] == name.split(".")[0]
    assert (statement["period_start"], statement["period_end"]) == ("2026-01-01", "2026-01-31")
    assert [i["placement_id"] for i in statement["items"]] == pids


async def test_a_slow_writer_is_not_taken_before_its_file_is_ready(
    world: SftpWorld, gateway: Gateway
) -> None:
    """No marker, no manifest: the file is taken only once its size and mtime held still
    over two polls and it was first seen at that size at least min_age ago."""
    pids = await placement_ids(gateway)
    body = render(world, "result", [contact(p) for p in pids] * 20)
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0003.csv"
    path = world.path("results") / name
    pickup = await pickup_of(gateway)
    step = len(body) // 8 + 1
    with path.open("wb") as out:
        for offset in range(0, len(body), step):
            out.write(body[offset : offset + step])
            out.flush()
            assert await pickup.poll_once() == {}, "growing: not ready"
            assert world.files("results") == [name]
    # Complete now: one poll to see the final size, a second to see it hold still.
    assert await pickup.poll_once() == {}
    assert await pickup.poll_once() == {}, "stable, but younger than min_age"
    await asyncio.sleep(world.agency.sftp.readiness.min_age_seconds)
    assert await pickup.poll_once() == {"done": 1}
    async with gateway.db.connect() as conn:
        pickup_row = (await conn.execute(sa.select(PICKUPS))).one()
    assert pickup_row.rows_ok == len(pids) * 20 and pickup_row.sha256 == sha256_hex(body)


async def test_a_stalled_half_written_file_is_refused_whole_never_applied_in_part(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    body = render(world, "result", [contact(p) for p in pids] * 20)
    cut = body[: len(body) * 7 // 12]
    assert not cut.endswith(b"\n")
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0009.csv"
    (world.path("results") / name).write_bytes(cut)  # the writer stalled mid-line
    pickup = await pickup_of(gateway)
    assert await pickup.poll_once() == {}
    assert await pickup.poll_once() == {}
    await asyncio.sleep(world.agency.sftp.readiness.min_age_seconds)
    assert await pickup.poll_once() == {"failed": 1}
    assert await count(gateway, EVENTS) == 0, "no row of a cut-off file is applied"
    reason = (world.path("error") / f"{name}.reason.txt").read_text()
    assert "without a done marker or manifest" in reason and "cut off" in reason


async def test_by_default_a_file_without_marker_or_manifest_is_never_taken(
    tmp_path: Path, database_url: str
) -> None:
    w = await start_world(tmp_path, database_url, sftp={"readiness": {"min_age_seconds": 0}})
    try:
        assert w.agency.sftp.readiness.require_marker
        gw = w.gateway()
        try:
            await seed(w, 2)
            pids = await placement_ids(gw)
            name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0010.csv"
            put(w, name, render(w, "result", [contact(p) for p in pids]), marker=False)
            pickup = await pickup_of(gw)
            for _ in range(4):
                assert await pickup.poll_once() == {}
            assert w.files("results") == [name]
            put(w, name, render(w, "result", [contact(p) for p in pids]))  # now with a marker
            assert await pickup.poll_once() == {"done": 1}
        finally:
            await gw.aclose()
    finally:
        await w.aclose()


async def test_the_same_content_under_a_new_name_is_recorded_and_skipped(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    body = render(world, "result", [ack(p, n) for n, p in enumerate(pids)])
    first = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0004.csv"
    again = f"{AGENCY_ID}_LENDERX_RESULT_20260117_0001.csv"
    put(world, first, body)
    pickup = await pickup_of(gateway)
    assert await pickup.poll_once() == {"done": 1}
    events, inbound = await count(gateway, EVENTS), await count(gateway, INBOUND)
    put(world, again, body)
    assert await pickup.poll_once() == {"duplicate": 1}
    assert (await count(gateway, EVENTS), await count(gateway, INBOUND)) == (events, inbound)
    assert world.files("error") == sorted(
        [
            again,
            f"{again}.reason.txt",
            f"{again.split('.')[0]}.done",
            f"{again.split('.')[0]}.manifest.json",
        ]
    )
    reason = (world.path("error") / f"{again}.reason.txt").read_text()
    assert first in reason and "recorded and skipped" in reason
    async with gateway.db.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(PICKUPS.c.remote_name, PICKUPS.c.state, PICKUPS.c.duplicate_of).order_by(
                    PICKUPS.c.id
                )
            )
        ).all()
    assert [(r.remote_name, r.state) for r in rows] == [(first, "done"), (again, "duplicate")]


async def test_temporary_names_are_never_taken(world: SftpWorld, gateway: Gateway) -> None:
    body = render(world, "result", [contact(p) for p in await placement_ids(gateway)])
    results = world.path("results")
    for name in (
        f".{AGENCY_ID}_LENDERX_RESULT_20260116_0005.csv",
        f"{AGENCY_ID}_LENDERX_RESULT_20260116_0006.csv.part",
        f"{AGENCY_ID}_LENDERX_RESULT_20260116_0007.csv.filepart",
    ):
        (results / name).write_bytes(body)
    pickup = await pickup_of(gateway)
    await asyncio.sleep(world.agency.sftp.readiness.min_age_seconds)
    for _ in range(3):
        assert await pickup.poll_once() == {}
    assert len(world.files("results")) == 3 and await count(gateway, PICKUPS) == 0


async def test_a_file_that_does_not_match_its_manifest_goes_to_the_error_folder(
    world: SftpWorld, gateway: Gateway
) -> None:
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0008.csv"
    body = render(world, "result", [contact(p) for p in await placement_ids(gateway)])
    put(world, name, body)
    (world.path("results") / name).write_bytes(body[:-10])
    assert await (await pickup_of(gateway)).poll_once() == {"failed": 1}
    assert name in world.files("error") and await count(gateway, EVENTS) == 0
    reason = (world.path("error") / f"{name}.reason.txt").read_text()
    assert "manifest says" in reason


async def test_a_refused_file_sent_again_with_a_right_manifest_is_read_not_skipped(
    world: SftpWorld, gateway: Gateway
) -> None:
    """A refused file was never applied: the same bytes sent again are read in full, not
    recorded as a duplicate of the refusal."""
    pids = await placement_ids(gateway)
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0011.csv"
    body = render(world, "result", [contact(p) for p in pids])
    put(world, name, body + b"")  # manifest for these bytes...
    (world.path("results") / f"{name.split('.')[0]}.manifest.json").write_bytes(
        (world.path("results") / f"{name.split('.')[0]}.manifest.json")
        .read_bytes()
        .replace(sha256_hex(body).encode(), b"0" * 64)
    )  # ...then damaged: the agency's manifest is wrong, the data file is right
    pickup = await pickup_of(gateway)
    assert await pickup.poll_once() == {"failed": 1}
    put(world, name, body)  # sent again with a right manifest
    assert await pickup.poll_once() == {"done": 1}
    assert await count(gateway, EVENTS) == len(pids)


async def test_a_file_left_in_processing_by_a_crash_is_taken_again(
    world: SftpWorld, gateway: Gateway
) -> None:
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0009.csv"
    pids = await placement_ids(gateway)
    processing = world.path("processing")
    processing.mkdir(exist_ok=True)
    (processing / name).write_bytes(render(world, "result", [contact(p) for p in pids]))
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    assert world.files("processing") == [] and name in archived(world)
    assert await count(gateway, EVENTS) == len(pids)


async def test_a_checksum_sidecar_moves_with_its_file_to_archive_and_to_error(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    good = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0011.csv"
    body = render(world, "result", [contact(p) for p in pids])
    put(world, good, body)
    (world.path("results") / f"{good}.sha256").write_text(f"{sha256_hex(body)}  {good}\n")
    refused = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0012.csv"
    other = render(world, "result", [ack(p, n) for n, p in enumerate(pids)])
    put(world, refused, other)
    (world.path("results") / f"{refused}.sha256").write_text(f"{sha256_hex(other)}  {refused}\n")
    (world.path("results") / refused).write_bytes(other[:-10])
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1, "failed": 1}
    assert f"{good}.sha256" in archived(world)
    assert f"{refused}.sha256" in world.files("error")
    assert world.files("results") == [] and world.files("processing") == []


async def test_a_file_with_no_good_row_says_the_line_and_column_of_each_problem(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    bad_channel = {**contact(pids[0]), "data": {**contact(pids[0])["data"], "channel": "fax"}}
    bad_type = {**contact(pids[1]), "type": "contact.attemptd"}
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0013.csv"
    put(world, name, render(world, "result", [bad_channel, bad_type]))
    assert await (await pickup_of(gateway)).poll_once() == {"failed": 1}
    reason = (world.path("error") / f"{name}.reason.txt").read_text()
    assert "line 2: CHANNEL: Input should be 'call'" in reason
    assert "line 3: EVENT_TYPE: unknown event type 'contact.attemptd'" in reason
    assert "none of its 2 row(s) was accepted; 2 problem(s):" in reason


async def test_a_result_file_sent_without_its_header_applies_every_row(
    world: SftpWorld, gateway: Gateway
) -> None:
    pids = await placement_ids(gateway)
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0014.csv"
    body = render(world, "result", [contact(p) for p in pids])
    headless = body.split(b"\n", 1)[1]
    results = world.path("results")
    results.joinpath(name).write_bytes(headless)
    base = name.split(".", 1)[0]
    manifest = Manifest(
        batch_id=base,
        sender=AGENCY_ID,
        receiver="LENDERX",
        file_type="RESULT",
        business_date=datetime.now(UTC).date(),
        seq=1,
        created_at=datetime.now(UTC),
        files=(
            ManifestFile(
                name,
                len(headless),
                sha256_hex(headless),
                sha256_hex(headless),
                len(pids),
                "csv",
                "utf-8",
            ),
        ),
        case_count=len(pids),
    ).render()
    (results / f"{base}.manifest.json").write_bytes(manifest)
    (results / f"{base}.done").write_bytes(done_marker(sha256_hex(manifest)))
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    assert await count(gateway, EVENTS) == len(pids)
