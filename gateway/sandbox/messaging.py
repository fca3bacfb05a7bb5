"""The sandbox messaging service: the lender's side of borrower notices, on loopback.

It does what the lender's messaging team is asked to do (README "Borrower notices"): verify
the Standard Webhooks signature over the raw body before parsing, refuse a stale timestamp,
validate the notice against the wire model, deduplicate on ``webhook-id`` and answer 2xx once
it is kept. Instead of sending SMS it keeps the notices (``received``) for the demo and tests.
``refuse_with`` makes it answer every notice with one status (a failing messaging service).
"""

from collections.abc import Sequence
from typing import Final

from aiohttp import web
from pydantic import ValidationError

from gateway.clock import SystemClock
from gateway.errors import InboundError
from gateway.ports import Clock
from gateway.signing import VerifyingKey, read_headers, verify
from schemas.notices import BorrowerNotice

NOTICES_PATH: Final = "/notices"


class SandboxMessagingService:
    """A stand-in for the lender's messaging service.

    Args:
        verify_keys: the keys that verify the gateway's notice signatures.
        clock: wall clock for the timestamp tolerance.
        tolerance: accepted ``webhook-timestamp`` skew, seconds.
        refuse_with: answer every notice with this status, unprocessed (tests of failure).
    """

    def __init__(
        self,
        *,
        verify_keys: Sequence[VerifyingKey],
        clock: Clock | None = None,
        tolerance: int = 300,
        refuse_with: int | None = None,
    ) -> None:
        self._keys = tuple(verify_keys)
        self._clock = clock or SystemClock()
        self._tolerance = tolerance
        self.refuse_with = refuse_with
        self.received: dict[str, BorrowerNotice] = {}
        """Notices kept, by ``webhook-id`` (the notice id)."""
        self.raw: dict[str, bytes] = {}
        """Their bodies exactly as received."""
        self.headers: dict[str, dict[str, str]] = {}
        """The webhook-* headers each arrived with."""
        self.posts = 0
        self.rejected = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(NOTICES_PATH, self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.refuse_with is not None:
            return web.json_response({"error": "refused by the sandbox"}, status=self.refuse_with)
        body = await request.read()
        try:
            headers = read_headers(request.headers.items())
            verify(headers, body, self._keys, now=int(self._clock.now()), tolerance=self._tolerance)
        except InboundError as exc:
            self.rejected += 1
            return web.json_response({"error": str(exc)}, status=401)
        try:
            notice = BorrowerNotice.model_validate_json(body)
        except ValidationError as exc:
            self.rejected += 1
            return web.json_response({"error": exc.errors(include_url=False)[:3]}, status=422)
        if notice.data.notice_id != headers.msg_id:
            self.rejected += 1
            return web.json_response({"error": "notice_id differs from webhook-id"}, status=422)
        duplicate = headers.msg_id in self.received
        self.received.setdefault(headers.msg_id, notice)
        self.raw.setdefault(headers.msg_id, body)
        self.headers.setdefault(
            headers.msg_id,
            {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("webhook-")},
        )
        return web.json_response({"accepted": headers.msg_id, "duplicate": duplicate})

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for notice in self.received.values():
            counts[notice.data.kind] = counts.get(notice.data.kind, 0) + 1
        return counts


__all__ = ["NOTICES_PATH", "SandboxMessagingService"]
