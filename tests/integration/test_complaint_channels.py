"""``complaint.received`` opens a complaint whichever channel carries it: an SFTP agency's
result file read by the real asyncssh pickup, and a law firm's reply sheet (the rows an email
reply or ``events import`` hands over) recorded as the mailbox reader records it. The webhook
is in tests/integration/test_complaints.py. SQLite, and PostgreSQL when configured."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.email.inbox_store import record_sheet
from adapters.sftp.layouts import RecordWriter
from gateway.complaints.store import COMPLAINTS
from gateway.inbound.sheets import RowDefaults, parse_sheet
from tests.case_world import AGENCY, START, CaseWorld, account, build_case_world
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.integration.test_sftp_pickup import pickup_of, put


@pytest.fixture
async def sftp_world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    world = await start_world(tmp_path, database_url)
    yield world
    await world.aclose()


async def test_an_sftp_result_row_opens_a_complaint(sftp_world: SftpWorld) -> None:
    world = sftp_world
    await seed(world, 1)
    gateway = world.gateway()
    try:
        async with gateway.db.connect() as conn:
            [pid] = (await conn.execute(sa.text("select id from placements"))).scalars()
        now = datetime.now(UTC).replace(microsecond=0)
        row = {
            "type": "complaint.received",
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": {"placement_id": pid, "channel": "12378", "summary": "calls at night"},
        }
        writer = RecordWriter(world.agency.sftp.layout, "result")
        chunk, errors = writer.write_records([row])
        assert errors == []
        put(world, f"{AGENCY_ID}_LENDERX_RESULT_{now:%Y%m%d}_0001.csv", writer.start() + chunk)
        assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
        async with gateway.db.connect() as conn:
            found = (await conn.execute(sa.select(COMPLAINTS))).mappings().all()
        complaints = gateway.complaints()
        [complaint] = found
        assert (complaint["source"], complaint["placement_id"], complaint["agency_id"]) == (
            "agency",
            pid,
            AGENCY_ID,
        )
        assert await complaints.summary(complaint["id"]) == "calls at night"
    finally:
        await gateway.aclose()


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    await w.intake([account(0)])
    assert await w.allocate() == 1
    yield w
    await w.gateway.aclose()


async def test_a_reply_sheet_row_opens_a_complaint(world: CaseWorld) -> None:
    [placement] = await world.placements("ACC-0000")
    sheet = (
        "事件 event_type,委托编号 placement_id,日期 occurred_at,渠道 channel,reason\n"
        f"投诉,{placement['id']},2026-03-02,银保监热线,债务人称律师函措辞威胁\n"
        f"complaint,{placement['id']},2026-03-02,,no channel\n"
    ).encode()
    parsed = parse_sheet(
        "reply.csv",
        sheet,
        RowDefaults(received_at=START, currency="CNY", timezone="Asia/Shanghai"),
    )
    assert [(e.line, e.field) for e in parsed.errors] == [(3, "channel")]
    async with world.db.transaction() as conn:
        await record_sheet(
            conn,
            agency_id=AGENCY,
            data=sheet,
            events=parsed.events,
            refused_lines=len(parsed.errors),
            now=START,
        )
    [complaint] = await world.rows(sa.select(COMPLAINTS))
    assert (complaint["channel"], complaint["placement_id"]) == ("银保监热线", placement["id"])
    assert await world.gateway.complaints().summary(complaint["id"]) == "债务人称律师函措辞威胁"
