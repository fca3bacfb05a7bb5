"""Find anything: the search box in every page's header, ``/search?q=``.

One text is looked up as every kind of id the floor is handed: a mismatch id (``123`` or
``#123``), a case id, a debtor id (by its keyed hash: the text is hashed with
``PiiKeyRing.debtor_key`` and looked up in ``cases.debtor_key``, and the debtor's hit links to
``/cases?debtor_key=<hash>``, so the id itself is never looked up in clear nor put in a URL;
the debtor's personal data stays encrypted and is never searched), a placement id, the
agency's case reference, an outbox packet (its id or dedupe key), an inbound webhook id
(``inbound_messages.external_id``), an agency payment id (``agency_events.ref``), a lender
payment id (``lender_payments.payment_id``) and an agency id. The match is exact and ignores
case for ids stored in one case (upper or lower), which is every id the gateway writes; the
lookups use indexes.

``find`` runs the queries (one per kind) and returns ``Hit`` rows; ``outcome`` (pure) decides:
every hit leads to one page → go there; several pages → the results page, grouped by kind;
none → "nothing found", saying what was looked for. The header's search box POSTs (with the
session's CSRF token), so what was typed reaches neither the URL nor an access log; the
results page is the POST's answer. ``GET /search?q=`` answers the same, for links.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.console.guards import page
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY, debtor_keys, read_form
from gateway.console.sessions import Principal
from gateway.privacy.pii import PiiKeyRing
from gateway.store.recon_tables import LenderPayment
from gateway.store.tables import (
    AgencyEventRow,
    Case,
    InboundMessage,
    Mismatch,
    OutboxItem,
    Placement,
)

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
PAYMENTS = LenderPayment.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
C, P, OB, IN, EV, LP, M = (
    t.c for t in (CASES, PLACEMENTS, OUTBOX, INBOUND, EVENTS, PAYMENTS, MISMATCHES)
)

KINDS: Final = (
    "mismatch",
    "case",
    "debtor",
    "placement",
    "agency_ref",
    "packet",
    "webhook",
    "agency_payment",
    "lender_payment",
    "agency",
)
"""The kinds of hit, in the order the results page shows them."""
MAX_QUERY: Final = 300
MAX_HITS_PER_KIND: Final = 20
_NUMBER = re.compile(r"^#?(\d{1,12})$")


@dataclass(frozen=True, slots=True)
class Hit:
    """One record the text names, and the page that shows it."""

    kind: str
    key: str
    href: str
    agency_id: str | None = None
    detail: str = ""


def case_href(case_id: str | None, agency_id: str | None) -> str:
    """A record about a placement is shown on its case's page; without one, its agency's."""
    if case_id:
        return f"/cases/{quote(case_id, safe='')}"
    if agency_id:
        return f"/agencies/{quote(agency_id, safe='')}"
    return "/"


def variants(text: str) -> list[str]:
    """The spellings an exact, case-ignoring lookup tries (ids are stored in one case)."""
    return sorted({text, text.upper(), text.lower()})


def agency_hits(text: str, agencies: Iterable[str]) -> list[Hit]:
    wanted = text.lower()
    return [
        Hit("agency", a, f"/agencies/{quote(a, safe='')}", a)
        for a in agencies
        if a.lower() == wanted
    ]


def outcome(hits: list[Hit]) -> str | None:
    """The page to go straight to, when every hit leads to the same one."""
    pages = {hit.href for hit in hits}
    return pages.pop() if len(pages) == 1 else None


def grouped(hits: list[Hit]) -> list[tuple[str, list[Hit]]]:
    """Hits by kind, kinds in ``KINDS`` order, each record once."""
    seen: dict[tuple[str, str, str], Hit] = {}
    for hit in hits:
        seen.setdefault((hit.kind, hit.key, hit.href), hit)
    return [
        (kind, [h for h in seen.values() if h.kind == kind])
        for kind in KINDS
        if any(h.kind == kind for h in seen.values())
    ]


async def _rows(conn: AsyncConnection, query: sa.Select[Any]) -> list[Any]:
    return list((await conn.execute(query.limit(MAX_HITS_PER_KIND))).all())


async def find(
    conn: AsyncConnection, text: str, agencies: Iterable[str], ring: PiiKeyRing
) -> list[Hit]:
    """Every record ``text`` is the id of (at most ``MAX_HITS_PER_KIND`` of each kind); a
    debtor by the keys ``ring`` gives the spellings of ``text``."""
    text = text.strip()[:MAX_QUERY]
    if not text:
        return []
    names = variants(text)
    hits = agency_hits(text, agencies)
    number = _NUMBER.match(text)
    if number:
        mismatch_id = int(number.group(1))
        for mid, agency_id in await _rows(
            conn, sa.select(M.id, M.agency_id).where(M.id == mismatch_id)
        ):
            hits.append(Hit("mismatch", f"#{mid}", f"/mismatches/{mid}", agency_id))
    for case_id, debtor in await _rows(conn, sa.select(C.id, C.debtor_id).where(C.id.in_(names))):
        hits.append(Hit("case", case_id, case_href(case_id, None), detail=debtor))
    for key, debtor, count in await _rows(
        conn,
        sa.select(C.debtor_key, C.debtor_id, sa.func.count())
        .where(C.debtor_key.in_(debtor_keys(text, ring)))
        .group_by(C.debtor_key, C.debtor_id),
    ):
        href = "/cases?" + urlencode({"debtor_key": key})
        hits.append(Hit("debtor", debtor, href, detail=str(count)))
    placement = sa.select(P.id, P.case_id, P.agency_id, P.agency_case_ref)
    for pid, case_id, agency_id, ref in await _rows(conn, placement.where(P.id.in_(names))):
        hits.append(Hit("placement", pid, case_href(case_id, agency_id), agency_id, ref or ""))
    for pid, case_id, agency_id, ref in await _rows(
        conn, placement.where(P.agency_case_ref.in_(names))
    ):
        hits.append(Hit("agency_ref", ref, case_href(case_id, agency_id), agency_id, pid))
    # "#12" names a mismatch; a bare 12 may be a mismatch or a packet.
    bare = number is not None and not text.startswith("#")
    packet = sa.or_(OB.dedupe_key.in_(names), OB.id == int(text) if bare else sa.false())
    for oid, key, agency_id, case_id, packet_type in await _rows(
        conn,
        sa.select(OB.id, OB.dedupe_key, OB.agency_id, P.case_id, OB.packet_type)
        .outerjoin(PLACEMENTS, P.id == OB.placement_id)
        .where(packet),
    ):
        detail = f"#{oid} {packet_type}"
        hits.append(Hit("packet", key, case_href(case_id, agency_id), agency_id, detail))
    for external_id, agency_id, case_id, event_type in await _rows(
        conn,
        sa.select(IN.external_id, IN.agency_id, P.case_id, IN.event_type)
        .outerjoin(EVENTS, EV.inbound_id == IN.id)
        .outerjoin(PLACEMENTS, P.id == EV.placement_id)
        .where(IN.external_id.in_(names)),
    ):
        href = case_href(case_id, agency_id)
        hits.append(Hit("webhook", external_id, href, agency_id, event_type or ""))
    for ref, agency_id, case_id, event_type in await _rows(
        conn,
        sa.select(EV.ref, EV.agency_id, P.case_id, EV.event_type)
        .outerjoin(PLACEMENTS, P.id == EV.placement_id)
        .where(EV.ref.in_(names)),
    ):
        hits.append(
            Hit("agency_payment", ref, case_href(case_id, agency_id), agency_id, event_type)
        )
    for payment_id, agency_id, case_id, kind in await _rows(
        conn,
        sa.select(LP.payment_id, LP.agency_id, LP.case_id, LP.kind).where(LP.payment_id.in_(names)),
    ):
        hits.append(
            Hit("lender_payment", payment_id, case_href(case_id, agency_id), agency_id, kind)
        )
    return hits


@page("viewer")
async def search_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Straight to the one page the text leads to; else the hits grouped by kind. The text
    comes from the posted form (the header's box) or from ``?q=`` (links)."""
    services = request.app[CONSOLE_KEY]
    fields = await read_form(request) if request.method == "POST" else request.query
    text = fields.get("q", "").strip()[:MAX_QUERY]
    async with services.db.snapshot() as conn:
        hits = await find(conn, text, services.agencies, services.pii)
    target = outcome(hits)
    if target is not None:
        return web.Response(status=303, headers={"Location": target})
    return render("search.html", principal, q=text, groups=grouped(hits))


__all__ = [
    "KINDS",
    "Hit",
    "agency_hits",
    "case_href",
    "find",
    "grouped",
    "outcome",
    "search_page",
    "variants",
]
