"""Per-agency operational state: endpoint switches and an overview for ops."""

from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.config.agencies import AgencyConfig
from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.store.database import Database, dialect_insert
from gateway.store.tables import AgencyStatus, OutboxItem, Placement

STATUS = AgencyStatus.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]


async def set_endpoint_disabled(
    db: Database, agency_id: str, *, disabled: bool, reason: str | None
) -> None:
    """Switch an agency's endpoint off (the dispatcher skips it) or back on."""
    now = datetime.now(UTC)
    values = {"endpoint_disabled": disabled, "disabled_reason": reason, "updated_at": now}
    async with db.transaction() as conn:
        await conn.execute(
            dialect_insert(conn, STATUS)
            .values(agency_id=agency_id, **values)
            .on_conflict_do_update(index_elements=["agency_id"], set_=values)
        )


async def agency_overview(
    db: Database, agencies: Mapping[str, AgencyConfig]
) -> list[dict[str, object]]:
    async with db.connect() as conn:
        open_counts: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.select(PLACEMENTS.c.agency_id, sa.func.count())
                    .where(PLACEMENTS.c.state.in_(OPEN_PLACEMENT_STATES))
                    .group_by(PLACEMENTS.c.agency_id)
                )
            ).all()
        )
        backlog: dict[tuple[str, str], int] = {
            (a, s): n
            for a, s, n in (
                await conn.execute(
                    sa.select(OUTBOX.c.agency_id, OUTBOX.c.state, sa.func.count()).group_by(
                        OUTBOX.c.agency_id, OUTBOX.c.state
                    )
                )
            ).all()
        }
        status = {r.agency_id: r for r in (await conn.execute(sa.select(STATUS))).all()}
    return [
        {
            "agency_id": a.id,
            "name": a.name,
            "channel": a.channel,
            "open_placements": open_counts.get(a.id, 0),
            "capacity": a.capacity.max_open_placements,
            "outbox_pending": backlog.get((a.id, "pending"), 0) + backlog.get((a.id, "leased"), 0),
            "outbox_delivered": backlog.get((a.id, "delivered"), 0),
            "outbox_dead": backlog.get((a.id, "dead"), 0),
            "outbox_unknown": backlog.get((a.id, "unknown"), 0),
            "endpoint_disabled": bool(status[a.id].endpoint_disabled) if a.id in status else False,
            "disabled_reason": status[a.id].disabled_reason if a.id in status else None,
        }
        for a in agencies.values()
    ]


__all__ = ["agency_overview", "set_endpoint_disabled"]
