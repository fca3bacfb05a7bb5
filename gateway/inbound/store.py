"""The durable record of inbound agency messages: one transaction per batch of verified ones.

Theory of operation
-------------------
gateway.inbound.service verifies each request and queues it; its writer task hands whatever queued
up to :meth:`InboundStore.commit`, which stores the whole batch in ONE transaction (rules 2,
3 and 5 of gateway.inbound.service):

* it looks up every ``(agency, webhook-id)`` of the batch, and of its conflict copies, on
  the channel, and the owners of the placements the events name;
* an id already stored, or earlier in the batch, with the same SHA-256 gets the first
  answer again; with other bytes it gets 409, and the conflicting copy is stored once, under
  ``<webhook-id>~<sha256 prefix>``, with a ``conflicting_duplicate`` mismatch;
* every new message becomes an ``inbound_messages`` row (raw body, hash, signature scheme,
  status ``accepted``, ``refused``, ``invalid`` or ``conflict`` and the exact answer) with an
  ``inbound`` evidence leaf; an event for a placement the agency does not hold is ``refused``
  (403), and so is a settlement answer the statement cannot take (422,
  gateway.settlement.answers). Accepted and refused events go to the reconciler
  (gateway.reconciliation.event_rules decides what they change and which mismatches they
  raise), in the same transaction.

When another process stored one of the ids between the lookup and the insert, the unique key
refuses the insert and the batch is committed again, so that id is answered as a duplicate.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from gateway.clock import to_datetime
from gateway.errors import (
    ConflictingDuplicate,
    ForeignPlacement,
    InboundError,
    SettlementAnswerRefused,
)
from gateway.evidence.log import LeafInput, append_leaves
from gateway.inbound.problems import PROBLEM_CONTENT_TYPE, problem_body
from gateway.ports import Clock
from gateway.reconciliation.event_rules import event_placement_id
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import (
    ArrivalPolicy,
    IncomingEvent,
    apply_events,
    insert_mismatches,
    load_views,
)
from gateway.settlement import answers as settlement_answers
from gateway.store.database import Database
from gateway.store.driver_sql import insert_numbered
from gateway.store.tables import InboundMessage
from schemas.events import AgencyEvent

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
I = INBOUND.c  # noqa: E741
JSON_CONTENT_TYPE = "application/json"

_STORED_SQL = sa.select(
    I.agency_id, I.external_id, I.body_sha256, I.response_status, I.response_body
).where(
    I.channel == sa.bindparam("channel"),
    # Plain IN lists let SQLite search the unique index; a row-value IN alone scans every
    # stored message on every commit.
    I.agency_id.in_(sa.bindparam("agencies", expanding=True)),
    I.external_id.in_(sa.bindparam("ids", expanding=True)),
    sa.tuple_(I.agency_id, I.external_id).in_(sa.bindparam("keys", expanding=True)),
)
"""The messages of a batch already stored; built once, as a group commit runs it every few
milliseconds and building the expression cost more than SQLite's work."""


@dataclass(frozen=True, slots=True)
class InboundResponse:
    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class VerifiedMessage:
    """A request whose signature matched, ready to store: the raw body and what it parsed to
    (``event``), or why it did not (``invalid``)."""

    agency_id: str
    external_id: str
    body: bytes
    sha256: str
    scheme: str
    instance: str
    event: AgencyEvent | None
    invalid: InboundError | None


def _accepted_body(webhook_id: str, event_type: str) -> bytes:
    # json.dumps of {"status": "accepted", "webhook_id": ..., "event_type": ...}, byte for
    # byte, without encoding the dictionary around the two values for every event.
    return (
        f'{{"status": "accepted", "webhook_id": {json.dumps(webhook_id)}, '
        f'"event_type": {json.dumps(event_type)}}}'
    ).encode()


def problem_response(error: InboundError, instance: str, webhook_id: str | None) -> InboundResponse:
    return InboundResponse(
        error.status,
        problem_body(error, instance=instance, webhook_id=webhook_id),
        PROBLEM_CONTENT_TYPE,
    )


