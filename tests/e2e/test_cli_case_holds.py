"""``cases hold / release / reopen`` through the real console script, on a copy of a workspace
with accounts imported and allocated (the fixtures of tests.e2e.test_cli)."""

import sqlite3
from pathlib import Path

from tests.e2e import test_cli as base
from tests.e2e.test_cli import assert_clean_failure, cli

# The shared workspaces of tests.e2e.test_cli (module-scoped: built once for this module).
keyed, placed, placed_copy = base.keyed, base.placed, base.placed_copy


def query(workspace: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(workspace / "state" / "gateway.db") as con:
        return con.execute(sql, args).fetchall()


def placed_cases(workspace: Path) -> list[str]:
    rows = query(workspace, "SELECT id FROM cases WHERE status = 'placed' ORDER BY id")
    return [str(r[0]) for r in rows]


def test_hold_release_and_reopen(placed_copy: Path) -> None:
    first, second = placed_cases(placed_copy)[:2]
    [(placement,)] = query(
        placed_copy, "SELECT id FROM placements WHERE case_id = ? AND state = 'placed'", first
    )

    hold = ["cases", "hold", first, "--reason", "deceased", "--actor", "olga"]
    held = cli(placed_copy, *hold, "--note", "family called", "--json")
    assert held.code == 0, held.output
    assert held.json() == {
        "action": "hold",
        "case_id": first,
        "code": "DECEASED",
        "status": "held",
        "recalled_placement_id": placement,
        "changed": True,
        "holds": ["DECEASED"],
    }
    assert query(
        placed_copy, "SELECT state, recall_reason FROM placements WHERE id = ?", placement
    ) == [("recalled", "DECEASED")]
    assert query(
        placed_copy,
        "SELECT event, actor, reason FROM case_history WHERE case_id = ? ORDER BY id DESC LIMIT 1",
        first,
    ) == [("hold", "ops:olga", "DECEASED")]
    assert query(placed_copy, "SELECT note FROM case_holds WHERE case_id = ?", first) == [
        ("family called",)
    ]

    more = cli(placed_copy, "cases", "hold", first, "--reason", "COMPLAINT", "--actor", "olga")
    assert more.code == 0, more.output
    assert f"case {first} held: COMPLAINT (status held); also held by DECEASED" in more.stdout
    same = cli(placed_copy, "cases", "hold", first, "--reason", "COMPLAINT")
    assert "already has the hold COMPLAINT; nothing changed" in same.stdout

    part = cli(placed_copy, "cases", "release", first, "--reason", "DECEASED", "--actor", "olga")
    assert part.code == 0, part.output
    assert f"case {first}: released DECEASED; still held by COMPLAINT (status held)" in part.stdout
    done = cli(placed_copy, "cases", "release", first, "--reason", "COMPLAINT", "--json")
    assert done.code == 0, done.output
    assert done.json()["status"] == "open"  # type: ignore[index]
    [(actor,)] = query(
        placed_copy,
        "SELECT released_by FROM case_holds WHERE case_id = ? AND code = 'COMPLAINT'",
        first,
    )
    assert str(actor).startswith("ops:")

    missing = cli(placed_copy, "cases", "release", first, "--reason", "COMPLAINT")
    assert_clean_failure(missing, 1)
    assert f"case {first} has no standing hold COMPLAINT" in missing.stderr
    unknown = cli(placed_copy, "cases", "hold", "NO-SUCH-CASE", "--reason", "DECEASED")
    assert_clean_failure(unknown, 1)
    assert "case NO-SUCH-CASE does not exist" in unknown.stderr
    bad = cli(placed_copy, "cases", "hold", second, "--reason", "not a code")
    assert_clean_failure(bad, 1)
    assert "is not a hold code" in bad.stderr

    assert cli(placed_copy, "recall", second, "--reason", "OPS_REVIEW").code == 0
    reopened = cli(placed_copy, "cases", "reopen", second, "--note", "reviewed")
    assert reopened.code == 0, reopened.output
    assert f"case {second} reopened (status returned)" in reopened.stdout
    refused = cli(placed_copy, "cases", "reopen", second, "--json")
    assert_clean_failure(refused, 1)
    assert "only a recalled or closed case can be reopened" in refused.stderr
