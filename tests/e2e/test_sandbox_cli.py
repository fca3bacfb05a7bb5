"""``agency-gateway sandbox`` beside ``agency-gateway serve``, both real console scripts in
subprocesses, on the repository's config with free ports: the sandbox stands in for every
agency where the config points, ``serve`` dispatches to them over the real protocols, and the
agencies' answers (signed webhook events, SFTP result files) come back and are stored. A
taken port is refused, naming the agency."""

import json
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from gateway.demo.data import generate_accounts, write_csv
from tests.e2e.test_cli import COMMAND, assert_clean_failure, cli, environment, make_workspace

pytestmark = pytest.mark.slow

PORTS = {"8088": "server", "18091": "alpha", "18092": "beta", "18093": "gamma"}
PORTS |= {"18025": "smtp", "18993": "imap"}
WAIT_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def repoint(workspace: Path) -> dict[str, int]:
    """Give every listening port of the config a free one; answer SFTP results quickly."""
    ports = {name: free_port() for name in PORTS.values()}
    for path in [workspace / "config" / "gateway.toml", *(workspace / "config").glob("agencies/*")]:
        text = path.read_text(encoding="utf-8")
        for old, name in PORTS.items():
            text = re.sub(rf"\b{old}\b", str(ports[name]), text)
        text = re.sub(r"(?m)^poll_interval_seconds = 30$", "poll_interval_seconds = 1", text)
        path.write_text(text, encoding="utf-8")
    return ports


def start(workspace: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args],
        cwd=workspace,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def events_by_agency(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT agency_id, count(*) FROM agency_events GROUP BY agency_id")
        return dict(rows.fetchall())


def placed_agencies(database: Path) -> set[str]:
    with sqlite3.connect(database) as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT agency_id FROM placements")}


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    ws = make_workspace(tmp_path / "ws")
    repoint(ws)
    assert cli(ws, "keys", "generate").code == 0
    assert cli(ws, "db", "upgrade").code == 0
    assert cli(ws, "register", "import").code == 0
    write_csv(generate_accounts(150, seed=5, as_of=date(2026, 3, 1)), ws / "acc.csv")
    assert cli(ws, "intake", "acc.csv", "--json").code == 0
    assert cli(ws, "allocate", "--json").code == 0
    yield ws


def test_sandbox_answers_what_serve_sends_over_the_real_protocols(workspace: Path) -> None:
    database = workspace / "state" / "gateway.db"
    placed = placed_agencies(database)
    awaited = placed & {"AGY_ALPHA", "AGY_BETA", "AGY_GAMMA"}
    assert {"AGY_GAMMA"} <= awaited and awaited & {"AGY_ALPHA", "AGY_BETA"}
    sandbox = start(workspace, "sandbox", "--json", "--interval", "0.5")
    serve: subprocess.Popen[str] | None = None
    try:
        ready = json.loads(sandbox.stdout.readline() if sandbox.stdout else "")
        assert ready["event"] == "ready"
        channels = {p["agency"]: p["channel"] for p in ready["partners"]}
        assert channels["AGY_ALPHA"] == "webhook" and channels["AGY_GAMMA"] == "sftp"
        assert channels["ZHENGYI"] == "email"
        serve = start(workspace, "serve")
        deadline = time.monotonic() + WAIT_SECONDS
        seen: dict[str, int] = {}
        while time.monotonic() < deadline and not awaited <= seen.keys():
            assert serve.poll() is None, stop(serve)
            time.sleep(1)
            seen = events_by_agency(database)
        assert awaited <= seen.keys(), f"events only from {seen}"
    finally:
        if serve is not None:
            serve_code, _, serve_err = stop(serve)
        code, out, err = stop(sandbox)
    assert code == 0, err
    assert "Traceback" not in err
    if serve is not None:
        assert serve_code == 0, serve_err
    stopped = json.loads(out.strip().splitlines()[-1])
    assert stopped["event"] == "stopped"
    stats = {s["agency_id"]: s for s in stopped["stats"]}
    webhook = [a for a in ("AGY_ALPHA", "AGY_BETA") if a in awaited]
    assert all(stats[a]["packets_received"] > 0 for a in webhook)
    assert stats["AGY_GAMMA"]["batches_received"] > 0 and stats["AGY_GAMMA"]["result_files"] > 0


def test_a_taken_port_is_refused_naming_the_agency(workspace: Path) -> None:
    text = (workspace / "config" / "agencies" / "agy_alpha.toml").read_text(encoding="utf-8")
    port = int(re.findall(r"127\.0\.0\.1:(\d+)/hooks", text)[0])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = cli(workspace, "sandbox", "--agency", "AGY_ALPHA")
    assert_clean_failure(result, 2)
    assert f"AGY_ALPHA: endpoint.url port {port} is taken" in result.output


def test_an_unknown_agency_is_refused(workspace: Path) -> None:
    result = cli(workspace, "sandbox", "--agency", "NOPE")
    assert_clean_failure(result, 2)
    assert "--agency NOPE: no such agency" in result.output
