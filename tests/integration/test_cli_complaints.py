"""Complaints through the command line (click's runner, a real config and SQLite file): open
with a hold, list, show (the summary only when asked), move through the states as the person
named by `--as`, import the lender's file (a bad row exits 1), and write the monthly report."""

import json
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from tests.case_world import account, write_intake
from tests.integration.test_cli_requests import run  # noqa: F401 (the fixture)


def test_complaints_from_the_command_line(run: Any, tmp_path: Path) -> None:  # noqa: F811
    write_intake(tmp_path / "day1.csv", [account(1), account(2)])
    assert run("--as", "ana", "intake", str(tmp_path / "day1.csv")).exit_code == 0
    assert run("--as", "ana", "allocate", "--json").exit_code == 0

    opened = run(
        "--as",
        "ana",
        "complaints",
        "open",
        "--case",
        "ACC-0001",
        "--channel",
        "hotline",
        "--category",
        "harassment",
        "--summary",
        "李四说催收员威胁他",
        "--ref",
        "T-1",
        "--hold",
        "--json",
    )
    assert opened.exit_code == 0, opened.output
    made = json.loads(opened.output)
    assert (made["created"], made["held"], made["updated_by"]) == (True, True, "ops:ana")
    again = run(
        "--as", "ana", "complaints", "open", "--case", "ACC-0001", "--channel", "x", "--ref", "T-1"
    )
    assert again.exit_code == 0 and "opened complaint" in again.output and "before" in again.output
    cid = str(made["id"])

    table = run("complaints", "list")
    assert table.exit_code == 0 and "ACC-0001" in table.output
    shown = run("complaints", "show", cid)
    assert shown.exit_code == 0 and "李四" not in shown.output
    revealed = run("complaints", "show", cid, "--summary")
    assert "李四说催收员威胁他" in revealed.output

    wrong = run("--as", "ana", "complaints", "close", cid)
    assert wrong.exit_code == 1 and "it can: investigate, resolve" in wrong.output
    resolved = run("--as", "bo", "complaints", "resolve", cid, "--outcome", "not_upheld", "--json")
    assert json.loads(resolved.output)["outcome"] == "not_upheld"
    closed = json.loads(run("--as", "bo", "complaints", "close", cid, "--json").output)
    assert (closed["state"], closed["held"]) == ("closed", False)

    feed = tmp_path / "lender.csv"
    feed.write_text(
        "complaint_id,case_id,received_at,channel\n"
        "LC-1,ACC-0002,2026-03-03T10:00:00+08:00,app\n"
        "LC-2,NOPE,2026-03-03T10:00:00+08:00,app\n",
        encoding="utf-8",
    )
    imported = run("--as", "ana", "complaints", "import", str(feed), "--json")
    assert imported.exit_code == 1
    report = json.loads(imported.output)
    assert len(report["opened"]) == 1 and report["problems"][0].startswith("line 3: case_id:")

    out = tmp_path / "march.xlsx"
    written = run("complaints", "report", "--month", "2026-03", "--out", str(out))
    assert written.exit_code == 0, written.output
    assert load_workbook(out).sheetnames[0] == "Summary"
