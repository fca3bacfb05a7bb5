"""The public verification page in a real headless Chromium, in Chinese and English: a
borrower opens the QR link, types the last 4 digits and sees the agency authorised; a forged
number gets the one generic answer. Renders ``docs/screenshots/verify.png`` and
``docs/screenshots/zh-CN/verify.png`` when ``GATEWAY_UPDATE_SCREENSHOTS=1`` (otherwise into a
temporary folder, to check they render)."""

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from pytest_aiohttp import AiohttpServer

from gateway.server import create_app
from tests.case_world import account
from tests.e2e.test_console_browser import CHROMIUM, SCREENSHOTS, browser
from tests.notice_world import LENDER, REGISTRATIONS, NoticeWorld, build_notice_world

__all__ = ["browser"]  # the shared Chromium fixture

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian chromium (.ci/run installs it)"
)


@pytest.fixture
async def served(
    make_config: Any, tmp_path: Path, aiohttp_server: AiohttpServer
) -> AsyncIterator[tuple[NoticeWorld, str, str]]:
    """A placed case with its letter, the page served on loopback: (world, base, letter)."""
    world = await build_notice_world(make_config, tmp_path, "sqlite:///" + str(tmp_path / "v.db"))
    await world.intake([account(1, phones="+8613900005678")])
    await world.allocate()
    [letter] = (await world.issue_letters()).values()
    app = create_app(
        inbound=world.gateway.inbound,
        db=world.db,
        metrics_=world.gateway.metrics,
        verification=world.gateway.verification,
        lender_name=LENDER.legal_name,
    )
    server = await aiohttp_server(app)
    yield world, str(server.make_url("")).rstrip("/"), letter
    await world.gateway.aclose()


@pytest.mark.parametrize("language", ["zh-CN", "en"])
async def test_a_borrower_checks_a_collector_from_the_qr_link(
    served: tuple[NoticeWorld, str, str], browser: Browser, tmp_path: Path, language: str
) -> None:
    _world, base, letter = served
    words = {
        "zh-CN": ("手机号或身份证号后4位", "核实", "已获授权", "无法核实"),
        "en": ("Last 4 digits of your phone or ID number", "Verify", "Authorised", "No match"),
    }[language]
    context = await browser.new_context(
        viewport={"width": 420, "height": 780}, locale=language, java_script_enabled=False
    )
    page = await context.new_page()
    await page.goto(f"{base}/verify?letter={letter}")
    await expect(page.locator("#letter")).to_have_value(letter)
    await page.get_by_label(words[0]).fill("5678")
    await page.get_by_role("button", name=words[1], exact=True).click()
    result = page.get_by_role("status")
    await expect(result).to_contain_text(words[2])
    agency = REGISTRATIONS["AGY_ONE"]
    name = agency.legal_name if language == "zh-CN" else agency.legal_name_en
    assert name is not None
    await expect(result).to_contain_text(name)
    update = os.environ.get("GATEWAY_UPDATE_SCREENSHOTS") == "1"
    target = (SCREENSHOTS if update else tmp_path) / ("zh-CN" if language == "zh-CN" else "")
    target.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(target / "verify.png"), full_page=True)
    assert (target / "verify.png").stat().st_size > 0

    await page.locator("#letter").fill("SQ2026-999999-X")
    await page.get_by_label(words[0]).fill("5678")
    await page.get_by_role("button", name=words[1], exact=True).click()
    await expect(page.get_by_role("status")).to_contain_text(words[3])
    await expect(page.get_by_role("status")).not_to_contain_text(name)
    await context.close()
