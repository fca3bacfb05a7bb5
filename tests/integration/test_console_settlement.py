"""The console's settlement pages: statements listed per agency and month, a statement's
lines, an adjustment and the issue behind login, role and CSRF, and the documents to
download (the XLSX read back with openpyxl); in Chinese, the console's default, and English."""

import dataclasses
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from pytest_aiohttp import AiohttpClient

from gateway.console.accounts import add_user
from gateway.server import create_app
from gateway.settlement.documents import renderer
from gateway.store.database import Database
from tests.case_world import CaseWorld, build_case_world
from tests.integration.test_console import Session
from tests.integration.test_settlement_statements import MARCH
from tests.settlement_world import NOW, agency, seed, service

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    for name, role in (("ana", "operator"), ("vi", "viewer")):
        await add_user(w.db, name, role, PASSWORD, now=NOW)
    await seed(w.db, "FIRM", MARCH)
    yield w
    await w.gateway.aclose()


async def session(aiohttp_client: AiohttpClient, world: CaseWorld, name: str) -> Session:
    services = dataclasses.replace(
        world.gateway.console_services(),
        statements=service(world.db, agency("FIRM"), renderer=renderer(None)),
    )
    app = create_app(
        inbound=world.gateway.inbound,
        db=world.db,
        metrics_=world.gateway.metrics,
        console=services,
    )
    s = Session(await aiohttp_client(app))
    assert (await s.login(name, PASSWORD)).status == 303
    return s


async def _build(db: Database) -> int:
    return await service(db, agency("FIRM")).build("FIRM", "2026-03", actor="ops:ann")


async def test_statements_are_listed_and_shown_with_their_lines(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    sid = await _build(world.db)
    vi = await session(aiohttp_client, world, "vi")
    listing = await (await vi.client.get("/settlement")).text()
    assert "佣金结算单" in listing and f'href="/settlement/{sid}"' in listing
    page = await vi.client.get(f"/settlement/{sid}?lang=en")
    text = await page.text()
    assert page.status == 200
    assert "Lines" in text and "fresh M1" in text and "withheld: attribution disputed" in text
    assert "Issue to the agency" not in text  # a viewer gets no actions
    refused = await vi.client.post(
        f"/settlement/{sid}/issue", data={"csrf_token": vi.csrf}, allow_redirects=False
    )
    assert refused.status == 403


async def test_an_operator_adjusts_and_issues_and_downloads_the_workbook(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    sid = await _build(world.db)
    before = (await service(world.db, agency("FIRM")).show(sid)).statement["total_minor"]
    ana = await session(aiohttp_client, world, "ana")
    no_csrf = await ana.client.post(
        f"/settlement/{sid}/adjust",
        data={"amount_minor": "-500", "reason": "x"},
        allow_redirects=False,
    )
    assert no_csrf.status == 403
    adjusted = await ana.client.post(
        f"/settlement/{sid}/adjust",
        data={"csrf_token": ana.csrf, "amount_minor": "-500", "reason": "重复入账"},
        allow_redirects=False,
    )
    assert adjusted.status == 303
    bad = await ana.client.post(
        f"/settlement/{sid}/adjust",
        data={"csrf_token": ana.csrf, "amount_minor": "5.5", "reason": "x"},
        allow_redirects=False,
    )
    assert bad.status == 409
    issued = await ana.client.post(
        f"/settlement/{sid}/issue", data={"csrf_token": ana.csrf}, allow_redirects=False
    )
    assert issued.status == 303
    view = await service(world.db, agency("FIRM")).show(sid)
    assert view.statement["state"] == "issued"
    assert view.statement["total_minor"] == int(str(before)) - 500
    assert view.adjustments[0]["actor"] == "console:ana"
    again = await ana.client.post(
        f"/settlement/{sid}/adjust",
        data={"csrf_token": ana.csrf, "amount_minor": "1", "reason": "late"},
        allow_redirects=False,
    )
    assert again.status == 409 and "issued: cannot adjust" in await again.text()
    download = await ana.client.get(f"/settlement/{sid}/xlsx")
    assert download.status == 200
    book = load_workbook(io.BytesIO(await download.read()))
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True)}
    assert Decimal(str(summary["应付合计 Total payable"])) * 100 == view.statement["total_minor"]
    assert summary["SHA-256"] == view.statement["canonical_sha256"]
