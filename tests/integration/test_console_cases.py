"""Cases as a first-class object: the read side (gateway.cases.views) on SQLite and
PostgreSQL, ``cases list / show / history`` in the CLI, ``/api/v1/cases`` and the console's
case list and case page, all over the console world (tests/console_world.py: real intake,
allocation, dispatch and signed agency events), with holds put on through the real case
service.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.cases.views import CaseFilter, case_detail, list_cases
from gateway.cli import main
from gateway.clock import to_datetime
from gateway.console import accounts
from gateway.contracts.openapi import openapi_document
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.store.tables import Case, EvidenceLeaf, Placement
from tests.console_world import (
    ALPHA,
    BETA,
    PASSWORD,
    ConsoleWorld,
    StubAgency,
    build_world,
    console_app,
)

Client = TestClient[web.Request, Any]
CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
C, P = CASES.c, PLACEMENTS.c
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@pytest.fixture
async def world(
    make_config: Any, tmp_path: Path, aiohttp_server: AiohttpServer, database_url: str
) -> AsyncIterator[ConsoleWorld]:
    """The console world on each database backend."""
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    built = await build_world(
        make_config, tmp_path, str(agency.make_url("/hooks")), stub, database_url=database_url
    )
    yield built
    await built.gateway.aclose()


@dataclass
class Served:
    world: ConsoleWorld
    server: TestServer
    make_client: AiohttpClient

    async def login(self, name: str) -> tuple[Client, str]:
        """A client logged in as ``name`` and its session's CSRF token."""
        client: Client = await self.make_client(self.server)
        form = await (await client.get("/login")).text()
        [token] = LOGIN_TOKEN.findall(form)
        response = await client.post(
            "/login",
            data={"login_token": token, "name": name, "password": PASSWORD, "next": "/"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        home = await (await client.get("/")).text()
        return client, CSRF.findall(home)[0]


@pytest.fixture
async def served(
    make_config: Any,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Served]:
    """The console world (SQLite) served by the real app on loopback."""
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    built = await build_world(make_config, tmp_path, str(agency.make_url("/hooks")), stub)
    gateway = built.gateway
    app = console_app(gateway)
    yield Served(built, await aiohttp_server(app), aiohttp_client)
    await gateway.aclose()


async def _ids(world: ConsoleWorld, target: CaseFilter, **paging: Any) -> list[str]:
    async with world.gateway.db.snapshot() as conn:
        page = await list_cases(conn, target, **paging)
    return [row["id"] for row in page["items"]]


async def _scalars(world: ConsoleWorld, query: Any) -> list[Any]:
    async with world.gateway.db.snapshot() as conn:
        return list((await conn.execute(query)).scalars().all())


async def _all(world: ConsoleWorld, query: Any) -> list[Any]:
    async with world.gateway.db.snapshot() as conn:
        return list((await conn.execute(query)).all())


def _placement(world: ConsoleWorld, agency_id: str, n: int) -> tuple[str, str]:
    """(placement id, case id) of the agency's n-th placement."""
    pid, case_id, _balance = world.placements[agency_id][n]
    return pid, case_id


async def _hold(world: ConsoleWorld, case_id: str, code: str = "DISPUTE") -> None:
    await world.gateway.cases.hold(case_id, code, actor="ops:olga", note="debtor disputes it")


# --- the read side, on each backend --------------------------------------------------------


async def test_the_list_filters_and_finds_a_case_by_any_id(world: ConsoleWorld) -> None:
    every = sorted(await _scalars(world, sa.select(C.id)))
    assert await _ids(world, CaseFilter(), limit=500) == every
    placed = sorted(await _scalars(world, sa.select(C.id).where(C.status == "placed")))
    assert placed and await _ids(world, CaseFilter(statuses=("placed",)), limit=500) == placed
    with_alpha = sorted(
        await _scalars(
            world,
            sa.select(P.case_id).where(P.agency_id == ALPHA, P.state.in_(OPEN_PLACEMENT_STATES)),
        )
    )
    assert with_alpha and with_alpha != every
    assert await _ids(world, CaseFilter(agencies=(ALPHA,)), limit=500) == with_alpha
    bucket = (await _scalars(world, sa.select(C.bucket).order_by(C.id)))[0]
    in_bucket = sorted(await _scalars(world, sa.select(C.id).where(C.bucket == bucket)))
    assert await _ids(world, CaseFilter(buckets=(bucket,)), limit=500) == in_bucket

    pid, case_id = _placement(world, ALPHA, 1)  # acknowledged with the ref "ALPHA-1"
    debtor = (await _scalars(world, sa.select(C.debtor_id).where(C.id == case_id)))[0]
    of_debtor = sorted(await _scalars(world, sa.select(C.id).where(C.debtor_id == debtor)))
    for term in (case_id, pid, "ALPHA-1", "alpha-1", f"  {case_id} "):
        assert await _ids(world, CaseFilter(search=term)) == [case_id], term
    assert await _ids(world, CaseFilter(search=debtor)) == of_debtor
    assert await _ids(world, CaseFilter(debtor_id=debtor)) == of_debtor
    assert await _ids(world, CaseFilter(search="ALPHA-")) == []  # exact ids, not prefixes
    assert await _ids(world, CaseFilter(search=case_id, statuses=("closed",))) == []

    pages: list[str] = []
    after = None
    while True:
        async with world.gateway.db.snapshot() as conn:
            page = await list_cases(conn, CaseFilter(), limit=5, after=after)
        assert page["total"] == len(every) and len(page["items"]) <= 5
        pages += [row["id"] for row in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert pages == every


async def test_a_hold_shows_in_the_filters_the_detail_and_the_history(
    world: ConsoleWorld,
) -> None:
    pid, case_id = _placement(world, ALPHA, 2)
    await _hold(world, case_id)
    assert await _ids(world, CaseFilter(held=True)) == [case_id]
    assert await _ids(world, CaseFilter(hold_codes=("dispute",))) == [case_id]
    assert await _ids(world, CaseFilter(hold_codes=("deceased",))) == []
    assert case_id not in await _ids(world, CaseFilter(held=False), limit=500)
    assert case_id not in await _ids(world, CaseFilter(agencies=(ALPHA,)), limit=500)
    async with world.gateway.db.snapshot() as conn:
        row = (await list_cases(conn, CaseFilter(search=pid)))["items"][0]
        held = await case_detail(conn, case_id)
    assert (row["status"], row["holds"], row["agency_id"]) == ("held", ["DISPUTE"], None)
    assert held["case"]["status"] == "held" and "pii" not in held["case"]
    [hold] = held["holds"]
    assert (hold["code"], hold["source"], hold["active"]) == ("DISPUTE", "ops", True)
    [placement] = held["placements"]
    assert (placement["id"], placement["state"], placement["open"]) == (pid, "recalled", False)
    assert [h["event"] for h in held["history"]] == ["place", "hold"]
    assert held["history"][-1]["actor"] == "ops:olga"

    await world.gateway.cases.release(case_id, "DISPUTE", actor="ops:olga", note="settled")
    async with world.gateway.db.snapshot() as conn:
        released = await case_detail(conn, case_id)
    assert released["holds"][0]["active"] is False
    assert released["holds"][0]["release_note"] == "settled"
    assert [(h["from_status"], h["to_status"]) for h in released["history"]] == [
        ("open", "placed"),
        ("placed", "held"),
        ("held", "open"),
    ]
    assert await _ids(world, CaseFilter(held=True)) == []


async def test_a_case_the_round_left_unplaced_says_why(world: ConsoleWorld) -> None:
    _pid, case_id = _placement(world, ALPHA, 2)
    await _hold(world, case_id)
    await world.gateway.cases.release(case_id, "DISPUTE", actor="ops:olga", note="settled")
    assert await _ids(world, CaseFilter(unallocated=True), limit=500) == []
    await world.gateway.placements.allocate()  # it had ALPHA's tier, and no tier is after it
    assert await _ids(world, CaseFilter(unallocated=True), limit=500) == [case_id]
    assert case_id not in await _ids(world, CaseFilter(unallocated=False), limit=500)
    async with world.gateway.db.snapshot() as conn:
        detail = await case_detail(conn, case_id)
    assert detail["case"]["status"] == "open" and detail["case"]["unallocated_reason"]
    decision = detail["unallocated_decision"]
    assert decision is not None and decision["chosen_agency"] is None
    assert case_id in decision["case_ids"] and decision["reason"]


async def test_each_placement_says_why_its_agency_was_chosen(world: ConsoleWorld) -> None:
    pid, case_id = _placement(world, BETA, 0)
    async with world.gateway.db.snapshot() as conn:
        detail = await case_detail(conn, case_id)
    [placement] = detail["placements"]
    decision = placement["decision"]
    assert placement["id"] == pid and decision is not None
    assert decision["chosen_agency"] == BETA and case_id in decision["case_ids"]
    verdicts = {c["agency"]: c["verdict"] for c in decision["candidates"]}
    assert set(verdicts) == {ALPHA, BETA} and verdicts[BETA] == "eligible"
    assert detail["unallocated_decision"] is None


# --- CLI --------------------------------------------------------------------------------------


async def _cli(world: ConsoleWorld, *args: str) -> Result:
    """Run the CLI against the world's configuration, in a thread (it runs its own loop)."""
    config = world.gateway.settings.base_dir / "gateway.toml"
    runner = CliRunner()
    argv = ["--config", str(config), *args]
    # Wide enough that the tables print whole ids.
    return await asyncio.to_thread(runner.invoke, main, argv, env={"COLUMNS": "300"})


async def test_cli_lists_shows_and_tells_the_history_of_cases(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = served.world
    monkeypatch.chdir(world.gateway.settings.base_dir)  # the config's paths are relative
    pid, case_id = _placement(world, ALPHA, 1)
    await _hold(world, case_id, "COMPLAINT")
    found = await _cli(world, "cases", "list", "--search", "ALPHA-1", "--json")
    assert found.exit_code == 0, found.output
    page = json.loads(found.output)
    assert [r["id"] for r in page["items"]] == [case_id] and page["total"] == 1
    assert page["items"][0]["holds"] == ["COMPLAINT"]
    first = json.loads((await _cli(world, "cases", "list", "--limit", "2", "--json")).output)
    second = await _cli(world, "cases", "list", "--limit", "2", "--after", first["next_after"],
                        "--json")  # fmt: skip
    assert json.loads(second.output)["items"][0]["id"] > first["next_after"]
    held = json.loads((await _cli(world, "cases", "list", "--held", "--json")).output)
    assert [r["id"] for r in held["items"]] == [case_id]
    table = await _cli(world, "cases", "list", "--agency", ALPHA, "--status", "placed")
    assert table.exit_code == 0 and _placement(world, ALPHA, 0)[1] in table.output
    assert case_id not in table.output

    shown = json.loads((await _cli(world, "cases", "show", case_id, "--json")).output)
    assert shown["case"]["id"] == case_id and shown["placements"][0]["id"] == pid
    assert shown["holds"][0]["code"] == "COMPLAINT" and "pii" not in shown["case"]
    text = await _cli(world, "cases", "show", case_id)
    assert text.exit_code == 0, text.output
    for part in ("Holds", "Placements", "Why this agency", "History", pid, "COMPLAINT"):
        assert part in text.output, part
    history = json.loads((await _cli(world, "cases", "history", case_id, "--json")).output)
    assert [h["event"] for h in history] == ["place", "hold"]
    missing = await _cli(world, "cases", "show", "AC-NOBODY")
    assert missing.exit_code == 1 and "case AC-NOBODY does not exist" in missing.output
    assert (await _cli(world, "cases", "history", "AC-NOBODY")).exit_code == 1


# --- JSON API ---------------------------------------------------------------------------------


def _validate(schema: dict[str, Any], body: object) -> list[str]:
    validator = Draft202012Validator({**schema, "components": openapi_document()["components"]})
    return [e.message for e in validator.iter_errors(body)]


async def test_the_api_lists_and_shows_cases_to_logged_in_users_only(served: Served) -> None:
    world = served.world
    pid, case_id = _placement(world, ALPHA, 0)
    client: Client = await served.make_client(served.server)
    assert (await client.get("/api/v1/cases")).status == 401
    assert (await client.get(f"/api/v1/cases/{case_id}")).status == 401
    now = to_datetime(world.clock.now())
    token = await accounts.create_token(world.gateway.db, "vic", "cases", now=now)
    auth = {"Authorization": f"Bearer {token}"}
    components = openapi_document()["paths"]
    listed = await client.get(f"/api/v1/cases?q={pid}", headers=auth)
    body = await listed.json()
    assert listed.status == 200 and [r["id"] for r in body["items"]] == [case_id]
    list_schema = components["/api/v1/cases"]["get"]["responses"]["200"]["content"]
    assert _validate(list_schema["application/json"]["schema"], body) == []
    paged = await (await client.get("/api/v1/cases?limit=3&status=placed", headers=auth)).json()
    assert len(paged["items"]) == 3 and paged["next_after"] == paged["items"][-1]["id"]
    assert all(r["status"] == "placed" for r in paged["items"])
    nxt = await client.get(f"/api/v1/cases?limit=3&after={paged['next_after']}", headers=auth)
    assert (await nxt.json())["items"][0]["id"] > paged["next_after"]
    bad = await client.get("/api/v1/cases?held=perhaps", headers=auth)
    assert bad.status == 400 and "held" in (await bad.json())["detail"]

    detail = await client.get(f"/api/v1/cases/{case_id}", headers=auth)
    data = await detail.json()
    assert detail.status == 200 and data["placements"][0]["id"] == pid
    assert "pii" not in data["case"] and "content_mac" not in data["case"]
    case_schema = components["/api/v1/cases/{case_id}"]["get"]["responses"]["200"]["content"]
    assert _validate(case_schema["application/json"]["schema"], data) == []
    missing = await client.get("/api/v1/cases/AC-NOBODY", headers=auth)
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"


# --- console pages ----------------------------------------------------------------------------


async def test_the_case_list_searches_by_any_id_and_filters(served: Served) -> None:
    world = served.world
    pid, case_id = _placement(world, ALPHA, 1)
    client, _csrf = await served.login("vic")
    home = await (await client.get("/")).text()
    assert 'href="/cases"' in home
    page = await client.get("/cases")
    html = await page.text()
    assert page.status == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert f'href="/cases/{_placement(world, BETA, 0)[1]}"' in html
    for term in (case_id, pid, "ALPHA-1"):
        found = await (await client.get("/cases", params={"q": term})).text()
        assert re.findall(r'href="/cases/([^"?]+)"', found) == [case_id], term
    nothing = await (await client.get("/cases", params={"q": '<b id="x">'})).text()
    assert "No case matches" in nothing and '<b id="x">' not in nothing
    assert "&lt;b id=&#34;x&#34;&gt;" in nothing
    beta = await (await client.get("/cases", params={"agency": BETA, "status": "placed"})).text()
    listed = set(re.findall(r'href="/cases/([^"?]+)"', beta))
    assert listed and case_id not in listed
    assert listed <= {c for _p, c, _b in world.placements[BETA]}
    refused = await client.get("/cases", params={"held": "perhaps"})
    assert refused.status == 400 and "neither true nor false" in await refused.text()
    anonymous: Client = await served.make_client(served.server)
    assert (await anonymous.get("/cases", allow_redirects=False)).status == 303


async def test_the_case_page_shows_holds_placements_why_and_the_lifecycle(
    served: Served,
) -> None:
    world = served.world
    pid, case_id = _placement(world, ALPHA, 2)
    await _hold(world, case_id, "BANKRUPT")
    client, _csrf = await served.login("vic")
    html = await (await client.get(f"/cases/{case_id}")).text()
    holds = html.split('id="holds"')[1].split("</section>")[0]
    assert "BANKRUPT" in holds and "debtor disputes it" in holds and "hold-active" in holds
    placements = html.split('id="placements"')[1].split("</section>")[0]
    assert pid in placements and "recalled" in placements
    why = html.split('id="why"')[1].split("</section>")[0]
    assert f"{pid} → {ALPHA}" in why and "eligible" in why and BETA in why
    timeline = html.split('id="timeline"')[1]
    assert "case hold" in timeline and "ops:olga" in timeline and "hold put on" in timeline

    api = await client.get(f"/api/v1/cases/{case_id}/timeline", headers={"X-CSRF-Token": _csrf})
    entries = (await api.json())["entries"]
    [step] = [e for e in entries if e["type"] == "status" and e["event"] == "hold"]
    assert (step["from_status"], step["to_status"]) == ("placed", "held")
    assert step["evidence_seq"] is not None
    async with world.gateway.db.snapshot() as conn:
        leaf = (
            await conn.execute(sa.select(LEAVES).where(LEAVES.c.seq == step["evidence_seq"]))
        ).one()
    assert (leaf.kind, leaf.ref) == ("case", f"case:{case_id}")
    assert json.loads(leaf.body)["event"] == "hold"
    [place] = [e for e in entries if e["type"] == "status" and e["event"] == "place"]
    assert place["actor"] == "allocation" and place["evidence_seq"] is None


# --- console actions --------------------------------------------------------------------------


async def _leaves(world: ConsoleWorld, case_id: str, kind: str = "action") -> list[Any]:
    async with world.gateway.db.snapshot() as conn:
        found = await conn.execute(
            sa.select(LEAVES.c.seq, LEAVES.c.body)
            .where(LEAVES.c.kind == kind, LEAVES.c.ref == f"case:{case_id}")
            .order_by(LEAVES.c.seq)
        )
        return [json.loads(body) for _seq, body in found.all()]


async def _status(world: ConsoleWorld, case_id: str) -> str:
    return str((await _scalars(world, sa.select(C.status).where(C.id == case_id)))[0])


async def test_an_operator_holds_releases_and_reopens_a_case_from_its_page(
    served: Served,
) -> None:
    world = served.world
    pid, case_id = _placement(world, ALPHA, 0)
    client, csrf = await served.login("olga")
    page = await (await client.get(f"/cases/{case_id}")).text()
    assert 'id="hold-form"' in page and "action-renew" in page

    def post(action: str, **fields: str) -> Any:
        data = {"csrf_token": csrf, "action": action, **fields}
        return client.post(f"/cases/{case_id}/actions", data=data, allow_redirects=False)

    held = await post("hold", code="deceased", note="death certificate received")
    assert held.status == 303 and held.headers["Location"] == f"/cases/{case_id}?done=hold"
    assert await _status(world, case_id) == "held"
    state = await _scalars(world, sa.select(P.state).where(P.id == pid))
    assert state == ["recalled"]  # a hold on a placed case recalls it
    [leaf] = await _leaves(world, case_id)
    assert (leaf["action"], leaf["actor"], leaf["reason"]) == (
        "hold",
        "olga",
        "death certificate received",
    )
    assert leaf["details"]["code"] == "DECEASED" and leaf["details"]["recalled_placement_id"] == pid
    shown = await (await client.get(held.headers["Location"])).text()
    assert "Put on hold: recorded" in shown and "Release DECEASED" in shown

    no_note = await post("release", code="DECEASED")
    assert no_note.status == 400 and "note: say why" in await no_note.text()
    wrong = await post("release", code="BANKRUPT", note="wrong code")
    assert wrong.status == 409 and "has no standing hold BANKRUPT" in await wrong.text()
    assert await _status(world, case_id) == "held" and len(await _leaves(world, case_id)) == 1
    released = await post("release", code="DECEASED", note="certificate was for another man")
    assert released.status == 303 and await _status(world, case_id) == "open"
    refused = await post("reopen", note="only recalled or closed cases reopen")
    assert refused.status == 409 and "can be reopened" in await refused.text()

    _other_pid, other = _placement(world, ALPHA, 1)
    await world.gateway.placements.recall(other, "OPS_REVIEW")
    assert await _status(world, other) == "recalled"
    reopened = await client.post(
        f"/cases/{other}/actions",
        data={"csrf_token": csrf, "action": "reopen", "note": "review done"},
        allow_redirects=False,
    )
    assert reopened.status == 303 and await _status(world, other) == "returned"
    assert [leaf["action"] for leaf in await _leaves(world, other)] == ["reopen"]


async def test_renewal_and_escalation_decisions_from_the_case_page(served: Served) -> None:
    world = served.world
    pid, case_id = _placement(world, ALPHA, 2)
    [before] = await _scalars(world, sa.select(P.return_by).where(P.id == pid))
    client, csrf = await served.login("olga")

    def post(target: str, action: str, **fields: str) -> Any:
        data = {"csrf_token": csrf, "action": action, **fields}
        return client.post(f"/cases/{target}/actions", data=data, allow_redirects=False)

    other_pid, _other = _placement(world, BETA, 0)
    foreign = await post(case_id, "renew", placement_id=other_pid, days="30", note="x")
    assert foreign.status == 409 and f"is not case {case_id}" in await foreign.text()
    renewed = await post(case_id, "renew", placement_id=pid, days="30", note="agency asked")
    assert renewed.status == 303, await renewed.text()
    [(after, renewals)] = await _all(world, sa.select(P.return_by, P.renewals).where(P.id == pid))
    assert (after - before).days == 30 and renewals == 1
    assert [leaf["action"] for leaf in await _leaves(world, case_id)] == ["renew"]

    report = await world.gateway.escalations.scan()
    assert report.proposed, "the world has LEGAL cases with agencies outside the legal tier"
    escalation_id = report.proposed[0]
    [legal_case] = await _scalars(
        world, sa.text("SELECT case_id FROM escalations WHERE id = :i").bindparams(i=escalation_id)
    )
    page = await (await client.get(f"/cases/{legal_case}")).text()
    assert "action-approve_escalation" in page and "action-reject_escalation" in page
    rejected = await post(
        legal_case, "reject_escalation", escalation_id=str(escalation_id), note="court date set"
    )
    assert rejected.status == 303, await rejected.text()
    [state] = await _scalars(
        world, sa.text("SELECT state FROM escalations WHERE id = :i").bindparams(i=escalation_id)
    )
    assert state == "rejected" and await _status(world, legal_case) == "placed"
    again = await post(
        legal_case, "approve_escalation", escalation_id=str(escalation_id), note="changed mind"
    )
    assert again.status == 409 and "already rejected" in await again.text()


async def test_only_operators_act_on_cases_with_the_session_csrf_token(served: Served) -> None:
    world = served.world
    _pid, case_id = _placement(world, BETA, 0)
    viewer, viewer_csrf = await served.login("vic")
    page = await (await viewer.get(f"/cases/{case_id}")).text()
    assert "hold-form" not in page and "action-renew" not in page
    refused = await viewer.post(
        f"/cases/{case_id}/actions",
        data={"csrf_token": viewer_csrf, "action": "hold", "code": "DISPUTE"},
        allow_redirects=False,
    )
    assert refused.status == 403 and "This needs the operator role" in await refused.text()
    operator, _csrf = await served.login("olga")
    forged = await operator.post(
        f"/cases/{case_id}/actions",
        data={"csrf_token": "forged", "action": "hold", "code": "DISPUTE"},
        allow_redirects=False,
    )
    assert forged.status == 403
    assert await _status(world, case_id) == "placed" and await _leaves(world, case_id) == []

    now = to_datetime(world.clock.now())
    token = await accounts.create_token(world.gateway.db, "olga", "cases", now=now)
    read_only = await accounts.create_token(world.gateway.db, "vic", "cases", now=now)
    client: Client = await served.make_client(served.server)
    body = {"action": "hold", "code": "DISPUTE", "note": "by script"}
    url = f"/api/v1/cases/{case_id}/actions"
    denied = await client.post(url, json=body, headers={"Authorization": f"Bearer {read_only}"})
    assert denied.status == 403
    done = await client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    result = await done.json()
    assert done.status == 200 and result["details"]["status"] == "held"
    [leaf] = await _leaves(world, case_id)
    assert leaf["actor"] == "olga" and result["evidence_seq"] >= 0
    release = {"action": "release", "code": "DISPUTE"}  # no note
    bad = await client.post(url, json=release, headers={"Authorization": f"Bearer {token}"})
    assert bad.status == 400 and "note" in (await bad.json())["detail"]
    twice = await client.post(
        url, json={**release, "code": "BANKRUPT", "note": "x"},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert twice.status == 409
