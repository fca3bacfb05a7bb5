"""Personal data never in clear where it should not be, with agencies configured and packets
written and delivered: the demo's whole loop (intake, allocation, dispatch to the sandbox
webhook, SFTP and e-mail agencies, their events back, recalls, reconciliation, deletion
requests, an evidence bundle) runs in-process on accounts that carry KNOWN names, national ids
and phones, and the ``personal_data`` fixture then fails the test when any of them appears in
clear, as UTF-8, UTF-16 or GB18030 bytes, in:

* every log record of every logger, plain and as the JSON lines of ``gateway.logs``;
* the ``/metrics`` exposition of the gateway's registry;
* the SQLite database file and its WAL (packets for agencies whose contract allows names hold
  them sealed, never in clear);
* the files the gateway wrote under its demo directory (the evidence bundle among them),
  except the lender's intake files, which are the source of the data by design, and the
  sandbox agencies' own side (their SFTP inbox and mailbox receive the packets by design).
"""

import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from pytest_aiohttp import AiohttpClient
from rich.console import Console

import gateway.demo.runner as runner
from gateway.bootstrap import Gateway, build as build_gateway, load_config
from gateway.clock import ManualClock
from gateway.console import accounts
from gateway.demo.data import generate_accounts, national_id_check_digit
from gateway.logs import JsonFormatter
from gateway.store.tables import OutboxItem
from tests.console_world import PASSWORD, console_app
from tests.e2e.test_cli import keyed, keyed_copy  # noqa: F401  (fixtures)

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
KNOWN_NAMES = ("欧阳测试甲乙", "Zebediah Quillfeather-Testperson")
KNOWN_PHONES = ("+8613987650123", "+8618612349876")
_ID_BODIES = ("11010519491231987", "31011519880809654")
KNOWN_IDS = tuple(body + national_id_check_digit(body) for body in _ID_BODIES)
SEEDED = 6
"""The first accounts of each generated file get the known values (two debtors, three
accounts each, so the known people are placed with several agencies)."""


def _encodings(text: str) -> set[bytes]:
    found = {text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be")}
    try:
        found.add(text.encode("gb18030"))
    except UnicodeEncodeError:
        pass
    return found


@dataclass
class PersonalData:
    """The known values, and where the test saw them (``leaks``)."""

    values: tuple[str, ...] = KNOWN_NAMES + KNOWN_PHONES + KNOWN_IDS
    leaks: list[str] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)

    def scan(self, where: str, data: bytes) -> None:
        for value in self.values:
            # Phones are also searched without their +86, as a bare 11-digit number.
            forms = {value, value.removeprefix("+86")}
            if any(needle in data for form in forms for needle in _encodings(form)):
                self.leaks.append(f"{where}: {value}")

    def seed(self, accounts: list[Any]) -> list[Any]:
        seeded = []
        for n, account in enumerate(accounts):
            if n < SEEDED:
                person = n % 2
                account = account.model_copy(
                    update={
                        "debtor_id": f"DEBTOR-KNOWN-{person}",
                        "name": KNOWN_NAMES[person],
                        "national_id": KNOWN_IDS[person],
                        "phones": (KNOWN_PHONES[person],),
                    }
                )
            seeded.append(account)
        return seeded


