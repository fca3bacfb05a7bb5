"""The monthly QA sample of call recordings in the store: draw, list, review
(the rules are gateway.conduct.sampling).

Drawing a month that already has a sample returns it unchanged: a month is drawn once. The
draw and every review append an evidence leaf (``qa_draw`` on ``qa:<agency>:<month>``,
``qa_review`` on ``qa_samples:<id>``). A ``failed`` or ``unavailable`` recording raises the
mismatch ``recording_qa_failed`` (medium) on the contact's placement, deduplicated per item.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.conduct.sampling import (
    QA_STATES,
    REVIEWED,
    Candidate,
    draw,
    month_bounds,
    next_state,
    seed,
)
from gateway.errors import NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.recorder import insert_mismatches
from gateway.store.conduct_tables import QaSample
from gateway.store.database import dialect_insert
from gateway.store.tables import AgencyEventRow

SAMPLES = QaSample.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
Q, E = SAMPLES.c, EVENTS.c
_SKEW = timedelta(days=2)
"""An attempt is stored with its report's time, which may run this far ahead of the clock
of the agency that made it."""
_NOTE = 500


@dataclass(frozen=True, slots=True)
class QaItem:
    id: int
    agency_id: str
    month: str
    rank: int
    event_id: int
    placement_id: str
    collector_id: str | None
    recording_ref: str
    attempted_at: datetime
    state: str
    requested_at: datetime | None
    reviewed_at: datetime | None
    reviewer: str | None
    note: str | None = None
    """The reviewer's note, unsealed (only when asked for with the PII keys)."""


@dataclass(frozen=True, slots=True)
class Draw:
    """A month's sample and whether this call drew it (False: it was drawn before)."""

    agency_id: str
    month: str
    items: tuple[QaItem, ...]
    new: bool
    candidates: int | None = None
    """How many recorded calls it was drawn from (None when drawn before)."""


def _item(row: sa.Row[tuple[object, ...]], pii: PiiKeyRing | None = None) -> QaItem:
    m = row._mapping
    note = None
    if pii is not None and m["note_sealed"] is not None:
        note = pii.unseal(m["note_sealed"], bound_to=f"qa_samples:{m['id']}").decode()
    return QaItem(
        id=m["id"],
        agency_id=m["agency_id"],
        month=m["month"],
        rank=m["rank"],
        event_id=m["event_id"],
        placement_id=m["placement_id"],
        collector_id=m["collector_id"],
        recording_ref=m["recording_ref"],
        attempted_at=m["attempted_at"],
        state=m["state"],
        requested_at=m["requested_at"],
        reviewed_at=m["reviewed_at"],
        reviewer=m["reviewer"],
        note=note,
    )


async def sample(
    conn: AsyncConnection,
    *,
    month: str,
    agency_id: str | None = None,
    pii: PiiKeyRing | None = None,
) -> list[QaItem]:
    """The month's sample (of one agency or all), by agency and rank."""
    query = sa.select(SAMPLES).where(Q.month == month)
    if agency_id is not None:
        query = query.where(Q.agency_id == agency_id)
    rows = await conn.execute(query.order_by(Q.agency_id, Q.rank))
    return [_item(r, pii) for r in rows.all()]


async def candidates(
    conn: AsyncConnection, agency_id: str, month: str, zone: tzinfo
) -> list[Candidate]:
    """The agency's contact attempts made in ``month`` (in ``zone``) with a recording."""
    start, end = month_bounds(month, zone)
    rows = await conn.execute(
        sa.select(E.id, E.placement_id, E.data).where(
            E.agency_id == agency_id,
            E.event_type == "contact.attempted",
            # Reported at or after the attempt (a day's skew allowed), however late.
            E.occurred_at >= start - _SKEW,
            # A stored event names every field; a recording is a string, never null.
            E.data.like('%"recording_ref":"%'),
        )
    )
    found = []
    for eid, pid, data in rows.all():
        d = json.loads(data)
        at = datetime.fromisoformat(d["attempted_at"])
        if not (start <= at < end) or not d.get("recording_ref"):
            continue
        found.append(
            Candidate(eid, pid, d.get("collector_id"), d["recording_ref"], at, bool(d["effective"]))
        )
    return found


