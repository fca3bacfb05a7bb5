"""The ops console in a real headless Chromium (Debian ``chromium``, driven by Playwright):
log in, filter the queue, open a mismatch, resolve it, see the case timeline change, and a
viewer refused an action. Also renders the screenshots in docs/screenshots/ when
``GATEWAY_UPDATE_SCREENSHOTS=1`` (otherwise into a temporary folder, to check they render).

Playwright drives the system Chromium (``executable_path``); it never downloads a browser.
"""

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image
from playwright.async_api import Browser, Dialog, Page, async_playwright, expect
from pytest_aiohttp import AiohttpServer

from gateway.store.tables import Mismatch
from tests.console_world import ALPHA, PASSWORD, ConsoleWorld, StubAgency, build_world, console_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian chromium (.ci/run installs it)"
)


@pytest.fixture
async def served(
    make_config: Any, tmp_path: Path, aiohttp_server: AiohttpServer
) -> AsyncIterator[tuple[ConsoleWorld, str]]:
    """The console world served on a real loopback port; yields (world, base URL)."""
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    world = await build_world(make_config, tmp_path, str(agency.make_url("/hooks")), stub)
    gateway = world.gateway
    app = console_app(gateway)
    server = await aiohttp_server(app)
    yield world, str(server.make_url("")).rstrip("/")
    await gateway.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def log_in(browser: Browser, base: str, name: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base}/")
    await expect(page).to_have_url(f"{base}/login?next=%2F")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return page


async def accept_dialog(dialog: Dialog) -> None:
    await dialog.accept()


