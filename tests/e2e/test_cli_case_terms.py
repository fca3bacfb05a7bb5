"""``placements expire / renew`` and ``cases escalations / escalate`` through the real console
script, on a copy of a workspace with accounts imported and allocated (the fixtures of
tests.e2e.test_cli; the shipped config, where AGY_ALPHA takes expiry warnings and ZHENGYI is
the legal tier)."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e import test_cli as shared
from tests.e2e.test_cli import assert_clean_failure, cli

# The workspace fixtures of tests.e2e.test_cli (module scope: built once for this module).
keyed = shared.keyed
placed = shared.placed
placed_copy = shared.placed_copy

LEGAL_TIER = ("ZHENGYI",)


def query(workspace: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(workspace / "state" / "gateway.db") as con:
        return con.execute(sql, args).fetchall()


def placements_of(workspace: Path, agency: str, *, other: bool = False) -> list[str]:
    sign = "!=" if other else "="
    rows = query(
        workspace,
        f"SELECT id FROM placements WHERE agency_id {sign} ? AND state = 'placed' ORDER BY id",
        agency,
    )
    return [str(r[0]) for r in rows]


def test_expire_warns_and_recalls_and_renew_extends(placed_copy: Path) -> None:
    today = datetime.now(UTC).date()
    warned = placements_of(placed_copy, "AGY_ALPHA")[0]
    expired = placements_of(placed_copy, "AGY_ALPHA", other=True)[0]
    ending = (today + timedelta(days=3)).isoformat()
    query(placed_copy, "UPDATE placements SET return_by = ? WHERE id = ?", ending, warned)
    past = (today - timedelta(days=10)).isoformat()
    query(placed_copy, "UPDATE placements SET return_by = ? WHERE id = ?", past, expired)

    dry = cli(placed_copy, "placements", "expire", "--dry-run", "--json")
    assert dry.code == 0, dry.output
    plan = dry.json()
    assert isinstance(plan, dict)
    assert [w["placement_id"] for w in plan["warnings"]] == [warned]
    assert plan["warnings"][0]["recall_on"] == (today + timedelta(days=4)).isoformat()
    assert [e["placement_id"] for e in plan["expired"]] == [expired]
    assert query(placed_copy, "SELECT state FROM placements WHERE id = ?", expired) == [("placed",)]

    run = cli(placed_copy, "placements", "expire", "--json")
    assert run.code == 0, run.output
    report = run.json()
    assert isinstance(report, dict)
    [(expired_agency,)] = query(
        placed_copy, "SELECT agency_id FROM placements WHERE id = ?", expired
    )
    assert (report["warned"], report["expired"]) == ({"AGY_ALPHA": 1}, {expired_agency: 1})
    assert (report["warned_placements"], report["expired_placements"]) == ([warned], [expired])
    assert query(
        placed_copy, "SELECT state, recall_reason FROM placements WHERE id = ?", expired
    ) == [("recalled", "EXPIRED")]
    assert query(
        placed_copy,
        "SELECT c.status FROM cases c JOIN placements p ON p.case_id = c.id WHERE p.id = ?",
        expired,
    ) == [("returned",)]
    assert query(
        placed_copy,
        "SELECT placement_id FROM outbox WHERE packet_type = 'placement.expiring'",
    ) == [(warned,)]
    quiet = cli(placed_copy, "placements", "expire")
    assert quiet.code == 0, quiet.output
    assert "0 placement.expiring queued, 0 placement(s) recalled as expired" in quiet.stdout

    renewed = cli(
        placed_copy, "placements", "renew", warned, "--days", "30", "--actor", "olga", "--json"
    )
    assert renewed.code == 0, renewed.output
    assert renewed.json() == {
        "placement_id": warned,
        "case_id": query(placed_copy, "SELECT case_id FROM placements WHERE id = ?", warned)[0][0],
        "agency_id": "AGY_ALPHA",
        "previous_return_by": ending,
        "return_by": (today + timedelta(days=33)).isoformat(),
        "version": 2,
        "renewals": 1,
    }
    assert query(
        placed_copy,
        "SELECT return_by, version, renewals, expiry_warned_at FROM placements WHERE id = ?",
        warned,
    ) == [((today + timedelta(days=33)).isoformat(), 2, 1, None)]
    assert query(
        placed_copy,
        "SELECT placement_id, packet_version FROM outbox WHERE packet_type = 'placement.amended'",
    ) == [(warned, 2)]
    text = cli(placed_copy, "placements", "renew", warned, "--days", "5", "--note", "court")
    assert text.code == 0, text.output
    assert f"renewed {warned} (AGY_ALPHA)" in text.stdout and "version 3" in text.stdout

    ended = cli(placed_copy, "placements", "renew", expired, "--days", "30")
    assert_clean_failure(ended, 1)
    assert f"placement {expired} is recalled: only an open placement" in ended.stderr
    unknown = cli(placed_copy, "placements", "renew", "PL-NOPE-1", "--days", "30")
    assert_clean_failure(unknown, 1)
    assert "placement PL-NOPE-1 does not exist" in unknown.stderr
    zero = cli(placed_copy, "placements", "renew", warned, "--days", "0")
    assert_clean_failure(zero, 2)
    assert "--days" in zero.stderr


def test_escalations_are_proposed_once_and_decided_by_ops(placed_copy: Path) -> None:
    outside = ",".join("?" * len(LEGAL_TIER))
    rows = query(
        placed_copy,
        "SELECT id, case_id FROM placements WHERE state = 'placed' "
        f"AND agency_id NOT IN ({outside}) ORDER BY id LIMIT 2",
        *LEGAL_TIER,
    )
    targets = [str(r[0]) for r in rows]
    for _, case_id in rows:
        query(placed_copy, "UPDATE cases SET bucket = 'LEGAL', dpd = 400 WHERE id = ?", case_id)
    expected = {
        str(r[0])
        for r in query(
            placed_copy,
            "SELECT p.id FROM placements p JOIN cases c ON c.id = p.case_id "
            "WHERE p.state IN ('placed', 'acknowledged', 'active', 'disputed', 'legal') "
            f"AND c.bucket = 'LEGAL' AND p.agency_id NOT IN ({outside})",
            *LEGAL_TIER,
        )
    }
    assert set(targets) <= expected

    scanned = cli(placed_copy, "cases", "escalations", "--scan", "--json")
    assert scanned.code == 0, scanned.output
    document = scanned.json()
    assert isinstance(document, dict)
    assert document["scan"]["mode"] == "approval"
    assert len(document["scan"]["proposed"]) == len(expected)
    listed = {e["placement_id"]: e for e in document["escalations"]}
    assert set(listed) == expected
    assert all(
        e["state"] == "proposed" and e["placement_state"] == "placed" for e in listed.values()
    )
    keep, take = listed[targets[0]]["id"], listed[targets[1]]["id"]

    rejected = cli(
        placed_copy,
        "cases",
        "escalate",
        str(keep),
        "--reject",
        "--note",
        "settling",
        "--actor",
        "olga",
        "--json",
    )
    assert rejected.code == 0, rejected.output
    view = rejected.json()
    assert isinstance(view, dict)
    assert (view["state"], view["decided_by"], view["note"]) == ("rejected", "ops:olga", "settling")
    approved = cli(placed_copy, "cases", "escalate", str(take), "--approve", "--actor", "olga")
    assert approved.code == 0, approved.output
    assert (
        f"escalation {take} approved by ops:olga; placement {targets[1]} recalled"
        in approved.stdout
    )
    assert query(
        placed_copy, "SELECT state, recall_reason FROM placements WHERE id = ?", targets[1]
    ) == [("recalled", "LEGAL_ESCALATION")]
    assert query(
        placed_copy,
        "SELECT event, actor FROM case_history WHERE placement_id = ? ORDER BY id DESC LIMIT 1",
        targets[1],
    ) == [("escalate", "ops:olga")]

    again = cli(placed_copy, "cases", "escalations", "--scan", "--state", "all", "--json")
    assert again.code == 0, again.output
    later = again.json()
    assert isinstance(later, dict)
    assert later["scan"]["proposed"] == []
    assert len(later["escalations"]) == len(expected)
    table = cli(placed_copy, "cases", "escalations", "--state", "rejected")
    assert table.code == 0, table.output
    assert targets[0] in table.stdout and "1 escalation(s) (rejected)" in table.stdout

    twice = cli(placed_copy, "cases", "escalate", str(keep), "--approve")
    assert_clean_failure(twice, 1)
    assert f"escalation {keep} is already rejected" in twice.stderr
    missing = cli(placed_copy, "cases", "escalate", "9999", "--approve")
    assert_clean_failure(missing, 1)
    assert "escalation 9999 does not exist" in missing.stderr
    undecided = cli(placed_copy, "cases", "escalate", str(keep))
    assert_clean_failure(undecided, 2)
    assert "say --approve or --reject" in undecided.stderr
