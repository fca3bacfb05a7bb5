"""Proof of deletion: when a placement ends, the agency is asked to delete the case's
personal data, and its confirmation is tracked like any other expectation (PIPL Art. 21:
entrusted processing ends with the data returned or deleted).

Theory of operation
-------------------
``request_deletions`` is a sweep, run by ``serve``'s SLA schedule and after every
``agency-gateway reconcile``. It finds the placements that have ended (recalled, returned,
closed, rejected: gateway.lifecycle.ENDED_PLACEMENT_STATES) and have no ``deletion``
expectation yet, and for each, in one transaction:

* queues a ``data.deletion_requested`` packet to the agency that held it, on its own
  channel, naming how the placement ended, the personal data categories we sent (the
  contract's field allowlist) and the date to confirm by;
* records a ``deletion`` expectation due ``[privacy] deletion_days`` after the request.

The agency answers with a ``data.deleted`` event (webhook, result-file row or reply sheet),
which meets the expectation (gateway.reconciliation.event_rules); one still open when due is
breached by the SLA checks and raised as ``deletion_unconfirmed`` (high). The packet, the agency's
event and any ops action on the mismatch are evidence leaves, so a case's evidence bundle proves
what was asked and what the agency confirmed.

A sweep handles at most ``limit`` placements, oldest first, so a first run over a large
book is spread across schedules. Placements of an agency no longer configured are left
alone and counted (``unknown_agency``): there is no channel to ask on. An agency that
confirmed with ``data.deleted`` before it was asked (it deletes on return) is not asked:
the expectation is recorded as already met by that event.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.dispatch.packets import render_deletion_request
from gateway.dispatch.queue import queue_packets
from gateway.lifecycle import ENDED_PLACEMENT_STATES
from gateway.reconciliation.kinds import NewExpectation
from gateway.reconciliation.recorder import (
    EXPECTATIONS,
    E,
    X,
    expectation_row,
    insert_expectation_rows,
    insert_expectations,
)
from gateway.store.tables import Placement
from schemas.packets import DeletionReason

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
P = PLACEMENTS.c
KIND: Final = "deletion"
SWEEP_LIMIT: Final = 5_000
ALWAYS_SENT: Final = ("debtor.debtor_id",)
"""Every packet names the debtor by the lender's id, whatever the allowlist says."""


@dataclass(slots=True)
class SweepResult:
    requested: int = 0
    already_confirmed: int = 0
    unknown_agency: int = 0
    by_agency: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "already_confirmed": self.already_confirmed,
            "unknown_agency": self.unknown_agency,
            "by_agency": dict(sorted(self.by_agency.items())),
        }


def categories(agency: AgencyConfig) -> tuple[str, ...]:
    """The personal data categories a placement with ``agency`` carried."""
    return (*ALWAYS_SENT, *sorted(agency.fields))


async def request_deletions(
    conn: AsyncConnection,
    agencies: Mapping[str, AgencyConfig],
    *,
    days: int,
    now: datetime,
    limit: int = SWEEP_LIMIT,
) -> SweepResult:
    """Ask for deletion on every ended placement not yet asked (see the module docstring),
    in the caller's transaction."""
    asked = sa.select(X.id).where(X.placement_id == P.id, X.kind == KIND).exists()
    pending = sa.and_(P.state.in_(sorted(ENDED_PLACEMENT_STATES)), ~asked)
    known = sorted(agencies)
    confirmed = (
        sa.select(E.id)
        .where(E.placement_id == P.id, E.event_type == "data.deleted", E.applied)
        .order_by(E.id)
        .limit(1)
        .scalar_subquery()
    )
    rows = (
        await conn.execute(
            sa.select(
                P.id,
                P.case_id,
                P.agency_id,
                P.state,
                P.version,
                P.recalled_at,
                P.updated_at,
                confirmed.label("confirmed_by"),
            )
            .where(pending, P.agency_id.in_(known))
            .order_by(P.updated_at, P.id)
            .limit(limit)
        )
    ).all()
    result = SweepResult()
    result.unknown_agency = (
        await conn.execute(sa.select(sa.func.count()).where(pending, P.agency_id.not_in(known)))
    ).scalar_one()
    due = now + timedelta(days=days)
    packets = []
    expectations = []
    already = []
    for r in rows:
        agency = agencies[r.agency_id]
        if r.confirmed_by is not None:
            # The agency confirmed before we asked (it deleted on return): nothing to send.
            row = expectation_row(r.id, agency.id, NewExpectation(KIND, "", now, None), now)
            already.append({**row, "state": "met", "met_by_event_id": r.confirmed_by})
            continue
        packet = render_deletion_request(
            agency_id=agency.id,
            placement_id=r.id,
            case_id=r.case_id,
            version=r.version,
            reason=cast(DeletionReason, r.state),
            ended_at=r.recalled_at if r.state == "recalled" and r.recalled_at else r.updated_at,
            delete_by=due.date(),
            categories=categories(agency),
            at=now,
        )
        packets.append((agency, r.id, packet))
        expectations.append((r.id, agency.id, NewExpectation(KIND, "", due, None)))
        result.by_agency[agency.id] = result.by_agency.get(agency.id, 0) + 1
    if packets:
        await queue_packets(conn, packets, now=now)
        await insert_expectations(conn, expectations, now=now)
    await insert_expectation_rows(conn, already)
    result.requested = len(packets)
    result.already_confirmed = len(already)
    return result


async def deletion_status(
    conn: AsyncConnection, *, agency_id: str | None = None, state: str | None = None
) -> list[dict[str, object]]:
    """Every deletion request: placement, agency, asked, due, state (``open``, ``met``,
    ``breached``) and the confirming event, oldest first."""
    query = (
        sa.select(
            X.placement_id,
            X.agency_id,
            X.created_at,
            X.due_at,
            X.state,
            X.met_by_event_id,
            P.state.label("placement_state"),
        )
        .select_from(EXPECTATIONS.outerjoin(PLACEMENTS, P.id == X.placement_id))
        .where(X.kind == KIND)
        .order_by(X.created_at, X.placement_id)
    )
    if agency_id is not None:
        query = query.where(X.agency_id == agency_id)
    if state is not None:
        query = query.where(X.state == state)
    return [
        {
            "placement_id": r.placement_id,
            "agency_id": r.agency_id,
            "placement_state": r.placement_state,
            "requested_at": r.created_at.isoformat(),
            "due_at": r.due_at.isoformat(),
            "state": r.state,
            "confirmed_by_event_id": r.met_by_event_id,
        }
        for r in (await conn.execute(query)).all()
    ]


__all__ = [
    "ALWAYS_SENT",
    "KIND",
    "SweepResult",
    "categories",
    "deletion_status",
    "request_deletions",
]
