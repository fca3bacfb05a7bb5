"""Server-side HTML for the console: one Jinja2 environment (autoescaping, strict undefined,
the i18n extension translating into the request's language), the display filters (amounts per
locale, times in the lender's zone, codes by their display names), and the static files (CSS, a
few lines of JS), served from memory.
"""

from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import jinja2
from aiohttp import web

from gateway.console import i18n
from gateway.console.core_texts import said
from gateway.console.formats import NONE, money, timestamp, zone_label
from gateway.console.sessions import CSRF_FIELD, Principal
from gateway.console.vocabulary import action_description, action_label, term
from gateway.resolutions.rules import ACTIONS

HERE: Final = Path(__file__).parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"
STATIC_TYPES: Final = {".css": "text/css", ".js": "text/javascript"}


def short(value: str | None, length: int = 12) -> str:
    if not value:
        return NONE
    return value if len(value) <= length else value[:length] + "…"


def percent(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f} %"


def label(action: str) -> str:
    """An action's name in the current language."""
    return action_label(action)


def language() -> str:
    """The current response's language tag (``<html lang>``)."""
    return i18n.current().language


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n.gettext, i18n.ngettext, newstyle=True
    )
    env.filters.update(
        money=money,
        ts=timestamp,
        short=short,
        percent=percent,
        label=label,
        term=term,
        said=said,
        describe=action_description,
    )
    env.globals.update(
        ACTIONS=ACTIONS,
        CSRF_FIELD=CSRF_FIELD,
        LANGUAGES=i18n.NAMES,
        language=language,
        here=lambda: i18n.current().path,
        zone_label=zone_label,
    )
    return env


def render(
    template: str,
    principal: Principal | None,
    *,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """Render ``template`` with the principal (for the menu and CSRF fields) in context."""
    html = environment().get_template(template).render(principal=principal, **context)
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


def download(name: str) -> dict[str, str]:
    """Headers that make a response a download named ``name`` (RFC 6266, UTF-8 names)."""
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


def error_page(principal: Principal | None, status: int, title: str, message: str) -> web.Response:
    return render("error.html", principal, status=status, title=title, message=message)


@cache
def _static_files() -> dict[str, bytes]:
    """The shipped CSS and JS files by name (read once; they are a few kilobytes)."""
    return {p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in STATIC_TYPES}


async def static_file(request: web.Request) -> web.Response:
    """The console's CSS and JS; only the shipped files, by exact name."""
    body = _static_files().get(request.match_info["name"])
    if body is None:
        return web.Response(status=404, text="not found")
    return web.Response(
        body=body,
        content_type=STATIC_TYPES[Path(request.match_info["name"]).suffix],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


__all__ = [
    "download",
    "environment",
    "error_page",
    "money",
    "percent",
    "render",
    "short",
    "static_file",
    "timestamp",
]
