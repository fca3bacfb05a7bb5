"""``privacy debtor-keys`` through the real console script, on a copy of a workspace with
accounts imported and allocated (the fixtures of tests.e2e.test_cli): intake keyed every
case already; cases without a key (as migration 0015 leaves them) are keyed; ``--all``
re-keys every case; a key written under another ring is noticed and every case re-keyed."""

import sqlite3
from pathlib import Path

from tests.e2e import test_cli as base
from tests.e2e.test_cli import ACCOUNTS, cli

keyed, placed, placed_copy = base.keyed, base.placed, base.placed_copy


def execute(workspace: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(workspace / "state" / "gateway.db") as con:
        return con.execute(sql).fetchall()


def keys(workspace: Path) -> dict[object, object]:
    return dict(execute(workspace, "SELECT id, debtor_key FROM cases"))


def run(workspace: Path, *args: str) -> object:
    result = cli(workspace, "privacy", "debtor-keys", "--json", *args)
    assert result.code == 0, result.output
    return result.json()


def test_debtor_keys_fills_the_missing_and_rekeys_on_a_changed_key(placed_copy: Path) -> None:
    written = keys(placed_copy)
    assert len(written) == ACCOUNTS and None not in written.values()
    assert run(placed_copy) == {"keyed": 0, "rekeyed_all": False}

    execute(
        placed_copy, "UPDATE cases SET debtor_key = NULL WHERE id IN (SELECT id FROM cases LIMIT 5)"
    )
    assert run(placed_copy) == {"keyed": 5, "rekeyed_all": False}
    assert keys(placed_copy) == written

    assert run(placed_copy, "--all") == {"keyed": ACCOUNTS, "rekeyed_all": True}
    assert keys(placed_copy) == written

    # Keys written under a ring this config no longer has: every case is re-keyed.
    execute(placed_copy, "UPDATE cases SET debtor_key = substr('0000' || debtor_key, 1, 64)")
    assert run(placed_copy) == {"keyed": ACCOUNTS, "rekeyed_all": True}
    assert keys(placed_copy) == written
