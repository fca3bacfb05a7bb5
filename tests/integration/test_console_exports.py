"""Exports of the console's filtered lists (gateway.console.list_exports) over the console
world (tests/console_world.py) on SQLite and PostgreSQL, served by the real app: the CSV of
a filtered list has exactly the rows the list shows, across its pages; the XLSX has the same
rows; free text is masked unless the role may see personal data; every export leaves an
``export`` evidence leaf with its row count and the SHA-256 of the bytes sent.
"""

import csv
import hashlib
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from openpyxl import load_workbook
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.cases.views import list_cases
from gateway.clock import to_datetime
from gateway.console import accounts, read_model
from gateway.console.services import case_filter_from, filter_from
from gateway.store.tables import EvidenceLeaf, Mismatch
from tests.console_world import ALPHA, PASSWORD, ConsoleWorld, StubAgency, build_world, console_app

Client = TestClient[web.Request, Any]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
QUEUE_IDS = re.compile(r'class="mismatch-link">(\d+)<')
CASE_IDS = re.compile(r'<td class="mono"><a href="/cases/([^"]+)">')
NEXT_CASES = re.compile(r'href="(/cases\?[^"]+)" id="next-page"')


@dataclass
class Served:
    world: ConsoleWorld
    server: TestServer
    make_client: AiohttpClient

    async def login(self, name: str) -> Client:
        client: Client = await self.make_client(self.server)
        [token] = LOGIN_TOKEN.findall(await (await client.get("/login")).text())
        response = await client.post(
            "/login",
            data={"login_token": token, "name": name, "password": PASSWORD, "next": "/"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        return client

    async def leaves(self) -> list[dict[str, Any]]:
        async with self.world.gateway.db.snapshot() as conn:
            found = await conn.execute(
                sa.select(LEAVES.c.body).where(LEAVES.c.kind == "export").order_by(LEAVES.c.seq)
            )
            return [json.loads(body) for body in found.scalars()]


@pytest.fixture
async def served(
    make_config: Any,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    database_url: str,
) -> AsyncIterator[Served]:
    """The console world on each database backend, served by the real app on loopback."""
    stub = StubAgency()
    agency = await aiohttp_server(stub.app())
    built = await build_world(
        make_config, tmp_path, str(agency.make_url("/hooks")), stub, database_url=database_url
    )
    gateway = built.gateway
    app = console_app(gateway)
    yield Served(built, await aiohttp_server(app), aiohttp_client)
    await gateway.aclose()


def _csv(body: bytes) -> list[dict[str, str]]:
    assert body.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def _query(text: str) -> MultiDict[str]:
    """A query string as the page's handler sees it."""
    return MultiDict(parse_qsl(text))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat()).replace("+00:00", "Z")
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


QUEUE_FILTER = "state=all&agency=AGY_ALPHA&agency=AGY_BETA&sort=created&dir=asc"


async def test_queue_csv_has_exactly_the_rows_of_every_page(served: Served) -> None:
    client = await served.login("vic")
    shown: list[str] = []
    page_no = 1
    while True:
        html = await (
            await client.get(f"/mismatches?{QUEUE_FILTER}&per_page=3&page={page_no}")
        ).text()
        ids = QUEUE_IDS.findall(html)
        if not ids or (shown and ids[0] in shown):
            break
        shown += ids
        page_no += 1
    assert page_no > 3, "the filter must span several pages"

    response = await client.get(f"/mismatches.csv?{QUEUE_FILTER}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert "attachment" in response.headers["Content-Disposition"]
    body = await response.read()
    rows = _csv(body)
    assert [r["id"] for r in rows] == shown

    # Every column holds what the queue's reader says about the row.
    async with served.world.gateway.db.snapshot() as conn:
        data = await read_model.queue(
            conn, filter_from(_query(QUEUE_FILTER)), sort="created", descending=False,
            per_page=read_model.MAX_PAGE_SIZE,
        )  # fmt: skip
    assert len(data["items"]) == len(rows)
    for row, item in zip(rows, data["items"], strict=True):
        assert row == {name: _text(item[name]) for name in row}

    [leaf] = await served.leaves()
    assert leaf["user"] == "vic"
    assert leaf["list"] == "mismatches"
    assert leaf["format"] == "csv"
    assert leaf["rows"] == len(rows)
    assert leaf["sha256"] == hashlib.sha256(body).hexdigest()
    assert leaf["complete"] is True
    assert leaf["personal_data"] == "masked"
    assert "agency=AGY_ALPHA" in leaf["filters"] and "sort=created" in leaf["filters"]


async def test_case_csv_and_xlsx_have_the_rows_of_every_page(served: Served) -> None:
    client = await served.login("olga")
    shown: list[str] = []
    url: str | None = "/cases?status=placed&status=new&limit=5"
    pages = 0
    while url:
        html = await (await client.get(url.replace("&amp;", "&"))).text()
        shown += CASE_IDS.findall(html)
        found = NEXT_CASES.findall(html)
        url = found[0] if found else None
        pages += 1
    assert pages > 1 and shown

    response = await client.get("/cases.csv?status=placed&status=new")
    assert response.status == 200
    body = await response.read()
    rows = _csv(body)
    assert [r["id"] for r in rows] == shown
    async with served.world.gateway.db.snapshot() as conn:
        data = await list_cases(
            conn,
            case_filter_from(_query("status=placed&status=new"), served.world.gateway.pii),
            limit=500,
        )
    for row, item in zip(rows, data["items"], strict=True):
        assert row == {name: _text(item[name]) for name in row}

    response = await client.get("/cases.xlsx?status=placed&status=new")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    workbook = await response.read()
    sheet = load_workbook(io.BytesIO(workbook), read_only=True).active
    assert sheet is not None
    header, *cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert header == list(rows[0])
    assert [{h: _text(v) for h, v in zip(header, r, strict=True)} for r in cells] == rows

    csv_leaf, xlsx_leaf = await served.leaves()
    assert csv_leaf["list"] == xlsx_leaf["list"] == "cases"
    assert xlsx_leaf["format"] == "xlsx"
    assert xlsx_leaf["rows"] == len(rows)
    assert xlsx_leaf["sha256"] == hashlib.sha256(workbook).hexdigest()
    assert "status=placed" in xlsx_leaf["filters"]


async def test_free_text_is_masked_unless_the_role_may_see_personal_data(served: Served) -> None:
    mismatch_id = await served.world.mismatch_id("conflicting_duplicate")
    said = "agency note: call 13812345678 or mail li.lei@example.cn, id 11010519491231002X"
    async with served.world.gateway.db.transaction() as conn:
        await conn.execute(
            MISMATCHES.update().where(MISMATCHES.c.id == mismatch_id).values(detail=said)
        )
    wanted = f"/mismatches.csv?state=all&id={mismatch_id}"

    viewer = await served.login("vic")
    [row] = _csv(await (await viewer.get(wanted)).read())
    assert "13812345678" not in row["detail"] and "138****5678" in row["detail"]
    assert "li.lei@" not in row["detail"] and "l***@example.cn" in row["detail"]
    assert "11010519491231002X" not in row["detail"] and "110" in row["detail"]

    admin = await served.login("ada")
    [row] = _csv(await (await admin.get(wanted)).read())
    assert row["detail"] == said
    masked, shown = await served.leaves()
    assert (masked["personal_data"], shown["personal_data"]) == ("masked", "shown")


async def test_exports_need_a_login_or_a_token(served: Served) -> None:
    anonymous: Client = await served.make_client(served.server)
    response = await anonymous.get("/cases.csv", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")
    response = await anonymous.get("/api/v1/mismatches.xlsx")
    assert response.status == 401
    assert await served.leaves() == []

    token = await accounts.create_token(
        served.world.gateway.db, "vic", "exports", now=to_datetime(served.world.clock.now())
    )
    response = await anonymous.get(
        f"/api/v1/mismatches.csv?agency={ALPHA}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    rows = _csv(await response.read())
    assert rows and {r["agency_id"] for r in rows} == {ALPHA}
    [leaf] = await served.leaves()
    assert (leaf["user"], leaf["via"], leaf["rows"]) == ("vic", "token", len(rows))


async def test_a_malformed_filter_is_refused_with_the_reason(served: Served) -> None:
    client = await served.login("vic")
    response = await client.get("/api/v1/cases.csv?held=perhaps")
    assert response.status == 400
    assert "held" in (await response.json())["detail"]
    assert await served.leaves() == []


async def test_the_agencies_overview_exports_as_the_page_shows_it(served: Served) -> None:
    client = await served.login("vic")
    response = await client.get("/agencies.xlsx")
    assert response.status == 200
    sheet = load_workbook(io.BytesIO(await response.read()), read_only=True).active
    assert sheet is not None
    header, *cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    gateway = served.world.gateway
    async with gateway.db.snapshot() as conn:
        overview = await read_model.agencies_overview(conn, gateway.agencies, None)
    assert [dict(zip(header, r, strict=True))["agency_id"] for r in cells] == [
        a["agency_id"] for a in overview
    ]
    by_id = {r[0]: dict(zip(header, r, strict=True)) for r in cells}
    for agency in overview:
        row = by_id[agency["agency_id"]]
        assert (row["dead"], row["open_mismatches"]) == (agency["dead"], agency["open_mismatches"])
    [leaf] = await served.leaves()
    assert (leaf["list"], leaf["rows"], leaf["filters"]) == ("agencies", len(overview), "")
