"""Claim confirmation and four eyes through the command line (click's runner, a real config
and SQLite file): `--as` names the person; intake makes a pending batch; `allocate` places
nothing until another user runs `claims approve`; the importer's own approval, a viewer's and
an unknown user's are refused; a round and a bulk recall above their thresholds wait for an
approval that `--approval` then runs (once); `--token` acts as the token's user."""

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from tests.case_world import account, write_intake

PASSWORD = "correct horse battery staple"
AGENCY = "AGY_ONE"


@pytest.fixture
def run(make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    config_path, settings, _agencies = make_config(
        database_url="sqlite:///" + str(tmp_path / "cli.db"),
        agencies={AGENCY: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}},
    )
    text = config_path.read_text(encoding="utf-8")
    # Placing more than 3 cases in a round, or recalling more than 2 placements at once,
    # needs a second person.
    config_path.write_text(
        text + "\n[four_eyes]\nallocation_round = { above = 3 }\nbulk_recall = { above = 2 }\n",
        "utf-8",
    )
    monkeypatch.chdir(settings.base_dir)
    monkeypatch.delenv("GATEWAY_OPS_USER", raising=False)
    monkeypatch.delenv("GATEWAY_OPS_TOKEN", raising=False)
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(main, ["--config", str(config_path), *args], input=stdin)

    for name, role in (("ana", "operator"), ("bo", "admin"), ("vi", "viewer")):
        added = invoke("users", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD)
        assert added.exit_code == 0, added.output
    return invoke


def test_claims_are_confirmed_by_a_second_person_before_allocation(
    run: Any, tmp_path: Path
) -> None:
    write_intake(tmp_path / "day1.csv", [account(n) for n in range(1, 5)])
    nobody = run("intake", str(tmp_path / "day1.csv"))
    assert nobody.exit_code == 1 and "needs a known person: pass --as USER" in nobody.output
    stranger = run("--as", "zed", "intake", str(tmp_path / "day1.csv"))
    assert stranger.exit_code == 1 and "no active console user 'zed'" in stranger.output

    imported = run("--as", "ana", "intake", str(tmp_path / "day1.csv"), "--json")
    assert imported.exit_code == 0, imported.output
    batch = json.loads(imported.output)["claim_batch"]
    assert (batch["status"], batch["maker"], batch["cases"]) == ("pending", "ana", 4)

    preview = json.loads(run("allocate", "--preview", "--json").output)
    assert preview["placed"] == 0 and preview["reasons"] == {"unconfirmed": 4}
    listed = json.loads(run("claims", "list", "--status", "pending", "--json").output)
    assert [b["id"] for b in listed] == [batch["id"]]
    shown = run("claims", "show", batch["id"])
    assert shown.exit_code == 0 and "4 new" in shown.output

    own = run("--as", "ana", "claims", "approve", batch["id"])
    assert own.exit_code == 1 and "ana made this request" in own.output
    viewer = run("--as", "vi", "claims", "approve", batch["id"])
    assert viewer.exit_code == 1 and "vi is viewer" in viewer.output
    assert json.loads(run("allocate", "--preview", "--json").output)["placed"] == 0

    approved = run("--as", "bo", "claims", "approve", batch["id"], "--note", "ledger ok")
    assert approved.exit_code == 0, approved.output
    assert f"claim batch {batch['id']} approved by bo" in approved.output
    big = run("--as", "ana", "allocate", "--json")
    assert big.exit_code == 1 and "allocation_round of 4 needs a second person" in big.output
    assert "approval #2 is pending" in big.output
    assert run("--as", "bo", "approvals", "approve", "2").exit_code == 0
    placed = json.loads(run("--as", "ana", "allocate", "--approval", "2", "--json").output)
    assert placed["placed"] == 4
    again = run("--as", "ana", "allocate", "--approval", "2")
    assert again.exit_code == 1 and "approval #2 is executed" in again.output

    requests = json.loads(run("approvals", "list", "--json").output)
    assert [(a["action"], a["status"], a["maker"], a["checker"]) for a in requests] == [
        ("allocation_round", "executed", "ana", "bo"),
        ("claim_confirmation", "executed", "ana", "bo"),
    ]

    # Four placements held: recalling them all needs a second person.
    asked = run("--as", "ana", "agencies", "recall-all", AGENCY, "--yes")
    assert asked.exit_code == 1 and "approval #3 is pending" in asked.output
    early = run("--as", "ana", "agencies", "recall-all", AGENCY, "--yes", "--approval", "3")
    assert early.exit_code == 1 and "approval #3 is pending" in early.output
    token = run("users", "token", "bo", "--label", "cli").output.strip().split()[-1]
    checked = run("--token", token, "approvals", "approve", "3")
    assert checked.exit_code == 0, checked.output
    recalled = run("--as", "ana", "agencies", "recall-all", AGENCY, "--yes", "--approval", "3")
    assert recalled.exit_code == 0, recalled.output
    assert "recalled 4 placement(s)" in recalled.output
    recall_step = json.loads(run("cases", "history", "ACC-0001", "--json").output)[-1]
    assert (recall_step["event"], recall_step["actor"]) == ("recall", "ops:ana")
    done = json.loads(run("approvals", "show", "3", "--json").output)
    assert (done["status"], done["checker"], done["count"]) == ("executed", "bo", 4)


def test_case_commands_record_the_global_person(run: Any, tmp_path: Path) -> None:
    write_intake(tmp_path / "day1.csv", [account(1)])
    assert run("--as", "ana", "intake", str(tmp_path / "day1.csv")).exit_code == 0
    held = run("--as", "bo", "cases", "hold", "ACC-0001", "--reason", "DISPUTE", "--json")
    assert held.exit_code == 0, held.output
    history = run("cases", "history", "ACC-0001", "--json")
    assert '"ops:bo"' in history.output
