"""`evaluation` commands through click's runner on a real config and SQLite file: a report
written out, listed and shown, an incident counted, and a decision by one person approved by
another (`--as`), which changes the register."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.register.store import read_entry
from gateway.store.database import Database
from tests.integration.test_evaluation import world

PASSWORD = "correct horse battery staple"


@pytest.fixture
def run(make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    url = "sqlite:///" + str(tmp_path / "cli.db")
    config_path, settings, _agencies = make_config(
        database_url=url,
        agencies={"AGY_A": {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
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
            await world(db)
        finally:
            await db.dispose()

    asyncio.run(seeded())
    invoke.url = url  # type: ignore[attr-defined]
    return invoke


def test_report_decide_approve_through_the_cli(run: Any, tmp_path: Path) -> None:
    incident = run(
        "evaluation", "incident", "add", "--agency", "AGY_C", "--on", "2026-05-02",
        "--severity", "medium", "--summary", "laptop lost, disk encrypted", "--ref", "INC-7",
    )  # fmt: skip
    assert incident.exit_code == 0, incident.output
    out = tmp_path / "reports"
    made = run(
        "evaluation", "report", "--agency", "AGY_C", "--end", "2026-12-01", "-o", str(out),
        "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    (report,) = json.loads(made.output)["reports"]
    assert report["figures"]["compliance"]["incidents"] == {"medium": 1}
    assert sorted(p.name for p in out.iterdir()) == [
        "evaluation-AGY_C-2026-12-01-en.pdf",
        "evaluation-AGY_C-2026-12-01-zh.pdf",
        "evaluation-AGY_C-2026-12-01.xlsx",
    ]
    rid = str(report["id"])
    listed = run("evaluation", "list", "--json")
    assert [r["id"] for r in json.loads(listed.output)["reports"]] == [report["id"]]
    shown = run("evaluation", "show", rid)
    assert shown.exit_code == 0 and "relative to peers" in shown.output
    nobody = run("evaluation", "decide", rid, "--decision", "terminate", "--reason", "x")
    assert nobody.exit_code != 0 and "--as USER" in nobody.output
    decided = run(
        "--as", "ana", "evaluation", "decide", rid, "--decision", "terminate",
        "--reason", "upheld complaints",
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    same = run("--as", "ana", "evaluation", "approve", rid)
    assert same.exit_code != 0 and "cannot also approve" in same.output
    approved = run("--as", "bo", "evaluation", "approve", rid, "--note", "ok", "--json")
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["state"] == "decided"

    async def status() -> str:
        db = Database(run.url)
        try:
            async with db.connect() as conn:
                return (await read_entry(conn, "AGY_C")).status
        finally:
            await db.dispose()

    assert asyncio.run(status()) == "terminated"
