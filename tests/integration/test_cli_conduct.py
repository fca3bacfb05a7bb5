"""``agency-gateway conduct`` through the command line (click's runner, a real config and
SQLite file): a contact with a third party received over the webhook is counted by
``conduct violations``; ``conduct qa draw`` draws once (a second draw changes nothing),
``qa list`` shows the sample and ``qa review`` records a review as the person named by
``--as``, refusing an unknown item plainly."""

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.clock import to_datetime
from tests.case_world import account, write_intake
from tests.integration.test_cli_requests import placement_ids, post_events, run  # noqa: F401


def test_conduct_commands(run: Any, tmp_path: Path) -> None:  # noqa: F811
    write_intake(tmp_path / "day1.csv", [account(1)])
    assert run("--as", "ana", "intake", str(tmp_path / "day1.csv")).exit_code == 0
    assert run("--as", "ana", "allocate", "--json").exit_code == 0
    [pid] = asyncio.run(placement_ids(run.config_path))
    at = to_datetime(0).replace(year=2026, month=3, day=2, hour=2).isoformat()
    asyncio.run(
        post_events(
            run.config_path,
            [
                (
                    "placement.acknowledged",
                    {
                        "placement_id": pid,
                        "agency_case_ref": "R-1",
                        "balance": {"amount_minor": 1, "currency": "CNY"},
                    },
                ),
                (
                    "contact.attempted",
                    {
                        "placement_id": pid,
                        "channel": "call",
                        "outcome": "reached",
                        "attempted_at": at,
                        "effective": False,
                        "party": "third_party",
                        "purpose": "debt",
                        "collector_id": "C-1",
                        "recording_ref": "rec/1.mp3",
                    },
                ),
            ],
        )
    )
    counted = run("conduct", "violations", "--since", "2000-01-01", "--json")
    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.output)["agencies"] == {"AGY_ONE": {"third_party_contact": 1}}

    drawn = run("--as", "ana", "conduct", "qa", "draw", "--month", "2026-03", "--json")
    assert drawn.exit_code == 0, drawn.output
    [first] = json.loads(drawn.output)
    assert first["new"] and first["candidates"] == 1 and len(first["items"]) == 1
    again = run("conduct", "qa", "draw", "--month", "2026-03", "--json")
    assert json.loads(again.output)[0] == {**first, "new": False, "candidates": None}

    listed = run("conduct", "qa", "list", "--month", "2026-03")
    assert listed.exit_code == 0 and "rec/1.mp3" in listed.output and "drawn 1" in listed.output
    [item_id] = first["items"]
    done = run("--as", "ana", "conduct", "qa", "review", str(item_id), "unavailable", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["state"] == "unavailable"
    assert json.loads(done.output)["reviewer"] == "ops:ana"
    missing = run("conduct", "qa", "review", "999", "pass")
    assert missing.exit_code == 1 and "no QA sample item 999" in missing.output
    bad = run("conduct", "qa", "list", "--month", "March")
    assert bad.exit_code == 1 and "YYYY-MM" in bad.output
