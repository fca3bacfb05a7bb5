"""The console's case pages: the case list (filters, search by any id) and one case's page
(account, masked personal data and its audited reveal, holds, placements, why each went to
its agency, escalations, and the timeline with the case's lifecycle steps merged in).

Handlers stay thin: guard, read through gateway.cases.views and gateway.console.timeline,
render. Personal data is masked everywhere; the case page reveals it on an explicit, audited
POST for roles allowed to see it.
"""

from dataclasses import replace
from urllib.parse import quote, urlencode

from aiohttp import web

from gateway.cases import views
from gateway.console import case_actions, personal_data, timeline
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import error_page, render
from gateway.console.services import (
    CONSOLE_KEY,
    ConsoleServices,
    case_filter_from,
    case_filter_query,
    page_limit,
    read_form,
)
from gateway.console.sessions import Principal, remote_of
from gateway.console.vocabulary import action_label
from gateway.errors import GatewayError, NotFound
from gateway.letters.service import letters_of_case
from gateway.lifecycle import CASE_STATES
from gateway.settlement.attribution_pass import attributions_of
from schemas.account import KNOWN_HOLD_CODES


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


@page("viewer")
async def case_list(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /cases``: the filtered list, a page at a time (``after``: the last id shown)."""
    services = _services(request)
    query = request.query
    error = ""
    try:
        target = case_filter_from(query, services.pii)
    except GatewayError as exc:
        target, error = views.CaseFilter(), str(exc)
    limit = page_limit(query)
    async with services.db.snapshot() as conn:
        data = await views.list_cases(
            conn, target, limit=limit, after=query.get("after", "").strip() or None
        )
    params = case_filter_query(target)
    return render(
        "cases.html",
        principal,
        status=400 if error else 200,
        data=data,
        target=target,
        filter_qs=urlencode([*params, ("limit", str(data["limit"]))]),
        statuses=CASE_STATES,
        agencies=sorted(services.agencies),
        tiers=_tiers(services),
        error=error,
    )


@page("viewer")
async def find_cases(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /cases``: the filter form, posted so that a debtor id typed in it never sits in
    a URL or an access log. Answers 303 to ``GET /cases`` with the same filters, the debtor
    id (typed as a debtor, or as "any id" when it names one) turned into its key."""
    services = _services(request)
    form = await read_form(request)
    debtor = str(form.pop("debtor", "")).strip()
    if debtor:
        form["debtor_key"] = services.pii.debtor_key(debtor)
    target = case_filter_from(form, services.pii)
    if target.search and target.search_keys:
        async with services.db.snapshot() as conn:
            key = await views.debtor_key_among(conn, target.search_keys)
        if key is not None:
            target = replace(target, debtor_key=key, search=None, search_keys=())
    params = case_filter_query(target)
    return web.Response(status=303, headers={"Location": "/cases?" + urlencode(params)})


def _tiers(services: ConsoleServices) -> list[str]:
    return sorted({agency.tier for agency in services.agencies.values()})


async def _case_page(
    request: web.Request,
    principal: Principal,
    *,
    revealed: dict[str, object] | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    services = _services(request)
    case_id = request.match_info["case_id"]
    async with services.db.snapshot() as conn:
        detail = await views.case_detail(conn, case_id)
        data = await timeline.case_timeline(conn, case_id)
        letters = await letters_of_case(conn, case_id)
        attributions = await attributions_of(conn, case_id=case_id)
    masked = await personal_data.masked_case_pii(services.db, services.pii, case_id)
    done = request.query.get("done", "")
    return render(
        "case.html",
        principal,
        status=status,
        t=data,
        detail=detail,
        masked=masked,
        revealed=revealed,
        letters=letters,
        attributions=attributions,
        may_reveal=services.may_reveal(principal.user.role),
        done=_("%(action)s: recorded") % {"action": action_label(done)}
        if done in case_actions.CASE_ACTIONS
        else "",
        error=error,
        can_act=principal.user.at_least("operator"),
        actions=case_actions.available(detail),
        hold_codes=KNOWN_HOLD_CODES,
    )


@page("viewer")
async def case_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    return await _case_page(request, principal)


@page("viewer")
async def reveal_pii(request: web.Request, principal: Principal) -> web.StreamResponse:
    """Show the case's personal data once, to an allowed role, and audit it."""
    services = _services(request)
    if not services.may_reveal(principal.user.role):
        return error_page(
            principal,
            403,
            _("Not allowed"),
            _("Your role may not see personal data (masked only)."),
        )
    form = await read_form(request)
    reason = str(form.get("reason", "")).strip()
    if not reason:
        return error_page(principal, 400, _("Reason needed"), _("Say why you need the data."))
    revealed = await personal_data.reveal(
        services.db,
        services.pii,
        request.match_info["case_id"],
        user_name=principal.user.name,
        reason=reason,
        remote=remote_of(request),
        now=services.auth.now(),
    )
    return await _case_page(request, principal, revealed=revealed)


@page("operator")
async def case_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /cases/{case_id}/actions``: one action of gateway.console.case_actions; 303
    back to the case page, or the page again with the reason it was refused."""
    services = _services(request)
    case_id = request.match_info["case_id"]
    form = await read_form(request)
    try:
        wanted = case_actions.request_from(form, principal.user.name)
        case_actions.check(wanted)
    except GatewayError as exc:
        return await _case_page(request, principal, error=str(exc), status=400)
    try:
        await case_actions.act(services, case_id, wanted)
    except NotFound:
        raise
    except GatewayError as exc:
        return await _case_page(request, principal, error=str(exc), status=409)
    return web.Response(
        status=303,
        headers={"Location": f"/cases/{quote(case_id, safe='')}?done={wanted.action}"},
    )


__all__ = ["case_action", "case_list", "case_page", "reveal_pii"]
