"""The console's ``/notices`` and ``/verification`` pages: failed borrower notices are listed
with their placements, and a spike of failed collector checks raises the alert, in Chinese and
English."""

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.console import accounts
from gateway.server import create_app
from tests.case_world import START, account
from tests.notice_world import NoticeWorld, build_notice_world

LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path) -> AsyncIterator[NoticeWorld]:
    # Notices go to a port nobody listens on, and are given up at once (max_attempts 1).
    w = await build_notice_world(
        make_config,
        tmp_path,
        "sqlite:///" + str(tmp_path / "console.db"),
        messaging_url="http://127.0.0.1:9/notices",
        notices={"retry": {"max_attempts": 1}},
        verification={"alert_failed_per_hour": 3},
    )
    await accounts.add_user(w.db, "vic", "viewer", PASSWORD, now=START)
    yield w
    await w.gateway.aclose()


async def logged_in(world: NoticeWorld, aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    app = create_app(
        inbound=world.gateway.inbound,
        db=world.db,
        metrics_=world.gateway.metrics,
        console=world.gateway.console_services(),
        verification=world.gateway.verification,
        lender_name="",
    )
    client = await aiohttp_client(app)
    page = await client.get("/login")
    [token] = LOGIN_TOKEN.findall(await page.text())
    response = await client.post(
        "/login",
        data={"login_token": token, "name": "vic", "password": PASSWORD, "next": "/"},
        allow_redirects=False,
    )
    assert response.status == 303
    return client


async def test_failed_notices_are_listed_in_both_languages(
    world: NoticeWorld, aiohttp_client: AiohttpClient
) -> None:
    await world.intake([account(5)])
    await world.allocate()
    letters = await world.issue_letters()
    await world.gateway.notices.scan()
    await (await world.gateway.dispatcher()).drain_once()
    [failed] = await world.gateway.notices.rows(failed=True)
    client = await logged_in(world, aiohttp_client)
    zh = await (await client.get("/notices")).text()
    assert "借款人通知" in zh and "发送失败的通知" in zh
    assert failed.placement_id in zh and letters[failed.placement_id] in zh
    en = await (await client.get("/notices?lang=en")).text()
    assert "Failed notices" in en and "agency-gateway notices resend" in en


async def test_a_spike_of_failed_checks_raises_the_alert(
    world: NoticeWorld, aiohttp_client: AiohttpClient
) -> None:
    client = await logged_in(world, aiohttp_client)
    quiet = await (await client.get("/verification?lang=en")).text()
    assert 'role="alert"' not in quiet and "Nobody has checked a letter yet." in quiet
    for n in range(4):
        await client.post("/v1/verify", json={"letter_no": "SQ2026-000666-K", "digits": f"{n:04d}"})
    en = await (await client.get("/verification?lang=en")).text()
    assert 'role="alert"' in en and "4 failed checks in the last hour" in en
    assert "SQ2026-000666-K" in en
    zh = await (await client.get("/verification")).text()
    assert "可能有人冒充催收人员" in zh
