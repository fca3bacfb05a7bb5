"""The record of result-file pickups: sightings, claims, outcomes, and the one transaction
that stores a file with its evidence and its events.

``commit_file`` is the heart: in ONE transaction it stores the raw file exactly as received
(``inbound_messages``, channel ``sftp``, external id ``sha256:<hex>``, whose unique key also
makes two processes committing the same bytes impossible), its ``inbound`` evidence leaf,
the events of the good rows (reconciled by ``gateway.reconciliation.recorder.apply_events`` in
chunks, so IN lists stay under the databases' limits), and the pickup row with counts and row
errors.
"""

import asyncio
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sftp.batches import base_of
from adapters.sftp.layouts import ParsedRecord, RowError, Trailer
from adapters.sftp.parsing import column_for, read_records
from adapters.sftp.result_rows import (
    FileTally,
    error_report,
    refuse_row,
    result_lines,
    statement_event,
)
from gateway.config.layouts import LayoutSection, RecordKind
from gateway.evidence.log import LeafInput, append_leaves
from gateway.ports import RemoteEntry
from gateway.reconciliation.recorder import ArrivalPolicy, IncomingEvent, apply_events
from gateway.settlement import answers as settlement_answers
from gateway.store.database import Database
from gateway.store.tables import AgencyStatus, InboundMessage
from gateway.store.transfer_tables import FilePickup
from schemas.events import AgencyEvent

PICKUPS = FilePickup.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
P = PICKUPS.c
EVENT_CHUNK = 2000
FINISHED = ("done", "partial", "failed", "duplicate")


