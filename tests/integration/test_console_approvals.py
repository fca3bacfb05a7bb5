"""The console's claim confirmation pages: a pending batch is listed with its totals; its
importer's approval is refused with the reason; a second person approves it with the
session's CSRF token; a viewer cannot decide at all (in Chinese, the console's default)."""

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient

from gateway.approvals import store as approvals
from gateway.clock import to_datetime
from gateway.console.accounts import add_user
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches
from gateway.store.tables import Mismatch
from tests.case_world import CaseWorld, account, build_case_world
from tests.console_world import console_app
from tests.integration.test_console import Session

PASSWORD = "correct horse battery staple"
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def world(make_config: Any, tmp_path: Path) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, "sqlite:///" + str(tmp_path / "c.db"))
    for name, role in (("ana", "operator"), ("bo", "admin"), ("vi", "viewer")):
        await add_user(w.db, name, role, PASSWORD, now=_now(w))
    yield w
    await w.gateway.aclose()


def _now(world: CaseWorld) -> datetime:
    return to_datetime(world.clock.now())


async def session(aiohttp_client: AiohttpClient, world: CaseWorld, name: str) -> Session:
    client = await aiohttp_client(console_app(world.gateway))
    s = Session(client)
    assert (await s.login(name, PASSWORD)).status == 303
    return s


async def test_a_second_person_approves_a_batch_in_the_console(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    report = await world.intake(
        [account(1, balance_minor=123_456), account(2)], confirmation="four_eyes", maker="ana"
    )
    assert report.claim_batch is not None
    batch_id = report.claim_batch.id

    ana = await session(aiohttp_client, world, "ana")
    listing = await ana.client.get("/approvals")
    assert listing.status == 200
    assert f'href="/claims/{batch_id}"' in await listing.text()
    page = await ana.client.get(f"/claims/{batch_id}")
    text = await page.text()
    # The console speaks Chinese unless told otherwise.
    assert page.status == 200 and "¥6,234.58" in text and "此文件由您导入" in text

    refused = await ana.client.post(
        f"/claims/{batch_id}/decision",
        data={"csrf_token": ana.csrf, "decision": "approve"},
        allow_redirects=False,
    )
    assert refused.status == 409
    assert "ana made this request and cannot also approve" in await refused.text()

    vi = await session(aiohttp_client, world, "vi")
    forbidden = await vi.client.post(
        f"/claims/{batch_id}/decision",
        data={"csrf_token": vi.csrf, "decision": "approve"},
        allow_redirects=False,
    )
    assert forbidden.status == 403

    bo = await session(aiohttp_client, world, "bo")
    no_token = await bo.client.post(
        f"/claims/{batch_id}/decision", data={"decision": "approve"}, allow_redirects=False
    )
    assert no_token.status == 403
    approved = await bo.client.post(
        f"/claims/{batch_id}/decision",
        data={"csrf_token": bo.csrf, "decision": "approve", "note": "ledger checked"},
        allow_redirects=False,
    )
    assert approved.status == 303
    assert approved.headers["Location"] == f"/claims/{batch_id}?done=approved"
    after = await (await bo.client.get(approved.headers["Location"])).text()
    assert "已批准：其案件现在可以分配。" in after and "ledger checked" in after
    assert (await world.gateway.placements.preview()).reasons.get("unconfirmed") is None

    approval = await bo.client.get(f"/approvals/{report.claim_batch.approval_id}")
    assert approval.status == 200 and batch_id in await approval.text()
    assert (await bo.client.get("/approvals/999")).status == 404


async def test_a_large_write_off_in_the_console_runs_under_the_approval_it_asked_for(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    async with world.db.transaction() as conn:
        await insert_mismatches(
            conn,
            [
                (
                    "k1",
                    MismatchDraft("unknown_placement", None, "t", {}, {}, 2_000_000),
                    "AGY_ONE",
                    None,
                    None,
                )
            ],
            now=_now(world),
        )
        mismatch_id = (await conn.execute(sa.select(MISMATCHES.c.id))).scalar_one()

    ana = await session(aiohttp_client, world, "ana")
    page = await (await ana.client.get(f"/mismatches/{mismatch_id}")).text()
    assert 'name="approval_id"' in page  # the form has a field for the approval's number
    asked = await ana.act(mismatch_id, "write_off", reason="lost")
    text = await asked.text()
    assert asked.status == 409, text
    async with world.db.connect() as conn:
        (state,) = (
            await conn.execute(sa.select(MISMATCHES.c.state).where(MISMATCHES.c.id == mismatch_id))
        ).one()
    assert state == "open"
    async with world.db.connect() as conn:
        pending = [
            a for a in await approvals.listing(conn, status="pending") if a.action == "write_off"
        ]
    [approval] = pending
    assert f"#{approval.id}" in text or str(approval.id) in text

    bo = await session(aiohttp_client, world, "bo")
    decided = await bo.client.post(
        f"/approvals/{approval.id}/decision",
        data={"csrf_token": bo.csrf, "decision": "approve"},
        allow_redirects=False,
    )
    assert decided.status == 303
    done = await ana.act(mismatch_id, "write_off", reason="lost", approval_id=str(approval.id))
    assert done.status == 303, await done.text()
    async with world.db.connect() as conn:
        (state,) = (
            await conn.execute(sa.select(MISMATCHES.c.state).where(MISMATCHES.c.id == mismatch_id))
        ).one()
        assert (await approvals.get(conn, approval.id)).status == "executed"
    assert state == "written_off"
