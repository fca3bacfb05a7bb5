"""Exporting a filtered list in a real headless Chromium (Debian ``chromium``, driven by
Playwright): the queue's "Export CSV" link downloads a file with the rows the page shows, and
the case list's "Export XLSX" link a workbook. Elements are found by id and name, so the test
holds in either of the console's languages."""

import asyncio
import csv
import io
from pathlib import Path

from openpyxl import load_workbook
from playwright.async_api import Browser, Download, Page, expect

from tests.console_world import ALPHA, PASSWORD, ConsoleWorld
from tests.e2e import test_console_browser as english

pytestmark = english.pytestmark
browser = english.browser
served = english.served


async def log_in(browser: Browser, base: str, name: str) -> Page:
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await page.goto(f"{base}/login")
    await page.locator("input[name=name]").fill(name)
    await page.locator("input[name=password]").fill(PASSWORD)
    await page.locator("form button[type=submit]").first.click()
    await page.wait_for_url(f"{base}/")
    return page


async def _body(download: Download) -> bytes:
    return await asyncio.to_thread(Path(await download.path()).read_bytes)


async def test_the_export_links_download_the_rows_the_page_shows(
    served: tuple[ConsoleWorld, str], browser: Browser
) -> None:
    _world, base = served
    page = await log_in(browser, base, "vic")
    await page.goto(f"{base}/mismatches?state=all&agency={ALPHA}&per_page=200")
    links = page.locator("table.queue tbody a.mismatch-link")
    await expect(links.first).to_be_visible()
    shown = await links.all_inner_texts()

    async with page.expect_download() as started:
        await page.locator("#export-csv").click()
    download = await started.value
    assert download.suggested_filename.endswith(".csv")
    text = (await _body(download)).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["id"] for row in rows] == shown
    assert {row["agency_id"] for row in rows} == {ALPHA}

    await page.goto(f"{base}/cases?agency={ALPHA}")
    cases = await page.locator("#cases tbody td.mono a[href^='/cases/']").all_inner_texts()
    async with page.expect_download() as started:
        await page.locator("#export-xlsx").click()
    download = await started.value
    assert download.suggested_filename.endswith(".xlsx")
    sheet = load_workbook(io.BytesIO(await _body(download))).active
    assert sheet is not None
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True)] == cases
