"""A case's timeline: everything that happened to it, in order, with the evidence leaf that
attests each fact, and the history (actions, comments) of its mismatches.

Entry types: ``placed``, ``packet`` (queued, with the SHA-256 of its exact bytes),
``attempt`` (a delivery attempt and the agency's receipt), ``event`` (received from the
agency, with the channel it came by, the SHA-256 of the raw message and its id there: the
webhook id, the mail's Message-ID or the result file's hash; an email reply also carries
the verdict on the firm's signature), ``mismatch`` (raised),
``action`` and ``comment`` (by ops), and ``status``: a step of the case's life from
``case_history`` (the event, from and to, who or what made it and why), with its ``case``
evidence leaf when the step has one of its own (steps a placement packet attests, such as a
placement or a recall, are proved by that packet's entry), and ``hold`` (a hold put on or
released, with its ``hold`` leaf when the change moved no status). Personal data never
appears here.
"""

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.history import ATTESTED_BY_PACKETS
from gateway.console.i18n import N_
from gateway.dispatch.outbox import open_payload
from gateway.errors import NotFound
from gateway.resolutions.rules import ACTIONS
from gateway.store.case_tables import CaseHistory, CaseHold
from gateway.store.console_tables import MismatchAction, MismatchComment
from gateway.store.mail_tables import MailReply
from gateway.store.tables import (
    AgencyEventRow,
    Case,
    DeliveryAttempt,
    EvidenceLeaf,
    InboundMessage,
    Mismatch,
    OutboxItem,
    Placement,
)

Row = dict[str, Any]

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
ACTION_ROWS = MismatchAction.__table__  # type: ignore[attr-defined]
COMMENTS = MismatchComment.__table__  # type: ignore[attr-defined]
REPLIES = MailReply.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]

_ORDER: Final = {
    "placed": 0, "packet": 1, "attempt": 2, "event": 3, "mismatch": 4, "hold": 6, "status": 7,
}  # fmt: skip
"""Entries at the same instant: what happened, then ops' actions (5), then the hold changes
and the status steps they caused."""


def loads(text: str | None) -> Any:
    """Parse a stored JSON column; text that is not JSON is returned as it is."""
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return text


async def rows(conn: AsyncConnection, query: sa.Select[Any]) -> list[Row]:
    return [dict(r) for r in (await conn.execute(query)).mappings()]


def _pick(row: Mapping[str, Any], *keys: str) -> Row:
    return {k: row[k] for k in keys}


async def history(conn: AsyncConnection, mismatch_ids: Iterable[int]) -> list[Row]:
    """Actions and comments on these mismatches, oldest first."""
    ids = list(mismatch_ids)
    if not ids:
        return []
    entries: list[Row] = [
        {
            "type": "action",
            "at": r["created_at"],
            "label": ACTIONS[r["action"]].label if r["action"] in ACTIONS else r["action"],
            "details": loads(r["details"]),
            **_pick(r, "mismatch_id", "action", "actor", "reason", "from_state", "to_state"),
            **_pick(r, "batch", "evidence_seq"),
        }
        for r in await rows(conn, sa.select(ACTION_ROWS).where(ACTION_ROWS.c.mismatch_id.in_(ids)))
    ]
    entries.extend(
        {
            "type": "comment",
            "at": r["created_at"],
            "actor": r["author"],
            **_pick(r, "mismatch_id", "body", "evidence_seq"),
        }
        for r in await rows(conn, sa.select(COMMENTS).where(COMMENTS.c.mismatch_id.in_(ids)))
    )
    entries.sort(key=lambda e: (e["at"], e["evidence_seq"]))
    return entries


async def _leaf_seqs(conn: AsyncConnection, kind: str, refs: list[str]) -> dict[str, int]:
    if not refs:
        return {}
    found = await conn.execute(
        sa.select(LEAVES.c.ref, LEAVES.c.seq).where(LEAVES.c.kind == kind, LEAVES.c.ref.in_(refs))
    )
    return {ref: seq for ref, seq in found.all()}


AGENCY_TEXT: tuple[tuple[str, str], ...] = (
    ("agency_case_ref", N_("their case ref")),
    ("reason", N_("reason")),
    ("summary", N_("summary")),
    ("channel", N_("channel")),
    ("court", N_("court")),
    ("court_case_number", N_("court case no.")),
    ("reference", N_("their reference")),
)
"""The free text an agency may write in an event, as (field, label): shown on the timeline as
the agency wrote it (escaped by the template), never interpreted."""


