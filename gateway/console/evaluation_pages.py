"""The console's annual evaluations (README "Annual evaluation").

``GET /evaluations`` lists the stored evaluations with recommendation, state and decision;
``GET /evaluations/{id}`` shows one: its figures, the reasons for its recommendation, the
documents and the decision; ``GET /evaluations/{id}/{kind}`` downloads the Chinese or
English PDF or the XLSX. Operators and admins ``POST /evaluations/{id}/decide`` (decision,
reason, share for a reduced share); a second person of the checker role ``POST
/evaluations/{id}/approve`` or ``/reject``; the acting person is the logged-in user (four eyes:
gateway.evaluation.service). A refusal shows the page again with the reason.
"""

from aiohttp import web

from gateway.clock import to_datetime
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import download, render
from gateway.console.services import CONSOLE_KEY, read_form
from gateway.console.sessions import Principal
from gateway.errors import GatewayError, NotFound
from gateway.evaluation.service import EvaluationService

MEDIA_TYPES = {
    "pdf_zh": "application/pdf",
    "pdf_en": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _service(request: web.Request) -> EvaluationService:
    service = request.app[CONSOLE_KEY].evaluations
    if service is None:
        raise NotFound("annual evaluations are not available in this process")
    return service


def _report_id(request: web.Request) -> int:
    text = request.match_info["report_id"]
    if not text.isdigit():
        raise NotFound(f"evaluation {text!r} does not exist")
    return int(text)


@page("viewer")
async def evaluations_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /evaluations``: every stored evaluation, newest first."""
    agency = request.query.get("agency", "").strip() or None
    rows = await _service(request).listing(agency_id=agency)
    return render("evaluations.html", principal, rows=rows, agency=agency or "")


async def _report_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    report = await _service(request).show(_report_id(request))
    return render(
        "evaluation.html",
        principal,
        status=status,
        r=report,
        f=report["figures"],
        checkers=request.app[CONSOLE_KEY].four_eyes.evaluation_decision.checker_roles,
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def evaluation_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /evaluations/{report_id}``: one evaluation in full."""
    return await _report_page(request, principal)


@page("viewer")
async def evaluation_document(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /evaluations/{report_id}/{kind}``: a PDF (zh, en) or the XLSX."""
    kind = request.match_info["kind"]
    name, data = await _service(request).document(_report_id(request), kind)
    return web.Response(
        body=data,
        content_type=MEDIA_TYPES[kind],
        headers=download(name),
    )


@page("operator")
async def evaluation_action(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /evaluations/{report_id}/{action}``: decide, approve or reject."""
    report_id = _report_id(request)
    action = request.match_info["action"]
    form = await read_form(request)
    service = _service(request)
    now = to_datetime(request.app[CONSOLE_KEY].clock.now())
    try:
        if action == "decide":
            share = form.get("share_bps", "").strip()
            if share and not share.isdigit():
                raise GatewayError(_("Give the share as a whole number of basis points."))
            await service.propose(
                report_id,
                form.get("decision", ""),
                reason=form.get("reason", ""),
                maker=principal.user,
                now=now,
                share_bps=int(share) if share else None,
            )
        else:
            await service.check(
                report_id,
                approve=action == "approve",
                checker=principal.user,
                now=now,
                note=form.get("note", "").strip() or None,
            )
    except NotFound:
        raise
    except GatewayError as exc:
        return await _report_page(request, principal, error=str(exc), status=409)
    return web.Response(status=303, headers={"Location": f"/evaluations/{report_id}?done={action}"})


def add_evaluation_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/evaluations", evaluations_page)
    router.add_get("/evaluations/{report_id}", evaluation_page)
    router.add_get("/evaluations/{report_id}/{kind:pdf_zh|pdf_en|xlsx}", evaluation_document)
    router.add_post("/evaluations/{report_id}/{action:decide|approve|reject}", evaluation_action)


__all__ = ["add_evaluation_routes"]
