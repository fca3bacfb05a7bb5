"""Inbound agency messages: verify, store raw, deduplicate, reconcile, answer.

Rules
-----
1. Verify before parsing: the agency must exist and one ``webhook-signature`` must match a
   key on its trust list, within the timestamp tolerance. Unverified bytes are never stored.
2. Store before answering: the raw body, its SHA-256 and an evidence leaf are committed
   before any 2xx leaves the gateway. Concurrent requests share one transaction and one
   fsync (group commit): a single writer task drains whatever queued up while it was busy.
3. Deduplicate durably on (agency, channel, ``webhook-id``): the same id with the same bytes
   gets the first answer again; the same id with other bytes gets 409 and raises a
   ``conflicting_duplicate`` mismatch (the conflicting copy is kept as evidence).
4. Signed but invalid events (bad JSON, schema violations) are stored too, with their 4xx
   answer: the agency signed them, and ops may need them.
5. An agency only affects placements it holds: an event for an unknown placement or one held
   by another agency is stored, raises a mismatch, changes nothing and is answered 403.
"""

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from gateway.clock import to_datetime
from gateway.errors import (
    ConflictingDuplicate,
    ForeignPlacement,
    InboundError,
    MalformedPayload,
    PayloadTooLarge,
    SchemaViolation,
    StoreUnavailable,
    UnknownAgency,
)
from gateway.event_rules import event_placement_id
from gateway.evidence import LeafInput, append_leaves
from gateway.metrics import Metrics
from gateway.ports import Clock
from gateway.problems import PROBLEM_CONTENT_TYPE, problem_body
from gateway.reconciler import IncomingEvent, apply_events, insert_mismatches
from gateway.reconciliation import MismatchDraft
from gateway.signing import VerifyingKey, read_headers, verify
from gateway.store.database import Database, insert_numbered
from gateway.store.tables import InboundMessage, Placement
from schemas.events import AGENCY_EVENT_ADAPTER, AgencyEvent

log = logging.getLogger(__name__)

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
I = INBOUND.c  # noqa: E741
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class InboundTrust:
    """What we trust from one agency: its verifying keys and timestamp tolerance."""

    agency_id: str
    keys: tuple[VerifyingKey, ...]
    tolerance_seconds: int


@dataclass(frozen=True, slots=True)
class InboundResponse:
    status: int
    body: bytes
    content_type: str


@dataclass(slots=True)
class _Pending:
    agency_id: str
    external_id: str
    body: bytes
    sha256: str
    scheme: str
    instance: str
    event: AgencyEvent | None
    invalid: InboundError | None
    future: asyncio.Future[InboundResponse] = field(repr=False)


def _accepted_body(webhook_id: str, event_type: str) -> bytes:
    return json.dumps(
        {"status": "accepted", "webhook_id": webhook_id, "event_type": event_type}
    ).encode()


def _problem(error: InboundError, instance: str, webhook_id: str | None) -> InboundResponse:
    return InboundResponse(
        error.status,
        problem_body(error, instance=instance, webhook_id=webhook_id),
        PROBLEM_CONTENT_TYPE,
    )


def parse_event(body: bytes) -> AgencyEvent:
    """Validate raw bytes into an event, or raise MalformedPayload / SchemaViolation."""
    try:
        json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedPayload(f"body is not valid JSON: {exc}") from None
    try:
        return AGENCY_EVENT_ADAPTER.validate_json(body)
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"]}
            for err in exc.errors(include_url=False)[:20]
        ]
        first = errors[0] if errors else {"loc": "", "msg": "invalid"}
        raise SchemaViolation(
            f"{first['loc'] or 'body'}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""),
            errors=errors,
        ) from None