def agency_text(data: str | None) -> list[tuple[str, str]]:
    """(label, text) of the free-text fields present in an event's stored ``data``."""
    fields = loads(data) or {}
    if not isinstance(fields, dict):
        return []
    return [
        (label, str(fields[key]))
        for key, label in AGENCY_TEXT
        if isinstance(fields.get(key), str) and fields[key]
    ]


_STEP_FIELDS: Final = ("event", "from", "to", "actor", "reason")
_HOLD_FIELDS: Final = ("action", "code", "actor", "note")


async def _leaves_of(
    conn: AsyncConnection, kind: str, ref: str, fields: tuple[str, ...]
) -> list[tuple[tuple[str, ...], int]]:
    """(what the leaf says, seq) of the leaves of ``kind`` about ``ref``, in log order."""
    found: list[tuple[tuple[str, ...], int]] = []
    for seq, body in await conn.execute(
        sa.select(LEAVES.c.seq, LEAVES.c.body)
        .where(LEAVES.c.kind == kind, LEAVES.c.ref == ref)
        .order_by(LEAVES.c.seq)
    ):
        said = loads(bytes(body).decode("utf-8", "replace"))
        if isinstance(said, dict):
            found.append((tuple(str(said.get(k) or "") for k in fields), seq))
    return found


def _take(leaves: list[tuple[tuple[str, ...], int]], *said: object) -> int | None:
    """The seq of the first unclaimed leaf that says ``said``, claimed; None if none does."""
    key = tuple(str(value or "") for value in said)
    for i, (found, _seq) in enumerate(leaves):
        if found == key:
            return leaves.pop(i)[1]
    return None


async def status_entries(conn: AsyncConnection, case_id: str) -> list[Row]:
    """The case's lifecycle steps and hold changes as timeline entries, each with the leaf
    that attests it (matched on what the leaf says, in log order)."""
    h, ho = HISTORY.c, HOLDS.c
    ref = f"case:{case_id}"
    steps = await rows(
        conn,
        sa.select(h.at, h.event, h.from_status, h.to_status, h.actor, h.reason, h.placement_id)
        .where(h.case_id == case_id)
        .order_by(h.id),
    )
    case_leaves = await _leaves_of(conn, "case", ref, _STEP_FIELDS)
    entries: list[Row] = []
    for step in steps:
        seq = None
        if step["event"] not in ATTESTED_BY_PACKETS:
            seq = _take(
                case_leaves, step["event"], step["from_status"], step["to_status"],
                step["actor"], step["reason"],
            )  # fmt: skip
        entries.append({"type": "status", "evidence_seq": seq, **step})
    hold_leaves = await _leaves_of(conn, "hold", ref, _HOLD_FIELDS)
    for hold in await rows(conn, sa.select(HOLDS).where(ho.case_id == case_id).order_by(ho.id)):
        common = _pick(hold, "code", "source")
        entries.append(
            {"type": "hold", "at": hold["placed_at"], "action": "add", "actor": hold["placed_by"],
             "note": hold["note"], **common,
             "evidence_seq": _take(hold_leaves, "add", hold["code"], hold["placed_by"],
                                   hold["note"])}
        )  # fmt: skip
        if hold["released_at"] is not None:
            entries.append(
                {"type": "hold", "at": hold["released_at"], "action": "release",
                 "actor": hold["released_by"], "note": hold["release_note"], **common,
                 "evidence_seq": _take(hold_leaves, "release", hold["code"],
                                       hold["released_by"], hold["release_note"])}
            )  # fmt: skip
    return entries


async def _balances_sent(conn: AsyncConnection, pids: list[str]) -> dict[str, int | None]:
    """Placement id → the balance its ``placement.created`` packet carried (the exact bytes
    sent, as stored in the outbox)."""
    o = OUTBOX.c
    found: dict[str, int | None] = {}
    for pid, key, stored in await conn.execute(
        sa.select(o.placement_id, o.dedupe_key, o.payload).where(
            o.placement_id.in_(pids), o.packet_type == "placement.created"
        )
    ):
        payload = open_payload(conn, key, stored)  # None once purged after its retention
        try:
            amount = json.loads(payload or b"")["data"]["balance"]["amount_minor"]
        except (ValueError, KeyError, TypeError):
            amount = None
        found[pid] = amount if isinstance(amount, int) else None
    return found


