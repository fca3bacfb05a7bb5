"""`settlement` commands through click's runner on a real config and SQLite file: build,
adjust, fee add, issue, list, show and export, with the person named by `--as` recorded."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook

from gateway.cli import main
from gateway.store.database import Database
from tests.integration.test_settlement_statements import MARCH
from tests.settlement_world import seed

PASSWORD = "correct horse battery staple"
AGENCY = "AGY_ONE"
COMMISSION = """
[commission.legal_fees]
mode = "capped"
court_cap_minor = 100000

[[commission.periods]]
from = 2026-01-01
to = 2026-12-31

[[commission.periods.rules]]
name = "legal"
legal = true
rate_bps = 2500

[[commission.periods.rules]]
name = "base"
rate_bps = 1000
"""


@pytest.fixture
def run(make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    url = "sqlite:///" + str(tmp_path / "cli.db")
    config_path, settings, agencies = make_config(
        database_url=url,
        agencies={AGENCY: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
    with Path(agencies[AGENCY].source).open("a", encoding="utf-8") as fh:
        fh.write(COMMISSION)
    monkeypatch.chdir(settings.base_dir)
    monkeypatch.delenv("GATEWAY_OPS_USER", raising=False)
    monkeypatch.delenv("GATEWAY_OPS_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(main, ["--config", str(config_path), *args], input=stdin)

    for name, role in (("ana", "operator"), ("bo", "admin")):
        added = invoke("users", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD)
        assert added.exit_code == 0, added.output

    async def seeded() -> None:
        db = Database(url)
        try:
            await seed(db, AGENCY, MARCH)
        finally:
            await db.dispose()

    asyncio.run(seeded())
    return invoke


def test_build_adjust_fee_issue_and_export(run: Any, tmp_path: Path) -> None:
    built = run(
        "--as", "ana", "settlement", "build", "--agency", AGENCY, "--month", "2026-03", "--json"
    )
    assert built.exit_code == 0, built.output
    statement = json.loads(built.output)
    sid = str(statement["id"])
    assert statement["state"] == "draft" and statement["created_by"] == "ops:ana"
    adjusted = run(
        "--as", "ana", "settlement", "adjust", sid, "--amount-minor", "-100", "--reason", "dup"
    )
    assert adjusted.exit_code == 0, adjusted.output
    fee = run(
        "--as",
        "ana",
        "settlement",
        "fee",
        "add",
        "--agency",
        AGENCY,
        "--case",
        "C-P4",
        "--kind",
        "court",
        "--amount-minor",
        "250000",
        "--receipt-ref",
        "R-1",
        "--on",
        "2026-03-02",
    )
    assert fee.exit_code == 0, fee.output
    rebuilt = json.loads(
        run(
            "--as", "ana", "settlement", "build", "--agency", AGENCY, "--month", "2026-03", "--json"
        ).output
    )
    assert rebuilt["fees_minor"] == 100_000 and rebuilt["adjustments_minor"] == -100
    issued = run("--as", "bo", "settlement", "issue", sid)
    assert issued.exit_code == 0 and "issued; SHA-256" in issued.output, issued.output
    listed = json.loads(run("settlement", "list", "--agency", AGENCY, "--json").output)
    assert [s["state"] for s in listed["statements"]] == ["issued"]
    shown = json.loads(run("settlement", "show", sid, "--json").output)
    assert len(shown["lines"]) == 6 and shown["issued_by"] == "ops:bo"
    refused = run(
        "--as", "ana", "settlement", "adjust", sid, "--amount-minor", "1", "--reason", "x"
    )
    assert refused.exit_code != 0 and "issued: cannot adjust" in refused.output
    out = tmp_path / "export"
    exported = run("settlement", "export", sid, "--to", str(out))
    assert exported.exit_code == 0, exported.output
    names = sorted(p.name for p in out.iterdir())
    stem = f"statement-{AGENCY}-2026-03-r1"
    assert names == [f"{stem}.json", f"{stem}.pdf", f"{stem}.xlsx"]
    book = load_workbook(out / f"{stem}.xlsx")
    assert book.sheetnames == ["Lines", "Summary"]
    assert (out / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
