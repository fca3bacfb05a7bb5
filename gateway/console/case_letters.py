"""The console's authorisation-letter download: one of the case's signed letters as the
agency received it, for a role that may see personal data (a letter names the debtor), with
a reason, audited like a reveal (``pii_reveals`` and its leaf) before the bytes are sent."""

from urllib.parse import quote

from aiohttp import web

from gateway.console import personal_data
from gateway.console.guards import page
from gateway.console.i18n import _
from gateway.console.rendering import error_page
from gateway.console.services import CONSOLE_KEY
from gateway.console.sessions import Principal, remote_of
from gateway.errors import NotFound
from gateway.letters.service import letter_pdf


@page("viewer")
async def download_letter(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``POST /cases/{case_id}/letters/{letter_no}``: the signed PDF as a download."""
    services = request.app[CONSOLE_KEY]
    if not services.may_reveal(principal.user.role):
        return error_page(
            principal,
            403,
            _("Not allowed"),
            _("Authorisation letters name the debtor; your role may not see personal data."),
        )
    form = await request.post()
    reason = str(form.get("reason", "")).strip()
    if not reason:
        return error_page(principal, 400, _("Reason needed"), _("Say why you need the letter."))
    case_id = request.match_info["case_id"]
    letter_no = request.match_info["letter_no"]
    async with services.db.transaction() as conn:
        try:
            name, pdf = await letter_pdf(conn, services.pii, case_id, letter_no)
        except NotFound:
            return error_page(
                principal,
                404,
                _("No such letter"),
                _("case %(case)s has no letter %(letter)s")
                % {"case": case_id, "letter": letter_no},
            )
        await personal_data.audit_reveal(
            conn,
            case_id,
            f"letter:{letter_no}",
            user_name=principal.user.name,
            reason=reason,
            remote=remote_of(request),
            now=services.auth.now(),
        )
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{quote(name)}"',
            "Cache-Control": "no-store",
        },
    )


__all__ = ["download_letter"]
