"""Any filtered list of the console as a CSV or XLSX download, streamed and audited.

``GET /mismatches.csv`` (or ``.xlsx``) exports the mismatch queue and ``GET /cases.csv`` (or
``.xlsx``) the case list, taking the page's own query parameters (filters and, for the
queue, ``sort`` and ``dir``), and ``GET /agencies.csv`` the agencies' overview;
``/api/v1/mismatches.csv`` and the rest answer the same to a bearer token. Every role may
export; what a file holds is gateway.console.export_format.

Theory of operation: the rows come from the page's own reader, all of them, not one page:
the queue's query (gateway.console.read_model.queue_query) streamed through a server-side
cursor, the case list read a page after another with its keyset cursor
(gateway.cases.views.list_cases), all in one read-only snapshot. A CSV is written as the
rows arrive (chunked, UTF-8 with a byte order mark); an XLSX is built in openpyxl's
write-only mode into a spooled temporary file, then sent (chunked too). An XLSX export above
``XLSX_MAX_ROWS`` rows is refused up front with a 400 (CSV has no cap). When the last byte
is written, an ``export`` evidence leaf (``ref`` ``export:LIST``) records who took which
list with which filters, the format, the row count and the SHA-256 of the bytes sent; an
export cut short by an error or a vanished client is recorded with ``complete: false``.
The audit is written before the end of the chunked body, so a client that has read the whole
file can count on the leaf being there.
"""

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import sqlalchemy as sa
from aiohttp import web

from gateway.cases import views
from gateway.console import read_model
from gateway.console.export_format import (
    AGENCY_COLUMNS,
    CASE_COLUMNS,
    QUEUE_COLUMNS,
    XLSX_MAX_ROWS,
    XlsxSheet,
    csv_chunk,
    csv_head,
    shape,
)
from gateway.console.guards import api, page
from gateway.console.i18n import _
from gateway.console.services import (
    CONSOLE_KEY,
    ConsoleServices,
    case_filter_from,
    case_filter_query,
    filter_from,
    filter_query,
)
from gateway.console.sessions import Principal
from gateway.errors import GatewayError
from gateway.evidence.log import LeafInput, append_leaves

Row = dict[str, Any]
BATCH: Final = 500
"""Rows fetched, shaped and written at a time."""
CONTENT_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_SPOOL_BYTES: Final = 8 * 1024 * 1024
_SEND_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class Listing:
    """One list to export: its name, columns, canonical filter parameters, how to count its
    rows and how to read them all (batches of rows, in the page's order)."""

    name: str
    columns: Sequence[str]
    filters: list[tuple[str, str]]
    count: Callable[[], Awaitable[int]]
    batches: Callable[[], AsyncGenerator[list[Row], None]]


@dataclass
class Tally:
    """What has been sent so far: rows, bytes and their running SHA-256."""

    rows: int = 0
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def add(self, data: bytes) -> bytes:
        self.size += len(data)
        self.digest.update(data)
        return data


def _queue(services: ConsoleServices, request: web.Request) -> Listing:
    query = request.query
    target = filter_from(query, now=services.auth.now())
    sort = query.get("sort", "id")
    sort = sort if sort in read_model.SORTS else "id"
    descending = query.get("dir", "desc") != "asc"
    selection = read_model.queue_query(target, sort=sort, descending=descending)

    async def count() -> int:
        async with services.db.snapshot() as conn:
            found = await conn.execute(sa.select(sa.func.count()).select_from(selection.subquery()))
            return int(found.scalar_one())

    async def batches() -> AsyncGenerator[list[Row], None]:
        async with services.db.snapshot() as conn:
            result = await conn.stream(selection.execution_options(yield_per=BATCH))
            async for part in result.mappings().partitions(BATCH):
                yield [dict(row) for row in part]

    params = [*filter_query(target), ("sort", sort), ("dir", "desc" if descending else "asc")]
    return Listing("mismatches", QUEUE_COLUMNS, params, count, batches)


def _cases(services: ConsoleServices, request: web.Request) -> Listing:
    target = case_filter_from(request.query, services.pii)

    async def count() -> int:
        async with services.db.snapshot() as conn:
            return int((await views.list_cases(conn, target, limit=1))["total"])

    async def batches() -> AsyncGenerator[list[Row], None]:
        async with services.db.snapshot() as conn:
            after: str | None = None
            while True:
                found = await views.list_cases(conn, target, limit=views.MAX_LIMIT, after=after)
                if found["items"]:
                    yield found["items"]
                after = found["next_after"]
                if after is None:
                    return

    return Listing("cases", CASE_COLUMNS, case_filter_query(target), count, batches)


