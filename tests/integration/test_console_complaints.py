"""The console's complaints pages and the lender's complaint webhook (SQLite): an operator
opens a complaint with a hold from the queue's form and works it through its states (a
viewer and a post without the CSRF token are refused, a move the state does not allow and a
stale form are refused with the reason); the overdue are marked; only an admin sees the
summary, and that reading is attested; the lender's system posts complaints with an API
token, the same complaint_id once; the monthly report downloads as XLSX."""

import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from pytest_aiohttp import AiohttpClient

from gateway.clock import to_datetime
from gateway.complaints.store import COMPLAINTS
from gateway.console.accounts import add_user, create_token
from tests.case_world import CaseWorld, account, build_case_world
from tests.console_world import console_app
from tests.integration.test_console import Session

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, "sqlite:///" + str(tmp_path / "c.db"))
    now = to_datetime(w.clock.now())
    for name, role in (("ana", "operator"), ("vi", "viewer"), ("ad", "admin")):
        await add_user(w.db, name, role, PASSWORD, now=now)
    await w.intake([account(n) for n in range(2)])
    assert await w.allocate() == 2
    yield w
    await w.gateway.aclose()


async def session(aiohttp_client: AiohttpClient, world: CaseWorld, name: str) -> Session:
    client = await aiohttp_client(console_app(world.gateway))
    s = Session(client)
    assert (await s.login(name, PASSWORD)).status == 303
    return s


async def test_an_operator_opens_and_works_a_complaint_in_the_console(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    ana = await session(aiohttp_client, world, "ana")
    vi = await session(aiohttp_client, world, "vi")
    form = {
        "case_id": "ACC-0000",
        "channel": "热线",
        "category": "harassment",
        "summary": "张三: 催收员辱骂",
        "hold": "1",
    }
    refused = await vi.client.post(
        "/complaints", data={"csrf_token": vi.csrf, **form}, allow_redirects=False
    )
    assert refused.status == 403
    no_csrf = await ana.client.post("/complaints", data=form, allow_redirects=False)
    assert no_csrf.status == 403
    unknown = await ana.client.post(
        "/complaints", data={"csrf_token": ana.csrf, **form, "case_id": "NOPE"}
    )
    assert unknown.status == 400 and "NOPE" in await unknown.text()
    opened = await ana.client.post(
        "/complaints", data={"csrf_token": ana.csrf, **form}, allow_redirects=False
    )
    assert opened.status == 303
    location = opened.headers["Location"]
    complaint_id = int(re.findall(r"/complaints/(\d+)", location)[0])
    [row] = await world.rows(sa.select(COMPLAINTS))
    assert (row["source"], row["updated_by"], row["hold_id"] is not None) == (
        "ops",
        "ops:ana",
        True,
    )
    assert await world.status("ACC-0000") == "held"

    page = await ana.client.get(location)
    text = await page.text()
    assert page.status == 200 and "案件已暂停" in text  # Chinese by default
    assert "张三" not in text  # an operator may not reveal personal data by default

    queue = await vi.client.get("/complaints")
    assert queue.status == 200 and f"C{complaint_id}" in await queue.text()

    async def act(action: str, **fields: str) -> Any:
        return await ana.client.post(
            f"/complaints/{complaint_id}/action",
            data={"csrf_token": ana.csrf, "action": action, **fields},
            allow_redirects=False,
        )

    wrong = await act("close")
    assert wrong.status == 409 and "it can: investigate, resolve" in await wrong.text()
    assert (await act("investigate", revision="1")).status == 409  # a stale form
    [row] = await world.rows(sa.select(COMPLAINTS.c.revision))
    assert (await act("investigate", revision=str(row["revision"]))).status == 303
    assert (await act("resolve", outcome="upheld", note="已道歉")).status == 303
    assert (await act("close")).status == 303
    [row] = await world.rows(sa.select(COMPLAINTS))
    assert (row["state"], row["outcome"], row["hold_id"]) == ("closed", "upheld", None)
    assert await world.status("ACC-0000") == "open"

    # Overdue: a complaint received 20 days ago is marked in the queue.
    await world.gateway.complaints().open(
        case_id="ACC-0001",
        channel="app",
        received_at=to_datetime(world.clock.now()) - timedelta(days=20),
        actor="ops:ana",
    )
    queue = await ana.client.get("/complaints?overdue=1")
    assert "1 件逾期" in await queue.text()

    # Only an admin reads the summary, and the reading is attested.
    denied = await ana.client.post(
        f"/complaints/{complaint_id}/summary", data={"csrf_token": ana.csrf}
    )
    assert denied.status == 403
    ad = await session(aiohttp_client, world, "ad")
    shown = await ad.client.post(
        f"/complaints/{complaint_id}/summary", data={"csrf_token": ad.csrf}
    )
    assert shown.status == 200 and "张三: 催收员辱骂" in await shown.text()
    *_, leaf = await world.leaves("complaint", f"complaint:{complaint_id}")
    assert (leaf["event"], leaf["actor"]) == ("summary_shown", "ops:ad")

    report = await vi.client.get("/complaints/report.xlsx?month=2026-03")
    assert report.status == 200
    book = load_workbook(io.BytesIO(await report.read()))
    assert book["Summary"]["B3"].value == 1  # received in March; the other in February


async def test_the_lender_posts_complaints_with_an_api_token(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(console_app(world.gateway))
    now = to_datetime(world.clock.now())
    auth = {"Authorization": f"Bearer {await create_token(world.db, 'ana', 'lender', now=now)}"}
    viewer = {"Authorization": f"Bearer {await create_token(world.db, 'vi', 'x', now=now)}"}
    body = {
        "complaint_id": "LC-77",
        "case_id": "ACC-0001",
        "received_at": "2026-03-02T18:00:00+08:00",
        "channel": "app",
        "category": "contact_hours",
        "summary": "called at 22:00",
    }
    anonymous = await client.post("/api/v1/complaints", json=body)
    assert anonymous.status == 401
    assert (await client.post("/api/v1/complaints", json=body, headers=viewer)).status == 403
    bad = await client.post(
        "/api/v1/complaints", json={**body, "received_at": "today"}, headers=auth
    )
    assert bad.status == 400 and "received_at" in await bad.text()
    first = await client.post("/api/v1/complaints", json=body, headers=auth)
    assert first.status == 200
    made = await first.json()
    assert (made["created"], made["source"], made["agency_id"]) == (
        True,
        "lender_webhook",
        "AGY_ONE",
    )
    assert "summary" not in made
    again = await (await client.post("/api/v1/complaints", json=body, headers=auth)).json()
    assert (again["created"], again["id"]) == (False, made["id"])
    listed = await (await client.get("/api/v1/complaints", headers=viewer)).json()
    assert [c["source_ref"] for c in listed] == ["LC-77"]
