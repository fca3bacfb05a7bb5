"""Conduct violations per agency, for the console, the CLI, the scorecard and the annual
evaluation: the conduct mismatches raised on arrival, by the batch run and by QA review."""

from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.tables import Mismatch

MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
M = MISMATCHES.c

VIOLATION_KINDS: Final = (
    "third_party_contact",
    "contact_during_hold",
    "contact_during_dispute",
    "contact_rule_violation",
    "recording_qa_failed",
)
"""The mismatch kinds that are collector conduct."""
NOT_COUNTED: Final = ("dismissed",)
"""A dismissed mismatch was judged no violation after all."""


async def violation_counts(
    conn: AsyncConnection, *, start: datetime, end: datetime
) -> dict[str, dict[str, int]]:
    """Agency → kind → violations raised in [start, end) and not dismissed; an agency
    with none is absent, a kind with none is absent from its agency."""
    rows = await conn.execute(
        sa.select(M.agency_id, M.kind, sa.func.count())
        .where(
            M.kind.in_(VIOLATION_KINDS),
            M.created_at >= start,
            M.created_at < end,
            M.state.not_in(NOT_COUNTED),
            M.agency_id.is_not(None),
        )
        .group_by(M.agency_id, M.kind)
    )
    counts: dict[str, dict[str, int]] = {}
    for agency_id, kind, n in rows.all():
        counts.setdefault(agency_id, {})[kind] = n
    return counts


__all__ = ["NOT_COUNTED", "VIOLATION_KINDS", "violation_counts"]
