"""The public collector-verification page and API on SQLite and PostgreSQL: a letter number
plus the last 4 digits of the debtor's phone or ID number answers authorised, not yet valid,
expired, revoked or superseded; anything that does not match (an unknown or forged number,
wrong digits) gets one answer, byte for byte the same; checks are rate limited per client and
per letter number across processes (429 with Retry-After); every check is logged without the
digits or the client's address."""

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from gateway.server import create_app
from gateway.store.notice_tables import VerificationCheck
from gateway.verification.service import VerificationService
from tests.case_world import START, account
from tests.notice_world import LENDER, REGISTRATIONS, NoticeWorld, build_notice_world

CHECKS = VerificationCheck.__table__  # type: ignore[attr-defined]
PHONE_LAST4 = "5678"
ID_LAST4 = "123X"


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[NoticeWorld]:
    w = await build_notice_world(
        make_config,
        tmp_path,
        database_url,
        verification={"max_per_client": 1000, "max_per_letter": 1000, "trust_forwarded": True},
    )
    await w.intake(
        [
            account(1, phones="+8613900005678", national_id="11010119900101123X"),
            account(2),
        ]
    )
    assert await w.allocate() == 2
    yield w
    await w.gateway.aclose()


@pytest.fixture
async def client(world: NoticeWorld, aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    app = create_app(
        inbound=world.gateway.inbound,
        db=world.db,
        metrics_=world.gateway.metrics,
        verification=world.gateway.verification,
        lender_name=LENDER.legal_name,
    )
    return await aiohttp_client(app)


async def letter_of(world: NoticeWorld, case_id: str) -> str:
    letters = await world.issue_letters()
    [placement] = await world.placements(case_id)
    return letters[placement["id"]]


async def check(
    client: TestClient[Any, Any], letter: str, digits: str, *, ip: str = "198.51.100.7"
) -> tuple[int, dict[str, Any]]:
    response = await client.post(
        "/v1/verify",
        json={"letter_no": letter, "digits": digits},
        headers={"X-Forwarded-For": ip},
    )
    return response.status, await response.json(content_type=None)


async def test_a_current_letter_with_either_last_4_is_authorised(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    agency = REGISTRATIONS["AGY_ONE"]
    for digits in (PHONE_LAST4, ID_LAST4, ID_LAST4.lower()):
        status, body = await check(client, letter, digits)
        assert status == 200
        assert body["outcome"] == "authorised" and body["authorised"] is True
        assert body["agency"] == {
            "legal_name": agency.legal_name,
            "legal_name_en": agency.legal_name_en,
            "phone": agency.phone,
        }
    # Typed loosely (lower case, spaces, full-width digits) it is the same letter.
    loose = " " + letter.lower().replace("-", " - ", 1) + " "
    assert (await check(client, loose.replace(" - ", "-"), "\uff15\uff16\uff17\uff18"))[1][
        "outcome"
    ] == ("authorised")
    # The page says it too, in Chinese by default and in English when asked.
    page = await client.post("/verify", data={"letter": letter, "digits": PHONE_LAST4})
    text = await page.text()
    assert page.status == 200 and "已获授权" in text and agency.legal_name in text
    english = await client.post(
        "/verify?lang=en", data={"letter": letter, "digits": PHONE_LAST4, "lang": "en"}
    )
    shown = await english.text()
    assert agency.legal_name_en is not None
    assert "Authorised" in shown and agency.legal_name_en in shown


@pytest.mark.parametrize(
    ("change", "outcome", "since"),
    [
        ({"valid_until": START.date() - timedelta(days=1)}, "expired", "valid_until"),
        ({"valid_from": START.date() + timedelta(days=3)}, "not_yet", None),
        ({"status": "revoked", "revoked_at": START - timedelta(days=2)}, "revoked", "revoked"),
        (
            {"status": "superseded", "revoked_at": START - timedelta(days=1)},
            "superseded",
            "revoked",
        ),
    ],
)
async def test_a_letter_no_longer_in_force_says_since_when(
    world: NoticeWorld,
    client: TestClient[Any, Any],
    change: dict[str, Any],
    outcome: str,
    since: str | None,
) -> None:
    letter = await letter_of(world, "ACC-0001")
    if "valid_from" in change:
        change = {**change, "valid_until": START.date() + timedelta(days=90)}
    await world.set_letter(letter, **change)
    status, body = await check(client, letter, PHONE_LAST4)
    assert status == 200 and body["outcome"] == outcome and body["authorised"] is False
    expected: date | None = None
    if since == "valid_until":
        expected = change["valid_until"]
    elif since == "revoked":
        expected = change["revoked_at"].astimezone(world.gateway.verification.zone).date()
    assert body["since"] == (expected.isoformat() if expected else None)
    page = await client.post("/verify?lang=en", data={"letter": letter, "digits": PHONE_LAST4})
    assert "Authorised</h2>" not in await page.text()


async def test_forged_unknown_and_wrong_digits_get_the_same_answer(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    other = await letter_of(world, "ACC-0002")
    bad_check = letter[:-1] + ("A" if letter[-1] != "A" else "B")
    attempts = {
        "unknown": ("SQ2026-999999-X", PHONE_LAST4),
        "bad check character": (bad_check, PHONE_LAST4),
        "garbage": ("<script>alert(1)</script>", PHONE_LAST4),
        "wrong digits": (letter, "0000"),
        "another debtor's digits": (other, PHONE_LAST4),
    }
    bodies = set()
    for what, (number, digits) in attempts.items():
        response = await client.post("/v1/verify", json={"letter_no": number, "digits": digits})
        assert response.status == 200, what
        bodies.add(await response.read())
    assert bodies == {b'{"outcome": "no_match"}'}
    pages = set()
    for number, digits in attempts.values():
        page = await client.post("/verify", data={"letter": number, "digits": digits})
        html = await page.text()
        assert "没有与您输入的信息相符的授权" in html and "<script>alert" not in html
        # The form keeps what was typed (and the language link carries it); apart from
        # that every answer is the same page.
        pages.add(re.sub(r'(value|href)="[^"]*"', "", html))
    assert len(pages) == 1


async def test_every_check_is_logged_without_the_digits_or_the_address(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    await check(client, letter, PHONE_LAST4, ip="203.0.113.9")
    await check(client, "x" * 300, "9999", ip="203.0.113.9")
    await check(client, letter, "12", ip="203.0.113.9")  # not 4 digits: refused, logged
    rows = await world.rows(sa.select(CHECKS).order_by(CHECKS.c.id))
    assert [r["outcome"] for r in rows] == ["authorised", "no_match", "invalid"]
    assert [r["letter_no"] for r in rows] == [letter, "x" * 40, letter]
    assert {r["channel"] for r in rows} == {"api"}
    assert len({r["client"] for r in rows}) == 1
    for row in rows:
        flat = " ".join(str(v) for v in row.values())
        assert "203.0.113.9" not in flat and PHONE_LAST4 not in flat and "9999" not in flat


async def test_checks_are_limited_per_client_and_per_letter_across_processes(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    limited = world.gateway.settings.verification.model_copy(
        update={"max_per_client": 3, "max_per_letter": 5, "window_seconds": 600}
    )
    # Two services on one database stand for two gateway processes.
    first, second = (
        VerificationService(
            db=world.db,
            pii=world.gateway.pii,
            agencies=world.gateway.agencies,
            settings=limited,
            zone=world.gateway.verification.zone,
            clock=world.clock,
        )
        for _ in range(2)
    )
    answers = [
        await service.check(letter=letter, digits="0000", client="192.0.2.1", channel="api")
        for service in (first, second, first, second)
    ]
    assert [a.retry_after is None for a in answers] == [True, True, True, False]
    assert answers[-1].retry_after is not None and 0 < answers[-1].retry_after <= 600
    # Other clients may still check, until the letter number itself has had enough.
    more = [
        await second.check(letter=letter, digits=PHONE_LAST4, client=f"192.0.2.{n}", channel="api")
        for n in (2, 3, 4)
    ]
    assert [a.retry_after is None for a in more] == [True, True, False]
    # A new window lets them in again.
    world.clock.advance(600)
    again = await first.check(letter=letter, digits=PHONE_LAST4, client="192.0.2.1", channel="api")
    assert again.verdict is not None and again.verdict.outcome == "authorised"
    outcomes = [r["outcome"] for r in await world.rows(sa.select(CHECKS.c.outcome))]
    assert outcomes.count("limited") == 2


async def test_the_api_and_the_page_answer_429_with_retry_after(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    object.__setattr__(
        world.gateway.verification,
        "settings",
        world.gateway.verification.settings.model_copy(update={"max_per_client": 1}),
    )
    assert (await check(client, letter, PHONE_LAST4, ip="192.0.2.50"))[0] == 200
    response = await client.post(
        "/v1/verify",
        json={"letter_no": letter, "digits": PHONE_LAST4},
        headers={"X-Forwarded-For": "192.0.2.50"},
    )
    assert response.status == 429 and int(response.headers["Retry-After"]) > 0
    assert response.content_type == "application/problem+json"
    page = await client.post(
        "/verify",
        data={"letter": letter, "digits": PHONE_LAST4},
        headers={"X-Forwarded-For": "192.0.2.50"},
    )
    assert page.status == 429 and "Retry-After" in page.headers
    assert "核实次数过多" in await page.text()


async def test_the_page_is_public_prefilled_and_hardened(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    page = await client.get(f"/verify?letter={letter}")
    html = await page.text()
    assert page.status == 200 and f'value="{letter}"' in html
    assert page.headers["Content-Language"] == "zh-CN" and "核实催收人员身份" in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    for needle in ("http://", "https://", "<script"):
        assert needle not in html  # nothing from another site, no script at all
    english = await client.get("/verify", headers={"Accept-Language": "en-GB,en;q=0.9,zh;q=0.5"})
    assert english.headers["Content-Language"] == "en"
    assert "Verify a debt collector" in await english.text()
    css = await client.get("/verify/verify.css")
    assert css.status == 200 and css.content_type == "text/css"
    bad = await client.post("/v1/verify", data=b"not json")
    assert bad.status == 400


async def test_metrics_count_failed_checks_and_notices(
    world: NoticeWorld, client: TestClient[Any, Any]
) -> None:
    letter = await letter_of(world, "ACC-0001")
    for digits in ("0000", "1111", PHONE_LAST4):
        await check(client, letter, digits)
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_verification_failed_last_hour 2.0" in metrics
    assert 'gateway_verification_checks_total{outcome="no_match"} 2.0' in metrics
    assert 'gateway_borrower_notices{state="failed"} 0.0' in metrics
