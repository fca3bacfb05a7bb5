"""Proof of deletion over SFTP, against a real asyncssh server on loopback (the sandbox
server): a ``data.deletion_requested`` packet goes out in its own DELETION batch, the sandbox
agency answers with a ``data.deleted`` row in its result file, and the gateway's pickup
stores it and meets the deletion request; a bad METHOD is a row error of that file."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.sftp.layouts import ParsedRecord
from adapters.sftp.parsing import read_records
from gateway.bootstrap import Gateway
from gateway.dispatch.packets import LEGAL_BASIS
from gateway.privacy.deletion import deletion_status
from gateway.store.tables import AgencyEventRow, Mismatch, Placement
from gateway.store.transfer_tables import FilePickup
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.integration.test_sftp_pickup import pickup_of, put, render

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PICKUPS = FilePickup.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(tmp_path, database_url)
    yield w
    await w.aclose()


@pytest.fixture
async def gateway(world: SftpWorld) -> AsyncIterator[Gateway]:
    """Three placements delivered; the first recalled and asked to delete its data."""
    await seed(world, 3)
    gw = world.gateway()
    try:
        assert (await (await gw.dispatcher()).drain_once()).delivered == 3
        yield gw
    finally:
        await gw.aclose()


async def end_and_ask(gateway: Gateway) -> str:
    """Recall the first placement, sweep, and deliver the recall and the deletion request;
    returns the recalled placement's id."""
    async with gateway.db.connect() as conn:
        case_id, placement_id = (
            await conn.execute(sa.select(PLACEMENTS.c.case_id, PLACEMENTS.c.id).order_by("id"))
        ).first() or ("", "")
    assert await gateway.placements.recall(case_id, "PAID_DIRECT") == placement_id
    swept = await gateway.request_deletions()
    assert (swept.requested, swept.unknown_agency, swept.by_agency) == (1, 0, {AGENCY_ID: 1})
    stats = await (await gateway.dispatcher()).drain_once()
    assert (stats.delivered, stats.dead) == (2, 0), "the recall and the deletion request"
    return placement_id


async def deletion(gateway: Gateway, placement_id: str) -> dict[str, object]:
    async with gateway.db.connect() as conn:
        return {d["placement_id"]: d for d in await deletion_status(conn)}[placement_id]


async def deleted_events(gateway: Gateway) -> list[Any]:
    async with gateway.db.connect() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(EVENTS.c.id, EVENTS.c.placement_id, EVENTS.c.applied, EVENTS.c.data)
                    .where(EVENTS.c.event_type == "data.deleted")
                    .order_by(EVENTS.c.id)
                )
            ).all()
        )


async def test_the_sandbox_agency_confirms_a_deletion_request_in_its_result_file(
    world: SftpWorld, gateway: Gateway
) -> None:
    placement_id = await end_and_ask(gateway)
    day = f"{datetime.now(UTC):%Y%m%d}"
    base = f"LENDERX_{AGENCY_ID}_DELETION_{day}_0001"
    assert {f"{base}.csv", f"{base}.manifest.json", f"{base}.done"} <= set(world.files("inbox"))
    manifest = json.loads((world.path("inbox") / f"{base}.manifest.json").read_bytes())
    assert (manifest["file_type"], manifest["files"][0]["record_count"]) == ("DELETION", 1)
    body = (world.path("inbox") / f"{base}.csv").read_bytes()
    assert body.split(b"\n")[0] == (
        b"RECORD_TYPE,PACKET_ID,PLACEMENT_ID,CASE_ID,REASON,ENDED_AT,DELETE_BY,CATEGORIES,LEGAL_BASIS"
    )
    assert b",debtor.debtor_id|debtor.name|debtor.phones|debtor.region," in body
    with (world.path("inbox") / f"{base}.csv").open("rb") as stream:
        [row] = list(read_records(stream, world.agency.sftp.layout, "data.deletion_requested"))
    assert isinstance(row, ParsedRecord)
    asked = row.record["data"]
    assert (asked["placement_id"], asked["reason"], asked["legal_basis"]) == (
        placement_id,
        "recalled",
        LEGAL_BASIS,
    )
    requested = await deletion(gateway, placement_id)
    assert requested["state"] == "open"
    assert asked["delete_by"] == str(requested["due_at"])[:10]

    # The agency reads its inbox (placements first, the deletion request last) and answers.
    agency = world.agency_behind()
    assert await agency.process_once() >= 1
    assert agency.stats.rejections == []
    assert agency.stats.packets_by_type["data.deletion_requested"] == 1
    assert agency.stats.events_written["data.deleted"] == 1
    [result] = [n for n in world.files("results") if "_RESULT_" in n and n.endswith(".csv")]
    assert b"data.deleted" in (world.path("results") / result).read_bytes()

    outcome = await (await pickup_of(gateway)).poll_once()
    assert outcome == {"done": 2}, "the result file and the statement, every row good"
    [event] = await deleted_events(gateway)
    data = json.loads(event.data)
    assert (event.placement_id, event.applied) == (placement_id, True)
    assert data["method"] == "deleted" and data["reference"] == f"DEL-{placement_id}"
    confirmed = await deletion(gateway, placement_id)
    assert (confirmed["state"], confirmed["confirmed_by_event_id"]) == ("met", event.id)
    assert confirmed["placement_state"] == "recalled", "confirming changes nothing"
    async with gateway.db.connect() as conn:
        kinds = (
            await conn.execute(
                sa.select(MISMATCHES.c.kind).where(MISMATCHES.c.placement_id == placement_id)
            )
        ).scalars()
        assert "illegal_transition" not in set(kinds)
        # The agency holds nothing on it any more: its statement does not list it.
        statement = (
            await conn.execute(
                sa.select(EVENTS.c.data).where(EVENTS.c.event_type == "statement.submitted")
            )
        ).scalar_one()
    listed = {item["placement_id"] for item in json.loads(statement)["items"]}
    assert placement_id not in listed and len(listed) == 2


async def test_a_bad_method_is_a_row_error_of_its_file_and_the_good_row_still_confirms(
    world: SftpWorld, gateway: Gateway
) -> None:
    placement_id = await end_and_ask(gateway)
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def confirmation(method: str) -> dict[str, Any]:
        return {
            "type": "data.deleted",
            "timestamp": at,
            "data": {"placement_id": placement_id, "method": method, "reference": "CERT-2026-17"},
        }

    name = f"{AGENCY_ID}_LENDERX_RESULT_20260201_0001.csv"
    put(world, name, render(world, "result", [confirmation("shredded"), confirmation("returned")]))
    assert await (await pickup_of(gateway)).poll_once() == {"partial": 1}
    async with gateway.db.connect() as conn:
        pickup = (await conn.execute(sa.select(PICKUPS))).one()
    assert (pickup.remote_name, pickup.rows_total, pickup.rows_ok) == (name, 2, 1)
    assert json.loads(pickup.errors) == [
        {"line": 2, "field": "METHOD", "message": "Input should be 'deleted' or 'returned'"}
    ]
    [event] = await deleted_events(gateway)
    assert json.loads(event.data)["method"] == "returned"
    assert (await deletion(gateway, placement_id))["confirmed_by_event_id"] == event.id