def _agencies(services: ConsoleServices, request: web.Request) -> Listing:
    async def read() -> list[Row]:
        async with services.db.snapshot() as conn:
            found = await read_model.agencies_overview(conn, services.agencies, services.circuits())
        return [{**row, "circuit_state": row["circuit"]["state"]} for row in found]

    async def count() -> int:
        return len(services.agencies)

    async def batches() -> AsyncGenerator[list[Row], None]:
        yield await read()

    return Listing("agencies", AGENCY_COLUMNS, [], count, batches)


LISTINGS: Final[dict[str, Callable[[ConsoleServices, web.Request], Listing]]] = {
    "mismatches": _queue,
    "cases": _cases,
    "agencies": _agencies,
}


async def _audit(
    services: ConsoleServices,
    principal: Principal,
    listing: Listing,
    fmt: str,
    tally: Tally,
    *,
    reveal: bool,
    complete: bool,
) -> None:
    now = services.auth.now()
    leaf = LeafInput(
        kind="export",
        ref=f"export:{listing.name}",
        fields={
            "user": principal.user.name,
            "role": principal.user.role,
            "via": principal.via,
            "list": listing.name,
            "format": fmt,
            "filters": urlencode(listing.filters),
            "rows": tally.rows,
            "bytes": tally.size,
            "sha256": tally.digest.hexdigest(),
            "personal_data": "shown" if reveal else "masked",
            "complete": complete,
            "at": now.isoformat(),
        },
    )
    async with services.db.transaction() as conn:
        await append_leaves(conn, [leaf], now=now)


def _response(listing: Listing, fmt: str, services: ConsoleServices) -> web.StreamResponse:
    stamp = services.auth.now().strftime("%Y%m%dT%H%M%SZ")
    return web.StreamResponse(
        headers={
            "Content-Type": CONTENT_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="{listing.name}-{stamp}.{fmt}"',
        }
    )


async def _send_csv(
    request: web.Request, response: web.StreamResponse, listing: Listing, tally: Tally, reveal: bool
) -> None:
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(tally.add(csv_head(listing.columns)))
    async with aclosing(listing.batches()) as batches:
        async for batch in batches:
            shaped = [shape(row, listing.columns, reveal=reveal) for row in batch]
            tally.rows += len(shaped)
            await response.write(tally.add(csv_chunk(shaped)))


async def _send_xlsx(
    request: web.Request, response: web.StreamResponse, listing: Listing, tally: Tally, reveal: bool
) -> None:
    total = await listing.count()
    if total > XLSX_MAX_ROWS:
        raise GatewayError(
            _(
                "%(total)s rows match; an XLSX export holds at most %(cap)s. "
                "Narrow the filters, or export CSV, which has no limit."
            )
            % {"total": total, "cap": XLSX_MAX_ROWS}
        )
    sheet = XlsxSheet(listing.name, listing.columns)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        async with aclosing(listing.batches()) as batches:
            async for batch in batches:
                shaped = [shape(row, listing.columns, reveal=reveal) for row in batch]
                await asyncio.to_thread(sheet.append, shaped)
        await asyncio.to_thread(sheet.save, spool)
        spool.seek(0)
        tally.rows = sheet.rows
        # Chunked, as a CSV: the last chunk goes after the audit, so a client that has the
        # whole file knows the export is on record.
        response.enable_chunked_encoding()
        await response.prepare(request)
        while data := await asyncio.to_thread(spool.read, _SEND_BYTES):
            await response.write(tally.add(data))


async def _export(request: web.Request, principal: Principal) -> web.StreamResponse:
    services = request.app[CONSOLE_KEY]
    fmt = request.match_info["fmt"]
    listing = LISTINGS[request.match_info["list"]](services, request)
    reveal = services.may_reveal(principal.user.role)
    response = _response(listing, fmt, services)
    tally = Tally()
    send = _send_csv if fmt == "csv" else _send_xlsx
    try:
        await send(request, response, listing, tally, reveal)
    except Exception:
        if response.prepared:  # a refusal before the first byte leaves nothing to record
            await _audit(services, principal, listing, fmt, tally, reveal=reveal, complete=False)
        raise
    await _audit(services, principal, listing, fmt, tally, reveal=reveal, complete=True)
    await response.write_eof()
    return response


export_page = page("viewer")(_export)
"""``GET /{list}.{fmt}``: the console's download (session cookie)."""
export_api = api("viewer")(_export)
"""``GET /api/v1/{list}.{fmt}``: the same for a bearer token."""
_PATH: Final = "/{list:mismatches|cases|agencies}.{fmt:csv|xlsx}"


def add_export_routes(app: web.Application, *, api_prefix: str) -> None:
    """Register the exports of every list, for pages and the JSON API."""
    app.router.add_get(_PATH, export_page)
    app.router.add_get(api_prefix + _PATH, export_api)


__all__ = ["BATCH", "LISTINGS", "Listing", "add_export_routes", "export_api", "export_page"]