class InboundStore:
    """Stores batches of verified messages received on one channel.

    Args:
        db: the database.
        clock: time source (the ``received_at`` of a batch).
        channel: the channel name stored with each message.
    """

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        channel: str,
        arrival: ArrivalPolicy | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._channel = channel
        self._arrival = arrival

    async def commit(self, batch: Sequence[VerifiedMessage]) -> list[InboundResponse]:
        """Store a batch in one transaction; return one answer per message, in order."""
        try:
            return await self._commit(batch)
        except IntegrityError:
            # Another process stored one of these ids between our lookup and insert:
            # the second pass finds it and answers as a duplicate.
            return await self._commit(batch)

    async def _commit(self, batch: Sequence[VerifiedMessage]) -> list[InboundResponse]:
        now = to_datetime(self._clock.now())
        responses: list[InboundResponse | None] = [None] * len(batch)
        async with self._db.transaction() as conn:
            keys = {(p.agency_id, p.external_id) for p in batch} | {
                (p.agency_id, _conflict_id(p)) for p in batch
            }
            existing = {
                (agency_id, external_id): (
                    sha256,
                    InboundResponse(status, response_body, _ctype(status)),
                )
                for agency_id, external_id, sha256, status, response_body in (
                    await conn.execute(
                        _STORED_SQL,
                        {
                            "channel": self._channel,
                            "agencies": sorted({a for a, _ in keys}),
                            "ids": sorted({e for _, e in keys}),
                            "keys": sorted(keys),
                        },
                    )
                ).all()
            }
            # One read of the placements the batch names: their owners decide rule 5 here,
            # and the reconciler starts from the same views (gateway.reconciliation.recorder).
            views = await load_views(
                conn,
                (
                    pid
                    for p in batch
                    if p.event and (pid := event_placement_id(p.event)) is not None
                ),
            )
            owners = {pid: view.agency_id for pid, view in views.items()}
            seen: dict[tuple[str, str], tuple[str, InboundResponse]] = {}
            rows: list[dict[str, object]] = []
            row_index: list[int] = []
            conflicts: list[tuple[int, str, str | None]] = []
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
                    response = problem_response(error, p.instance, p.external_id)
                    conflict_key = (p.agency_id, _conflict_id(p))
                    if conflict_key in existing or conflict_key in seen:
                        responses[n] = response
                        continue
                    seen[conflict_key] = (p.sha256, response)
                    named = event_placement_id(p.event) if p.event is not None else None
                    held = named if named is not None and owners.get(named) == p.agency_id else None
                    conflicts.append((len(rows), first[0], held))
                    rows.append(self._row(p, conflict_key[1], "conflict", None, response, now))
                    row_index.append(n)
                    responses[n] = response
                    continue
                if p.invalid is not None:
                    response = problem_response(p.invalid, p.instance, p.external_id)
                    status = "invalid"
                else:
                    assert p.event is not None
                    pid = event_placement_id(p.event)
                    refusal = (
                        await settlement_answers.event_problem(conn, p.agency_id, p.event)
                        if p.event.type in settlement_answers.ANSWER_TYPES
                        else None
                    )
                    if refusal is not None:
                        loc = f"{p.event.type}.data.{refusal.field}"
                        refused = SettlementAnswerRefused(
                            refusal.reason, errors=[{"loc": loc, "msg": refusal.reason}]
                        )
                        response = problem_response(refused, p.instance, p.external_id)
                        status = "refused"
                    elif pid is not None and owners.get(pid) != p.agency_id:
                        response = problem_response(
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
                    await apply_events(conn, incoming, now=now, policy=self._arrival, views=views)
                if conflicts:
                    await insert_mismatches(
                        conn,
                        (
                            (
                                f"conflicting_duplicate:inbound:{ids[i]}",
                                MismatchDraft(
                                    "conflicting_duplicate",
                                    placement_id,
                                    f"{rows[i]['agency_id']} re-sent webhook-id "
                                    f"{batch[row_index[i]].external_id} with different content",
                                    {"sha256": first_sha},
                                    {"sha256": rows[i]["body_sha256"], "inbound_id": ids[i]},
                                ),
                                str(rows[i]["agency_id"]),
                                None,
                                None,
                            )
                            for i, first_sha, placement_id in conflicts
                        ),
                        now=now,
                    )
        return [r for r in responses if r is not None]

    def _row(
        self,
        p: VerifiedMessage,
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


def _conflict_id(p: VerifiedMessage) -> str:
    return f"{p.external_id}~{p.sha256[:16]}"


def _ctype(status: int) -> str:
    return JSON_CONTENT_TYPE if status < 300 else PROBLEM_CONTENT_TYPE


__all__ = ["InboundResponse", "InboundStore", "VerifiedMessage", "problem_response"]
