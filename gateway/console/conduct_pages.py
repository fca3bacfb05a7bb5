"""The console's collector conduct page.

``GET /conduct?month=YYYY-MM`` (default: this month for violations, the sample of the month
asked for) shows the conduct violations raised in the month by agency and kind (each count
links to the mismatch queue), and the month's QA sample of call recordings per agency with
its progress. ``POST /conduct/qa/{item_id}`` requests or reviews one item as the logged-in
operator (CSRF-checked by the page guard); a refusal shows the page again with the reason.
The sample is drawn with ``agency-gateway conduct qa draw``. Handlers stay thin:
gateway.conduct does the work.
"""

from urllib.parse import urlencode

from aiohttp import web

from gateway.clock import to_datetime
from gateway.conduct.qa import QaItem, progress, review, sample
from gateway.conduct.sampling import QA_ACTIONS, REVIEWED, month_bounds
from gateway.conduct.violations import VIOLATION_KINDS, violation_counts
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY, ConsoleServices, read_form
from gateway.console.sessions import Principal
from gateway.errors import ActionRefused, GatewayError, NotFound


def _month(request: web.Request, services: ConsoleServices, given: str | None = None) -> str:
    text = (given if given is not None else request.query.get("month", "")).strip()
    if not text:
        return f"{services.auth.now().astimezone(services.zone):%Y-%m}"
    month_bounds(text, services.zone)  # a GatewayError names the format
    return text


async def _page(
    request: web.Request,
    principal: Principal,
    *,
    month: str | None = None,
    error: str = "",
    status: int = 200,
) -> web.StreamResponse:
    services = request.app[CONSOLE_KEY]
    try:
        chosen = _month(request, services, month)
    except GatewayError as exc:
        chosen, error, status = _month(request, services, ""), str(exc), 400
    start, end = month_bounds(chosen, services.zone)
    reveal = services.may_reveal(principal.user.role)
    async with services.db.snapshot() as conn:
        counts = await violation_counts(conn, start=start, end=end)
        items = await sample(conn, month=chosen, pii=services.pii if reveal else None)
    by_agency: dict[str, list[QaItem]] = {}
    for item in items:
        by_agency.setdefault(item.agency_id, []).append(item)
    links = {
        (agency_id, kind): "/mismatches?"
        + urlencode({"kind": kind, "agency": agency_id, "state": "all"})
        for agency_id in counts
        for kind in VIOLATION_KINDS
    }
    return render(
        "conduct.html",
        principal,
        status=status,
        month=chosen,
        kinds=VIOLATION_KINDS,
        counts=counts,
        links=links,
        samples=by_agency,
        progress={a: progress(i) for a, i in by_agency.items()},
        actions=QA_ACTIONS,
        reviewed=REVIEWED,
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def conduct_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /conduct``: violations by agency and kind, and the month's QA sample."""
    return await _page(request, principal)


@page("operator")
async def qa_review(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /conduct/qa/{item_id}``: request or review one QA item."""
    services = request.app[CONSOLE_KEY]
    text = request.match_info["item_id"]
    if not text.isdigit():
        raise NotFound(f"QA item {text!r} does not exist")
    form = dict(await read_form(request))
    month = form.get("month", "")
    try:
        action = form.get("action", "")
        if action not in QA_ACTIONS:
            raise GatewayError(_("Choose request, pass, fail or unavailable."))
        note = form.get("note", "").strip() or None
        async with services.db.transaction() as conn:
            item = await review(
                conn,
                int(text),
                action,
                actor=f"ops:{principal.user.name}",
                note=note,
                pii=services.pii,
                now=to_datetime(services.clock.now()),
            )
    except ActionRefused as exc:
        return await _page(request, principal, month=month, error=str(exc), status=409)
    except GatewayError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _page(request, principal, month=month, error=str(exc), status=400)
    query = urlencode({"month": item.month, "done": item.state})
    return web.Response(status=303, headers={"Location": f"/conduct?{query}#qa-{item.id}"})


def add_conduct_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/conduct", conduct_page)
    router.add_post("/conduct/qa/{item_id}", qa_review)


__all__ = ["add_conduct_routes"]
