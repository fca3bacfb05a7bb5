"""``allocate --preview`` and ``allocate`` through the real console script on the example
configuration (primary, secondary and legal tiers): the preview writes nothing and says
exactly what the real round then does."""

import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gateway.demo.data import generate_accounts, write_csv
from tests.e2e.test_cli import cli, keyed, keyed_copy  # noqa: F401  (fixtures)


def count(workspace: Path, table: str) -> int:
    with sqlite3.connect(workspace / "state" / "gateway.db") as con:
        [(n,)] = con.execute(f"SELECT count(*) FROM {table}").fetchall()
        return int(n)


def test_preview_then_allocate(request: pytest.FixtureRequest) -> None:
    workspace: Path = request.getfixturevalue("keyed_copy")
    assert cli(workspace, "db", "upgrade").code == 0
    # The shipped config enforces the register (README "Agency register").
    assert cli(workspace, "register", "import").code == 0
    write_csv(generate_accounts(120, seed=7, as_of=date(2026, 3, 1)), workspace / "acc.csv")
    assert cli(workspace, "intake", "acc.csv", "--json").code == 0

    shown = cli(workspace, "allocate", "--preview")
    assert shown.code == 0, shown.output
    assert "would be placed (preview: nothing written)" in shown.stdout
    assert "would place" in shown.stdout
    preview_result = cli(workspace, "allocate", "--preview", "--json")
    assert preview_result.code == 0, preview_result.output
    preview: Any = preview_result.json()
    assert preview["preview"] is True and preview["round_id"] is None
    assert count(workspace, "placements") == 0 and count(workspace, "allocation_decisions") == 0
    # The example agencies take every bucket between them: nobody is stranded.
    assert preview["placed"] == 120 and preview["unallocated"] == 0
    assert {"ZHENGYI", "AGY_BETA"} <= set(preview["by_agency_bucket"])
    assert "LEGAL" in preview["by_agency_bucket"]["ZHENGYI"]

    real_result = cli(workspace, "allocate", "--json")
    assert real_result.code == 0, real_result.output
    real: Any = real_result.json()
    assert real["preview"] is False and real["round_id"]
    for key in ("placed", "unallocated", "by_agency", "by_agency_bucket", "reasons"):
        assert real[key] == preview[key], key
    assert count(workspace, "placements") == 120
    assert count(workspace, "allocation_decisions") == real["decisions_recorded"] > 0
