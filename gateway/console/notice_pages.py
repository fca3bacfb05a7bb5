"""The console's pages of what the borrower and the public are told: ``/notices`` (borrower
notices by state, the failed ones flagged with their placements) and ``/verification`` (the
public check log: failed checks per hour and day, the letter numbers most tried without a
match, an alert when failed checks spike)."""

from aiohttp import web

from gateway.clock import to_datetime
from gateway.console.guards import page
from gateway.console.rendering import render
from gateway.console.services import CONSOLE_KEY
from gateway.console.sessions import Principal
from gateway.notices.service import notice_counts, notice_rows
from gateway.verification.report import check_summary
from gateway.verification.web import VERIFICATION_KEY

DEFAULT_ALERT_PER_HOUR = 50
"""The spike threshold when this app serves no verification page (``[verification]``)."""


@page("viewer")
async def notices_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /notices``: counts by state, the failed notices, the latest notices."""
    services = request.app[CONSOLE_KEY]
    async with services.db.snapshot() as conn:
        counts = await notice_counts(conn)
        failed = await notice_rows(conn, failed=True, limit=500)
        recent = await notice_rows(conn, limit=50)
    return render("notices.html", principal, counts=counts, failed=failed, recent=recent)


@page("viewer")
async def verification_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /verification``: the public check log, summarised."""
    services = request.app[CONSOLE_KEY]
    verification = request.app.get(VERIFICATION_KEY)
    alert = (
        verification.settings.alert_failed_per_hour
        if verification is not None
        else DEFAULT_ALERT_PER_HOUR
    )
    async with services.db.snapshot() as conn:
        summary = await check_summary(
            conn,
            now=to_datetime(services.clock.now()),
            zone=services.zone,
            alert_per_hour=alert,
        )
    peak = max((b.failed for b in summary.hours), default=0)
    return render(
        "verification.html",
        principal,
        summary=summary,
        peak=max(peak, 1),
        threshold=alert,
    )


__all__ = ["notices_page", "verification_page"]