class InboundService:
    """Receives signed agency events on one channel.

    Args:
        db: the database.
        trust: per-agency keys and tolerance.
        clock: time source.
        metrics: where to count requests.
        max_body_bytes: larger bodies are refused with 413.
        channel: the channel name stored with each message.
        max_batch: the most messages one group commit takes.
    """

    def __init__(
        self,
        *,
        db: Database,
        trust: Mapping[str, InboundTrust],
        clock: Clock,
        metrics: Metrics,
        max_body_bytes: int,
        channel: str = "webhook",
        max_batch: int = 256,
    ) -> None:
        self._db = db
        self._trust = trust
        self._clock = clock
        self._metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._channel = channel
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="inbound-writer")

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None

    def knows(self, agency_id: str) -> bool:
        return agency_id in self._trust

    async def receive(
        self, agency_id: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> InboundResponse:
        """Handle one request; never raises for bad input, always answers."""
        instance = f"/v1/agencies/{agency_id}/events"
        webhook_id: str | None = None
        try:
            trust = self._trust.get(agency_id)
            if trust is None:
                raise UnknownAgency(f"no agency {agency_id!r} sends events over {self._channel}")
            if len(body) > self.max_body_bytes:
                raise PayloadTooLarge(
                    f"body is {len(body)} bytes; the limit is {self.max_body_bytes} bytes"
                )
            wh = read_headers(headers)
            webhook_id = wh.msg_id
            scheme = verify(
                wh,
                body,
                trust.keys,
                now=int(self._clock.now()),
                tolerance=trust.tolerance_seconds,
            )
        except InboundError as exc:
            self._metrics.inbound.labels(
                agency_id if agency_id in self._trust else "-", exc.status
            ).inc()
            return _problem(exc, instance, webhook_id)
        event: AgencyEvent | None = None
        invalid: InboundError | None = None
        try:
            event = parse_event(body)
        except InboundError as exc:
            invalid = exc
        pending = _Pending(
            agency_id=agency_id,
            external_id=wh.msg_id,
            body=body,
            sha256=hashlib.sha256(body).hexdigest(),
            scheme=scheme,
            instance=instance,
            event=event,
            invalid=invalid,
            future=asyncio.get_running_loop().create_future(),
        )
        await self.start()
        self._queue.put_nowait(pending)
        response = await pending.future
        self._metrics.inbound.labels(agency_id, response.status).inc()
        return response

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                responses = await self._commit_with_retry(batch)
            except Exception:
                # The writer must survive a database outage: refuse this batch, go on.
                log.exception("inbound commit of %d message(s) failed", len(batch))
                responses = [_problem(StoreUnavailable(), p.instance, p.external_id) for p in batch]
            else:
                self._metrics.inbound_batch.observe(len(batch))
            for pending, response in zip(batch, responses, strict=True):
                if not pending.future.done():
                    pending.future.set_result(response)

    async def _commit_with_retry(self, batch: Sequence[_Pending]) -> list[InboundResponse]:
        try:
            return await self._commit(batch)
        except IntegrityError:
            # Another process stored one of these ids between our lookup and insert:
            # the second pass finds it and answers as a duplicate.
            return await self._commit(batch)

    async def _commit(self, batch: Sequence[_Pending]) -> list[InboundResponse]:
        now = to_datetime(self._clock.now())
        responses: list[InboundResponse | None] = [None] * len(batch)
        async with self._db.transaction() as conn:
            keys = {(p.agency_id, p.external_id) for p in batch} | {
                (p.agency_id, _conflict_id(p)) for p in batch
            }
            existing = {
                (r.agency_id, r.external_id): (
                    r.body_sha256,
                    InboundResponse(r.response_status, r.response_body, _ctype(r.response_status)),
                )
                for r in (
                    await conn.execute(
                        sa.select(
                            I.agency_id,
                            I.external_id,
                            I.body_sha256,
                            I.response_status,
                            I.response_body,
                        ).where(
                            I.channel == self._channel,
                            # Plain IN lists let SQLite search the unique index; a row-value
                            # IN alone scans every stored message on every commit.
                            I.agency_id.in_(sorted({a for a, _ in keys})),
                            I.external_id.in_(sorted({e for _, e in keys})),
                            sa.tuple_(I.agency_id, I.external_id).in_(sorted(keys)),
                        )
                    )
                ).all()
            }
            placement_ids = {
                pid for p in batch if p.event and (pid := event_placement_id(p.event)) is not None
            }
            owners: dict[str, str] = {}
            if placement_ids:
                owners = dict(
                    (
                        await conn.execute(
                            sa.select(PLACEMENTS.c.id, PLACEMENTS.c.agency_id).where(
                                PLACEMENTS.c.id.in_(sorted(placement_ids))
                            )
                        )
                    ).all()
                )
            seen: dict[tuple[str, str], tuple[str, InboundResponse]] = {}
            rows: list[dict[str, object]] = []
            row_index: list[int] = []
            conflicts: list[tuple[int, str]] = []
            for n, p in enumerate(batch):
                key = (p.agency_id, p.external_id)
                first = existing.get(key) or seen.get(key)
                if first is not None:
                    if first[0] == p.sha256:
                        responses[n] = first[1]
                        continue
                    error: InboundError = ConflictingDuplicate(
                        f"webhook-id {p.external_id} was received before with other content "
                        f"(sha256 {first[0][:16]}…, now {p.sha256[:16]}…); "
                        "use a new id for a new event"
                    )
                    response = _problem(error, p.instance, p.external_id)
                    conflict_key = (p.agency_id, _conflict_id(p))
                    if conflict_key in existing or conflict_key in seen:
                        responses[n] = response
                        continue
                    seen[conflict_key] = (p.sha256, response)
                    conflicts.append((len(rows), first[0]))
                    rows.append(self._row(p, conflict_key[1], "conflict", None, response, now))
                    row_index.append(n)
                    responses[n] = response
                    continue
                if p.invalid is not None:
                    response = _problem(p.invalid, p.instance, p.external_id)
                    status = "invalid"
                else:
                    assert p.event is not None
                    pid = event_placement_id(p.event)
                    if pid is not None and owners.get(pid) != p.agency_id:
                        response = _problem(
                            ForeignPlacement(
                                f"placement {pid} is not held by agency {p.agency_id}; "
                                "the event was recorded but changes nothing"
                            ),
                            p.instance,
                            p.external_id,
                        )
                        status = "refused"
                    else:
                        response = InboundResponse(
                            200, _accepted_body(p.external_id, p.event.type), JSON_CONTENT_TYPE
                        )
                        status = "accepted"
                seen[key] = (p.sha256, response)
                rows.append(self._row(p, p.external_id, status, p.event, response, now))
                row_index.append(n)
                responses[n] = response
            if rows:
                ids = await insert_numbered(conn, INBOUND, rows)
                await append_leaves(
                    conn,
                    [
                        LeafInput(
                            kind="inbound",
                            ref=f"inbound:{id_}",
                            fields={
                                "inbound_id": id_,
                                "sha256": row["body_sha256"],
                                "agency_id": row["agency_id"],
                                "channel": self._channel,
                                "external_id": row["external_id"],
                                "status": row["status"],
                            },
                        )
                        for id_, row in zip(ids, rows, strict=True)
                    ],
                    now=now,
                )
                incoming = [
                    IncomingEvent(batch[n].agency_id, id_, ev, now)
                    for id_, row, n in zip(ids, rows, row_index, strict=True)
                    if row["status"] in ("accepted", "refused")
                    and (ev := batch[n].event) is not None
                ]
                if incoming:
                    await apply_events(conn, incoming, now=now)
                if conflicts:
                    await insert_mismatches(
                        conn,
                        (
                            (
                                f"conflicting_duplicate:inbound:{ids[i]}",
                                MismatchDraft(
                                    "conflicting_duplicate",
                                    None,
                                    f"{rows[i]['agency_id']} re-sent webhook-id "
                                    f"{batch[row_index[i]].external_id} with different content",
                                    {"sha256": first_sha},
                                    {"sha256": rows[i]["body_sha256"]},
                                ),
                                str(rows[i]["agency_id"]),
                                None,
                                None,
                            )
                            for i, first_sha in conflicts
                        ),
                        now=now,
                    )
        return [r for r in responses if r is not None]

    def _row(
        self,
        p: _Pending,
        external_id: str,
        status: str,
        event: AgencyEvent | None,
        response: InboundResponse,
        now: object,
    ) -> dict[str, object]:
        return {
            "agency_id": p.agency_id,
            "channel": self._channel,
            "external_id": external_id,
            "body": p.body,
            "body_sha256": p.sha256,
            "signature_scheme": p.scheme,
            "event_type": event.type if event else None,
            "status": status,
            "response_status": response.status,
            "response_body": response.body,
            "received_at": now,
        }


def _conflict_id(p: _Pending) -> str:
    return f"{p.external_id}~{p.sha256[:16]}"


def _ctype(status: int) -> str:
    return JSON_CONTENT_TYPE if status < 300 else PROBLEM_CONTENT_TYPE


__all__ = ["InboundResponse", "InboundService", "InboundTrust", "parse_event"]