@dataclass(frozen=True, slots=True)
class Sighting:
    """How long a file has looked the same: consecutive polls and since when."""

    stable_polls: int
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class Earlier:
    """A previous pickup of the same bytes."""

    pickup_id: int
    name: str
    state: str


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What the transaction needs to know about one downloaded file."""

    pickup_id: int
    agency_id: str
    name: str
    kind: str
    raw: Path
    readable: Path
    sha256: str
    size: int
    signed: bool
    manifest_count: int | None


async def endpoint_disabled(db: Database, agency_id: str) -> bool:
    async with db.snapshot() as conn:
        row = await conn.execute(
            sa.select(STATUS.c.endpoint_disabled).where(STATUS.c.agency_id == agency_id)
        )
        return bool(row.scalar_one_or_none())


async def record_sightings(
    db: Database,
    agency_id: str,
    candidates: Iterable[tuple[RemoteEntry, str]],
    *,
    now: datetime,
) -> dict[str, Sighting]:
    """Update the ``seen`` rows with this listing; forget files that disappeared."""
    found: dict[str, Sighting] = {}
    async with db.transaction() as conn:
        seen = {
            r.remote_name: r
            for r in (
                await conn.execute(
                    sa.select(PICKUPS).where(P.agency_id == agency_id, P.state == "seen")
                )
            ).all()
        }
        for entry, kind in candidates:
            row = seen.pop(entry.name, None)
            if row is None:
                await conn.execute(
                    PICKUPS.insert().values(
                        agency_id=agency_id,
                        remote_name=entry.name,
                        kind=kind,
                        state="seen",
                        size=entry.size,
                        mtime=entry.mtime,
                        stable_polls=1,
                        first_seen_at=now,
                        last_seen_at=now,
                    )
                )
                found[entry.name] = Sighting(1, now)
                continue
            same = (row.size, row.mtime) == (entry.size, entry.mtime)
            sighting = (
                Sighting(row.stable_polls + 1, row.first_seen_at) if same else Sighting(1, now)
            )
            await conn.execute(
                PICKUPS.update()
                .where(P.id == row.id)
                .values(
                    size=entry.size,
                    mtime=entry.mtime,
                    stable_polls=sighting.stable_polls,
                    first_seen_at=sighting.first_seen,
                    last_seen_at=now,
                )
            )
            found[entry.name] = sighting
        if seen:
            # Gone before they were ready (the agency removed or renamed them).
            await conn.execute(PICKUPS.delete().where(P.id.in_([r.id for r in seen.values()])))
    return found


async def _insert_claim(
    conn: AsyncConnection, agency_id: str, entry: RemoteEntry, kind: str, worker: str, now: datetime
) -> int:
    result = await conn.execute(
        PICKUPS.insert()
        .values(
            agency_id=agency_id,
            remote_name=entry.name,
            kind=kind,
            state="claimed",
            size=entry.size,
            mtime=entry.mtime,
            stable_polls=0,
            first_seen_at=now,
            last_seen_at=now,
            claimed_at=now,
            claimed_by=worker,
        )
        .returning(P.id)
    )
    return int(result.scalar_one())


async def claim(
    db: Database,
    agency_id: str,
    entry: RemoteEntry,
    kind: str,
    *,
    worker: str,
    now: datetime,
    row_id: int | None = None,
) -> int:
    """Mark the file claimed (its sighting row, the given row, or a new row); its id."""
    async with db.transaction() as conn:
        where = (
            P.id == row_id
            if row_id is not None
            else sa.and_(P.agency_id == agency_id, P.remote_name == entry.name, P.state == "seen")
        )
        result = await conn.execute(
            PICKUPS.update()
            .where(where)
            .values(state="claimed", claimed_at=now, claimed_by=worker)
            .returning(P.id)
        )
        found = result.scalars().first()
        if found is not None:
            return int(found)
        return await _insert_claim(conn, agency_id, entry, kind, worker, now)


async def forget_sighting(db: Database, agency_id: str, name: str) -> None:
    """Someone else claimed the file first."""
    async with db.transaction() as conn:
        await conn.execute(
            PICKUPS.delete().where(
                P.agency_id == agency_id, P.remote_name == name, P.state == "seen"
            )
        )


async def latest(db: Database, agency_id: str, name: str) -> Any:
    """The newest pickup row of a remote name, or None."""
    async with db.snapshot() as conn:
        return (
            await conn.execute(
                sa.select(PICKUPS)
                .where(P.agency_id == agency_id, P.remote_name == name)
                .order_by(P.id.desc())
                .limit(1)
            )
        ).one_or_none()


async def earlier_copy(db: Database, agency_id: str, sha256: str, pickup_id: int) -> Earlier | None:
    """The first other pickup that applied these bytes (done or partial). A refused file was
    never applied: the same bytes sent again, with a right manifest or a signature this
    time, are read in full rather than skipped as a duplicate of the refusal."""
    async with db.snapshot() as conn:
        row = (
            await conn.execute(
                sa.select(P.id, P.remote_name, P.state)
                .where(
                    P.agency_id == agency_id,
                    P.sha256 == sha256,
                    P.id != pickup_id,
                    P.state.in_(["done", "partial"]),
                )
                .order_by(P.id)
                .limit(1)
            )
        ).one_or_none()
    return Earlier(row.id, row.remote_name, row.state) if row is not None else None


async def finish(db: Database, pickup_id: int, **values: Any) -> None:
    """Update a pickup row (state, hash, errors, where the file went...)."""
    async with db.transaction() as conn:
        await conn.execute(PICKUPS.update().where(P.id == pickup_id).values(**values))


async def delete(db: Database, pickup_id: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(PICKUPS.delete().where(P.id == pickup_id))


def file_error(message: str) -> str:
    """The ``errors`` column of a pickup refused as a whole."""
    return json.dumps([{"line": 0, "field": "file", "message": message}])


async def refusal_reason(db: Database, pickup_id: int) -> str:
    """Why a pickup went to ``error/``, for its reason file: a file-level reason as it is;
    row errors one per line with their line and column, as ``sftp errors`` shows them."""
    async with db.snapshot() as conn:
        row = (
            await conn.execute(
                sa.select(P.errors, P.rows_total, P.rows_failed).where(P.id == pickup_id)
            )
        ).one_or_none()
    errors: list[dict[str, Any]] = json.loads(row.errors) if row is not None and row.errors else []
    if row is None or not errors:
        return "refused; see agency-gateway sftp errors"
    if len(errors) == 1 and errors[0].get("field") == "file":
        return str(errors[0].get("message", ""))
    stored = "" if len(errors) >= (row.rows_failed or 0) else f" (the first {len(errors)} below)"
    lines = [
        f"none of its {row.rows_total} row(s) was accepted; {row.rows_failed} problem(s){stored}:"
    ]
    lines += [f"line {e['line']}: {e['field']}: {e['message']}" for e in errors]
    return "\n".join(lines)


def _take(items: Iterator[Any], n: int) -> list[Any]:
    return list(islice(items, n))


async def commit_file(
    db: Database,
    stored: StoredFile,
    layout: LayoutSection,
    *,
    now: datetime,
    arrival: ArrivalPolicy | None = None,
) -> tuple[str, FileTally] | None:
    """Store, parse and reconcile in one transaction (see module docstring), judging the
    events by ``arrival`` (the lender's rules); returns the pickup's state and tally, or None
    when the same bytes were committed concurrently."""
    tally = FileTally()
    body = await asyncio.to_thread(stored.raw.read_bytes)
    kind: RecordKind = "statement" if stored.kind == "statement" else "result"
    with stored.readable.open("rb") as stream:
        rows: Iterator[ParsedRecord | RowError | Trailer] = read_records(stream, layout, kind)
        try:
            async with db.transaction() as conn:
                inbound_id = await _store_raw(conn, stored, body, now)
                if stored.kind == "statement":
                    event = await asyncio.to_thread(
                        statement_event,
                        rows,
                        layout,
                        tally,
                        statement_id=base_of(stored.name),
                        received_at=now,
                    )
                    if event is not None:
                        await apply_events(
                            conn,
                            [IncomingEvent(stored.agency_id, inbound_id, event, now)],
                            now=now,
                            policy=arrival,
                        )
                else:
                    events = result_lines(rows, layout, tally)
                    while chunk := await asyncio.to_thread(_take, events, EVENT_CHUNK):
                        await _apply_chunk(
                            conn, stored.agency_id, inbound_id, chunk, layout, tally, now, arrival
                        )
                tally.check_counts(stored.manifest_count)
                state = (
                    "done" if not tally.error_count else "partial" if tally.rows_ok else "failed"
                )
                summary = {
                    "file": stored.name,
                    "rows": tally.rows_total,
                    "accepted": tally.rows_ok,
                    "errors": tally.error_count,
                }
                await conn.execute(
                    INBOUND.update()
                    .where(INBOUND.c.id == inbound_id)
                    .values(
                        status="accepted" if state == "done" else state,
                        response_status=200 if state == "done" else 422,
                        response_body=json.dumps(summary).encode(),
                    )
                )
                await conn.execute(
                    PICKUPS.update()
                    .where(P.id == stored.pickup_id)
                    .values(
                        state=state,
                        sha256=stored.sha256,
                        size=stored.size,
                        inbound_id=inbound_id,
                        rows_total=tally.rows_total,
                        rows_ok=tally.rows_ok,
                        rows_failed=tally.error_count,
                        errors=json.dumps(error_report(tally.errors)) if tally.errors else None,
                        finished_at=now,
                    )
                )
        except IntegrityError:
            return None
    return state, tally


async def _apply_chunk(
    conn: AsyncConnection,
    agency_id: str,
    inbound_id: int,
    chunk: list[tuple[int, AgencyEvent]],
    layout: LayoutSection,
    tally: FileTally,
    now: datetime,
    arrival: ArrivalPolicy | None,
) -> None:
    """Apply a chunk of rows in order. A settlement answer is checked against its statement
    as it stands after the rows before it (gateway.settlement.answers) and applied alone: one
    the statement cannot take is still stored (and changes nothing) but is a row error of
    the file, in its error report like any other refused row."""
    pending: list[IncomingEvent] = []
    for line, event in chunk:
        if event.type not in settlement_answers.ANSWER_TYPES:
            pending.append(IncomingEvent(agency_id, inbound_id, event, now))
            continue
        if pending:
            await apply_events(conn, pending, now=now, policy=arrival)
            pending = []
        refusal = await settlement_answers.event_problem(conn, agency_id, event)
        if refusal is not None:
            column = column_for(layout, "result", ["data", refusal.field])
            refuse_row(tally, line, column, f"{event.type}: {refusal.reason}")
        await apply_events(
            conn, [IncomingEvent(agency_id, inbound_id, event, now)], now=now, policy=arrival
        )
    if pending:
        await apply_events(conn, pending, now=now, policy=arrival)


async def _store_raw(conn: AsyncConnection, stored: StoredFile, body: bytes, now: datetime) -> int:
    """The raw file exactly as received, and its evidence leaf."""
    external_id = f"sha256:{stored.sha256}"
    result = await conn.execute(
        INBOUND.insert()
        .values(
            agency_id=stored.agency_id,
            channel="sftp",
            external_id=external_id,
            body=body,
            body_sha256=stored.sha256,
            signature_scheme="openpgp" if stored.signed else "none",
            event_type="statement.submitted" if stored.kind == "statement" else "result.file",
            status="accepted",
            response_status=200,
            response_body=b"",
            received_at=now,
        )
        .returning(INBOUND.c.id)
    )
    inbound_id = int(result.scalar_one())
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="inbound",
                ref=f"inbound:{inbound_id}",
                fields={
                    "inbound_id": inbound_id,
                    "sha256": stored.sha256,
                    "agency_id": stored.agency_id,
                    "channel": "sftp",
                    "external_id": external_id,
                    "status": "accepted",
                    "file": stored.name,
                },
            )
        ],
        now=now,
    )
    return inbound_id


__all__ = [
    "FINISHED",
    "Earlier",
    "Sighting",
    "StoredFile",
    "claim",
    "commit_file",
    "delete",
    "earlier_copy",
    "endpoint_disabled",
    "file_error",
    "finish",
    "forget_sighting",
    "latest",
    "record_sightings",
    "refusal_reason",
]
