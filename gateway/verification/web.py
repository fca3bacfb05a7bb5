"""The public verification page and API, mounted on the gateway's HTTP server (no login).

``GET /verify`` shows the form (``?letter=`` from the QR code prefills it; ``?lang=en`` or the
browser's ``Accept-Language`` picks English, Chinese otherwise); ``POST /verify`` answers the
form; ``POST /v1/verify`` answers JSON (``{"letter_no": "...", "digits": "1234"}``). A rate
limited client gets 429 with ``Retry-After``. No CSRF token: the check changes nothing but the
log, and the page loads nothing from another site (its own stylesheet only), under the same
security headers as the console, with ``Referrer-Policy: no-referrer`` so the letter number in
a QR link never leaks onward.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jinja2
from aiohttp import web

from gateway.verification.check import Verdict
from gateway.verification.service import CheckAnswer, VerificationService
from gateway.verification.texts import TEXTS, language_from

HERE: Final = Path(__file__).parent / "templates"
VERIFICATION_KEY: Final = web.AppKey("verification", VerificationService)
LENDER_KEY: Final = web.AppKey("verification_lender", str)
PROBLEM: Final = "application/problem+json"
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(HERE), encoding="utf-8"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
TONES: Final = {"authorised": "ok", "not_yet": "warn", "superseded": "warn"}


@dataclass(frozen=True, slots=True)
class Shown:
    tone: str
    title: str
    text: str


def _client(request: web.Request) -> str:
    service = request.app[VERIFICATION_KEY]
    if service.settings.trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        if forwarded:
            return forwarded
    return request.remote or "unknown"


def shown(answer: CheckAnswer, language: str) -> Shown:
    """The result box of the page for ``answer`` in ``language``."""
    t = TEXTS[language]
    if answer.retry_after is not None:
        minutes = max(1, (answer.retry_after + 59) // 60)
        return Shown("bad", t["no_match_title"], t["limited"].format(minutes=minutes))
    if answer.verdict is None:
        return Shown("bad", t["no_match_title"], t["invalid"])
    verdict: Verdict = answer.verdict
    if verdict.agency is None:
        return Shown("bad", t["no_match_title"], t["no_match"])
    agency = verdict.agency
    name = (agency.legal_name_en or agency.legal_name) if language == "en" else agency.legal_name
    since = verdict.valid_from if verdict.outcome == "not_yet" else verdict.since
    text = t[verdict.outcome].format(
        agency=name,
        phone=agency.phone or t["unknown_phone"],
        until=verdict.valid_until.isoformat() if verdict.valid_until else "",
        since=since.isoformat() if since else "",
    )
    return Shown(TONES.get(verdict.outcome, "bad"), t[f"{verdict.outcome}_title"], text)


def _page(
    request: web.Request,
    language: str,
    *,
    letter: str,
    result: Shown | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = _ENV.get_template("verify.html").render(
        language=language,
        other="en" if language == "zh-CN" else "zh-CN",
        t=TEXTS[language],
        lender=request.app[LENDER_KEY],
        letter=letter,
        result=result,
    )
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={**HEADERS, "Content-Language": language, **(headers or {})},
    )


async def verify_form(request: web.Request) -> web.Response:
    """``GET /verify``: the empty form, its letter number taken from ``?letter=``."""
    language = language_from(request.query.get("lang"), request.headers.get("Accept-Language"))
    letter = request.query.get("letter", "")[:40]
    return _page(request, language, letter=letter, result=None)


async def verify_submit(request: web.Request) -> web.Response:
    """``POST /verify``: check the form's letter number and digits, show the answer."""
    form = await request.post()
    letter = str(form.get("letter", ""))[:200]
    digits = str(form.get("digits", ""))[:20]
    language = language_from(
        str(form.get("lang", "")) or request.query.get("lang"),
        request.headers.get("Accept-Language"),
    )
    answer = await request.app[VERIFICATION_KEY].check(
        letter=letter, digits=digits, client=_client(request), channel="page"
    )
    status, headers = 200, {}
    if answer.retry_after is not None:
        status, headers = 429, {"Retry-After": str(answer.retry_after)}
    elif answer.invalid_input:
        status = 400
    return _page(
        request,
        language,
        letter=letter.strip()[:40],
        result=shown(answer, language),
        status=status,
        headers=headers,
    )


def _problem(status: int, title: str, detail: str, **extra: str) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM,
        headers={**HEADERS, **extra},
    )


async def verify_api(request: web.Request) -> web.Response:
    """``POST /v1/verify``: ``{"letter_no", "digits"}`` → ``{"outcome", ...}`` (README)."""
    try:
        data = json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("letter_no", "digits")
    ):
        return _problem(
            400, "Bad request", 'send {"letter_no": "<letter number>", "digits": "<last 4>"}'
        )
    answer = await request.app[VERIFICATION_KEY].check(
        letter=data["letter_no"][:200],
        digits=data["digits"][:20],
        client=_client(request),
        channel="api",
    )
    if answer.retry_after is not None:
        return _problem(
            429,
            "Too many checks",
            f"try again in {answer.retry_after} seconds",
            **{"Retry-After": str(answer.retry_after)},
        )
    if answer.verdict is None:
        return _problem(400, "Bad request", "digits must be 4 characters: 0-9, the last may be X")
    return web.json_response(answer.verdict.as_json(), headers=HEADERS)


async def stylesheet(_request: web.Request) -> web.Response:
    return web.Response(
        body=(HERE / "verify.css").read_bytes(),
        content_type="text/css",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


def add_verification(app: web.Application, service: VerificationService, *, lender: str) -> None:
    """Mount the page and API on ``app`` (``lender``: the name shown above the form)."""
    app[VERIFICATION_KEY] = service
    app[LENDER_KEY] = lender
    app.router.add_get("/verify", verify_form)
    app.router.add_post("/verify", verify_submit)
    app.router.add_get("/verify/verify.css", stylesheet)
    app.router.add_post("/v1/verify", verify_api)


__all__ = ["VERIFICATION_KEY", "add_verification", "shown"]
