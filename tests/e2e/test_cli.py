"""The real ``agency-gateway`` console script in a subprocess, in a working directory under
tmp_path with the repository's config copied there and the database pointed at it."""

import asyncio
import csv
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import click
import pytest

from gateway.cli import main
from gateway.demo.data import generate_accounts, write_csv

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "agency-gateway"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gateway"]
ACCOUNTS = 40
TIMEOUT = 180

SECRET_FILES = [
    "var/keys/pii.keyring",
    "var/keys/evidence.key",
    "var/keys/AGY_ALPHA/outbound.whsec",
    "var/keys/AGY_ALPHA/inbound.whsec",
    "var/keys/AGY_BETA/outbound.whsk",
    "var/keys/AGY_BETA/inbound.whpk.sandbox",
]
"""Private key material the shipped config names; each must be readable by its owner only."""


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> object:
        return json.loads(self.stdout)


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    # Wide and plain, so paths in messages are never wrapped or coloured.
    env.update(COLUMNS="400", NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1")
    return env


def cli(cwd: Path, *args: str) -> Result:
    done = subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def make_workspace(directory: Path, *, confirmation: str = "off") -> Path:
    """Copy the repository's config and point the database at ``directory``.

    ``confirmation`` is the workspace's ``[claims] confirmation``: "off" by default, so
    these tests import and allocate without a second person; the claim confirmation flow
    itself is tested with "four_eyes" (tests/e2e/test_cli_claims.py)."""
    shutil.copytree(REPO / "config", directory / "config")
    point_database_at(directory)
    settings = directory / "config" / "gateway.toml"
    text, count = re.subn(
        r'(?m)^confirmation = "four_eyes"',
        f'confirmation = "{confirmation}"',
        settings.read_text(encoding="utf-8"),
    )
    assert count == 1, "config/gateway.toml has no [claims] confirmation line"
    settings.write_text(text, encoding="utf-8")
    return directory


def point_database_at(directory: Path) -> None:
    settings = directory / "config" / "gateway.toml"
    text = settings.read_text(encoding="utf-8")
    db = directory / "state" / "gateway.db"
    text, count = re.subn(r'(?m)^url = ".*"$', f'url = "sqlite:///{db}"', text)
    assert count == 1, "config/gateway.toml has no [database] url line"
    settings.write_text(text, encoding="utf-8")


def copy_workspace(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, dirs_exist_ok=True)
    point_database_at(destination)
    return destination


def assert_clean_failure(result: Result, code: int) -> None:
    assert result.code == code, result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with every key generated (shared; tests work on copies)."""
    workspace = make_workspace(tmp_path_factory.mktemp("keyed"))
    result = cli(workspace, "keys", "generate")
    assert result.code == 0, result.output
    return workspace


@dataclass(frozen=True)
class Placed:
    workspace: Path
    intake: Result
    allocate: Result


@pytest.fixture(scope="module")
def placed(keyed: Path, tmp_path_factory: pytest.TempPathFactory) -> Placed:
    """Keys, schema, a generated intake file imported and allocated (shared; tests copy it)."""
    workspace = copy_workspace(keyed, tmp_path_factory.mktemp("placed"))
    assert cli(workspace, "db", "upgrade").code == 0
    # The shipped config enforces the register (README "Agency register").
    assert cli(workspace, "register", "import").code == 0
    write_csv(generate_accounts(ACCOUNTS, seed=11, as_of=date(2026, 3, 1)), workspace / "acc.csv")
    intake = cli(workspace, "intake", "acc.csv", "--json")
    allocate = cli(workspace, "allocate", "--json")
    return Placed(workspace, intake, allocate)


@pytest.fixture
def keyed_copy(keyed: Path, tmp_path: Path) -> Path:
    return copy_workspace(keyed, tmp_path / "ws")


@pytest.fixture
def placed_copy(placed: Placed, tmp_path: Path) -> Path:
    return copy_workspace(placed.workspace, tmp_path / "ws")


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def first_paragraph(command: click.Command) -> str:
    text = (command.help or "").split("\n\n")[0]
    return " ".join(text.split())


@pytest.mark.slow  # one process per command; each start imports the whole gateway
async def test_help_works_for_every_command_and_subcommand(tmp_path: Path) -> None:
    paths = command_paths(main)
    assert {("keys", "generate"), ("db", "upgrade"), ("evidence", "verify")} <= set(paths)
    limit = asyncio.Semaphore(os.cpu_count() or 2)

    async def help_of(path: tuple[str, ...]) -> tuple[tuple[str, ...], int, str]:
        async with limit:
            process = await asyncio.create_subprocess_exec(
                *COMMAND,
                *path,
                "--help",
                cwd=tmp_path,
                env=environment(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
            return path, process.returncode or 0, output.decode()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(help_of(path)) for path in paths]
    for task in tasks:
        path, code, output = task.result()
        assert code == 0, f"{' '.join(path)} --help failed:\n{output}"
        assert "Usage:" in output
        assert f"{' '.join(path)} [OPTIONS]".strip() in output
        summary = first_paragraph(command_at(path))[:40]
        assert summary in " ".join(output.split()), f"{path}: help text missing"


def test_version(tmp_path: Path) -> None:
    result = cli(tmp_path, "--version")
    assert result.code == 0
    assert re.search(r"agency-gateway, version \d+\.\d+", result.stdout)


def test_keys_generate_creates_owner_only_files_and_never_overwrites(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    first = cli(workspace, "keys", "generate")
    assert first.code == 0, first.output
    contents = {}
    for name in SECRET_FILES:
        path = workspace / name
        assert path.is_file(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        contents[name] = path.read_bytes()
    assert (workspace / "var/keys/AGY_ALPHA/outbound.whsec").read_text().startswith("whsec_")
    assert (workspace / "var/keys/AGY_BETA/outbound.whsk").read_text().startswith("whsk_")
    assert (workspace / "var/keys/AGY_BETA/inbound.whpk").read_text().startswith("whpk_")
    created = first.stdout.count("created")
    assert created >= len(SECRET_FILES)
    # No key material on the terminal.
    for data in contents.values():
        assert data.decode().strip()[-20:] not in first.output

    second = cli(workspace, "keys", "generate")
    assert second.code == 0, second.output
    assert "created" not in second.stdout
    assert second.stdout.count("exists") == created
    assert {name: (workspace / name).read_bytes() for name in SECRET_FILES} == contents


def test_check_config_fails_before_keys_exist(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "ws")
    result = cli(workspace, "check-config")
    assert_clean_failure(result, 2)
    assert "keys generate" in result.stderr
    assert "var/keys/pii.keyring" in result.stderr


def test_check_config_succeeds_after_keys_generate(keyed_copy: Path) -> None:
    result = cli(keyed_copy, "check-config")
    assert result.code == 0, result.output
    assert re.search(r"configuration OK: \d+ agencies", result.stdout)
    assert "AGY_ALPHA" in result.stdout and "AGY_BETA" in result.stdout


def test_check_config_names_file_and_key_of_a_removed_key_file(keyed_copy: Path) -> None:
    (keyed_copy / "var/keys/AGY_ALPHA/inbound.whsec").unlink()
    result = cli(keyed_copy, "check-config")
    assert_clean_failure(result, 2)
    agency_file = keyed_copy / "config" / "agencies" / "agy_alpha.toml"
    assert f"{agency_file}: inbound.keys[0]" in result.stderr
    assert "does not exist" in result.stderr


def test_check_config_names_what_stops_authorisation_letters(keyed_copy: Path) -> None:
    (keyed_copy / "var/keys/lender-signing.key").write_text("not a key\n", encoding="utf-8")
    agency_file = keyed_copy / "config" / "agencies" / "agy_beta.toml"
    text = agency_file.read_text(encoding="utf-8")
    start = text.index("[registration]")
    end = text.find("\n[", start + 1)
    agency_file.write_text(text[:start] + (text[end + 1 :] if end >= 0 else ""), "utf-8")
    result = cli(keyed_copy, "check-config")
    assert_clean_failure(result, 2)
    assert "signing_key" in result.stderr
    assert "AGY_BETA" in result.stderr and "registration" in result.stderr
    assert "not a key" not in result.output


def test_check_config_names_file_and_key_of_a_typo(keyed_copy: Path) -> None:
    agency_file = keyed_copy / "config" / "agencies" / "agy_beta.toml"
    text = agency_file.read_text(encoding="utf-8")
    agency_file.write_text(
        text.replace("max_open_placements", "max_open_placement"), encoding="utf-8"
    )
    result = cli(keyed_copy, "check-config")
    assert_clean_failure(result, 2)
    assert f"{agency_file}: capacity.max_open_placement: unknown key" in result.stderr
    assert f"{agency_file}: capacity.max_open_placements: Field required" in result.stderr


def test_check_config_rejects_a_secret_written_inline(keyed_copy: Path) -> None:
    agency_file = keyed_copy / "config" / "agencies" / "agy_alpha.toml"
    secret = (keyed_copy / "var/keys/AGY_ALPHA/outbound.whsec").read_text().strip()
    text = agency_file.read_text(encoding="utf-8")
    agency_file.write_text(
        text.replace(
            'keys = [{ file = "var/keys/AGY_ALPHA/outbound.whsec" }]', f'keys = ["{secret}"]'
        ),
        encoding="utf-8",
    )
    result = cli(keyed_copy, "check-config")
    assert_clean_failure(result, 2)
    assert f"{agency_file}: signing.keys.0" in result.stderr
    assert secret.removeprefix("whsec_")[:16] not in result.output


def test_db_upgrade_creates_the_schema_where_the_config_says(keyed_copy: Path) -> None:
    result = cli(keyed_copy, "db", "upgrade")
    assert result.code == 0, result.output
    database = keyed_copy / "state" / "gateway.db"
    assert database.is_file()
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        [(revision,)] = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"cases", "placements", "evidence_leaves", "outbox"} <= tables
    assert f"at revision {revision}" in result.stdout
    # Running it again is harmless.
    assert cli(keyed_copy, "db", "upgrade").code == 0


def test_intake_then_allocate_report_json(placed: Placed) -> None:
    assert placed.intake.code == 0, placed.intake.output
    report = placed.intake.json()
    assert isinstance(report, dict)
    assert (report["rows"], report["inserted"], report["rejected"]) == (ACCOUNTS, ACCOUNTS, 0)
    assert placed.allocate.code == 0, placed.allocate.output
    allocation = placed.allocate.json()
    assert isinstance(allocation, dict)
    assert allocation["placed"] + allocation["unallocated"] == ACCOUNTS
    assert allocation["placed"] > 0
    assert sum(allocation["by_agency"].values()) == allocation["placed"]
    # The example config: webhook, SFTP and law-firm (email) agencies.
    assert set(allocation["by_agency"]) <= {"AGY_ALPHA", "AGY_BETA", "AGY_GAMMA", "ZHENGYI"}


def test_intake_and_allocate_again_change_nothing(placed_copy: Path) -> None:
    again = cli(placed_copy, "intake", "acc.csv", "--json")
    assert again.code == 0, again.output
    report = again.json()
    assert isinstance(report, dict)
    assert (report["inserted"], report["unchanged"]) == (0, ACCOUNTS)
    allocation = cli(placed_copy, "allocate", "--json").json()
    assert isinstance(allocation, dict)
    assert allocation["placed"] == 0


def test_intake_with_rejected_rows_exits_1_naming_every_bad_field(keyed_copy: Path) -> None:
    assert cli(keyed_copy, "db", "upgrade").code == 0
    [good, bad] = generate_accounts(2, seed=5, as_of=date(2026, 3, 1))
    write_csv([good, bad], keyed_copy / "acc.csv")
    text = (keyed_copy / "acc.csv").read_text()
    lines = text.splitlines(keepends=True)
    header = lines[0].strip().split(",")
    cells = next(csv.reader([lines[2]]))
    cells[header.index("dpd")] = "forty"
    cells[header.index("credit_grade")] = "Z"
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    (keyed_copy / "acc.csv").write_text(lines[0] + lines[1] + out.getvalue())
    result = cli(keyed_copy, "intake", "acc.csv", "--json")
    assert_clean_failure(result, 1)
    report = json.loads(result.stdout)
    assert (report["inserted"], report["rejected"]) == (1, 1)
    [error] = report["errors"]
    assert "acc.csv:3: " in error and "dpd: " in error and "credit_grade: " in error
    plain = cli(keyed_copy, "intake", "acc.csv")
    assert_clean_failure(plain, 1)
    assert "1 rejected" in plain.output


def test_the_demo_leaves_no_personal_data_in_clear_in_its_database_or_output(
    keyed_copy: Path,
) -> None:
    """Every channel runs (webhook, SFTP, email), packets are written, sealed, delivered and
    purged never: the database file and everything the demo printed or logged hold no debtor
    name, national id or phone in clear."""
    result = cli(keyed_copy, "--log-level", "info", "demo", "--once", "--accounts", "120")
    assert result.code == 0, result.output[-3000:]
    demo = keyed_copy / "var" / "demo"
    with (demo / "accounts.csv").open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    secrets = {v for r in rows for v in (r["name"], r["national_id"], *r["phones"].split(";"))}
    assert len(secrets) > 200
    database = demo / "gateway.db"
    stored = b"".join(
        p.read_bytes() for p in (database, database.with_name("gateway.db-wal")) if p.exists()
    )
    assert rows[0]["account_id"].encode() in stored  # the scan does see plain columns
    leaked = sorted(s for s in secrets if s.encode() in stored)
    assert leaked == [], f"{len(leaked)} personal values in clear in the database file"
    printed = [s for s in secrets if s in result.output]
    assert printed == [], f"{len(printed)} personal values in the demo's output and logs"


def test_mismatches_list_json_is_valid(placed_copy: Path) -> None:
    result = cli(placed_copy, "mismatches", "list", "--json")
    assert result.code == 0, result.output
    assert result.json() == []


def first_packet_leaf(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        [(seq,)] = conn.execute(
            "SELECT min(seq) FROM evidence_leaves WHERE kind = 'packet'"
        ).fetchall()
    assert isinstance(seq, int)
    return int(seq)


def test_evidence_verify_passes_then_names_a_tampered_leaf(placed_copy: Path) -> None:
    clean = cli(placed_copy, "evidence", "verify")
    assert clean.code == 0, clean.output
    assert "evidence log verifies" in clean.stdout
    database = placed_copy / "state" / "gateway.db"
    seq = first_packet_leaf(database)
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER evidence_leaves_no_update")
        [(body,)] = conn.execute("SELECT body FROM evidence_leaves WHERE seq = ?", (seq,))
        forged = body.replace(b"AGY_", b"AGX_", 1)
        assert forged != body
        conn.execute("UPDATE evidence_leaves SET body = ? WHERE seq = ?", (forged, seq))
    tampered = cli(placed_copy, "evidence", "verify")
    assert_clean_failure(tampered, 1)
    assert f"leaf {seq}" in tampered.output
    assert "does NOT verify" in tampered.stdout


def test_evidence_verify_reports_a_leaf_rewritten_as_text(placed_copy: Path) -> None:
    database = placed_copy / "state" / "gateway.db"
    seq = first_packet_leaf(database)
    with sqlite3.connect(database) as conn:
        conn.execute("DROP TRIGGER evidence_leaves_no_update")
        conn.execute(
            "UPDATE evidence_leaves SET body = replace(body, 'AGY_', 'AGX_') WHERE seq = ?", (seq,)
        )
    tampered = cli(placed_copy, "evidence", "verify")
    assert_clean_failure(tampered, 1)
    assert f"leaf {seq}" in tampered.output


def test_recall_of_an_unknown_case_is_a_clear_error(placed_copy: Path) -> None:
    result = cli(placed_copy, "recall", "AC_NO_SUCH_CASE", "--reason", "DECEASED")
    assert_clean_failure(result, 1)
    assert "case AC_NO_SUCH_CASE does not exist" in result.stderr


def test_recall_of_a_placed_case_then_again(placed_copy: Path) -> None:
    with sqlite3.connect(placed_copy / "state" / "gateway.db") as conn:
        [(case_id, placement_id)] = conn.execute(
            "SELECT case_id, id FROM placements ORDER BY id LIMIT 1"
        ).fetchall()
    first = cli(placed_copy, "recall", case_id, "--reason", "deceased")
    assert first.code == 0, first.output
    assert f"recalled {placement_id}" in first.stdout
    with sqlite3.connect(placed_copy / "state" / "gateway.db") as conn:
        [(state, reason)] = conn.execute(
            "SELECT state, recall_reason FROM placements WHERE id = ?", (placement_id,)
        ).fetchall()
    assert (state, reason) == ("recalled", "DECEASED")
    second = cli(placed_copy, "recall", case_id, "--reason", "DECEASED")
    assert_clean_failure(second, 1)
    assert "no open placement" in second.stderr


def test_missing_config_file_is_a_configuration_error(tmp_path: Path) -> None:
    result = cli(tmp_path, "--config", "nowhere.toml", "check-config")
    assert_clean_failure(result, 2)
    assert "nowhere.toml: file not found" in result.stderr
