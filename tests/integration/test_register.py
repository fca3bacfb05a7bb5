"""The agency register against a real store (SQLite and PostgreSQL): the register file
imported (twice: the second changes nothing), the gate in real allocation rounds (a
suspended, a lapsed, a not-yet-started and an unregistered agency get nothing, and the
recorded reasons name them), a renewal refused for a suspended agency, the register job
giving each reminder once and recalling a terminated agency's open placements once, and
every change in the history and the evidence log. Then the CLI and the console page."""

import hashlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from click.testing import CliRunner

from gateway.bootstrap import build
from gateway.cli.root import main
from gateway.clock import ManualClock, to_datetime
from gateway.console import accounts
from gateway.errors import RegisterRefused
from gateway.monitoring.cluster import read_cluster
from gateway.register.importing import import_register
from gateway.register.lapse import check_register
from gateway.register.store import read_entry, read_history, set_status
from gateway.store.case_tables import AllocationDecision
from gateway.store.migrate import upgrade
from gateway.store.register_tables import AgencyRegisterReminderRow
from gateway.store.tables import Case, EvidenceLeaf, Placement
from tests.case_world import CaseWorld, account
from tests.console_world import console_app

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai, 2 March
OPEN, SUSP, LAPSED, LATER, NONE = "AGY_OPEN", "AGY_SUSP", "AGY_LAPSED", "AGY_LATER", "AGY_NONE"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')

P = Placement.__table__.c  # type: ignore[attr-defined]
C = Case.__table__.c  # type: ignore[attr-defined]
D = AllocationDecision.__table__.c  # type: ignore[attr-defined]
L = EvidenceLeaf.__table__.c  # type: ignore[attr-defined]
REMINDERS = AgencyRegisterReminderRow.__table__  # type: ignore[attr-defined]


def register_file(folder: Path) -> Path:
    """OPEN's contract ends in 8 days (a 30-day reminder is due); its licence is a file."""
    (folder / "open-licence.pdf").write_bytes(b"%PDF-1.4 licence of AGY_OPEN")

    def agency(
        agency_id: str,
        *,
        start: str = "2025-01-01",
        end: str = "2027-12-31",
        status: str = "admitted",
        extra: str = "",
    ) -> str:
        return f"""
[[agencies]]
id = "{agency_id}"
legal_name = "{agency_id} 有限公司"
registration_number = "91310115MA1K3ABC2D"
status = "{status}"
contract = {{ reference = "C-{agency_id}", start = {start}, end = {end} }}
dpa = {{ reference = "DPA-{agency_id}", signed_on = 2024-12-20 }}
deposit = {{ amount_minor = 1000000, currency = "CNY" }}
review = {{ by = "risk committee", on = 2024-12-15, conclusion = "admitted" }}
{extra}"""

    text = "".join(
        [
            agency(
                OPEN,
                end="2026-03-10",
                extra='[[agencies.qualifications]]\nkind = "business_licence"\n'
                'file = "open-licence.pdf"\nissued = 2020-01-01\nexpires = 2030-12-31\n',
            ),
            agency(SUSP, status="suspended"),
            agency(LAPSED, end="2026-02-28"),
            agency(LATER, start="2026-04-01"),
        ]
    )
    path = folder / "register.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    spec = {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}
    _config, settings, agencies = make_config(
        database_url=database_url,
        agencies={a: spec for a in (OPEN, SUSP, LAPSED, LATER, NONE)},
        register={"enforce": True},
    )
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    await upgrade(gateway.db)
    yield CaseWorld(gateway, clock, tmp_path)
    await gateway.aclose()


async def register_leaves(world: CaseWorld, agency_id: str) -> list[dict[str, Any]]:
    return await world.leaves("register", f"agency:{agency_id}")


