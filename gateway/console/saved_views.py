"""Saved views: a person's named filters of the mismatch queue (``console_saved_views``).

A view is a name and the queue's query string (filters, sort, page size), kept per user:
nobody else sees or deletes it. The query is read back through the queue's own filter parser
before it is stored, so a view holds only parameters the queue understands (no paging, no
``upto``), and applying it is following a link. The age filters stay relative ("older than 7
days" means 7 days before each time the view is opened).
"""

from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from aiohttp import web
from multidict import MultiDict

from gateway.console.guards import page
from gateway.console.i18n import gettext as _
from gateway.console.navigation import QUEUE_PATH
from gateway.console.services import CONSOLE_KEY, filter_from, filter_query, read_form
from gateway.console.sessions import Principal
from gateway.errors import GatewayError
from gateway.store.console_tables import SavedView
from gateway.store.database import Database

VIEWS = SavedView.__table__  # type: ignore[attr-defined]
V = VIEWS.c
MAX_NAME: Final = 80
MAX_VIEWS: Final = 50
KEPT: Final = ("sort", "dir", "per_page")
"""Queue parameters besides the filter that a view keeps."""


def view_query(raw: str, *, now: datetime) -> str:
    """The queue query string ``raw`` (``kind=x&agency=y&sort=id``), normalised: the filter
    as the queue reads it, and its order and page size. Raises GatewayError on a filter the
    queue refuses."""
    query = MultiDict(parse_qsl(raw.lstrip("?"), keep_blank_values=True))
    params = filter_query(filter_from(query, now=now))
    params += [(k, query[k]) for k in KEPT if query.get(k, "").strip()]
    return urlencode(params)


async def list_views(db: Database, user_name: str) -> list[dict[str, Any]]:
    """The user's views by name, each with the queue address it opens."""
    async with db.snapshot() as conn:
        found = await conn.execute(
            sa.select(V.id, V.name, V.query).where(V.user_name == user_name).order_by(V.name)
        )
        return [
            {"id": r.id, "name": r.name, "query": r.query, "href": f"{QUEUE_PATH}?{r.query}"}
            for r in found
        ]


async def save_view(db: Database, user_name: str, name: str, query: str, *, now: datetime) -> int:
    """Store the view (a view of the same name is replaced); its id."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise GatewayError(_("Name the view (1 to %(n)s characters).") % {"n": MAX_NAME})
    async with db.transaction() as conn:
        await conn.execute(sa.delete(VIEWS).where(V.user_name == user_name, V.name == name))
        count = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(VIEWS).where(V.user_name == user_name)
            )
        ).scalar_one()
        if count >= MAX_VIEWS:
            raise GatewayError(
                _("You have %(n)s saved views; delete one first.") % {"n": MAX_VIEWS}
            )
        inserted = await conn.execute(
            sa.insert(VIEWS)
            .values(user_name=user_name, name=name, query=query, created_at=now)
            .returning(V.id)
        )
        return int(inserted.scalar_one())


async def delete_view(db: Database, user_name: str, view_id: int) -> bool:
    """Delete one of the user's views; False when the user has no such view."""
    async with db.transaction() as conn:
        done = await conn.execute(sa.delete(VIEWS).where(V.id == view_id, V.user_name == user_name))
        return bool(done.rowcount)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@page("viewer")
async def create_view(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``name`` and ``query`` (the queue's query string): save, then open the view."""
    services = request.app[CONSOLE_KEY]
    form = await read_form(request)
    now = services.auth.now()
    query = view_query(str(form.get("query", "")), now=now)
    await save_view(services.db, principal.user.name, str(form.get("name", "")), query, now=now)
    return _see_other(f"{QUEUE_PATH}?{query}")


@page("viewer")
async def remove_view(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = request.app[CONSOLE_KEY]
    text = request.match_info["view_id"]
    if text.isdigit():
        await delete_view(services.db, principal.user.name, int(text))
    form = await read_form(request)
    back = str(form.get("back", ""))
    return _see_other(back if back.startswith(f"{QUEUE_PATH}?") else QUEUE_PATH)


__all__ = [
    "create_view",
    "delete_view",
    "list_views",
    "remove_view",
    "save_view",
    "view_query",
]
