"""Delivery hooks: the reconciliation effects of the dispatcher's outcomes, run inside its
recording transaction (``gateway.dispatch.records.DeliveryHooks``).

A delivered ``placement.created`` opens the placement's acknowledgement and first-activity
expectations, due after the agency's SLA hours; what the agency already answered meets them
at once (an agency may answer before we record the delivery). A packet given up on becomes
a ``dead_delivery`` mismatch.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.dispatch.outbox import ClaimedItem
from gateway.lifecycle import ACTIVITY_EVENTS
from gateway.reconciliation.kinds import MismatchDraft, NewExpectation
from gateway.reconciliation.recorder import (
    EXPECTATIONS,
    E,
    X,
    expectation_row,
    insert_expectation_rows,
    insert_mismatches,
)
from gateway.store.database import dialect_insert
from gateway.store.tables import Mismatch

ARRIVALS: tuple[tuple[str, frozenset[str]], ...] = (
    ("ack", frozenset({"placement.acknowledged"})),
    ("first_activity", ACTIVITY_EVENTS),
)
"""Each expectation a delivery opens, with the events that meet it."""
ARRIVAL_TYPES = sorted(set().union(*(types for _, types in ARRIVALS)))


async def meet_arrived(
    conn: AsyncConnection, placement_ids: Sequence[str] | sa.Select[tuple[str]]
) -> None:
    """An agency may answer faster than we record the delivery: meet at once the ack and
    first-activity expectations of ``placement_ids`` whose events already arrived.

    The placements with such an event, usually none, are looked up first, in one query by the
    events' placement index; only theirs are updated. An UPDATE naming the placements
    directly would let SQLite's planner pick the (state, due) index and read every open
    expectation, on every delivery.
    """
    wanted = placement_ids if isinstance(placement_ids, sa.Select) else list(placement_ids)
    if not isinstance(wanted, sa.Select) and not wanted:
        return
    answered = await conn.execute(
        sa.select(E.placement_id, E.event_type)
        .distinct()
        .where(E.placement_id.in_(wanted), E.applied, E.event_type.in_(ARRIVAL_TYPES))
    )
    arrived_types: dict[str, set[str]] = {}
    for placement_id, event_type in answered.all():
        arrived_types.setdefault(placement_id, set()).add(event_type)
    for kind, types in ARRIVALS:
        ids = sorted(p for p, seen in arrived_types.items() if seen & types)
        if not ids:
            continue
        arrived = (
            sa.select(E.id)
            .where(E.placement_id == X.placement_id, E.applied, E.event_type.in_(sorted(types)))
            .limit(1)
            .scalar_subquery()
        )
        await conn.execute(
            EXPECTATIONS.update()
            .where(X.placement_id.in_(ids), X.kind == kind, X.state == "open", arrived.is_not(None))
            .values(state="met", met_by_event_id=arrived)
        )


MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
M = MISMATCHES.c


def _merged(known: list[str], more: Iterable[str]) -> list[str]:
    return sorted({*known, *more})


class ReconciliationHooks:
    """Delivery hooks: a delivered placement creates its expectations; a dead one a mismatch."""

    def __init__(self, *, agencies: Mapping[str, AgencyConfig]) -> None:
        self._agencies = agencies

    async def on_delivered(
        self, conn: AsyncConnection, items: Sequence[ClaimedItem], *, now: datetime
    ) -> None:
        rows = []
        for item in items:
            if item.packet_type != "placement.created":
                continue
            sla = self._agencies[item.agency_id].sla
            for kind, hours in (
                ("ack", sla.ack_hours),
                ("first_activity", sla.first_activity_hours),
            ):
                rows.append(
                    expectation_row(
                        item.placement_id,
                        item.agency_id,
                        NewExpectation(kind, "", now + timedelta(hours=hours), None),
                        now,
                    )
                )
        if rows:
            await insert_expectation_rows(conn, rows)
            await meet_arrived(conn, sorted({str(r["placement_id"]) for r in rows}))

    async def on_delivered_rows(
        self,
        conn: AsyncConnection,
        agency_id: str,
        delivered: sa.Select[tuple[str, str]],
        *,
        now: datetime,
    ) -> None:
        """``on_delivered`` for a set: ``delivered`` selects (placement id, packet type) of
        the items of ``agency_id`` just delivered; one INSERT … SELECT per expectation."""
        sla = self._agencies[agency_id].sla
        placed = delivered.subquery()
        is_created = placed.c[1] == "placement.created"
        for kind, hours in (("ack", sla.ack_hours), ("first_activity", sla.first_activity_hours)):
            rows = sa.select(
                placed.c[0],
                sa.literal(agency_id, X.agency_id.type),
                sa.literal(kind, X.kind.type),
                sa.literal("", X.ref.type),
                sa.literal(now + timedelta(hours=hours), X.due_at.type),
                sa.literal("open", X.state.type),
                sa.literal(now, X.created_at.type),
            ).where(is_created)
            columns = ["placement_id", "agency_id", "kind", "ref", "due_at", "state", "created_at"]
            await conn.execute(
                dialect_insert(conn, EXPECTATIONS)
                .from_select(columns, rows)
                .on_conflict_do_nothing(index_elements=["placement_id", "kind", "ref"])
            )
        created = sa.select(placed.c[0]).where(is_created)
        await meet_arrived(conn, created)

    async def on_dead(
        self, conn: AsyncConnection, items: Sequence[tuple[ClaimedItem, str]], *, now: datetime
    ) -> None:
        await insert_mismatches(
            conn,
            (
                (
                    f"dead_delivery:outbox:{item.id}",
                    MismatchDraft(
                        "dead_delivery",
                        item.placement_id,
                        f"{item.packet_type} to {item.agency_id} was given up after "
                        f"{item.attempts} attempt(s): {error}",
                        {"packet_type": item.packet_type, "dedupe_key": item.dedupe_key},
                        {"last_error": error[:500]},
                    ),
                    item.agency_id,
                    None,
                    item.id,
                )
                for item, error in items
            ),
            now=now,
        )

    async def on_dead_batch(
        self,
        conn: AsyncConnection,
        batch: str,
        items: Sequence[tuple[ClaimedItem, str]],
        *,
        now: datetime,
    ) -> None:
        if not items:
            return
        key = f"dead_delivery:batch:{batch}"
        first, error = items[0]
        found = (
            await conn.execute(sa.select(M.id, M.ours).where(M.dedupe_key == key))
        ).one_or_none()
        ours = json.loads(found.ours) if found is not None else {"batch": batch, "outbox_ids": []}
        ids = sorted({*ours["outbox_ids"], *(item.id for item, _ in items)})
        pids = sorted({*ours.get("placement_ids", []), *(item.placement_id for item, _ in items)})
        ours.update(
            outbox_ids=ids,
            placement_ids=pids,
            cases=len(pids),
            packet_types=sorted(
                {*ours.get("packet_types", []), *(i.packet_type for i, _ in items)}
            ),
        )
        detail = (
            f"a batch of {len(ids)} packet(s) for {len(pids)} case(s) to {first.agency_id} was "
            f"given up as a whole: {error}"
        )[:1000]
        if found is not None:
            await conn.execute(
                MISMATCHES.update()
                .where(M.id == found.id)
                .values(ours=json.dumps(ours), detail=detail, updated_at=now)
            )
            return
        await insert_mismatches(
            conn,
            [
                (
                    key,
                    MismatchDraft("dead_delivery", None, detail, ours, {"last_error": error[:500]}),
                    first.agency_id,
                    None,
                    first.id,
                )
            ],
            now=now,
        )


__all__ = ["ReconciliationHooks", "meet_arrived"]
