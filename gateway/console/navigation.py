"""Working through the mismatch queue without losing one's place.

A queue link carries ``back``: the queue's own address with its filters, sort and page. The
mismatch page keeps it in its links and forms, so after an action the operator returns to
the same list, and "submit and next" moves to the mismatch after this one in that list.
``back`` comes from the browser: only a local path is followed (never ``//host`` or a
scheme), anything else is dropped.
"""

from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import sqlalchemy as sa
from multidict import MultiDict
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.console.read_model import SORTS
from gateway.console.services import filter_from
from gateway.errors import GatewayError
from gateway.resolutions.rules import MismatchFilter
from gateway.store.tables import Mismatch

M = Mismatch.__table__.c  # type: ignore[attr-defined]
QUEUE_PATH: Final = "/mismatches"
MAX_BACK: Final = 2000


def local_path(text: str | None) -> str | None:
    """``text`` when it is a path on this site (``/mismatches?kind=x``), else None."""
    if not text or len(text) > MAX_BACK or not text.startswith("/") or text.startswith("//"):
        return None
    if "\\" in text or any(ord(ch) < 0x20 for ch in text):
        return None
    parts = urlsplit(text)
    if parts.scheme or parts.netloc:
        return None
    return text


def queue_address(params: list[tuple[str, str]]) -> str:
    """The queue's address with these query parameters."""
    return f"{QUEUE_PATH}?{urlencode(params)}" if params else QUEUE_PATH


def with_back(path: str, back: str | None, **extra: str) -> str:
    """``path`` with ``extra`` and ``back`` (when there is one) in its query."""
    params = [(k, v) for k, v in extra.items() if v] + ([("back", back)] if back else [])
    return f"{path}?{urlencode(params)}" if params else path


def queue_order(back: str | None, *, now: datetime) -> tuple[MismatchFilter, str, bool] | None:
    """The filter and order of the queue ``back`` points at, or None (not the queue, or
    filters that no longer parse)."""
    if back is None:
        return None
    parts = urlsplit(back)
    if parts.path != QUEUE_PATH:
        return None
    query = MultiDict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        target = filter_from(query, now=now)
    except GatewayError:
        return None
    sort = query.get("sort", "id")
    return target, sort if sort in SORTS else "id", query.get("dir", "desc") != "asc"


async def neighbours(
    conn: AsyncConnection,
    target: MismatchFilter,
    mismatch_id: int,
    *,
    sort: str,
    descending: bool,
) -> tuple[int | None, int | None]:
    """The mismatches before and after ``mismatch_id`` in the queue's order (keyset: two
    lookups, whatever the length of the list; no sort key is NULL). The mismatch itself need
    not match the filter any more: after it is resolved, "next" is still the one after it."""
    key: Any = SORTS.get(sort, M.id)
    found = (await conn.execute(sa.select(key).where(M.id == mismatch_id))).first()
    if found is None:
        return None, None
    value = found[0]

    async def step(forward: bool) -> int | None:
        # Forward in a descending list means smaller keys; backward, larger ones.
        smaller = forward == descending
        beyond = sa.or_(
            key < value if smaller else key > value,
            sa.and_(key == value, M.id < mismatch_id if smaller else M.id > mismatch_id),
        )
        order = [key.desc(), M.id.desc()] if smaller else [key.asc(), M.id.asc()]
        query = sa.select(M.id).where(*target.clauses(), beyond).order_by(*order).limit(1)
        return (await conn.execute(query)).scalar()

    return await step(False), await step(True)


__all__ = [
    "QUEUE_PATH",
    "local_path",
    "neighbours",
    "queue_address",
    "queue_order",
    "with_back",
]
