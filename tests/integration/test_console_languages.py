"""The console in Chinese and English, served for real (aiohttp test server, real SQLite, the
console world): the config's default language, ``?lang=`` for one page, the header's switch
(a CSRF-guarded form that remembers the choice), the login page's choice carried into the
session, times in the lender's zone (Asia/Shanghai) and amounts per locale.
"""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.clock import to_datetime
from tests.console_world import ALPHA, PASSWORD, ConsoleWorld, StubAgency, build_world, console_app

Client = TestClient[web.Request, web.Application]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass
class Served:
    world: ConsoleWorld
    server: TestServer
    make_client: Any

    async def login(self, name: str = "olga", lang: str | None = None) -> Client:
        client: Client = await self.make_client(self.server)
        page = await client.get("/login" + (f"?lang={lang}" if lang else ""))
        [token] = LOGIN_TOKEN.findall(await page.text())
        form = {"login_token": token, "name": name, "password": PASSWORD, "next": "/"}
        if lang:
            form["lang"] = lang
        response = await client.post("/login", data=form, allow_redirects=False)
        assert response.status == 303, await response.text()
        return client

    def now_in_shanghai(self) -> str:
        local = to_datetime(self.world.clock.now()).astimezone(SHANGHAI)
        return f"{local:%Y-%m-%d %H:%M:%S} +08:00"


@pytest.fixture
async def served(
    make_config: Any,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
) -> AsyncIterator[Served]:
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    world = await build_world(
        make_config, tmp_path, str(agency.make_url("/hooks")), stub, language="zh-CN"
    )
    gateway = world.gateway
    app = console_app(gateway)
    yield Served(world, await aiohttp_server(app), aiohttp_client)
    await gateway.aclose()


def _yuan(minor: int, symbol: str) -> str:
    return f"{symbol}{minor // 100:,}.{minor % 100:02d}"


async def test_the_config_default_is_chinese_with_local_times(served: Served) -> None:
    anonymous: Client = await served.make_client(served.server)
    login = await anonymous.get("/login")
    html = await login.text()
    assert '<html lang="zh-CN">' in html and "登录" in html and "Log in" not in html
    assert login.headers["Content-Language"] == "zh-CN"
    client = await served.login()
    dashboard = await (await client.get("/")).text()
    assert "总览" in dashboard and "待处理差异" in dashboard
    assert f"截至 {served.now_in_shanghai()}" in dashboard
    assert "Dashboard" not in dashboard
    queue = await (await client.get("/mismatches?state=all")).text()
    # Kinds show their Chinese name and keep the code for ops in the title.
    assert 'title="ack_balance_differs">确认余额不一致' in queue


async def test_lang_in_the_address_switches_one_page(served: Served) -> None:
    client = await served.login()
    english = await (await client.get("/?lang=en")).text()
    assert '<html lang="en">' in english and "Dashboard" in english
    assert f"as of {served.now_in_shanghai()}" in english
    # Without it the next page is Chinese again: the address is for links, not a setting.
    assert '<html lang="zh-CN">' in await (await client.get("/")).text()


async def test_the_header_switch_remembers_the_language(served: Served) -> None:
    client = await served.login()
    home = await (await client.get("/mismatches?kind=missing_ack&lang=zh-CN")).text()
    [csrf] = CSRF.findall(home)[:1]
    assert 'action="/language"' in home and 'value="en"' in home
    # The switch comes back to the same list, its filters kept.
    assert 'name="next" value="/mismatches?kind=missing_ack"' in home
    refused = await client.post(
        "/language", data={"lang": "en", "next": "/mismatches"}, allow_redirects=False
    )
    assert refused.status == 403  # no CSRF token: the switch keeps the console's form rules
    switched = await client.post(
        "/language",
        data={"lang": "en", "next": "/mismatches", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert switched.status == 303 and switched.headers["Location"] == "/mismatches"
    cookie = next(c for c in switched.headers.getall("Set-Cookie") if "agw_lang=" in c)
    assert "agw_lang=en" in cookie and "HttpOnly" in cookie
    queue = await (await client.get("/mismatches")).text()
    assert '<html lang="en">' in queue and "Mismatches" in queue
    back = await client.post(
        "/language",
        data={"lang": "zh-CN", "next": "https://elsewhere.example/", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert back.headers["Location"] == "/"  # never off the site
    assert '<html lang="zh-CN">' in await (await client.get("/")).text()


async def test_the_login_page_choice_carries_into_the_session(served: Served) -> None:
    anonymous: Client = await served.make_client(served.server)
    login = await (await anonymous.get("/login?next=%2Fcases")).text()
    # The login page's switch is a plain link that keeps where the user was going.
    assert 'href="/login?next=/cases&amp;lang=en"' in login
    english = await (await anonymous.get("/login?next=%2Fcases&lang=en")).text()
    assert 'action="/login?lang=en"' in english and "Log in" in english
    client = await served.login(lang="en")
    page = await (await client.get("/cases")).text()
    assert '<html lang="en">' in page and "Cases" in page


async def test_amounts_per_locale_and_times_in_the_lenders_zone(served: Served) -> None:
    _pid, case_id, balance = served.world.placements[ALPHA][0]
    client = await served.login()
    chinese = await (await client.get(f"/cases/{case_id}")).text()
    assert _yuan(balance, "¥") in chinese
    english = await (await client.get(f"/cases/{case_id}?lang=en")).text()
    assert _yuan(balance, "CN¥") in english
    # Every moment on the page is shown in Shanghai time with its offset, none as bare UTC.
    moments = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d( [+-]\d\d:\d\d)?", english)
    assert moments and all(offset == " +08:00" for offset in moments)
    assert "Asia/Shanghai" in english


async def test_error_pages_and_refusals_speak_the_language(served: Served) -> None:
    client = await served.login("vic")
    refused = await client.get("/users")
    text = await refused.text()
    assert refused.status == 403 and "无权操作" in text and "管理员" in text
    english = await client.get("/users?lang=en")
    assert "This needs the admin role; you are signed in as a viewer." in await english.text()
