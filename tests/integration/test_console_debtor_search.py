"""Finding a debtor by the keyed hash of the id, never the id itself (issue 21), over the
console world on SQLite and PostgreSQL: the header's search (POSTed) goes to the debtor's
cases by key; the case list filters and links by key; no URL a page produces or a redirect
answers carries the debtor id; a debtor id in a URL is refused; the key survives the PII key
ring's rotation, and cases without one (written before migration 0015, or keyed under a
retired key) are keyed by ``key_debtors``."""

import re
from urllib.parse import unquote

import sqlalchemy as sa

from gateway.privacy.debtor_keys import key_debtors
from gateway.privacy.pii import PiiKeyRing
from gateway.store.tables import Case
from tests.integration import test_console_queue as queue
from tests.integration.test_console_queue import Client, Served

CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c
URLS = re.compile(r'(?:href|action|src)="([^"]*)"')
served = queue.served


async def _debtor(served: Served) -> tuple[str, str, list[str]]:
    """A debtor of the world: its id, its key, and its cases."""
    [(debtor, key)] = await served.all(sa.select(C.debtor_id, C.debtor_key).limit(1))
    cases = [c for (c,) in await served.all(sa.select(C.id).where(C.debtor_id == debtor))]
    return debtor, key, sorted(cases)


def _urls(page: str) -> list[str]:
    return [unquote(u) for u in URLS.findall(page)]


async def _search(client: Client, csrf: str, text: str) -> tuple[int, str]:
    response = await client.post(
        "/search", data={"csrf_token": csrf, "q": text}, allow_redirects=False
    )
    if response.status == 303:
        return 303, response.headers["Location"]
    return response.status, await response.text()


async def test_the_search_finds_a_debtor_by_its_key_and_no_url_carries_the_id(
    served: Served,
) -> None:
    world = served.world
    debtor, key, cases = await _debtor(served)
    assert key == world.gateway.pii.debtor_key(debtor)  # written at intake
    client, csrf = await served.login("vic")
    home = await (await client.get("/")).text()
    assert 'method="post" action="/search"' in home  # the header's box posts

    for typed in (debtor, debtor.lower(), f"  {debtor} "):
        assert await _search(client, csrf, typed) == (303, f"/cases?debtor_key={key}"), typed
    # GET /search?q= (a link) answers the same, by key.
    link = await client.get("/search", params={"q": debtor}, allow_redirects=False)
    assert link.headers["Location"] == f"/cases?debtor_key={key}"

    listed = await client.get(f"/cases?debtor_key={key}")
    page = await listed.text()
    assert listed.status == 200
    shown = sorted(set(re.findall(r'<a href="/cases/([^"/?]+)">', page)))
    assert shown == cases
    case_page = await (await client.get(f"/cases/{cases[0]}")).text()
    assert f'href="/cases?debtor_key={key}"' in case_page
    for html in (page, case_page):
        assert debtor in html  # shown on the page...
        assert not [u for u in _urls(html) if debtor in u]  # ...but in no URL
    # Export links carry the filter as the key too.
    assert f"/cases.csv?debtor_key={key}" in page


async def test_the_case_filter_form_turns_a_typed_debtor_id_into_its_key(served: Served) -> None:
    debtor, key, cases = await _debtor(served)
    client, csrf = await served.login("vic")
    page = await (await client.get("/cases")).text()
    assert 'method="post" action="/cases"' in page
    for field in ("debtor", "q"):  # the Debtor box, or the "any id" box naming a debtor
        response = await client.post(
            "/cases",
            data={"csrf_token": csrf, field: debtor, "status": "placed"},
            allow_redirects=False,
        )
        assert response.status == 303, await response.text()
        location = response.headers["Location"]
        assert location == f"/cases?status=placed&debtor_key={key}", field
    # Any other id stays as typed.
    response = await client.post(
        "/cases", data={"csrf_token": csrf, "q": cases[0]}, allow_redirects=False
    )
    assert response.headers["Location"] == f"/cases?q={cases[0]}"
    # A debtor id in a URL is refused, without echoing it; a malformed key too.
    refused = await client.get("/cases", params={"debtor": debtor})
    [alert] = re.findall(r'role="alert">(.*?)</div>', await refused.text(), re.S)
    assert refused.status == 400 and "debtor_key" in alert and debtor not in alert
    api = await client.get("/api/v1/cases", params={"debtor": debtor})
    assert api.status == 400 and debtor not in await api.text()
    assert (await client.get("/cases", params={"debtor_key": "nothex"})).status == 400
    found = await (await client.get("/api/v1/cases", params={"debtor_key": key})).json()
    assert sorted(item["id"] for item in found["items"]) == cases


async def test_the_key_survives_rotation_and_cases_without_one_are_keyed(served: Served) -> None:
    world = served.world
    gateway = world.gateway
    debtor, key, _cases = await _debtor(served)
    (total,) = (await served.all(sa.select(sa.func.count()).select_from(CASES)))[0]
    # Rotation: a new current key on top; the oldest (the last line) is unchanged.
    rotated = PiiKeyRing((("k-new", b"\x07" * 32), *gateway.pii.keys))
    assert rotated.current[0] == "k-new"
    assert rotated.debtor_key(debtor) == key
    assert rotated.mac(b"x") != gateway.pii.mac(b"x")  # unlike the change-detection MAC
    result = await key_debtors(gateway.db, rotated)
    assert (result.keyed, result.rekeyed_all) == (0, False)

    # Rows written before migration 0015 have no key: keyed, and then found.
    async with gateway.db.transaction() as conn:
        await conn.execute(sa.update(CASES).values(debtor_key=None))
    client, csrf = await served.login("vic")
    assert (await _search(client, csrf, debtor))[0] == 200  # nothing found yet
    result = await key_debtors(gateway.db, rotated)
    assert (result.keyed, result.rekeyed_all) == (total, False)
    assert await _search(client, csrf, debtor) == (303, f"/cases?debtor_key={key}")

    # The oldest key retired: the key changes, every case is re-keyed.
    retired = PiiKeyRing(rotated.keys[:1])
    new_key = retired.debtor_key(debtor)
    assert new_key != key
    result = await key_debtors(gateway.db, retired)
    assert (result.keyed, result.rekeyed_all) == (total, True)
    [(stored,)] = await served.all(sa.select(C.debtor_key).where(C.debtor_id == debtor).limit(1))
    assert stored == new_key
