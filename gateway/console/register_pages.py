"""The console's agency register pages (README "Agency register").

``GET /register`` lists every agency (registered or configured) with its status and standing
today (may it take cases, and if not why), its contract, the next lapse and its share; what
ends within the largest ``[register] reminder_days`` is highlighted. ``GET
/register/{agency_id}`` shows an entry: identity, contract, agreement, deposit, admission
review, qualifications with their SHA-256, and its history (who, when, what, why), with the
status actions the logged-in role may take. ``POST /register/{agency_id}/status`` and
``.../share`` change it through gateway.register.store (transition table, history, evidence
leaf) in one transaction; a refusal shows the page again with the reason.

Who may do what is a table: operators suspend and reinstate; admins also admit, terminate,
blacklist and set the share.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from aiohttp import web

from gateway.clock import to_datetime
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY, ConsoleServices, read_form
from gateway.console.sessions import Principal
from gateway.errors import ActionRefused, GatewayError, NotFound
from gateway.register.standing import TRANSITIONS, Standing, expiring, standing
from gateway.register.store import read_entry, read_history, read_register, set_share, set_status

ACTION_ROLES: Final[Mapping[str, frozenset[str]]] = {
    "suspend": frozenset({"operator", "admin"}),
    "reinstate": frozenset({"operator", "admin"}),
    "admit": frozenset({"admin"}),
    "terminate": frozenset({"admin"}),
    "blacklist": frozenset({"admin"}),
    "share": frozenset({"admin"}),
}
"""Register action → the console roles that may take it."""

TARGET: Final = {action: to for (_from, to), action in TRANSITIONS.items()}
"""Status action → the status it moves to."""


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


def _now(services: ConsoleServices) -> datetime:
    return to_datetime(services.clock.now())


@page("viewer")
async def register_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /register``: every agency's standing today, expiries soon highlighted."""
    services = _services(request)
    day = _now(services).astimezone(services.zone).date()
    async with services.db.snapshot() as conn:
        entries = await read_register(conn)
    horizon = max(services.register.reminder_days, default=0)
    soon = expiring(entries.values(), day, horizon)
    ending: dict[str, list[str]] = {}
    for e in soon:
        ending.setdefault(e.agency_id, []).append(f"{e.subject} {e.ends_on.isoformat()}")
    rows = []
    for agency_id in sorted(set(entries) | set(services.agencies)):
        entry = entries.get(agency_id)
        st = (
            standing(entry, entry.qualifications, day)
            if entry is not None
            else Standing(
                not services.register.enforce,
                ("not in the agency register",) if services.register.enforce else (),
            )
        )
        rows.append((agency_id, entry, st, ending.get(agency_id, [])))
    return render("register.html", principal, rows=rows, day=day, horizon=horizon, soon=soon)


async def _entry_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    services = _services(request)
    agency_id = request.match_info["agency_id"]
    day = _now(services).astimezone(services.zone).date()
    async with services.db.snapshot() as conn:
        entry = await read_entry(conn, agency_id)
        history = await read_history(conn, agency_id)
    role = principal.user.role
    actions = [
        action
        for (frm, _to), action in TRANSITIONS.items()
        if frm == entry.status and role in ACTION_ROLES[action]
    ]
    return render(
        "register_entry.html",
        principal,
        status=status,
        entry=entry,
        standing=standing(entry, entry.qualifications, day),
        history=history,
        actions=actions,
        may_share=role in ACTION_ROLES["share"],
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def register_entry_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /register/{agency_id}``: one entry with its history and actions."""
    return await _entry_page(request, principal)


async def _act(
    request: web.Request, principal: Principal, action: str, form: Mapping[str, str]
) -> web.StreamResponse:
    services = _services(request)
    agency_id = request.match_info["agency_id"]
    try:
        if principal.user.role not in ACTION_ROLES.get(action, frozenset()):
            raise ActionRefused(_("Your role may not do this."))
        reason = form.get("reason", "").strip()[:500]
        if not reason:
            raise GatewayError(_("Give a reason: it is kept in the history."))
        now = _now(services)
        async with services.db.transaction() as conn:
            if action == "share":
                text = form.get("share_bps", "").strip()
                if not text.isdigit():
                    raise GatewayError(_("The share is a whole number of basis points."))
                await set_share(
                    conn, agency_id, int(text), reason=reason, actor=principal.user.name, now=now
                )
            else:
                await set_status(
                    conn,
                    agency_id,
                    TARGET[action],
                    reason=reason,
                    actor=principal.user.name,
                    now=now,
                )
    except ActionRefused as exc:
        return await _entry_page(request, principal, error=str(exc), status=409)
    except GatewayError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _entry_page(request, principal, error=str(exc), status=400)
    return web.Response(status=303, headers={"Location": f"/register/{agency_id}?done={action}"})


@page("operator")
async def register_status(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /register/{agency_id}/status``: suspend, reinstate, admit, terminate or
    blacklist, as the role allows."""
    form = dict(await read_form(request))
    action = form.get("action", "")
    if action not in TARGET:
        raise NotFound(f"no register action {action!r}")
    return await _act(request, principal, action, form)


@page("admin")
async def register_share(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /register/{agency_id}/share``: set the allocation share (admins)."""
    return await _act(request, principal, "share", dict(await read_form(request)))


def add_register_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/register", register_page)
    router.add_get("/register/{agency_id}", register_entry_page)
    router.add_post("/register/{agency_id}/status", register_status)
    router.add_post("/register/{agency_id}/share", register_share)


__all__ = ["ACTION_ROLES", "add_register_routes"]
