"""The ops console in Chinese, in a real headless Chromium (as tests/e2e/test_console_browser.py
does in English): log in, filter the queue, resolve a mismatch, see the case timeline change,
a viewer refused; the header's language switch; and the Chinese screenshots in
docs/screenshots/zh-CN/ when ``GATEWAY_UPDATE_SCREENSHOTS=1`` (otherwise into a temporary folder,
to check they render). The config's language is the default, ``zh-CN``.

Chinese text needs a CJK font to render (Debian ``fonts-noto-cjk``; ``.ci/run`` installs it).
"""

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.async_api import Browser, Dialog, Page, expect
from pytest_aiohttp import AiohttpServer

from gateway.store.tables import Mismatch
from tests.console_world import ALPHA, PASSWORD, ConsoleWorld, StubAgency, build_world, console_app
from tests.e2e import test_console_browser as english

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "zh-CN"
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]

pytestmark = english.pytestmark
browser = english.browser


@pytest.fixture
async def served(
    make_config: Any, tmp_path: Path, aiohttp_server: AiohttpServer
) -> AsyncIterator[tuple[ConsoleWorld, str]]:
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    world = await build_world(
        make_config, tmp_path, str(agency.make_url("/hooks")), stub, language="zh-CN"
    )
    gateway = world.gateway
    app = console_app(gateway)
    server = await aiohttp_server(app)
    yield world, str(server.make_url("")).rstrip("/")
    await gateway.aclose()


async def log_in(browser: Browser, base: str, name: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/login?next=%2F")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await page.get_by_label("用户名").fill(name)
    await page.get_by_label("密码").fill(PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("heading", name="总览")).to_be_visible()
    return page


async def accept_dialog(dialog: Dialog) -> None:
    await dialog.accept()


async def test_an_operator_resolves_a_mismatch_in_chinese_and_a_viewer_cannot(
    served: tuple[ConsoleWorld, str], browser: Browser
) -> None:
    world, base = served
    page = await log_in(browser, base, "olga")

    await page.get_by_role("link", name="差异", exact=True).click()
    await page.locator("#filter-kind").select_option("ack_balance_differs")
    await page.get_by_role("button", name="应用", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/mismatches\?.*kind=ack_balance_differs"))
    rows = page.locator("table.queue tbody tr")
    await expect(rows).to_have_count(1)
    mismatch_id = await world.mismatch_id("ack_balance_differs")
    await rows.first.get_by_role("link", name=str(mismatch_id), exact=True).click()
    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_contain_text(f"#{mismatch_id} 确认余额不一致")
    await expect(heading.get_by_title("ack_balance_differs")).to_be_visible()

    accept = page.locator("form.action-accept")
    await accept.get_by_label("原因").fill("对方金额包含滞纳金")
    await accept.get_by_role("button", name="采纳委外机构数据", exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text("采纳委外机构数据：已记录并生成存证。")
    await expect(page.locator("h1 .badge.state-resolved")).to_have_text("已解决")
    await expect(page.locator(".history")).to_contain_text("对方金额包含滞纳金")

    await page.locator("#case-link").click()
    last = page.locator("#timeline .entry-action")
    await expect(last).to_have_count(1)
    await expect(last).to_contain_text("待处理 → 已解决")
    await expect(page.locator("#timeline")).to_contain_text("+08:00")

    viewer = await log_in(browser, base, "vic")
    other = await world.mismatch_id("missing_ack")
    await viewer.goto(f"{base}/mismatches/{other}")
    await expect(viewer.locator("#actions")).to_contain_text("只读")
    await expect(viewer.locator("form.action")).to_have_count(0)
    token = await viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    forged = await viewer.request.post(
        f"{base}/mismatches/{other}/actions",
        form={"csrf_token": token, "action": "dismiss", "reason": "不该允许"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "此操作需要操作员角色" in await forged.text()
    async with world.gateway.db.snapshot() as conn:
        state = (
            await conn.execute(sa.select(MISMATCHES.c.state).where(MISMATCHES.c.id == other))
        ).scalar_one()
    assert state == "open"


async def test_the_header_switch_changes_the_language_and_keeps_it(
    served: tuple[ConsoleWorld, str], browser: Browser
) -> None:
    _world, base = served
    page = await log_in(browser, base, "olga")
    await page.get_by_role("link", name="案件", exact=True).click()
    await page.get_by_role("button", name="English").click()
    await expect(page).to_have_url(f"{base}/cases")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Cases")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.get_by_role("link", name="Dashboard", exact=True).click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    await page.get_by_role("button", name="中文").click()
    await expect(page.get_by_role("heading", name="总览")).to_be_visible()


async def test_chinese_screenshots_of_the_main_pages(
    served: tuple[ConsoleWorld, str], browser: Browser, tmp_path: Path
) -> None:
    world, base = served
    update = os.environ.get("GATEWAY_UPDATE_SCREENSHOTS") == "1"
    target = SCREENSHOTS if update else tmp_path / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    login = await context.new_page()
    await login.goto(f"{base}/login")
    await login.screenshot(path=str(target / "login.png"))
    page = await log_in(browser, base, "ada")
    page.on("dialog", accept_dialog)  # "this cannot be undone" on recall
    for kind, action, fields in (
        ("dead_delivery", "resend", {}),
        ("missing_ack", "recall", {}),
        ("ack_balance_differs", "amend", {"balance": "800.00"}),
    ):
        await page.goto(f"{base}/mismatches/{await world.mismatch_id(kind)}")
        form = page.locator(f"form.action-{action}")
        for name, value in fields.items():
            await form.locator(f"input[name={name}]").fill(value)
        await form.locator("input[name=reason]").fill("截图场景")
        await form.locator("button").first.click()
        await expect(page.get_by_role("status")).to_contain_text("已记录")
    await (await world.gateway.dispatcher()).drain_once()
    duplicate = await world.mismatch_id("conflicting_duplicate")
    await page.goto(f"{base}/mismatches/{duplicate}")
    await page.locator("form.action-assign select").select_option("olga")
    await page.locator("form.action-assign button").first.click()
    await page.locator("form.action-comment textarea").fill("已请委外机构提供回执。")
    await page.locator("form.action-comment button").first.click()
    _pid, case_id, _balance = world.placements[ALPHA][1]
    shots = {
        "dashboard.png": "/",
        "queue.png": "/mismatches?sort=severity&per_page=15",
        "mismatch.png": f"/mismatches/{duplicate}",
        "agency.png": "/agencies/AGY_BETA",
        "agencies.png": "/agencies",
        "users.png": "/users",
        "cases.png": "/cases?status=placed",
        "case.png": f"/cases/{case_id}",
    }
    for name, path in shots.items():
        await page.goto(f"{base}{path}")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await page.screenshot(path=str(target / name), full_page=True)
    for name in [*shots, "login.png"]:
        english.assert_rendered_page(target / name)
    # The core's English sentences show in Chinese: SLA breaches, a duplicate's detail, the
    # allocation's verdicts and the lifecycle's reasons.
    await page.goto(f"{base}/agencies/AGY_BETA")
    await expect(page.locator("body")).to_contain_text("前报告")
    await expect(page.locator("body")).not_to_contain_text("sent no")
    await page.goto(f"{base}/mismatches/{duplicate}")
    await expect(page.locator("p.lead")).to_contain_text("被再次报告且金额不同")
    await page.goto(f"{base}/cases/{case_id}")
    await expect(page.locator("#why")).to_contain_text("可分派")
    await expect(page.locator("#timeline")).to_contain_text("委派给 AGY_ALPHA")
    await expect(page.locator("#timeline")).not_to_contain_text("reported again")
