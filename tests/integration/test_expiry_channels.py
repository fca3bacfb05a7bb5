"""The expiry warning and the renewal on the wire: delivered by the real webhook adapter to the
sandbox webhook agency on loopback, and dropped as SFTP batches the sandbox SFTP agency
reads (SQLite, and PostgreSQL when configured)."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sftp.layouts import ParsedRecord
from adapters.sftp.parsing import read_records
from gateway.bootstrap import Gateway, build, load_config
from gateway.clock import ManualClock
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.runtime import bound_socket
from gateway.store.tables import Placement
from tests.conftest import Seeder
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.sandbox_world import serve_sandbox

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
DAY = 86_400.0
WARN_DAYS = 14


def with_warnings(
    settings: GatewaySettings, agencies: dict[str, AgencyConfig]
) -> tuple[GatewaySettings, dict[str, AgencyConfig]]:
    """The same config with ``expiry_warning = true`` on every agency."""
    allocation = settings.allocation.model_copy(update={"expiry_warning_days": WARN_DAYS})
    return (
        settings.model_copy(update={"allocation": allocation}),
        {k: a.model_copy(update={"expiry_warning": True}) for k, a in agencies.items()},
    )


async def return_by_of(gateway: Gateway) -> date:
    async with gateway.db.connect() as conn:
        [end] = set((await conn.execute(sa.select(PLACEMENTS.c.return_by))).scalars())
    assert isinstance(end, date)
    return end


async def test_the_warning_and_the_renewal_reach_the_sandbox_webhook_agency(
    make_config: ConfigFactory, seed_placements: Seeder, database_url: str
) -> None:
    sock = bound_socket("127.0.0.1", 0)
    _, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGY_WARN": {"url": f"http://127.0.0.1:{sock.getsockname()[1]}/hooks"}},
    )
    settings, agencies = with_warnings(settings, agencies)
    agency = agencies["AGY_WARN"]
    assert isinstance(agency, WebhookAgency)
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp())
    async with AsyncExitStack() as stack:
        sandbox, gateway = await serve_sandbox(stack, sock, settings, agencies, agency, clock)
        placed = await seed_placements(gateway.db, agencies, 4, clock)
        dispatcher = await gateway.dispatcher()
        assert (await dispatcher.drain_once()).delivered == len(placed)

        end = await return_by_of(gateway)
        clock.advance((end - timedelta(days=WARN_DAYS) - date(2026, 3, 2)).days * DAY)
        report = await gateway.expiry.run()
        assert report.warned.total() == len(placed)
        stats = await dispatcher.drain_once()
        assert (stats.delivered, stats.dead) == (len(placed), 0)
        assert sandbox.stats.packets_by_type["placement.expiring"] == len(placed)
        assert dict(sandbox.stats.packets_refused) == {}
        for pid, *_ in placed:
            assert sandbox.planner.cases[pid].warned_for == end

        renewed = placed[0][0]
        renewal = await gateway.expiry.renew(renewed, 45, actor="ops:alice")
        assert (await dispatcher.drain_once()).delivered == 1
        assert sandbox.stats.packets_by_type["placement.amended"] == 1
        assert dict(sandbox.stats.packets_refused) == {}
        assert sandbox.planner.cases[renewed].return_by == renewal.return_by == end + timedelta(45)
        assert sandbox.planner.cases[placed[1][0]].return_by == end


@pytest.fixture
async def sftp_world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    world = await start_world(tmp_path, database_url, expiry_warning=True)
    yield world
    await world.aclose()


async def test_the_warning_and_the_renewal_go_as_sftp_batches_the_agency_reads(
    sftp_world: SftpWorld,
) -> None:
    world = sftp_world
    await seed(world, 3)
    settings, agencies = load_config(world.config_path, base_dir=world.config_path.parent)
    assert agencies[AGENCY_ID].expiry_warning
    first = build(settings, agencies)
    try:
        assert (await (await first.dispatcher()).drain_once()).delivered == 3
        end = await return_by_of(first)
    finally:
        await first.aclose()
    agency = world.agency_behind()
    assert await agency.process_once() >= 1

    warn_day = end - timedelta(days=settings.allocation.expiry_warning_days)
    clock = ManualClock(
        datetime(warn_day.year, warn_day.month, warn_day.day, 9, tzinfo=UTC).timestamp()
    )
    gateway = build(settings, agencies, clock=clock)
    try:
        assert (await gateway.expiry.run()).warned.total() == 3
        async with gateway.db.connect() as conn:
            renewed = (await conn.execute(sa.select(PLACEMENTS.c.id).order_by("id"))).scalar()
        assert renewed is not None
        await gateway.expiry.renew(renewed, 30, actor="ops:alice")
        stats = await (await gateway.dispatcher()).drain_once()
        assert (stats.delivered, stats.dead) == (4, 0)
    finally:
        await gateway.aclose()

    day = f"{warn_day:%Y%m%d}"
    expiring = f"LENDERX_{AGENCY_ID}_EXPIRING_{day}_0001"
    amendment = f"LENDERX_{AGENCY_ID}_AMENDMENT_{day}_0001"
    inbox = world.files("inbox")
    assert {f"{expiring}.csv", f"{expiring}.done", f"{amendment}.csv"} <= set(inbox)
    manifest = json.loads((world.path("inbox") / f"{expiring}.manifest.json").read_bytes())
    assert (manifest["file_type"], manifest["files"][0]["record_count"]) == ("EXPIRING", 3)
    body = (world.path("inbox") / f"{expiring}.csv").read_bytes()
    assert body.split(b"\n")[0] == b"RECORD_TYPE,PACKET_ID,PLACEMENT_ID,CASE_ID,RETURN_BY,RECALL_ON"
    recall_on = end + timedelta(days=settings.allocation.expiry_grace_days + 1)
    with (world.path("inbox") / f"{expiring}.csv").open("rb") as stream:
        rows = [r for r in read_records(stream, world.agency.sftp.layout, "placement.expiring")]
    assert all(isinstance(r, ParsedRecord) for r in rows) and len(rows) == 3
    for row in rows:
        assert isinstance(row, ParsedRecord)
        assert (row.record["data"]["return_by"], row.record["data"]["recall_on"]) == (
            end.isoformat(),
            recall_on.isoformat(),
        )
    with (world.path("inbox") / f"{amendment}.csv").open("rb") as stream:
        [amended] = list(read_records(stream, world.agency.sftp.layout, "placement.amended"))
    assert isinstance(amended, ParsedRecord)
    assert amended.record["data"]["return_by"] == (end + timedelta(days=30)).isoformat()

    await agency.process_once()
    assert agency.stats.rejections == []
    assert agency.stats.packets_by_type["placement.expiring"] == 3
    assert agency.planner.cases[renewed].warned_for == end
    assert agency.planner.cases[renewed].return_by == end + timedelta(days=30)
