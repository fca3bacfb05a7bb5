"""The console's fair scorecards.

``GET /scorecards?from=YYYY-MM-DD&to=YYYY-MM-DD`` shows, for the placements of the period
(default the last 365 days), each agency's recovery on lender-received money against its
peers' in the same strata, every stratum, champion against challenger, roll, cure and cost
of collection, and the vintage curves as an inline SVG; ``GET /scorecards/curves.{png|svg}``
(same query) downloads the chart. Handlers stay thin: gateway.reporting does the work.
"""

import asyncio
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from gateway.console.guards import page
from gateway.console.i18n import LANGUAGES, _, current
from gateway.console.rendering import download, render
from gateway.console.services import CONSOLE_KEY, ConsoleServices
from gateway.console.sessions import Principal
from gateway.errors import GatewayError
from gateway.reporting.charts import curves_png, curves_svg
from gateway.reporting.scorecards import period
from gateway.reporting.strata import Curve
from gateway.reporting.stratified import (
    remitting_agencies,
    stratified_scorecards,
    vintage_curves,
)

DEFAULT_DAYS = 365
"""The curves need months: the page shows the placements of the last year by default."""


def _window(request: web.Request, services: ConsoleServices) -> tuple[datetime, datetime]:
    """``[from, to)`` of the query as UTC midnights (default: the last ``DEFAULT_DAYS``)."""
    days: dict[str, date | None] = {}
    for name in ("from", "to"):
        value = request.query.get(name, "").strip()
        try:
            days[name] = date.fromisoformat(value) if value else None
        except ValueError:
            raise GatewayError(
                _("%(field)s: %(value)s is not a day (YYYY-MM-DD)")
                % {"field": name, "value": value}
            ) from None
    today = services.auth.now().date()
    start, end = days["from"], days["to"]
    if start is None:
        start = (end or today + timedelta(days=1)) - timedelta(days=DEFAULT_DAYS)
    try:
        return period(start, end, today=today)
    except ValueError as exc:
        raise GatewayError(str(exc)) from None


async def _curves(services: ConsoleServices, start: datetime, end: datetime) -> list[Curve]:
    # Agencies that remit have no dated attributed money: no curve for them.
    remitting = set(remitting_agencies(services.agencies))
    found = await vintage_curves(
        services.db, start=start, end=end, as_of=services.auth.now().date()
    )
    return [c for c in found if c.agency_id not in remitting]


@page("viewer")
async def scorecards_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /scorecards``: the fair scorecards of a period."""
    services = request.app[CONSOLE_KEY]
    start, end = _window(request, services)
    curves = await _curves(services, start, end)
    report = await stratified_scorecards(
        services.db, start=start, end=end, agencies=services.agencies, settings=services.scorecards
    )
    lang, title = LANGUAGES[current().language], _("Vintage curves")
    svg = await asyncio.to_thread(curves_svg, curves, lang=lang, title=title)
    return render(
        "scorecards.html",
        principal,
        report=report.as_dict(),
        # Our own matplotlib drawing, with no text from outside in it: safe inline.
        chart=Markup(svg),
        start=start.date(),
        last=(end - timedelta(days=1)).date(),
        end=end.date(),
        query=urlencode({"from": start.date().isoformat(), "to": end.date().isoformat()}),
        confidence=services.scorecards.confidence,
    )


@page("viewer")
async def curves_download(request: web.Request, principal: Principal) -> web.StreamResponse:
    """``GET /scorecards/curves.{png|svg}``: the vintage curves chart."""
    services = request.app[CONSOLE_KEY]
    start, end = _window(request, services)
    curves = await _curves(services, start, end)
    lang, title = LANGUAGES[current().language], _("Vintage curves")
    kind = request.match_info["kind"]
    name = f"vintage-curves-{start:%Y%m%d}-{end:%Y%m%d}.{kind}"
    headers = download(name)
    if kind == "png":
        png = await asyncio.to_thread(curves_png, curves, lang=lang, title=title)
        return web.Response(body=png, content_type="image/png", headers=headers)
    svg = await asyncio.to_thread(curves_svg, curves, lang=lang, title=title)
    return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8", headers=headers)


def add_scorecard_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/scorecards", scorecards_page)
    router.add_get("/scorecards/curves.{kind:png|svg}", curves_download)


__all__ = ["add_scorecard_routes"]
