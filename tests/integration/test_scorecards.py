"""``agency-gateway agencies scorecard`` on a seeded store: the period selects placements by
placement time and every count follows them (SQLite, PostgreSQL when configured)."""

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from gateway.bootstrap import build
from gateway.cli import main
from gateway.clock import ManualClock
from gateway.store.migrate import upgrade
from gateway.store.tables import Expectation, Mismatch, Placement
from tests.conftest import ConfigFactory, Seeder

EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
PLACED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


async def test_scorecard_counts_follow_the_placements_of_the_period(
    make_config: ConfigFactory,
    seed_placements: Seeder,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, settings, agencies = make_config(
        database_url=database_url,
        # Agencies that collect and remit: recovery is what they reconciled (under
        # lender_collects it is the lender's attributed receipts, test_fair_scorecards.py).
        agencies={
            name: {
                "url": f"http://127.0.0.1:9/{name}",
                "settlement": {"money_model": "agency_remits"},
            }
            for name in ("AGA", "AGB")
        },
    )
    gateway = build(settings, agencies)
    try:
        await upgrade(gateway.db)
        placed = await seed_placements(gateway.db, agencies, 40, ManualClock(PLACED.timestamp()))
        mine = [p for p in placed if p[2] == "AGA"]
        assert len(mine) >= 3
        (p1, _, _, b1), (p2, _, _, _), (p3, _, _, _) = mine[:3]
        async with gateway.db.transaction() as conn:
            await conn.execute(
                PLACEMENTS.update().where(PLACEMENTS.c.id == p1).values(collected_minor=b1)
            )
            await conn.execute(
                EXPECTATIONS.insert(),
                [
                    {
                        "placement_id": pid,
                        "agency_id": "AGA",
                        "kind": "ack",
                        "ref": "",
                        "due_at": PLACED + timedelta(days=1),
                        "state": state,
                        "created_at": PLACED,
                    }
                    for pid, state in ((p1, "met"), (p2, "met"), (p3, "breached"))
                ],
            )
            await conn.execute(
                MISMATCHES.insert().values(
                    dedupe_key="contact:1",
                    kind="contact_rule_violation",
                    severity="high",
                    state="open",
                    agency_id="AGA",
                    placement_id=p2,
                    rule="contact_rule_violation",
                    ours="{}",
                    theirs="{}",
                    detail="a call at 23:10 local time",
                    created_at=PLACED,
                    updated_at=PLACED,
                )
            )
        total = sum(b for _, _, a, b in placed if a == "AGA")
    finally:
        await gateway.aclose()
    monkeypatch.chdir(config.parent)
    runner = CliRunner(env={"COLUMNS": "120"})  # a terminal; 80 columns squeeze ten

    async def invoke(*args: str) -> Result:
        # The command runs its own event loop: in a thread, away from the test's.
        return await asyncio.to_thread(runner.invoke, main, ["--config", str(config), *args])

    async def card(*period: str) -> dict[str, object]:
        result = await invoke("agencies", "scorecard", *period, "--json")
        assert result.exit_code == 0, result.output
        cards = json.loads(result.output)["agencies"]
        assert [c["agency_id"] for c in cards] == ["AGA", "AGB"]
        return dict(cards[0])

    aga = await card("--from", "2026-03-01", "--to", "2026-03-03")
    assert aga["placements"] == len(mine)
    assert aga["placed_minor"] == {"CNY": total}
    assert aga["recovery_bps"] == {"CNY": b1 * 10_000 // total}
    assert aga["ack"] == {"met": 2, "breached": 1, "on_time_bps": 6_666}
    assert (aga["contact_violations"], aga["open_mismatches"]) == (1, 1)
    before = await card("--from", "2026-02-01", "--to", "2026-03-02")
    assert (before["placements"], before["ack"]) == (
        0,
        {"met": 0, "breached": 0, "on_time_bps": None},
    )
    table = await invoke("agencies", "scorecard", "--from", "2026-03-01")
    assert table.exit_code == 0 and "AGA" in table.output and "66.66%" in table.output
    refused = await invoke("agencies", "scorecard", "--from", "2026-03-05", "--to", "2026-03-01")
    assert (
        refused.exit_code == 2
        and "the period starts (2026-03-05) on or after it ends (2026-03-01)" in refused.output
    )
