"""Inbound agency messages: verify, store raw, deduplicate, reconcile, answer.

Rules
-----
1. Verify before parsing: the agency must exist and one ``webhook-signature`` must match a
   key on its trust list, within the timestamp tolerance. Unverified bytes are never stored.
2. Store before answering: the raw body, its SHA-256 and an evidence leaf are committed
   before any 2xx leaves the gateway. Concurrent requests share one transaction and one
   fsync (group commit): a single writer task drains whatever queued up while it was busy.
   When a group commit fails, its messages are committed one by one, so a message the
   database refuses gets its 503 alone; two failures in a row mean the database is away,
   and the rest of the batch is answered 503 without trying.
3. Deduplicate durably on (agency, channel, ``webhook-id``): the same id with the same bytes
   gets the first answer again; the same id with other bytes gets 409 and raises a
   ``conflicting_duplicate`` mismatch (the conflicting copy is kept as evidence).
4. Signed but invalid events (bad JSON, schema violations) are stored too, with their 4xx
   answer: the agency signed them, and ops may need them.
5. An agency only affects placements it holds: an event for an unknown placement or one held
   by another agency is stored, raises a mismatch, changes nothing and is answered 403.

This module is the front door: it verifies and parses each request and queues it for the
single writer task (rule 1, and the queue half of rule 2). The transaction that stores a
batch, deduplicates and checks ownership (rules 2-5) is gateway.inbound.store.
"""

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.crashpoints import crash_point
from gateway.errors import (
    InboundError,
    MalformedPayload,
    PayloadTooLarge,
    SchemaViolation,
    StoreUnavailable,
    UnknownAgency,
)
from gateway.inbound.store import InboundResponse, InboundStore, VerifiedMessage, problem_response
from gateway.metrics import Metrics
from gateway.ports import Clock
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.signing import VerifyingKey, read_headers, verify
from gateway.store.database import Database
from schemas.events import AGENCY_EVENT_ADAPTER, AgencyEvent

log = logging.getLogger(__name__)

_Queued = tuple[VerifiedMessage, asyncio.Future[InboundResponse]]


@dataclass(frozen=True, slots=True)
class InboundTrust:
    """What we trust from one agency: its verifying keys and timestamp tolerance."""

    agency_id: str
    keys: tuple[VerifyingKey, ...]
    tolerance_seconds: int


def parse_event(body: bytes) -> AgencyEvent:
    """Validate raw bytes into an event, or raise MalformedPayload / SchemaViolation.

    Strictly, as the published JSON Schemas say: an integer is a JSON integer (not ``true``,
    ``"500"`` or ``100.0``), a boolean is ``true`` or ``false``, a timestamp is an RFC 3339
    string (not Unix seconds). Bytes that are not JSON (including invalid UTF-8 and lone
    surrogates) come back as the validator's ``json_invalid`` error. A body whose objects
    repeat a key is refused: two parsers could read it differently."""
    try:
        event = AGENCY_EVENT_ADAPTER.validate_json(body, strict=True)
    except ValidationError as exc:
        [first_error, *_] = exc.errors(include_url=False)
        if first_error["type"] == "json_invalid":
            reason = first_error.get("ctx", {}).get("error", first_error["msg"])
            raise MalformedPayload(f"body is not valid JSON: {reason}") from None
        errors = [
            {"loc": _location(err["type"], err["loc"]), "msg": err["msg"]}
            for err in exc.errors(include_url=False)[:20]
        ]
        first = errors[0] if errors else {"loc": "body", "msg": "invalid"}
        raise SchemaViolation(
            f"{first['loc']}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""),
            errors=errors,
        ) from None
    json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    return event


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise MalformedPayload(
                f"body is not valid JSON for this API: the key {key!r} appears twice in one "
                "object, and JSON parsers disagree on which value counts"
            )
        seen.add(key)
    return obj


def _location(error_type: str, loc: tuple[int | str, ...]) -> str:
    """Where an error is, as a dotted path: a missing or unknown ``type`` is the envelope's
    ``type``, anything else without a path is the body itself."""
    if not loc and error_type in ("union_tag_invalid", "union_tag_not_found"):
        return "type"
    return ".".join(str(p) for p in loc) or "body"


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
        arrival: the lender's rules judged as events arrive (quiet hours and caps, complaint
            deadlines); None leaves quiet hours and caps to the batch run.
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
        arrival: ArrivalPolicy | None = None,
    ) -> None:
        self._store = InboundStore(db=db, clock=clock, channel=channel, arrival=arrival)
        self._trust = trust
        self._clock = clock
        self._metrics = metrics
        self.max_body_bytes = max_body_bytes
        self._channel = channel
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
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
        pairs = list(headers)
        # Named in every refusal, even one for the headers themselves (problems.problem_body).
        webhook_id = next((v for k, v in pairs if k.lower() == "webhook-id"), None)
        try:
            trust = self._trust.get(agency_id)
            if trust is None:
                raise UnknownAgency(f"no agency {agency_id!r} sends events over {self._channel}")
            if len(body) > self.max_body_bytes:
                raise PayloadTooLarge(
                    f"body is {len(body)} bytes; the limit is {self.max_body_bytes} bytes"
                )
            wh = read_headers(pairs)
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
            return problem_response(exc, instance, webhook_id)
        event: AgencyEvent | None = None
        invalid: InboundError | None = None
        try:
            event = parse_event(body)
        except InboundError as exc:
            invalid = exc
        message = VerifiedMessage(
            agency_id=agency_id,
            external_id=wh.msg_id,
            body=body,
            sha256=hashlib.sha256(body).hexdigest(),
            scheme=scheme,
            instance=instance,
            event=event,
            invalid=invalid,
        )
        future: asyncio.Future[InboundResponse] = asyncio.get_running_loop().create_future()
        await self.start()
        self._queue.put_nowait((message, future))
        response = await future
        self._metrics.inbound.labels(agency_id, response.status).inc()
        return response

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            messages = [message for message, _ in batch]
            try:
                responses = await self._store.commit(messages)
            except Exception:
                log.exception("inbound commit of %d message(s) failed", len(batch))
                responses = await self._commit_alone(messages)
            else:
                self._metrics.inbound_batch.observe(len(batch))
            crash_point("inbound.after_store")
            for (_, future), response in zip(batch, responses, strict=True):
                if not future.done():
                    future.set_result(response)

    async def _commit_alone(self, messages: list[VerifiedMessage]) -> list[InboundResponse]:
        """After a failed group commit, each message in a transaction of its own (see the
        module docstring, rule 2). The writer goes on either way."""
        if len(messages) == 1:
            return [_unavailable(messages[0])]
        responses: list[InboundResponse] = []
        failures = 0
        for message in messages:
            if failures >= 2:
                responses.append(_unavailable(message))
                continue
            try:
                [response] = await self._store.commit([message])
            except Exception:
                failures += 1
                log.exception(
                    "inbound commit of %s from %s failed", message.external_id, message.agency_id
                )
                response = _unavailable(message)
            else:
                failures = 0
                self._metrics.inbound_batch.observe(1)
            responses.append(response)
        return responses


def _unavailable(message: VerifiedMessage) -> InboundResponse:
    return problem_response(StoreUnavailable(), message.instance, message.external_id)


__all__ = ["InboundService", "InboundTrust", "parse_event"]
