"""The console's HTML pages. Handlers stay thin: guard, read or act through the core, render.

A successful form action answers 303 to the page it came from (no double submit on reload);
a refused one renders that page again with the reason. The case pages are in
gateway.console.case_pages.
"""

from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from gateway.console import accounts, personal_data, read_model
from gateway.console.comparison import compare
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.inbound_health import inbound_health
from gateway.console.navigation import local_path, neighbours, queue_address, queue_order, with_back
from gateway.console.rendering import render
from gateway.console.saved_views import list_views
from gateway.console.services import (
    CONSOLE_KEY,
    ConsoleServices,
    action_request,
    filter_from,
    filter_query,
    read_form,
)
from gateway.console.sessions import Principal
from gateway.console.vocabulary import action_label
from gateway.errors import GatewayError, NotFound
from gateway.reconciliation.kinds import SEVERITY
from gateway.reporting.scorecards import DEFAULT_DAYS, period, rate, scorecards
from gateway.resolutions.facts import count_matching
from gateway.resolutions.rules import ACTIONS, ROLES, ActionRefused, MismatchFilter
from gateway.store.tables import Mismatch

M = Mismatch.__table__.c  # type: ignore[attr-defined]


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@page("viewer")
async def dashboard(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        data = await read_model.dashboard(
            conn,
            services.agencies,
            services.circuits(),
            now=services.auth.now(),
            zone=services.zone,
        )
    return render("dashboard.html", principal, data=data)


async def _known_kinds(services: ConsoleServices) -> list[str]:
    async with services.db.snapshot() as conn:
        stored = (await conn.execute(sa.select(M.kind).distinct())).scalars().all()
    return sorted(set(SEVERITY) | set(stored))


async def _queue_page(
    request: web.Request,
    principal: Principal,
    *,
    target: MismatchFilter,
    error: str = "",
    status: int = 200,
) -> web.Response:
    services = _services(request)
    query = request.query
    sort = query.get("sort", "id")
    descending = query.get("dir", "desc") != "asc"
    page_no = int(query["page"]) if query.get("page", "").isdigit() else 1
    per_page = int(query["per_page"]) if query.get("per_page", "").isdigit() else 50
    async with services.db.snapshot() as conn:
        data = await read_model.queue(
            conn, target, sort=sort, descending=descending, page=page_no, per_page=per_page
        )
    params = filter_query(target)
    order = [("sort", data["sort"]), ("dir", "desc" if data["descending"] else "asc")]
    order.append(("per_page", str(data["per_page"])))
    back = queue_address([*params, *order, ("page", str(data["page"]))])
    return render(
        "queue.html",
        principal,
        status=status,
        data=data,
        target=target,
        filter_params=params,
        filter_qs=urlencode(params),
        back_param=urlencode({"back": back}),
        back=back,
        view_qs=urlencode(params + order),
        views=await list_views(services.db, principal.user.name),
        kinds=await _known_kinds(services),
        agencies=sorted(services.agencies),
        states=["open", "investigating", "resolved", "dismissed", "written_off"],
        severities=list(read_model.SEVERITY_RANK),
        bulk_actions=[a for a in ACTIONS.values() if a.name not in ("assign", "comment")],
        error=error,
    )


@page("viewer")
async def mismatch_queue(request: web.Request, principal: Principal) -> web.StreamResponse:
    now = _services(request).auth.now()
    return await _queue_page(request, principal, target=filter_from(request.query, now=now))


CONFIRMED_ACTIONS = frozenset({"recall", "write_off", "amend"})
"""Bulk actions that change placements or money: the operator confirms the exact count first."""


@page("operator")
async def bulk_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Apply one action to the ticked mismatches (``pick``), or with ``scope=filter`` to every
    one matching the filter the form carries, up to the highest id the page counted
    (``upto``). A recall, write-off or amendment first asks to confirm the count."""
    services = _services(request)
    form = await read_form(request)
    target = filter_from(form, now=services.auth.now())
    back = queue_address(filter_query(target))  # the list the form came from, its filters kept
    if form.get("scope") != "filter":
        picked = tuple(int(v) for v in form.getall("pick", ()) if v.isdigit())
        if not picked:
            return await _queue_page(
                request,
                principal,
                target=target,
                error=_("Tick at least one mismatch, or choose 'all matching the filter'."),
                status=400,
            )
        target = MismatchFilter(states=(), ids=picked)
    action = str(form.get("action", ""))
    if action in CONFIRMED_ACTIONS:
        async with services.db.snapshot() as conn:
            count = await count_matching(conn, target)
        if form.get("confirm_count") != str(count):
            # The count is the one the operator confirms; if it changed since, ask again.
            return render(
                "bulk_confirm.html",
                principal,
                action=action,
                count=count,
                back=back,
                fields=[
                    (k, v)
                    for k, v in form.items()
                    if k not in ("confirm_count", "csrf_token") and isinstance(v, str)
                ],
            )
    result = await services.resolutions.bulk(target, action_request(form, principal.user.name))
    return render("bulk_result.html", principal, result=result, action=action, back=back)


@page("viewer")
async def mismatch_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    return await _mismatch_page(request, principal)


async def _mismatch_page(
    request: web.Request,
    principal: Principal,
    *,
    back: str | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    services = _services(request)
    mismatch_id = _int(request.match_info["mismatch_id"])
    back = back or local_path(request.query.get("back"))
    order = queue_order(back, now=services.auth.now())
    previous_id = next_id = None
    async with services.db.snapshot() as conn:
        data = await read_model.mismatch_detail(conn, mismatch_id)
        if order is not None:
            target, sort, descending = order
            previous_id, next_id = await neighbours(
                conn, target, mismatch_id, sort=sort, descending=descending
            )
    users = [
        u
        for u in await accounts.list_users(services.db)
        if not u["disabled"] and u["role"] != "viewer"
    ]
    done = request.query.get("done", "")
    done_on = request.query.get("done_on", "")
    return render(
        "mismatch.html",
        principal,
        status=status,
        m=data,
        fields=compare(data["ours"], data["theirs"], data["kind"]),
        back=back,
        previous_href=with_back(f"/mismatches/{previous_id}", back) if previous_id else None,
        next_href=with_back(f"/mismatches/{next_id}", back) if next_id else None,
        next_id=next_id,
        done_on=int(done_on) if done_on.isdigit() and int(done_on) != mismatch_id else None,
        users=users,
        done=action_label(done) if done in ACTIONS else "",
        error=error,
        can_act=principal.user.at_least("operator"),
    )


@page("operator")
async def mismatch_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    mismatch_id = _int(request.match_info["mismatch_id"])
    form = await read_form(request)
    back = local_path(form.get("back"))
    try:
        result = await services.resolutions.act(
            mismatch_id, action_request(form, principal.user.name)
        )
    except ActionRefused as exc:
        return await _mismatch_page(request, principal, back=back, error=str(exc), status=409)
    except NotFound:
        raise
    except GatewayError as exc:
        return await _mismatch_page(request, principal, back=back, error=str(exc), status=400)
    if form.get("then") == "next":
        # "Submit and next": the mismatch after this one in the list the page was opened
        # from (counted when the page was shown); at the end of the list, the list itself.
        next_id = form.get("next_id", "")
        if next_id.isdigit():
            done = {"done": result.action, "done_on": str(mismatch_id)}
            return _see_other(with_back(f"/mismatches/{next_id}", back, **done))
        return _see_other(back or "/mismatches")
    return _see_other(with_back(f"/mismatches/{mismatch_id}", back, done=result.action))


@page("viewer")
async def agencies_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        rows = await read_model.agencies_overview(conn, services.agencies, services.circuits())
    # Scorecards of the placements of the last 30 days (``agencies scorecard`` for others).
    start, end = period(None, None, today=services.auth.now().date())
    cards = await scorecards(services.db, services.agencies, start=start, end=end)
    return render(
        "agencies.html",
        principal,
        rows=rows,
        cards=cards,
        rate=rate,
        days=DEFAULT_DAYS,
    )


@page("viewer")
async def agency_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    agency = services.agencies.get(request.match_info["agency_id"])
    if agency is None:
        raise NotFound(f"no agency {request.match_info['agency_id']!r} in the configuration")
    async with services.db.snapshot() as conn:
        data = await read_model.agency_page(
            conn, agency, services.circuits(), now=services.auth.now()
        )
        data["inbound"] = await inbound_health(
            conn, agency.id, agency.channel, now=services.auth.now()
        )
    return render("agency.html", principal, a=data)


@page("admin")
async def users_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    return await _users_page(request, principal)


async def _users_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.Response:
    users = await accounts.list_users(_services(request).db)
    return render("users.html", principal, status=status, users=users, roles=ROLES, error=error)


@page("admin")
async def users_add(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    form = await read_form(request)
    try:
        await accounts.add_user(
            services.db,
            str(form.get("name", "")).strip(),
            str(form.get("role", "")),
            str(form.get("password", "")),
            now=services.auth.now(),
        )
    except GatewayError as exc:
        return await _users_page(request, principal, error=str(exc), status=400)
    return _see_other("/users")


@page("admin")
async def users_switch(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = _services(request)
    name = request.match_info["name"]
    disable = request.match_info["switch"] == "disable"
    if disable and name == principal.user.name:
        return await _users_page(request, principal, error=_("You cannot disable yourself."))
    await accounts.set_disabled(services.db, name, disabled=disable, now=services.auth.now())
    return _see_other("/users")


@page("admin")
async def reveals_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    rows = await personal_data.recent_reveals(_services(request).db)
    return render("reveals.html", principal, rows=rows)


def _int(text: str) -> int:
    if not text.isdigit():
        raise NotFound(f"{text!r} is not a mismatch id")
    return int(text)


__all__ = [
    "agencies_page",
    "agency_page",
    "bulk_action",
    "dashboard",
    "mismatch_action",
    "mismatch_page",
    "mismatch_queue",
    "reveals_page",
    "users_add",
    "users_page",
    "users_switch",
]
