"""``agency-gateway events import``: a firm's sheet handed over outside the mailbox takes
the same path as a reply (stored raw with evidence, reconciled), with line-level errors."""

import asyncio
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner
from openpyxl import Workbook

from gateway.cli import main
from gateway.clock import ManualClock
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import AgencyEventRow, InboundMessage, Placement
from tests.integration.email_setup import FIRM, write_firm_config

EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


async def cli(*args: str) -> tuple[int, str]:
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


async def test_a_sheet_is_imported_once_with_line_errors(
    tmp_path: Path, seed_placements, monkeypatch
):
    base = tmp_path / "config"
    url = "sqlite:///" + str(tmp_path / "g.db")
    config, _, agencies = write_firm_config(base, database_url=url)
    monkeypatch.chdir(base)  # relative key paths resolve against the working directory
    db = Database(url)
    await upgrade(db)
    clock = ManualClock(datetime(2026, 3, 2, tzinfo=UTC).timestamp())
    placed = await seed_placements(db, agencies, 2, clock)
    first, second = placed[0][0], placed[1][0]
    balance = f"{placed[0][3] // 100}.{placed[0][3] % 100:02d}"
    sheet = tmp_path / "回复表.csv"
    sheet.write_text(
        "事件,委托编号,日期,律所案号,金额\r\n"
        f"placement.acknowledged,{first},2026-03-03,ZY-1,{balance}\r\n"
        f"placement.acknowledged,{second},2026-03-03,,1.00\r\n",
        encoding="utf-8-sig",
    )

    code, output = await cli(
        "--config", str(config), "events", "import", str(sheet), "--agency", FIRM, "--check"
    )
    assert code == 1 and "1 event(s) readable, 1 line(s) refused" in output
    assert "line 3: agency_case_ref: required for placement.acknowledged" in output

    code, output = await cli(
        "--config", str(config), "events", "import", str(sheet), "--agency", FIRM
    )
    assert code == 1 and "1 event(s) imported" in output
    async with db.connect() as conn:
        state = (
            await conn.execute(sa.select(PLACEMENTS.c.state).where(PLACEMENTS.c.id == first))
        ).scalar_one()
        stored = (await conn.execute(sa.select(INBOUND))).mappings().all()
    assert state == "acknowledged"
    assert [(s["channel"], s["status"]) for s in stored] == [("file", "partial")]
    assert stored[0]["body"] == sheet.read_bytes()

    code, output = await cli(
        "--config", str(config), "events", "import", str(sheet), "--agency", FIRM
    )
    assert "was imported before" in output
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.append(["event_type", "placement_id", "occurred_at", "action"])
    ws.append(["legal.action", first, datetime(2026, 3, 5), "lawyer_letter"])
    xlsx = tmp_path / "reply.xlsx"
    buffer = io.BytesIO()
    book.save(buffer)
    xlsx.write_bytes(buffer.getvalue())
    code, output = await cli(
        "--config", str(config), "events", "import", str(xlsx), "--agency", FIRM, "--json"
    )
    assert code == 0 and json.loads(output)["imported"] == 1
    async with db.connect() as conn:
        types = (
            (await conn.execute(sa.select(EVENTS.c.event_type).order_by(EVENTS.c.id)))
            .scalars()
            .all()
        )
    assert types == ["placement.acknowledged", "legal.action"]
    await db.dispose()
