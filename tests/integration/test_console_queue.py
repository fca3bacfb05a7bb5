"""Finding anything and working the queue fast, served for real over the console world
(tests/console_world.py: real intake, dispatch and signed agency events) on SQLite and
PostgreSQL: the search box resolves every kind of id and goes straight to a single hit;
filters survive an action; several kinds at once, age and amount filters; saved views per
user; "submit and next"; the differing fields of "our record against theirs"; and an
agency's inbound health against what was received.
"""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from gateway.clock import to_datetime
from gateway.console import read_model
from gateway.console.comparison import compare, flatten
from gateway.console.inbound_health import inbound_health
from gateway.console.navigation import local_path
from gateway.console.timeline import loads
from gateway.resolutions.rules import MismatchFilter
from gateway.store.database import Database
from gateway.store.mail_tables import MailboxState, MailReply
from gateway.store.recon_tables import LenderPayment, PaymentFeed
from gateway.store.tables import AgencyEventRow, InboundMessage, Mismatch, OutboxItem, Placement
from gateway.store.transfer_tables import FilePickup
from tests.console_world import (
    ALPHA,
    BETA,
    PASSWORD,
    START,
    ConsoleWorld,
    StubAgency,
    build_world,
    console_app,
)

Client = TestClient[web.Request, Any]
M = Mismatch.__table__.c  # type: ignore[attr-defined]
P = Placement.__table__.c  # type: ignore[attr-defined]
OB = OutboxItem.__table__.c  # type: ignore[attr-defined]
IN = InboundMessage.__table__.c  # type: ignore[attr-defined]
EV = AgencyEventRow.__table__.c  # type: ignore[attr-defined]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
ROW_LINKS = re.compile(r'href="/mismatches/(\d+)\?back=([^"]+)" class="mismatch-link"')


