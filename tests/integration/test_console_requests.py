"""The console's requests pages: an agency's waiver and pause requests are queued with the
case's balance; a viewer cannot decide; a rejection without a reason is refused with the
reason; an operator approves one and rejects the other with the session's CSRF token (a post
without it is refused), and the agency's ``request.decided`` packets are queued (in Chinese,
the console's default)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient

from gateway.clock import to_datetime
from gateway.concessions.requests import REQUESTS
from gateway.console.accounts import add_user
from tests.case_world import CaseWorld, account, build_case_world
from tests.console_world import console_app
from tests.integration.test_console import Session

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    now = to_datetime(w.clock.now())
    for name, role in (("ana", "operator"), ("vi", "viewer")):
        await add_user(w.db, name, role, PASSWORD, now=now)
    yield w
    await w.gateway.aclose()


async def session(aiohttp_client: AiohttpClient, world: CaseWorld, name: str) -> Session:
    client = await aiohttp_client(console_app(world.gateway))
    s = Session(client)
    assert (await s.login(name, PASSWORD)).status == 303
    return s


async def test_an_operator_decides_requests_in_the_console(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    await world.intake([account(1, balance_minor=600_000)])
    assert await world.allocate() == 1
    [p] = await world.placements()
    today = to_datetime(world.clock.now()).date().isoformat()
    for event_type, data in (
        (
            "placement.acknowledged",
            {"agency_case_ref": "R-1", "balance": {"amount_minor": 600_000, "currency": "CNY"}},
        ),
        (
            "waiver.requested",
            {
                "request_id": "RQ-W",
                "waive_amount": {"amount_minor": 60_000, "currency": "CNY"},
                "reason": "失业",
            },
        ),
        (
            "pause.requested",
            {"request_id": "RQ-P", "pause_from": today, "pause_until": today, "reason": "住院"},
        ),
    ):
        assert await world.post(event_type, {"placement_id": p["id"], **data}) == 200

    ana = await session(aiohttp_client, world, "ana")
    listing = await ana.client.get("/requests")
    text = await listing.text()
    assert listing.status == 200 and "RQ-W" in text and "RQ-P" in text
    assert "¥6,000.00" in text and "减免" in text  # the case's balance; Chinese by default
    rows = await world.rows(sa.select(REQUESTS.c.id).order_by(REQUESTS.c.request_id.desc()))
    [waiver_id, pause_id] = [r["id"] for r in rows]
    page = await ana.client.get(f"/requests/{waiver_id}")
    assert page.status == 200 and "¥600.00" in await page.text()

    vi = await session(aiohttp_client, world, "vi")
    forbidden = await vi.client.post(
        f"/requests/{waiver_id}/decision",
        data={"csrf_token": vi.csrf, "decision": "approve"},
        allow_redirects=False,
    )
    assert forbidden.status == 403
    no_csrf = await ana.client.post(
        f"/requests/{waiver_id}/decision", data={"decision": "approve"}, allow_redirects=False
    )
    assert no_csrf.status == 403
    no_reason = await ana.client.post(
        f"/requests/{pause_id}/decision",
        data={"csrf_token": ana.csrf, "decision": "reject"},
        allow_redirects=False,
    )
    assert no_reason.status == 409 and "a rejection needs a reason" in await no_reason.text()

    approved = await ana.client.post(
        f"/requests/{waiver_id}/decision",
        data={"csrf_token": ana.csrf, "decision": "approve"},
        allow_redirects=False,
    )
    assert approved.status == 303
    assert approved.headers["Location"] == f"/requests/{waiver_id}?done=approved"
    rejected = await ana.client.post(
        f"/requests/{pause_id}/decision",
        data={"csrf_token": ana.csrf, "decision": "reject", "reason": "无证明"},
        allow_redirects=False,
    )
    assert rejected.status == 303
    again = await ana.client.post(
        f"/requests/{pause_id}/decision",
        data={"csrf_token": ana.csrf, "decision": "approve"},
        allow_redirects=False,
    )
    assert again.status == 409 and "is rejected" in await again.text()
    decided = {d["data"]["request_id"]: d["data"] for d in await world.packets("request.decided")}
    assert (decided["RQ-W"]["decision"], decided["RQ-P"]["decision"]) == ("approved", "rejected")
    assert decided["RQ-P"]["reason"] == "无证明"