async def case_timeline(conn: AsyncConnection, case_id: str) -> Row:
    """The case (without personal data), its placements and mismatches, and every timeline
    entry in order; raise NotFound for an unknown case."""
    c, p, o, a, e, m = CASES.c, PLACEMENTS.c, OUTBOX.c, ATTEMPTS.c, EVENTS.c, MISMATCHES.c
    case = await rows(
        conn,
        sa.select(*(col for col in c if col.name not in ("pii", "content_mac"))).where(
            c.id == case_id
        ),
    )
    if not case:
        raise NotFound(f"case {case_id} does not exist")
    placements = await rows(
        conn, sa.select(PLACEMENTS).where(p.case_id == case_id).order_by(p.placed_at, p.id)
    )
    pids = [row["id"] for row in placements]
    items = await rows(
        conn,
        sa.select(*(col for col in o if col.name != "payload"))
        .where(o.placement_id.in_(pids))
        .order_by(o.id),
    )
    attempts = await rows(
        conn,
        sa.select(ATTEMPTS, o.placement_id, o.packet_type)
        .join(OUTBOX, o.id == a.outbox_id)
        .where(o.placement_id.in_(pids))
        .order_by(a.id),
    )
    # A mailbox message has one reply row besides its "duplicate" copies (adapters.email.triage).
    first_read = sa.and_(REPLIES.c.inbound_id == e.inbound_id, REPLIES.c.kind != "duplicate")
    events = await rows(
        conn,
        sa.select(
            EVENTS,
            INBOUND.c.channel,
            INBOUND.c.external_id,
            INBOUND.c.body_sha256,
            REPLIES.c.signature.label("sig"),
            REPLIES.c.signer_sha256.label("signer"),
        )
        .join(INBOUND, INBOUND.c.id == e.inbound_id)
        .outerjoin(REPLIES, first_read)
        .where(e.placement_id.in_(pids))
        .order_by(e.id),
    )
    mismatches = await rows(
        conn,
        sa.select(m.id, m.kind, m.severity, m.state, m.detail, m.created_at, m.placement_id)
        .where(m.placement_id.in_(pids))
        .order_by(m.id),
    )
    sent = await _balances_sent(conn, pids)
    packet_seqs = await _leaf_seqs(conn, "packet", [f"outbox:{i['id']}" for i in items])
    receipt_seqs = await _leaf_seqs(conn, "receipt", [f"attempt:{t['id']}" for t in attempts])
    inbound_seqs = await _leaf_seqs(conn, "inbound", [f"inbound:{v['inbound_id']}" for v in events])
    entries: list[Row] = [
        {"type": "placed", "at": row["placed_at"], "placement_id": row["id"],
         # What the placement packet carried, not today's balance (an accepted agency figure
         # or an amendment changes the placement row, never what was sent).
         "balance_minor": sent.get(row["id"]),
         **_pick(row, "agency_id", "currency", "return_by")}
        for row in placements
    ] + [
        {"type": "packet", "at": i["created_at"], "outbox_id": i["id"],
         "sha256": i["payload_sha256"], "evidence_seq": packet_seqs.get(f"outbox:{i['id']}"),
         **_pick(i, "placement_id", "agency_id", "packet_type", "packet_version", "dedupe_key",
                 "state", "delivered_at")}
        for i in items
    ] + [
        {"type": "attempt", "at": t["started_at"],
         "evidence_seq": receipt_seqs.get(f"attempt:{t['id']}"),
         **_pick(t, "placement_id", "agency_id", "outbox_id", "packet_type", "attempt_no",
                 "outcome", "http_status", "response_sha256", "duration_ms", "error")}
        for t in attempts
    ] + [
        {"type": "event", "at": v["received_at"], "event_id": v["id"],
         "applied": bool(v["applied"]), "channel": v["channel"],
         "webhook_id": v["external_id"], "sha256": v["body_sha256"],
         "reply_signature": None if v["sig"] is None else {
             "status": v["sig"], "signer_sha256": v["signer"]},
         "evidence_seq": inbound_seqs.get(f"inbound:{v['inbound_id']}"),
         "agency_text": agency_text(v["data"]),
         **_pick(v, "placement_id", "agency_id", "event_type", "occurred_at", "amount_minor",
                 "currency")}
        for v in events
    ] + [
        {"type": "mismatch", "at": row["created_at"], "mismatch_id": row["id"],
         **_pick(row, "placement_id", "kind", "severity", "state", "detail")}
        for row in mismatches
    ]  # fmt: skip
    entries.extend(await history(conn, (row["id"] for row in mismatches)))
    entries.extend(await status_entries(conn, case_id))
    entries.sort(key=lambda x: (x["at"], _ORDER.get(x["type"], 5), x.get("evidence_seq") or 0))
    return {
        "case": case[0],
        "placements": placements,
        "mismatches": mismatches,
        "entries": entries,
    }


__all__ = [
    "AGENCY_TEXT",
    "agency_text",
    "case_timeline",
    "history",
    "loads",
    "rows",
    "status_entries",
]
