"""The case page lists the case's authorisation letters (number, agency, validity, status);
roles allowed to see personal data download the signed PDF with a reason, audited like a
reveal; other roles see the list but no download and are refused if they try."""

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.clock import to_datetime
from gateway.console import accounts
from gateway.letters import LetterRequest
from gateway.store.console_tables import PiiReveal
from tests.case_world import AGENCY, START, CaseWorld, account
from tests.console_world import PASSWORD, console_app
from tests.letters_world import build_letter_world

Client = TestClient[web.Request, Any]
REVEALS = PiiReveal.__table__  # type: ignore[attr-defined]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@pytest.fixture
async def world(make_config: Any, tmp_path: Path) -> AsyncIterator[CaseWorld]:
    w = await build_letter_world(make_config, tmp_path, "sqlite:///" + str(tmp_path / "c.db"))
    for name, role in {"ada": "admin", "vic": "viewer"}.items():
        await accounts.add_user(w.gateway.db, name, role, PASSWORD, now=START)
    await w.intake([account(1)])
    letters = w.gateway.letters
    assert letters is not None
    async with w.db.transaction() as conn:
        await letters.issue_letters(
            conn,
            [
                LetterRequest(
                    "ACC-0001-P1", "ACC-0001", AGENCY, START.date(), START.date() + timedelta(90)
                )
            ],
            now=to_datetime(w.clock.now()),
        )
        await letters.revoke_letters(
            conn, ["ACC-0001-P1"], reason="EXPIRED", now=to_datetime(w.clock.now())
        )
        await letters.issue_letters(
            conn,
            [
                LetterRequest(
                    "ACC-0001-P2", "ACC-0001", AGENCY, START.date(), START.date() + timedelta(30)
                )
            ],
            now=to_datetime(w.clock.now()),
        )
    yield w
    await w.gateway.aclose()


async def login(
    world: CaseWorld, server: AiohttpServer, make_client: AiohttpClient, name: str
) -> tuple[Client, str]:
    client: Client = await make_client(await server(console_app(world.gateway)))
    form = await (await client.get("/login")).text()
    [token] = LOGIN_TOKEN.findall(form)
    response = await client.post(
        "/login",
        data={"login_token": token, "name": name, "password": PASSWORD, "next": "/"},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    return client, CSRF.findall(await (await client.get("/")).text())[0]


async def test_admin_sees_the_letters_and_downloads_one_audited(
    world: CaseWorld, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    client, csrf = await login(world, aiohttp_server, aiohttp_client, "ada")
    page = await (await client.get("/cases/ACC-0001")).text()
    section = page[page.index('id="letters"') :]
    section = section[: section.index("</section>")]
    numbers = re.findall(r"SQ2026-\d{7}-[0-9A-Z]", section)
    assert numbers[0].startswith("SQ2026-0000002") and "SQ2026-0000001" in numbers[-1]
    assert "letter-revoked" in section and 'title="EXPIRED"' in section
    assert "letter-active" in section
    assert section.count('action="/cases/ACC-0001/letters/') == 2

    refused = await client.post(
        f"/cases/ACC-0001/letters/{numbers[0]}", data={"csrf_token": csrf, "reason": ""}
    )
    assert refused.status == 400
    got = await client.post(
        f"/cases/ACC-0001/letters/{numbers[0]}",
        data={"csrf_token": csrf, "reason": "borrower asked for a copy"},
    )
    assert got.status == 200, await got.text()
    assert got.headers["Content-Type"] == "application/pdf"
    assert f"authorisation-{numbers[0]}.pdf" in got.headers["Content-Disposition"]
    assert (await got.read()).startswith(b"%PDF-")
    [audit] = await world.rows(sa.select(REVEALS))
    assert (audit["user_name"], audit["case_id"], audit["fields"], audit["reason"]) == (
        "ada",
        "ACC-0001",
        f"letter:{numbers[0]}",
        "borrower asked for a copy",
    )
    other = await client.post(
        "/cases/ACC-0001/letters/SQ2026-0009999-X",
        data={"csrf_token": csrf, "reason": "curious"},
    )
    assert other.status == 404


async def test_a_viewer_sees_the_list_but_cannot_download(
    world: CaseWorld, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    client, csrf = await login(world, aiohttp_server, aiohttp_client, "vic")
    page = await (await client.get("/cases/ACC-0001")).text()
    section = page[page.index('id="letters"') :]
    section = section[: section.index("</section>")]
    assert "SQ2026-0000002" in section
    assert "/letters/" not in section
    number = re.findall(r"SQ2026-0000002-[0-9A-Z]", section)[0]
    refused = await client.post(
        f"/cases/ACC-0001/letters/{number}", data={"csrf_token": csrf, "reason": "please"}
    )
    assert refused.status == 403
    assert await world.rows(sa.select(REVEALS)) == []
