"""The console's conduct page: violations raised on arrival counted by agency and kind with a
link to the queue, the month's QA sample with its progress, and the review form (a viewer
cannot review, a post without the session's CSRF token is refused, a reviewed item is
final and the refusal is shown); a failed recording raises ``recording_qa_failed``."""

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient

from gateway.clock import to_datetime
from gateway.conduct.qa import SAMPLES, draw_month
from gateway.console.accounts import add_user
from gateway.store.tables import Mismatch
from tests.case_world import AGENCY, CaseWorld, account, build_case_world
from tests.integration.test_console_requests import PASSWORD, session

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def world(make_config: Any, tmp_path: Path) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, "sqlite:///" + str(tmp_path / "c.db"))
    now = to_datetime(w.clock.now())
    for name, role in (("ana", "operator"), ("vi", "viewer")):
        await add_user(w.db, name, role, PASSWORD, now=now)
    yield w
    await w.gateway.aclose()


async def test_the_conduct_page_counts_violations_and_keeps_the_qa_sample(
    world: CaseWorld, aiohttp_client: AiohttpClient
) -> None:
    await world.intake([account(1, balance_minor=600_000)])
    assert await world.allocate() == 1
    [p] = await world.placements()
    ack = {"agency_case_ref": "R-1", "balance": {"amount_minor": 600_000, "currency": "CNY"}}
    assert await world.post("placement.acknowledged", {"placement_id": p["id"], **ack}) == 200
    now = to_datetime(world.clock.now())
    local = now.astimezone(SHANGHAI)
    day = local.replace(hour=10, minute=0, second=0, microsecond=0)
    for n, party in enumerate(("third_party", "debtor")):
        contact = {
            "placement_id": p["id"],
            "channel": "call",
            "outcome": "reached",
            "attempted_at": (day + timedelta(minutes=n)).isoformat(),
            "effective": party == "debtor",
            "party": party,
            "purpose": "debt" if party == "third_party" else None,
            "collector_id": f"C-{n}",
            "recording_ref": f"rec/{n}.mp3",
        }
        assert await world.post("contact.attempted", contact) == 200
    month = f"{local:%Y-%m}"
    async with world.db.transaction() as conn:
        drawn = await draw_month(
            conn, AGENCY, month, size=5, zone=SHANGHAI, actor="ops:ana", now=now
        )
    assert len(drawn.items) == 2
    first = drawn.items[0]

    ana = await session(aiohttp_client, world, "ana")
    page = await ana.client.get(f"/conduct?month={month}")
    text = await page.text()
    assert page.status == 200, text
    assert "联系第三方" in text and "kind=third_party_contact" in text  # Chinese by default
    assert "rec/0.mp3" in text and "rec/1.mp3" in text and "已审 0 / 2" in text

    vi = await session(aiohttp_client, world, "vi")
    refused = await vi.client.post(
        f"/conduct/qa/{first.id}",
        data={"csrf_token": vi.csrf, "action": "fail", "month": month},
        allow_redirects=False,
    )
    assert refused.status == 403
    no_csrf = await ana.client.post(
        f"/conduct/qa/{first.id}", data={"action": "fail"}, allow_redirects=False
    )
    assert no_csrf.status == 403
    done = await ana.client.post(
        f"/conduct/qa/{first.id}",
        data={"csrf_token": ana.csrf, "action": "fail", "note": "说了威胁的话", "month": month},
        allow_redirects=False,
    )
    assert done.status == 303 and "done=failed" in done.headers["Location"]
    again = await ana.client.post(
        f"/conduct/qa/{first.id}",
        data={"csrf_token": ana.csrf, "action": "pass", "month": month},
        allow_redirects=False,
    )
    assert again.status == 409 and f"QA item {first.id} is failed" in await again.text()

    text = await (await ana.client.get(f"/conduct?month={month}")).text()
    assert "已审 1 / 2" in text and "质检不通过" in text
    assert re.search(r"recording_qa_failed", text)  # the kind's title in the counts
    [row] = await world.rows(sa.select(SAMPLES).where(SAMPLES.c.id == first.id))
    assert row["state"] == "failed" and row["reviewer"] == "ops:ana"
    kinds = {r["kind"] for r in await world.rows(sa.select(MISMATCHES.c.kind))}
    assert {"third_party_contact", "recording_qa_failed"} <= kinds
    bad = await ana.client.get("/conduct?month=2026-13")
    assert bad.status == 400 and "YYYY-MM" in await bad.text()