async def draw_month(
    conn: AsyncConnection,
    agency_id: str,
    month: str,
    *,
    size: int,
    zone: tzinfo,
    actor: str,
    now: datetime,
) -> Draw:
    """Draw the agency's sample for ``month`` once; later calls return it as drawn."""
    month_bounds(month, zone)  # refuses a malformed month before anything is read
    existing = await sample(conn, month=month, agency_id=agency_id)
    if existing:
        return Draw(agency_id, month, tuple(existing), new=False)
    pool = await candidates(conn, agency_id, month, zone)
    chosen = draw(pool, size, agency_id=agency_id, month=month)
    if chosen:
        await conn.execute(
            dialect_insert(conn, SAMPLES).on_conflict_do_nothing(
                index_elements=["agency_id", "month", "event_id"]
            ),
            [
                {
                    "agency_id": agency_id,
                    "month": month,
                    "rank": n,
                    "event_id": c.event_id,
                    "placement_id": c.placement_id,
                    "collector_id": c.collector_id,
                    "recording_ref": c.recording_ref,
                    "attempted_at": c.attempted_at,
                    "state": "drawn",
                    "drawn_at": now,
                    "drawn_by": actor,
                }
                for n, c in enumerate(chosen, start=1)
            ],
        )
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="qa_draw",
                ref=f"qa:{agency_id}:{month}",
                fields={
                    "agency_id": agency_id,
                    "month": month,
                    "seed": seed(agency_id, month),
                    "size": size,
                    "candidates": len(pool),
                    "event_ids": [c.event_id for c in chosen],
                    "actor": actor,
                },
            )
        ],
        now=now,
    )
    items = await sample(conn, month=month, agency_id=agency_id)
    return Draw(agency_id, month, tuple(items), new=True, candidates=len(pool))


async def review(
    conn: AsyncConnection,
    item_id: int,
    action: str,
    *,
    actor: str,
    note: str | None,
    pii: PiiKeyRing,
    now: datetime,
) -> QaItem:
    """Move one item (``request``, ``pass``, ``fail``, ``unavailable``); see
    gateway.conduct.sampling for what is allowed."""
    row = (await conn.execute(sa.select(SAMPLES).where(Q.id == item_id))).first()
    if row is None:
        raise NotFound(f"no QA sample item {item_id}; see `agency-gateway conduct qa list`")
    item = _item(row)
    state = next_state(item.state, action, item=item_id)
    values: dict[str, object] = {"state": state}
    if action == "request":
        values["requested_at"] = now
    else:
        values.update(reviewed_at=now, reviewer=actor)
    if note:
        sealed = pii.seal(note[:_NOTE].encode(), bound_to=f"qa_samples:{item_id}")
        values["note_sealed"] = sealed
    updated = await conn.execute(
        SAMPLES.update().where(Q.id == item_id, Q.state == item.state).values(**values)
    )
    if updated.rowcount != 1:
        raise NotFound(f"QA sample item {item_id} changed meanwhile; look again")
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="qa_review",
                ref=f"qa_samples:{item_id}",
                fields={
                    "agency_id": item.agency_id,
                    "month": item.month,
                    "event_id": item.event_id,
                    "action": action,
                    "state": state,
                    "actor": actor,
                    "noted": bool(note),
                },
            )
        ],
        now=now,
    )
    if state in REVIEWED - {"passed"}:
        what = "failed review" if state == "failed" else "could not be provided"
        draft = MismatchDraft(
            "recording_qa_failed",
            item.placement_id,
            f"{item.agency_id}: the recording {item.recording_ref} of a call by "
            f"{item.collector_id or 'an unnamed collector'} at "
            f"{item.attempted_at:%Y-%m-%d %H:%M} UTC {what} (QA sample {item.month})",
            {"qa_item": item_id, "state": state, "reviewer": actor},
            {"recording_ref": item.recording_ref, "collector_id": item.collector_id},
        )
        await insert_mismatches(
            conn,
            [(f"recording_qa_failed:qa:{item_id}", draft, item.agency_id, item.event_id, None)],
            now=now,
        )
    row = (await conn.execute(sa.select(SAMPLES).where(Q.id == item_id))).one()
    return _item(row, pii)


def progress(items: Sequence[QaItem]) -> dict[str, int]:
    """Items by state (every state named, zero included)."""
    counts = dict.fromkeys(QA_STATES, 0)
    for item in items:
        counts[item.state] += 1
    return counts


__all__ = ["Draw", "QaItem", "candidates", "draw_month", "progress", "review", "sample"]
