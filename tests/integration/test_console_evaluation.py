"""The console's evaluation pages: the list and one evaluation (in Chinese, the default, and
English), its documents downloaded, and the decision proposed by an operator and approved by
an admin behind login, role and CSRF, changing the register."""

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from gateway.console.accounts import add_user
from gateway.evaluation.service import EvaluationService
from gateway.register.store import read_entry
from gateway.server import create_app
from tests.case_world import CaseWorld, build_case_world
from tests.integration.test_console import Session
from tests.integration.test_evaluation import END, NOW, world as evaluation_world

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    for name, role in (("ana", "operator"), ("vi", "viewer"), ("ada", "admin")):
        await add_user(w.db, name, role, PASSWORD, now=NOW)
    yield w
    await w.gateway.aclose()


async def session(
    aiohttp_client: AiohttpClient, world: CaseWorld, service: EvaluationService, name: str
) -> Session:
    services = dataclasses.replace(world.gateway.console_services(), evaluations=service)
    app = create_app(
        inbound=world.gateway.inbound, db=world.db, metrics_=world.gateway.metrics, console=services
    )
    s = Session(await aiohttp_client(app))
    assert (await s.login(name, PASSWORD)).status == 303
    return s


async def test_an_evaluation_is_shown_downloaded_decided_and_approved(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    service = await evaluation_world(world.db)
    report_id = (await service.generate(["AGY_C"], end=END, actor="ops:test", now=NOW))[0]
    vi = await session(aiohttp_client, world, service, "vi")
    listing = await (await vi.client.get("/evaluations")).text()
    assert "年度评估" in listing and f'href="/evaluations/{report_id}"' in listing
    page = await vi.client.get(f"/evaluations/{report_id}?lang=en")
    text = await page.text()
    assert page.status == 200 and "relative to peers (bps)" in text
    assert "terminate" in text and "high_violations" in text and "Propose" not in text
    pdf = await vi.client.get(f"/evaluations/{report_id}/pdf_zh")
    assert pdf.status == 200 and (await pdf.read()).startswith(b"%PDF-")
    refused = await vi.client.post(
        f"/evaluations/{report_id}/decide",
        data={"csrf_token": vi.csrf, "decision": "terminate", "reason": "x"},
        allow_redirects=False,
    )
    assert refused.status == 403

    ana = await session(aiohttp_client, world, service, "ana")
    no_csrf = await ana.client.post(
        f"/evaluations/{report_id}/decide",
        data={"decision": "reduce_share", "reason": "x"},
        allow_redirects=False,
    )
    assert no_csrf.status == 403
    proposed = await ana.client.post(
        f"/evaluations/{report_id}/decide",
        data={
            "csrf_token": ana.csrf,
            "decision": "reduce_share",
            "share_bps": "3000",
            "reason": "投诉成立率过高",
        },
        allow_redirects=False,
    )
    assert proposed.status == 303
    # The maker cannot approve (and is not offered the form); an operator is not a checker.
    own = await ana.client.post(
        f"/evaluations/{report_id}/approve", data={"csrf_token": ana.csrf}, allow_redirects=False
    )
    assert own.status == 409 and "cannot also approve" in await own.text()
    ada = await session(aiohttp_client, world, service, "ada")
    assert "/approve" in await (await ada.client.get(f"/evaluations/{report_id}")).text()
    approved = await ada.client.post(
        f"/evaluations/{report_id}/approve",
        data={"csrf_token": ada.csrf, "note": "同意"},
        allow_redirects=False,
    )
    assert approved.status == 303
    async with world.db.connect() as conn:
        assert (await read_entry(conn, "AGY_C")).share_bps == 3_000
    shown = await (await ada.client.get(f"/evaluations/{report_id}?done=approve")).text()
    assert "决定已批准并已更新名录" in shown
