"""The console's four-eyes pages: claim confirmation batches (债权确认) and approvals.

``GET /approvals`` lists the batches and the approval requests, pending first;
``GET /claims/{id}`` shows a batch's file, totals per currency, product and bucket, holds and
differences, with approve and reject buttons; ``GET /approvals/{id}`` shows a request with the
exact payload. ``POST .../decision`` approves or rejects as the logged-in user through
gateway.approvals.decisions: operators and admins (as ``[four_eyes]`` permits), never the
request's maker; a refusal shows the page again with the reason. Handlers stay thin.
"""

import json
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from gateway.approvals import store as approvals
from gateway.approvals.decisions import decide, decide_batch
from gateway.claims import batches
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY, ConsoleServices, read_form
from gateway.console.sessions import Principal
from gateway.errors import ActionRefused, GatewayError, NotFound


def _services(request: web.Request) -> ConsoleServices:
    return request.app[CONSOLE_KEY]


@page("viewer")
async def approvals_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /approvals``: claim batches and approval requests, newest first."""
    services = _services(request)
    async with services.db.snapshot() as conn:
        found_batches = await batches.listing(conn, limit=50)
        found_approvals = await approvals.listing(conn, limit=100)
    pending = [b for b in found_batches if b.status == "pending"]
    return render(
        "approvals.html",
        principal,
        pending_batches=pending,
        batches=[b for b in found_batches if b.status != "pending"],
        pending_approvals=[
            a for a in found_approvals if a.status == "pending" and a.action != batches.ACTION
        ],
        approvals=[a for a in found_approvals if a.status != "pending"],
    )


async def _batch_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    services = _services(request)
    async with services.db.snapshot() as conn:
        batch = await batches.get(conn, request.match_info["batch_id"])
    return render(
        "claim_batch.html",
        principal,
        status=status,
        batch=batch,
        error=error,
        done=request.query.get("done", ""),
    )


@page("viewer")
async def batch_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /claims/{batch_id}``: one batch with its figures and, pending, the decision."""
    return await _batch_page(request, principal)


def _decision(form: dict[str, str]) -> tuple[bool, str | None]:
    decision = form.get("decision", "")
    if decision not in ("approve", "reject"):
        raise GatewayError(_("Choose approve or reject."))
    note = form.get("note", "").strip()[:500] or None
    if decision == "reject" and note is None:
        raise GatewayError(_("Say why the batch or request is rejected."))
    return decision == "approve", note


@page("operator")
async def batch_decision(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /claims/{batch_id}/decision``: approve or reject as the logged-in user."""
    batch_id = request.match_info["batch_id"]
    return await _decided(
        request,
        principal,
        decide_batch,
        batch_id,
        page=_batch_page,
        location=f"/claims/{quote(batch_id, safe='')}",
    )


async def _decided(
    request: web.Request,
    principal: Principal,
    decision: Callable[..., Awaitable[object]],
    subject: str | int,
    *,
    page: Callable[..., Awaitable[web.StreamResponse]],
    location: str,
) -> web.StreamResponse:
    """The logged-in user's ``decision`` on ``subject`` (a claim batch or an approval
    request) from the posted form; refused: ``page`` again with the reason (409 when the
    four-eyes rules refuse, 400 for a bad form); done: back to ``location``."""
    services = _services(request)
    form = await read_form(request)
    try:
        approve, note = _decision(dict(form))
        await decision(
            services.db,
            subject,
            approve=approve,
            checker=principal.user,
            four_eyes=services.four_eyes,
            now=services.auth.now(),
            note=note,
        )
    except ActionRefused as exc:
        return await page(request, principal, error=str(exc), status=409)
    except GatewayError as exc:
        if isinstance(exc, NotFound):
            raise
        return await page(request, principal, error=str(exc), status=400)
    done = "approved" if approve else "rejected"
    return web.Response(status=303, headers={"Location": f"{location}?done={done}"})


async def _approval_page(
    request: web.Request, principal: Principal, *, error: str = "", status: int = 200
) -> web.StreamResponse:
    services = _services(request)
    approval_id = _approval_id(request)
    async with services.db.snapshot() as conn:
        approval = await approvals.get(conn, approval_id)
    return render(
        "approval.html",
        principal,
        status=status,
        approval=approval,
        payload=json.dumps(approval.payload, indent=2, ensure_ascii=False, sort_keys=True),
        error=error,
        done=request.query.get("done", ""),
    )


def _approval_id(request: web.Request) -> int:
    text = request.match_info["approval_id"]
    if not text.isdigit():
        raise NotFound(f"approval {text!r} does not exist")
    return int(text)


@page("viewer")
async def approval_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /approvals/{approval_id}``: one request with its payload and, pending, the
    decision."""
    return await _approval_page(request, principal)


@page("operator")
async def approval_decision(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /approvals/{approval_id}/decision``: approve or reject as the logged-in user."""
    approval_id = _approval_id(request)
    return await _decided(
        request,
        principal,
        decide,
        approval_id,
        page=_approval_page,
        location=f"/approvals/{approval_id}",
    )


def add_approval_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/approvals", approvals_page)
    router.add_get("/approvals/{approval_id}", approval_page)
    router.add_post("/approvals/{approval_id}/decision", approval_decision)
    router.add_get("/claims/{batch_id}", batch_page)
    router.add_post("/claims/{batch_id}/decision", batch_decision)


__all__ = ["add_approval_routes"]