async def test_the_register_gates_allocation_and_its_lapse_recalls_once(world: CaseWorld) -> None:
    gateway, now = world.gateway, to_datetime(world.clock.now())
    path = register_file(world.tmp_path)
    first = await import_register(
        gateway.db, path, actor="ops:ana", now=now, configured=gateway.agencies
    )
    assert first.admitted == [OPEN, SUSP, LAPSED, LATER] and first.unconfigured == []
    async with gateway.db.connect() as conn:
        entry = await read_entry(conn, OPEN)
    [licence] = entry.qualifications
    assert licence.sha256 == hashlib.sha256(b"%PDF-1.4 licence of AGY_OPEN").hexdigest()
    leaves = await register_leaves(world, OPEN)
    assert [(x["action"], x["revision"]) for x in leaves] == [("admit", 1), ("qualify", 2)]
    async with gateway.db.connect() as conn:
        snapshot = await read_cluster(conn, agencies={}, now=world.clock.now())
    assert snapshot.expiry_days == {
        (OPEN, "contract"): 8.0,
        (OPEN, "business_licence"): float((date(2030, 12, 31) - now.date()).days),
        (SUSP, "contract"): float((date(2027, 12, 31) - now.date()).days),
        (LAPSED, "contract"): -2.0,
        (LATER, "contract"): float((date(2027, 12, 31) - now.date()).days),
    }
    again = await import_register(gateway.db, path, actor="ops:ana", now=now)
    assert again.unchanged == [OPEN, SUSP, LAPSED, LATER] and not again.changed
    assert len(await register_leaves(world, OPEN)) == 2

    # A round: OPEN takes everything; every other agency's verdict is the register's refusal.
    await world.intake([account(n) for n in range(1, 7)])
    assert await world.allocate() == 6
    placed = await world.rows(
        sa.select(P.agency_id, sa.func.count().label("n")).group_by(P.agency_id)
    )
    assert [(r["agency_id"], r["n"]) for r in placed] == [(OPEN, 6)]
    [decision] = await world.rows(sa.select(D.candidates).limit(1))
    verdicts = {c["agency"]: c["verdict"] for c in json.loads(decision["candidates"])}
    assert verdicts == {
        OPEN: "eligible",
        SUSP: "register: suspended (register import register.toml)",
        LAPSED: "register: contract ended 2026-02-28",
        LATER: "register: contract starts 2026-04-01",
        NONE: "register: not in the agency register",
    }

    # OPEN suspended: the next cases wait, their reason naming each agency and why; its
    # placements stay with it, but cannot be renewed.
    # The suspension lands between a round's plan and its write: the write refuses too.
    await world.intake([account(n) for n in range(7, 9)])
    found, result, planned = await gateway.placements.plan(now)
    assert planned.placed == 2
    async with gateway.db.transaction() as conn:
        await set_status(conn, OPEN, "suspended", reason="audit", actor="ops:bo", now=now)
    written = await gateway.placements.commit(found, result, planned, now=now)
    assert (written.placed, written.changed, dict(written.by_agency)) == (0, 2, {})
    assert len(await world.placements()) == 6
    assert await world.allocate() == 0
    reasons = {
        r["unallocated_reason"]
        for r in await world.rows(sa.select(C.unallocated_reason).where(C.status == "open"))
    }
    assert reasons == {
        f"no agency can take it ({LAPSED}: register: contract ended 2026-02-28; "
        f"{LATER}: register: contract starts 2026-04-01; {NONE}: register: not in the agency "
        f"register; {OPEN}: register: suspended (audit); {SUSP}: register: suspended "
        "(register import register.toml))"
    }
    some = (await world.placements())[0]["id"]
    with pytest.raises(RegisterRefused, match=f"{OPEN} may not take cases now.*suspended"):
        await gateway.expiry.renew(some, 30, actor="ops:bo")

    # The register job: OPEN's contract ends in 8 days (the 30-day reminder, once); a
    # suspension is no lapse: nothing is recalled.
    gate = gateway.placements.register
    assert gate is not None
    settings = gateway.settings.agency_register
    report = await check_register(gateway.db, gateway.placements, settings, gate, now=now)
    assert [(e.agency_id, e.subject, e.days_left, d) for e, d in report.reminded] == [
        (OPEN, "contract", 8, 30)
    ]
    # LAPSED's lapse is acted on once (it held nothing).
    assert report.recalled == {LAPSED: []} and report.lapsed == {
        LAPSED: "CONTRACT_END: contract ended 2026-02-28"
    }
    report = await check_register(gateway.db, gateway.placements, settings, gate, now=now)
    assert report.reminded == [] and report.recalled == {}
    assert len(await world.rows(sa.select(REMINDERS))) == 1

    # Terminated: its open placements are recalled with the lapse's reason, once.
    async with gateway.db.transaction() as conn:
        await set_status(
            conn, OPEN, "terminated", reason="contract not renewed", actor="ops:bo", now=now
        )
    report = await check_register(gateway.db, gateway.placements, settings, gate, now=now)
    assert sorted(report.recalled[OPEN]) == sorted(p["id"] for p in await world.placements())
    ended = await world.rows(sa.select(P.state, P.recall_reason).distinct())
    assert ended == [{"state": "recalled", "recall_reason": "AGENCY_TERMINATED"}]
    assert len(await world.packets("placement.recalled")) == 6
    report = await check_register(gateway.db, gateway.placements, settings, gate, now=now)
    assert report.recalled == {}
    assert len(await world.packets("placement.recalled")) == 6

    # Every change is a revision with its history row and its leaf.
    async with gateway.db.connect() as conn:
        history = await read_history(conn, OPEN)
        entry = await read_entry(conn, OPEN)
    assert [(c.revision, c.action, c.actor) for c in history] == [
        (4, "terminate", "ops:bo"),
        (3, "suspend", "ops:bo"),
        (2, "qualify", "ops:ana"),
        (1, "admit", "ops:ana"),
    ]
    assert history[0].changes["status"] == ["suspended", "terminated"]
    assert entry.revision == 4 and entry.lapse_recalled_on == now.date()
    leaves = await register_leaves(world, OPEN)
    assert [(x["action"], x["revision"], x["reason"]) for x in leaves][2:] == [
        ("suspend", 3, "audit"),
        ("terminate", 4, "contract not renewed"),
    ]
    # Blacklisted is final.
    async with gateway.db.transaction() as conn:
        await set_status(conn, OPEN, "blacklisted", reason="fraud", actor="ops:bo", now=now)
    with pytest.raises(RegisterRefused, match="blacklisted to admitted: it is final"):
        async with gateway.db.transaction() as conn:
            await set_status(conn, OPEN, "admitted", reason="oops", actor="ops:bo", now=now)


