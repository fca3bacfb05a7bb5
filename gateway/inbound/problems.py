"""RFC 9457 problem details for inbound refusals (pure)."""

import json

from gateway.errors import InboundError, SchemaViolation

PROBLEM_BASE = "https://agency-gateway.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(error: InboundError, *, instance: str, webhook_id: str | None = None) -> bytes:
    body: dict[str, object] = {
        "type": PROBLEM_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": str(error),
        "instance": instance,
    }
    if webhook_id is not None:
        # Echoed as the agency sent it, except bytes that are not UTF-8 (aiohttp keeps them as
        # lone surrogates), which become U+FFFD so the answer itself stays valid UTF-8.
        body["webhook_id"] = webhook_id.encode("utf-8", "replace").decode("utf-8")
    if isinstance(error, SchemaViolation) and error.errors:
        body["errors"] = error.errors
    return json.dumps(body, ensure_ascii=False).encode()


__all__ = ["PROBLEM_BASE", "PROBLEM_CONTENT_TYPE", "problem_body"]