async def test_an_operator_resolves_a_mismatch_and_a_viewer_cannot(
    served: tuple[ConsoleWorld, str], browser: Browser
) -> None:
    world, base = served
    page = await log_in(browser, base, "olga")

    await page.get_by_role("link", name="Mismatches", exact=True).click()
    await page.locator("#filter-kind").select_option("ack_balance_differs")
    await page.get_by_role("button", name="Apply", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/mismatches\?.*kind=ack_balance_differs"))
    rows = page.locator("table.queue tbody tr")
    await expect(rows).to_have_count(1)
    mismatch_id = await world.mismatch_id("ack_balance_differs")
    await rows.first.get_by_role("link", name=str(mismatch_id), exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(
        f"#{mismatch_id} ack balance differs"
    )

    await page.locator("#case-link").click()
    timeline = page.locator("#timeline tbody tr")
    before = await timeline.count()
    assert before >= 3  # placed, the packet sent and its receipt at least
    await expect(page.locator("#timeline .entry-action")).to_have_count(0)
    await page.go_back()

    accept = page.locator("form.action-accept")
    await accept.get_by_label("reason").fill("agency's figure includes the late fee")
    await accept.get_by_role("button", name="Accept agency figure").click()
    await expect(page.get_by_role("status")).to_contain_text("Accept agency figure: recorded")
    await expect(page.locator("h1 .badge.state-resolved")).to_be_visible()
    await expect(page.locator(".history")).to_contain_text("agency's figure includes the late fee")

    await page.locator("#case-link").click()
    await expect(timeline).to_have_count(before + 1)
    last = page.locator("#timeline .entry-action")
    await expect(last).to_have_count(1)
    await expect(last).to_contain_text("olga")
    await expect(last).to_contain_text("agency's figure includes the late fee")
    await expect(last).to_contain_text("open → resolved")

    viewer = await log_in(browser, base, "vic")
    other = await world.mismatch_id("missing_ack")
    await viewer.goto(f"{base}/mismatches/{other}")
    await expect(viewer.locator("#actions")).to_contain_text("Read-only")
    await expect(viewer.locator("form.action")).to_have_count(0)
    token = await viewer.locator("input[name=csrf_token]").first.get_attribute("value")
    assert token
    forged = await viewer.request.post(
        f"{base}/mismatches/{other}/actions",
        form={"csrf_token": token, "action": "dismiss", "reason": "I should not be able to"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert "This needs the operator role" in await forged.text()
    async with world.gateway.db.snapshot() as conn:
        state = (
            await conn.execute(sa.select(MISMATCHES.c.state).where(MISMATCHES.c.id == other))
        ).scalar_one()
    assert state == "open"


async def test_an_operator_finds_a_case_by_the_agency_ref_and_holds_it(
    served: tuple[ConsoleWorld, str], browser: Browser
) -> None:
    world, base = served
    pid, case_id, _balance = world.placements[ALPHA][1]  # acknowledged as "ALPHA-1"
    page = await log_in(browser, base, "olga")
    await page.get_by_role("link", name="Cases", exact=True).click()
    await page.get_by_label("search by any id").fill("ALPHA-1")
    await page.get_by_role("button", name="Find", exact=True).click()
    rows = page.locator("#cases tbody tr")
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link", name=case_id, exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Case {case_id}")
    why = page.locator("#why")
    await expect(why).to_contain_text(f"{pid} → {ALPHA}")
    await expect(why.locator("tr.chosen")).to_contain_text(ALPHA)

    hold = page.locator("#hold-form")
    await hold.get_by_label("hold code").fill("DISPUTE")
    await hold.get_by_label("hold note").fill("debtor wrote to the lender")
    await hold.get_by_role("button", name="Put on hold").click()
    await expect(page.get_by_role("status")).to_contain_text("Put on hold: recorded")
    await expect(page.locator("h1 .badge.case-held")).to_be_visible()
    await expect(page.locator("#holds tbody")).to_contain_text("debtor wrote to the lender")
    await expect(page.locator("#placements tbody")).to_contain_text("recalled")
    await expect(page.locator("#timeline")).to_contain_text("hold put on")

    release = page.locator("form.action-release")
    await release.get_by_label("release note").fill("lender confirmed the debt")
    await release.get_by_role("button", name="Release DISPUTE").click()
    await expect(page.get_by_role("status")).to_contain_text("Release hold: recorded")
    await expect(page.locator("h1 .badge.case-open")).to_be_visible()
    await expect(page.locator("form.action-release")).to_have_count(0)


async def test_screenshots_of_the_main_pages(
    served: tuple[ConsoleWorld, str], browser: Browser, tmp_path: Path
) -> None:
    world, base = served
    update = os.environ.get("GATEWAY_UPDATE_SCREENSHOTS") == "1"
    target = SCREENSHOTS if update else tmp_path / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    login = await context.new_page()
    await login.goto(f"{base}/login")
    await login.screenshot(path=str(target / "login.png"))
    page = await log_in(browser, base, "ada")
    # Some work today, so the dashboard and agency pages have deliveries and failures to show.
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
        await form.locator("input[name=reason]").fill("screenshot scenario")
        await form.locator("button").click()
        await expect(page.get_by_role("status")).to_contain_text("recorded")
    await (await world.gateway.dispatcher()).drain_once()
    duplicate = await world.mismatch_id("conflicting_duplicate")
    await page.goto(f"{base}/mismatches/{duplicate}")
    await page.locator("form.action-assign select").select_option("olga")
    await page.locator("form.action-assign button").click()
    await page.locator("form.action-comment textarea").fill("Asked the agency for the receipt.")
    await page.locator("form.action-comment button").click()
    shots = {
        "dashboard.png": "/",
        "queue.png": "/mismatches?sort=severity&per_page=15",
        "mismatch.png": f"/mismatches/{duplicate}",
        "agency.png": "/agencies/AGY_BETA",
        "agencies.png": "/agencies",
        "users.png": "/users",
        "cases.png": "/cases?status=placed",
    }
    for name, path in shots.items():
        await page.goto(f"{base}{path}")
        await page.screenshot(path=str(target / name), full_page=True)
    await page.goto(f"{base}/mismatches/{duplicate}")
    await page.locator("#case-link").click()
    await page.screenshot(path=str(target / "case-timeline.png"), full_page=True)
    for name in [*shots, "login.png", "case-timeline.png"]:
        assert_rendered_page(target / name)


async def test_the_search_box_and_the_keyboard_shortcuts(
    served: tuple[ConsoleWorld, str], browser: Browser
) -> None:
    world, base = served
    page = await log_in(browser, base, "olga")
    _pid, case_id, _balance = world.placements[ALPHA][1]
    # The header's search box: an agency's reference, in any case, opens the case.
    await page.locator("#search-box").fill("alpha-1")
    await page.locator("#search-box").press("Enter")
    await expect(page).to_have_url(f"{base}/cases/{case_id}")
    # A debtor id: the browser is sent to the debtor's cases by its key; the id is in no
    # address the browser visited (the box posts).
    async with world.gateway.db.snapshot() as conn:
        found = await conn.execute(
            sa.text("SELECT debtor_id FROM cases WHERE id = :id"), {"id": case_id}
        )
        debtor = found.scalar_one()
    visited: list[str] = []
    page.on("request", lambda request: visited.append(request.url))
    await page.locator("#search-box").fill(debtor)
    await page.locator("#search-box").press("Enter")
    await expect(page).to_have_url(re.compile(r"/cases\?debtor_key=[0-9a-f]{64}$"))
    await expect(page.locator("#cases tbody")).to_contain_text(case_id)
    assert visited and not [url for url in visited if debtor in url]

    async with world.gateway.db.snapshot() as conn:
        found = await conn.execute(sa.select(MISMATCHES.c.id).order_by(MISMATCHES.c.id))
        ids = list(found.scalars())
    await page.goto(f"{base}/mismatches?state=all&sort=id&dir=asc")
    for key in ("j", "j", "o"):  # the second row, opened
        await page.keyboard.press(key)
    await expect(page).to_have_url(re.compile(rf"/mismatches/{ids[1]}\?back="))
    await page.keyboard.press("j")  # the next one of the same list
    await expect(page).to_have_url(re.compile(rf"/mismatches/{ids[2]}\?back="))
    await page.keyboard.press("k")
    await expect(page).to_have_url(re.compile(rf"/mismatches/{ids[1]}\?back="))
    await page.keyboard.press("u")  # back to the list, its filters kept
    await expect(page).to_have_url(re.compile(r"/mismatches\?state=all&sort=id&dir=asc"))
    await page.keyboard.press("/")
    await expect(page.locator("#search-box")).to_be_focused()


def assert_rendered_page(path: Path) -> None:
    """A screenshot of a page that rendered: a PNG at least as wide as the viewport (a full
    page may be wider), and not blank (an empty page has a handful of colours; a console page
    has hundreds)."""
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 1400, (path.name, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=4096)
        assert colours is None or len(colours) > 64, f"{path.name} looks blank"