def test_the_cli_lists_imports_changes_and_shows_the_register(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, settings, _agencies = make_config(
        database_url="sqlite:///" + str(tmp_path / "cli.db"),
        agencies={a: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"} for a in (OPEN, NONE)},
        register={"enforce": True},
    )
    monkeypatch.chdir(settings.base_dir)
    monkeypatch.delenv("GATEWAY_OPS_USER", raising=False)
    monkeypatch.delenv("GATEWAY_OPS_TOKEN", raising=False)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        result = runner.invoke(main, ["--config", str(config_path), *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--json" in args else result.output

    assert runner.invoke(main, ["--config", str(config_path), "db", "upgrade"]).exit_code == 0
    path = register_file(tmp_path)
    imported = cli("register", "import", str(path), "--json")
    assert imported["admitted"] == [OPEN, SUSP, LAPSED, LATER]
    assert imported["unconfigured"] == [SUSP, LAPSED, LATER]
    listed = {
        r["agency_id"]: r
        for r in cli("register", "list", "--on", "2026-03-02", "--json")["agencies"]
    }
    assert listed[OPEN]["allowed"] and listed[OPEN]["next_lapse"] == "2026-03-11"
    assert listed[NONE]["reasons"] == ["not in the agency register"]
    assert listed[LATER]["reasons"] == ["contract starts 2026-04-01"]
    assert cli("register", "suspend", OPEN, "--reason", "audit", "--json")["status"] == "suspended"
    cli("register", "terminate", SUSP, "--reason", "x")
    blocked = runner.invoke(
        main, ["--config", str(config_path), "register", "suspend", SUSP, "--reason", "again"]
    )
    assert blocked.exit_code != 0 and "cannot go from terminated to suspended" in blocked.output
    assert (
        cli("register", "share", OPEN, "5000", "--reason", "evaluation", "--json")["share_bps"]
        == 5000
    )
    shown = cli("register", "show", OPEN, "--json")
    assert [c["action"] for c in shown["history"]] == ["share", "suspend", "qualify", "admit"]
    assert shown["history"][0]["actor"].startswith("ops:")  # the operating-system user
    # Today (the CLI's real clock) its contract, which ended on 10 March, refuses it too.
    assert shown["standing"]["reasons"] == ["suspended (audit)", "contract ended 2026-03-10"]
    reminders = cli("register", "reminders", "--days", "3650", "--json")["expiring"]
    assert [(r["agency_id"], r["subject"]) for r in reminders][:1] == [(LAPSED, "contract")]


async def test_the_console_page_shows_standing_and_changes_it_with_csrf_and_role(
    make_config: Any, tmp_path: Path, aiohttp_client: Any
) -> None:
    _config, settings, agencies = make_config(
        database_url="sqlite:///" + str(tmp_path / "console.db"),
        agencies={a: {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"} for a in (OPEN, NONE)},
        register={"enforce": True},
        console={"language": "en"},
    )
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    try:
        await upgrade(gateway.db)
        for name, role in (("ada", "admin"), ("olga", "operator"), ("vic", "viewer")):
            await accounts.add_user(gateway.db, name, role, PASSWORD, now=START)
        await import_register(gateway.db, register_file(tmp_path), actor="ops:ana", now=START)

        async def login(name: str) -> tuple[TestClient[web.Request, web.Application], str]:
            client: TestClient[web.Request, web.Application] = await aiohttp_client(
                console_app(gateway)
            )
            form = await (await client.get("/login")).text()
            [token] = LOGIN_TOKEN.findall(form)
            answer = await client.post(
                "/login",
                data={"login_token": token, "name": name, "password": PASSWORD, "next": "/"},
                allow_redirects=False,
            )
            assert answer.status == 303
            return client, CSRF.findall(await (await client.get("/")).text())[0]

        vic, vic_csrf = await login("vic")
        listing = await (await vic.get("/register")).text()
        assert "Agency register" in listing and "contract ended 2026-02-28" in listing
        assert "Ending within 60 days" in listing and "2026-03-10" in listing
        assert "not in the agency register" in listing
        page = await (await vic.get(f"/register/{OPEN}")).text()
        assert "Suspend" not in page and "business_licence" in page
        refused = await vic.post(
            f"/register/{OPEN}/status",
            data={"csrf_token": vic_csrf, "action": "suspend", "reason": "x"},
            allow_redirects=False,
        )
        assert refused.status == 403 and "Not allowed" in await refused.text()

        olga, csrf = await login("olga")
        page = await (await olga.get(f"/register/{OPEN}")).text()
        assert 'value="suspend"' in page and 'value="terminate"' not in page
        forged = await olga.post(
            f"/register/{OPEN}/status",
            data={"action": "suspend", "reason": "audit"},
            allow_redirects=False,
        )
        assert forged.status == 403
        done = await olga.post(
            f"/register/{OPEN}/status",
            data={"csrf_token": csrf, "action": "suspend", "reason": "audit"},
            allow_redirects=False,
        )
        assert done.status == 303 and done.headers["Location"] == f"/register/{OPEN}?done=suspend"
        no_role = await olga.post(
            f"/register/{OPEN}/status",
            data={"csrf_token": csrf, "action": "blacklist", "reason": "x"},
            allow_redirects=False,
        )
        assert no_role.status == 409
        page = await (await olga.get(f"/register/{OPEN}")).text()
        assert "suspended (audit)" in page and "olga" in page and 'value="reinstate"' in page
        async with gateway.db.connect() as conn:
            assert (await read_entry(conn, OPEN)).status == "suspended"
        assert [
            x["actor"]
            for x in await CaseWorld(gateway, clock, tmp_path).leaves("register", f"agency:{OPEN}")
        ][-1] == "olga"
    finally:
        await gateway.aclose()
