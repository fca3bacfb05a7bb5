"""The console's case evidence download: the bundle of ``agency-gateway evidence export``
(gateway.evidence.bundle), for a role that may see personal data (the packets in it carry
the case's), with a reason, audited like a reveal before the bundle is made, so the bundle
itself records who took it and why."""

import json

import sqlalchemy as sa
from aiohttp import web

from gateway.console import personal_data
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import error_page
from gateway.console.services import CONSOLE_KEY
from gateway.console.sessions import Principal, remote_of
from gateway.errors import NotFound
from gateway.evidence.bundle import PLACEMENTS, export_case

P = PLACEMENTS.c


@page("viewer")
async def download_bundle(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /cases/{case_id}/evidence``: the case's evidence bundle as a JSON download."""
    services = request.app[CONSOLE_KEY]
    if not services.may_reveal(principal.user.role):
        return error_page(
            principal,
            403,
            _("Not allowed"),
            _("Evidence bundles carry personal data your role may not see."),
        )
    if services.evidence is None or services.note_verifier is None:
        return error_page(
            principal, 503, _("No evidence log"), _("This process signs no evidence.")
        )
    form = await request.post()
    reason = str(form.get("reason", "")).strip()
    if not reason:
        return error_page(
            principal, 400, _("Reason needed"), _("Say who the bundle is for and why.")
        )
    case_id = request.match_info["case_id"]
    now = services.auth.now()
    async with services.db.transaction() as conn:
        placed = (await conn.execute(sa.select(P.id).where(P.case_id == case_id).limit(1))).first()
        if placed is None:
            return error_page(
                principal,
                404,
                _("No such case"),
                _("case %(id)s was never placed") % {"id": case_id},
            )
        await personal_data.audit_reveal(
            conn,
            case_id,
            "evidence_bundle",
            user_name=principal.user.name,
            reason=reason,
            remote=remote_of(request),
            now=now,
        )
    try:
        bundle = await export_case(
            services.db, services.evidence, services.note_verifier, case_id, now=now
        )
    except NotFound as exc:
        return error_page(principal, 404, _("No such case"), str(exc))
    return web.Response(
        body=json.dumps(bundle, indent=1, ensure_ascii=False).encode(),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="evidence-{case_id}.json"'},
    )


__all__ = ["download_bundle"]