@pytest.fixture
def personal_data(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[PersonalData]:
    """Seeds the known values into every account file the demo generates, captures every
    log record, keeps the gateways it builds, and after the test fails on any known value in
    clear in the logs or the metrics (files are scanned by the test, which knows where)."""
    known = PersonalData()
    generate = generate_accounts
    build = build_gateway

    def seeded_accounts(*args: Any, **kwargs: Any) -> list[Any]:
        return known.seed(list(generate(*args, **kwargs)))

    def kept(*args: Any, **kwargs: Any) -> Gateway:
        gateway = build(*args, **kwargs)
        known.gateways.append(gateway)
        return gateway

    monkeypatch.setattr(runner, "generate_accounts", seeded_accounts)
    monkeypatch.setattr(runner, "build", kept)
    caplog.set_level(logging.DEBUG)
    yield known
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    as_json = JsonFormatter()
    for record in caplog.records:
        where = f"log {record.name} {record.levelname}"
        known.scan(where, plain.format(record).encode("utf-8", "replace"))
        known.scan(where + " (json)", as_json.format(record).encode("utf-8", "replace"))
        known.scan(where + " (args)", repr(record.args).encode("utf-8", "replace"))
    for gateway in known.gateways:
        known.scan("/metrics", generate_latest(gateway.metrics.registry))
    assert known.leaks == [], "personal data in clear:\n" + "\n".join(sorted(set(known.leaks)))


INTAKE_FILES = {"accounts.csv", "accounts-day2.csv"}
AGENCY_SIDE = {"sftp", "mail", "firms"}


def gateway_files(demo_dir: Path) -> Iterator[Path]:
    """Files the gateway wrote: everything under the demo directory but the lender's intake
    files and the sandbox agencies' own side."""
    for path in sorted(demo_dir.rglob("*")):
        relative = path.relative_to(demo_dir)
        if not path.is_file() or path.name in INTAKE_FILES:
            continue
        if relative.parts[0] in AGENCY_SIDE:
            continue
        yield path


EXPORTS = (
    "/cases.csv?status=all",
    "/cases.xlsx?status=all",
    "/mismatches.csv?state=all",
    "/mismatches.xlsx?state=all",
)
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


async def purge_then_export(
    workspace: Path, demo_dir: Path, aiohttp_client: AiohttpClient
) -> dict[str, bytes]:
    """After the loop: a gateway on the demo's database a retention period later purges the
    delivered packets (the database file is scanned after it), and a viewer, a role that
    may not see personal data, exports the console's lists. Returns the exports' bytes."""
    settings, agencies = load_config(workspace / "config" / "gateway.toml")
    url = f"sqlite:///{(demo_dir / 'gateway.db').resolve()}"
    settings = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": url})}
    )
    days = settings.privacy.packet_retention_days
    assert days > 0
    later = datetime.now(UTC) + timedelta(days=days + 2)
    gateway = build_gateway(settings, agencies, clock=ManualClock(later.timestamp()))
    try:
        assert await gateway.purge_packets() > 0
        async with gateway.db.connect() as conn:
            left = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.state == "delivered", OUTBOX.c.payload_purged_at.is_(None))
                )
            ).scalar_one()
        assert left == 0
        await accounts.add_user(gateway.db, "vic", "viewer", PASSWORD, now=later)
        client = await aiohttp_client(console_app(gateway))
        [token] = LOGIN_TOKEN.findall(await (await client.get("/login")).text())
        response = await client.post(
            "/login",
            data={"login_token": token, "name": "vic", "password": PASSWORD, "next": "/"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        exported = {}
        for path in EXPORTS:
            answer = await client.get(path)
            assert answer.status == 200, (path, await answer.text())
            exported[path] = await answer.read()
        await client.close()
        return exported
    finally:
        await gateway.aclose()


async def test_no_known_personal_data_in_clear_after_the_whole_loop(
    request: pytest.FixtureRequest,
    personal_data: PersonalData,
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_client: AiohttpClient,
) -> None:
    workspace: Path = request.getfixturevalue("keyed_copy")
    # Relative paths (keys, var/demo) are anchored at the working directory, as for the CLI.
    monkeypatch.chdir(workspace)
    options = runner.DemoOptions(
        once=True, accounts=60, seed=5, fault_rate=0.0, fresh=True, as_json=True
    )
    summary = await runner.run_demo(
        workspace / "config" / "gateway.toml", options, console=Console(file=io.StringIO())
    )
    demo_dir = workspace / "var" / "demo"
    intake = (demo_dir / "accounts.csv").read_bytes()
    exported = await purge_then_export(workspace, demo_dir, aiohttp_client)
    for name, body in exported.items():
        personal_data.scan(f"export {name} (viewer)", body)
    # The seed reached the lender's file, and packets went out on every channel.
    assert all(v.encode() in intake for v in personal_data.values)
    sandboxes = summary["sandbox"]
    assert isinstance(sandboxes, list) and len(sandboxes) >= 3, sandboxes
    scanned = []
    for path in gateway_files(demo_dir):
        personal_data.scan(str(path.relative_to(workspace)), path.read_bytes())
        scanned.append(path.name)
    assert "gateway.db" in scanned and any(n.startswith("evidence-") for n in scanned), scanned
    # The scan is not blind: the packets delivered to the agencies' side carry the known
    # names and ids by contract, and the same scan finds them there.
    delivered = PersonalData()
    for path in sorted(demo_dir.rglob("*")):
        if path.is_file() and path.relative_to(demo_dir).parts[0] in AGENCY_SIDE:
            delivered.scan(str(path.relative_to(demo_dir)), path.read_bytes())
    assert delivered.leaks, "no packet with a known value reached a sandbox agency"