@dataclass
class Served:
    world: ConsoleWorld
    server: TestServer
    make_client: AiohttpClient

    async def login(self, name: str) -> tuple[Client, str]:
        client: Client = await self.make_client(self.server)
        [token] = LOGIN_TOKEN.findall(await (await client.get("/login")).text())
        response = await client.post(
            "/login",
            data={"login_token": token, "name": name, "password": PASSWORD, "next": "/"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        return client, CSRF.findall(await (await client.get("/")).text())[0]

    async def all(self, query: Any) -> list[Any]:
        async with self.world.gateway.db.snapshot() as conn:
            return list((await conn.execute(query)).all())


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
    world = await build_world(
        make_config, tmp_path, str(agency.make_url("/hooks")), stub, database_url=database_url
    )
    gateway = world.gateway
    app = console_app(gateway)
    yield Served(world, await aiohttp_server(app), aiohttp_client)
    await gateway.aclose()


async def _found(client: Client, text: str) -> tuple[int, str]:
    """(status, Location or page) of a search."""
    response = await client.get("/search", params={"q": text}, allow_redirects=False)
    if response.status == 303:
        return 303, response.headers["Location"]
    return response.status, await response.text()


# --- find anything -----------------------------------------------------------------------


async def test_the_search_box_goes_straight_to_the_page_of_every_kind_of_id(
    served: Served,
) -> None:
    world = served.world
    client, _csrf = await served.login("vic")
    assert 'id="search-box"' in await (await client.get("/mismatches")).text()
    p1, case1, _b = world.placements[ALPHA][1]
    (dedupe_key, packet_case), *_ = await served.all(
        sa.select(OB.dedupe_key, P.case_id).join(Placement, P.id == OB.placement_id).limit(1)
    )
    [(webhook_id,)] = await served.all(
        sa.select(IN.external_id)
        .join(AgencyEventRow, EV.inbound_id == IN.id)
        .where(EV.placement_id == p1, EV.ref.is_(None))
        .limit(1)
    )
    [(debtor,)] = await served.all(
        sa.select(sa.text("debtor_id"))
        .select_from(sa.text("cases"))
        .where(sa.text("id = :id").bindparams(id=case1))
    )
    async with world.gateway.db.transaction() as conn:
        feed = await conn.execute(
            sa.insert(PaymentFeed.__table__).values(  # type: ignore[attr-defined]
                source="feed.csv", sha256="0" * 64, format="csv", lines=1, imported=1,
                duplicates=0, errors=0, imported_at=START,
            ).returning(sa.column("id"))
        )  # fmt: skip
        await conn.execute(
            sa.insert(LenderPayment.__table__).values(  # type: ignore[attr-defined]
                payment_id="RCPT-77", feed_id=feed.scalar_one(), line_no=1, line_sha256="1" * 64,
                kind="debtor", case_id=case1, placement_id=p1, agency_id=ALPHA,
                amount_minor=500, currency="CNY", received_at=START, created_at=START,
            )
        )  # fmt: skip
    mismatch_id = await world.mismatch_id("ack_balance_differs")
    case_page = f"/cases/{case1}"
    expected = {
        case1.lower(): case_page,  # case id, any case
        p1.lower(): case_page,  # placement id
        "alpha-1": case_page,  # the agency's case reference
        debtor: "/cases?debtor_key=" + world.gateway.pii.debtor_key(debtor),
        dedupe_key: f"/cases/{packet_case}",  # a packet
        webhook_id.upper(): case_page,  # a webhook id
        "pay-1001": case_page,  # an agency payment id (two events, one case)
        "PAY-9": f"/agencies/{ALPHA}",  # a payment on a placement that is not ours
        "rcpt-77": case_page,  # a lender payment id
        f"#{mismatch_id}": f"/mismatches/{mismatch_id}",
        "agy_beta": f"/agencies/{BETA}",
    }
    for text, location in expected.items():
        assert await _found(client, text) == (303, location), text


async def test_several_hits_are_grouped_by_kind_and_none_says_what_was_searched(
    served: Served,
) -> None:
    client, _csrf = await served.login("vic")
    ids = {n for (n,) in await served.all(sa.select(OB.id))} & {
        n for (n,) in await served.all(sa.select(M.id))
    }
    both = min(ids)
    status, page = await _found(client, str(both))
    assert status == 200
    assert 'id="found-mismatch"' in page and 'id="found-packet"' in page
    assert f'href="/mismatches/{both}"' in page
    status, page = await _found(client, "NO-SUCH-ID-42")
    assert status == 200 and 'id="search-nothing"' in page and "NO-SUCH-ID-42" in page


# --- the queue -----------------------------------------------------------------------------


async def _ids(world: ConsoleWorld, target: MismatchFilter) -> list[int]:
    async with world.gateway.db.snapshot() as conn:
        page = await read_model.queue(conn, target, per_page=200)
    return sorted(item["id"] for item in page["items"])


async def test_several_kinds_and_agencies_age_and_amount_filters(served: Served) -> None:
    world = served.world
    every = await served.all(sa.select(M.id, M.kind, M.agency_id, M.created_at, M.delta_minor))
    kinds = ("ack_balance_differs", "missing_ack")
    assert await _ids(world, MismatchFilter(states=(), kinds=kinds)) == sorted(
        i for i, k, *_ in every if k in kinds
    )
    assert await _ids(world, MismatchFilter(states=(), agencies=(ALPHA, BETA))) == sorted(
        i for i, *_ in every
    )
    now = to_datetime(world.clock.now())
    cut = now - timedelta(days=2)
    older = sorted(i for i, _k, _a, created, _d in every if created < cut)
    newer = sorted(i for i, _k, _a, created, _d in every if created > cut)
    assert older and newer
    assert await _ids(world, MismatchFilter(states=(), older_than_days=2, as_of=now)) == older
    assert await _ids(world, MismatchFilter(states=(), newer_than_days=2, as_of=now)) == newer
    sized = sorted(i for i, *_r, d in every if d is not None and 2_000 <= abs(d) <= 5_000)
    assert sized
    assert (
        await _ids(world, MismatchFilter(states=(), min_amount_minor=2_000, max_amount_minor=5_000))
        == sized
    )
    # The same through the page's query string.
    client, _csrf = await served.login("vic")
    page = await (
        await client.get(
            "/mismatches?state=all&kind=ack_balance_differs&kind=missing_ack"
            "&min_amount=20.00&max_amount=50&per_page=200"
        )
    ).text()
    shown = sorted(int(i) for i, _b in ROW_LINKS.findall(page))
    assert shown == sorted(
        i for i, k, _a, _c, d in every if k in kinds and d is not None and 2_000 <= abs(d) <= 5_000
    )
    page = await (await client.get("/mismatches?state=all&older_than=2&per_page=200")).text()
    assert sorted(int(i) for i, _b in ROW_LINKS.findall(page)) == older


async def test_filters_survive_an_action_and_submit_and_next_goes_to_the_next_one(
    served: Served,
) -> None:
    client, csrf = await served.login("olga")
    queue = "/mismatches?state=open&agency=AGY_ALPHA&sort=id&dir=asc&per_page=200"
    page = await (await client.get(queue)).text()
    links = ROW_LINKS.findall(page)
    assert len(links) >= 3
    ids = [int(i) for i, _b in links]
    assert ids == sorted(ids)
    first, second, third = ids[0], ids[1], ids[2]
    back = parse_qs("back=" + links[0][1].replace("&amp;", "&"))["back"][0]
    assert urlsplit(back).path == "/mismatches" and "agency=AGY_ALPHA" in back

    # The page of the first one knows its neighbours in that list.
    detail = await (await client.get(f"/mismatches/{first}", params={"back": back})).text()
    assert 'id="next-mismatch"' in detail and f'name="next_id" value="{second}"' in detail
    assert 'id="previous-mismatch"' not in detail

    # An action returns to the mismatch with the list kept; "and next" opens the next one.
    form = {"csrf_token": csrf, "back": back, "reason": "looking"}
    response = await client.post(
        f"/mismatches/{first}/actions",
        data={**form, "action": "investigate"},
        allow_redirects=False,
    )
    assert response.status == 303
    location = response.headers["Location"]
    assert urlsplit(location).path == f"/mismatches/{first}"
    assert parse_qs(urlsplit(location).query)["back"] == [back]
    response = await client.post(
        f"/mismatches/{first}/actions",
        data={**form, "action": "comment", "then": "next", "next_id": str(second)},
        allow_redirects=False,
    )
    location = response.headers["Location"]
    assert urlsplit(location).path == f"/mismatches/{second}"
    query = parse_qs(urlsplit(location).query)
    assert query["back"] == [back] and query["done_on"] == [str(first)]
    # The first one is now investigating: out of the "open" list, so not "previous" either.
    detail = await (await client.get(location)).text()
    assert f'name="next_id" value="{third}"' in detail
    assert 'id="previous-mismatch"' not in detail
    # Back to the list: the same filters.
    listed = await (await client.get(back)).text()
    assert [int(i) for i, _b in ROW_LINKS.findall(listed)] == [i for i in ids if i != first]
    # At the end of the list, "and next" goes back to the list.
    response = await client.post(
        f"/mismatches/{ids[-1]}/actions",
        data={**form, "action": "comment", "then": "next"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == back
    # A ``back`` that is not a local path is dropped.
    response = await client.post(
        f"/mismatches/{first}/actions",
        data={**form, "action": "comment", "back": "//evil.example/x"},
        allow_redirects=False,
    )
    assert response.headers["Location"] == f"/mismatches/{first}?done=comment"


def test_only_local_paths_are_followed() -> None:
    assert local_path("/mismatches?kind=a&agency=b") == "/mismatches?kind=a&agency=b"
    for bad in ("//evil.example/", "https://evil.example/", "mismatches", "/\\evil", "", None):
        assert local_path(bad) is None, bad


async def test_saved_views_belong_to_their_user(served: Served) -> None:
    olga, olga_csrf = await served.login("olga")
    ada, ada_csrf = await served.login("ada")
    response = await olga.post(
        "/mismatches/views",
        data={
            "csrf_token": olga_csrf,
            "name": "Alpha, big",
            "query": "state=open&agency=AGY_ALPHA&min_amount=10&sort=delta&page=3",
        },
        allow_redirects=False,
    )
    assert response.status == 303
    opened = response.headers["Location"]
    assert parse_qs(urlsplit(opened).query) == {
        "state": ["open"],
        "agency": ["AGY_ALPHA"],
        "min_amount": ["10.00"],
        "sort": ["delta"],
    }
    page = await (await olga.get("/mismatches")).text()
    views = re.findall(r'<a href="([^"]+)" class="view-link">([^<]+)</a>', page)
    assert [(href.replace("&amp;", "&"), name) for href, name in views] == [(opened, "Alpha, big")]
    assert 'class="view-link"' not in await (await ada.get("/mismatches")).text()
    [view_id] = re.findall(r'action="/mismatches/views/(\d+)/delete"', page)
    # Without the CSRF token, or by another user: nothing is deleted.
    assert (await olga.post(f"/mismatches/views/{view_id}/delete", data={})).status == 403
    await ada.post(f"/mismatches/views/{view_id}/delete", data={"csrf_token": ada_csrf})
    assert 'class="view-link"' in await (await olga.get("/mismatches")).text()
    # Applying it shows the filtered queue.
    applied = await (await olga.get(opened)).text()
    assert 'value="AGY_ALPHA" selected' in applied
    await olga.post(f"/mismatches/views/{view_id}/delete", data={"csrf_token": olga_csrf})
    assert 'class="view-link"' not in await (await olga.get("/mismatches")).text()


# --- our record against theirs -------------------------------------------------------------


def test_compare_marks_exactly_the_fields_both_sides_have_and_disagree_on() -> None:
    rows = compare(
        {"balance_minor": 100, "currency": "CNY", "version": 2, "only_ours": 1},
        {"balance_minor": 150, "currency": "CNY", "version": 2, "reason": "x"},
    )
    assert [(r.field, r.differs) for r in rows] == [
        ("balance_minor", True),
        ("currency", False),
        ("only_ours", False),
        ("reason", False),
        ("version", False),
    ]
    assert flatten({"address": {"city": "Hangzhou", "zip": None}}) == {
        "address.city": "Hangzhou",
        "address.zip": None,
    }
    # The same quantity under two names is one row, for the kinds that say so.
    [*_, state] = compare({"balance": "CNY 1.00", "state": "placed"}, {"amount": "CNY 2.00"})
    assert state.field == "state" and not state.differs
    rows = compare({"balance": "CNY 1.00"}, {"amount": "CNY 2.00"}, "ack_balance_differs")
    assert [(r.field, r.their_field, r.differs) for r in rows] == [("balance", "amount", True)]
    # An amount is one field, however a side wrote it.
    [balance] = compare(
        {"balance": "CNY 1,234.50"}, {"balance": {"amount_minor": 123450, "currency": "CNY"}}
    )
    assert (balance.theirs, balance.differs) == ("CNY 1,234.50", False)


async def test_the_mismatch_page_highlights_the_differing_fields(served: Served) -> None:
    client, _csrf = await served.login("vic")
    for kind in ("ack_balance_differs",):
        mismatch_id = await served.world.mismatch_id(kind)
        [(ours, theirs)] = await served.all(sa.select(M.ours, M.theirs).where(M.id == mismatch_id))
        left, right = flatten(loads(ours)), flatten(loads(theirs))
        # The agency acknowledged another "amount" than our "balance": that one field differs.
        assert left["balance"] != right["amount"]
        differing = {k for k in left.keys() & right.keys() if left[k] != right[k]} | {"balance"}
        page = await (await client.get(f"/mismatches/{mismatch_id}")).text()
        marked = set(re.findall(r'<tr class="differs" data-field="([^"]+)">', page))
        assert marked == differing, kind
        assert page.count('<span class="sr-only">') >= len(differing)
    # The payment reported again: our recorded amount_minor against their amount, one row.
    mismatch_id = await served.world.mismatch_id("conflicting_duplicate")
    [(ours, theirs)] = await served.all(sa.select(M.ours, M.theirs).where(M.id == mismatch_id))
    page = await (await client.get(f"/mismatches/{mismatch_id}")).text()
    marked = set(re.findall(r'<tr class="differs" data-field="([^"]+)">', page))
    assert marked == {"amount_minor"}, (loads(ours), loads(theirs))


# --- agency health -------------------------------------------------------------------------


async def test_the_agency_page_shows_inbound_health_as_received(served: Served) -> None:
    world = served.world
    p0 = world.placements[ALPHA][0][0]
    # Now (the world is days past its events): two refused by the schema, one accepted.
    for n in range(2):
        world.clock.advance(1)
        bad = {"placement_id": p0, "payment_id": f"BAD-{n}"}  # no amount: the schema refuses
        assert await world.post_event(ALPHA, "payment.reported", bad) >= 400
    world.clock.advance(1)
    at = to_datetime(world.clock.now()).isoformat()
    ok = {"placement_id": p0, "channel": "call", "outcome": "reached", "attempted_at": at,
          "effective": True}  # fmt: skip
    assert await world.post_event(ALPHA, "contact.attempted", ok) < 300
    now = to_datetime(world.clock.now())
    rows = await served.all(sa.select(IN.status, IN.received_at).where(IN.agency_id == ALPHA))

    def count(accepted: bool, since: timedelta) -> int:
        return sum(1 for s, at in rows if (s == "accepted") == accepted and at >= now - since)

    client, _csrf = await served.login("vic")
    page = await (await client.get(f"/agencies/{ALPHA}")).text()
    day, week = timedelta(hours=24), timedelta(days=7)
    accepted = re.search(r'id="accepted-counts">(\d+) · (\d+)<', page)
    refused = re.search(r'id="refused-counts">(\d+) · (\d+)<', page)
    assert accepted and refused
    assert (int(accepted[1]), int(accepted[2])) == (count(True, day), count(True, week))
    assert (int(refused[1]), int(refused[2])) == (count(False, day), count(False, week))
    assert (count(True, day), count(False, day)) == (1, 2)
    reasons = re.findall(r'<tr data-reason="([^"]+)">.*?<td class="num">(\d+)</td>', page)
    assert sum(int(n) for _r, n in reasons) == 2
    last = max(at for _s, at in rows)
    assert f'id="last-message">{last:%Y}' in page


async def test_a_bulk_action_leads_back_to_the_same_filtered_list(served: Served) -> None:
    client, csrf = await served.login("olga")
    [(first,)] = await served.all(
        sa.select(M.id).where(M.agency_id == ALPHA, M.state == "open").order_by(M.id).limit(1)
    )
    response = await client.post(
        "/mismatches/bulk",
        data={
            "csrf_token": csrf,
            "state": "open",
            "agency": ALPHA,
            "older_than": "1",
            "pick": str(first),
            "action": "investigate",
        },
    )
    page = await response.text()
    [href] = re.findall(r'<a href="([^"]+)" id="back-to-list">', page)
    assert parse_qs(urlsplit(href.replace("&amp;", "&")).query) == {
        "state": ["open"],
        "agency": [ALPHA],
        "older_than": ["1"],
    }


async def test_inbound_health_of_sftp_and_email_agencies(db: Database) -> None:
    now = START + timedelta(days=10)
    problem = (
        b'{"type": "https://x/problems/malformed-payload", "title": "Malformed", "status": 400'
    )

    def message(agency: str, n: int, status: str, age: timedelta, body: bytes = b"{}") -> Any:
        return {
            "agency_id": agency, "channel": "sftp", "external_id": f"{agency}-{n}",
            "body": b"x", "body_sha256": "0" * 64, "signature_scheme": "none",
            "event_type": None, "status": status,
            "response_status": 200 if status == "accepted" else 400,
            "response_body": body + f', "detail": "line {n}"}}'.encode(),
            "received_at": now - age,
        }  # fmt: skip

    hour, day = timedelta(hours=1), timedelta(days=1)
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(InboundMessage.__table__),  # type: ignore[attr-defined]
            [
                message("AGY_SFTP", 1, "accepted", hour),
                message("AGY_SFTP", 2, "accepted", 3 * day),
                message("AGY_SFTP", 3, "invalid", hour, problem),
                message("AGY_SFTP", 4, "invalid", 2 * day, problem),
                message("AGY_SFTP", 5, "invalid", 9 * day, problem),  # older than a week
                message("AGY_OTHER", 6, "invalid", hour, problem),  # another agency
            ],
        )
        await conn.execute(
            sa.insert(FilePickup.__table__),  # type: ignore[attr-defined]
            [
                {"agency_id": "AGY_SFTP", "remote_name": name, "kind": "result", "state": state,
                 "size": 10, "mtime": 1, "stable_polls": 2, "rows_total": 3, "rows_ok": ok,
                 "rows_failed": 3 - ok, "first_seen_at": now - age, "last_seen_at": now - age}
                for name, state, ok, age in (
                    ("r1.csv", "done", 3, 2 * day), ("r2.csv", "partial", 2, hour),
                )
            ],
        )  # fmt: skip
        await conn.execute(
            sa.insert(MailboxState.__table__),  # type: ignore[attr-defined]
            [{"agency_id": "AGY_MAIL", "mailbox": "INBOX", "uidvalidity": 7, "last_uid": 42,
              "updated_at": now - hour}],
        )  # fmt: skip
        await conn.execute(
            sa.insert(MailReply.__table__),  # type: ignore[attr-defined]
            [{"agency_id": "AGY_MAIL", "mailbox": "INBOX", "uidvalidity": 7, "uid": uid,
              "kind": kind, "events": 1, "detail": "", "signature": "", "received_at": at}
             for uid, kind, at in ((41, "reply", now - 2 * day), (42, "bounce", now - hour))],
        )  # fmt: skip
    async with db.snapshot() as conn:
        sftp = await inbound_health(conn, "AGY_SFTP", "sftp", now=now)
        mail = await inbound_health(conn, "AGY_MAIL", "email", now=now)
    assert sftp["accepted"] == {"24h": 1, "7d": 2}
    assert sftp["refused"] == {"24h": 1, "7d": 2}
    assert [(r["code"], r["24h"], r["7d"]) for r in sftp["refused_by_reason"]] == [
        ("malformed-payload", 1, 2)
    ]
    assert sftp["last_message_at"] == now - hour
    assert (sftp["last_pickup"]["remote_name"], sftp["last_pickup"]["state"]) == (
        "r2.csv",
        "partial",
    )
    assert sftp["pickups_7d"] == {"done": 1, "partial": 1}
    assert [(m["mailbox"], m["last_uid"]) for m in mail["mailboxes"]] == [("INBOX", 42)]
    assert (mail["last_reply"]["kind"], mail["replies_7d"]) == ("bounce", {"reply": 1, "bounce": 1})
    assert mail["accepted"] == {"24h": 0, "7d": 0} and mail["last_message_at"] is None
