"""The ``request.decided`` packet (pure): the lender's decision on an agency's request, with
the approved terms exactly, rendered to the bytes the outbox stores and the agency receives."""

from datetime import date, datetime

from gateway.concessions.rules import Terms
from gateway.dispatch.packets import RenderedPacket, dedupe_key, packet_bytes
from schemas.base import NonNegativeMoney, PositiveMoney
from schemas.packets import (
    ApprovedTerms,
    InstalmentTerm,
    RequestDecided,
    RequestDecidedData,
    RequestDecision,
    RequestType,
)

PACKET_TYPE = "request.decided"


def approved_terms(terms: Terms) -> ApprovedTerms:
    """The wire form of approved terms: only the fields of the request's kind."""
    cur = terms.currency
    if terms.kind == "waiver":
        return ApprovedTerms(
            waive_amount=PositiveMoney(amount_minor=terms.waive_minor, currency=cur),
            settlement_amount=NonNegativeMoney(amount_minor=terms.settle_minor or 0, currency=cur),
        )
    if terms.kind == "instalment":
        return ApprovedTerms(
            schedule=tuple(
                InstalmentTerm(
                    due_date=i.due_date,
                    amount=PositiveMoney(amount_minor=i.amount_minor, currency=cur),
                )
                for i in terms.schedule
            ),
            total=PositiveMoney(amount_minor=terms.total_minor or 0, currency=cur),
        )
    return ApprovedTerms(pause_from=terms.pause_from, pause_until=terms.pause_until)


def render_decided(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    request_id: str,
    kind: RequestType,
    decision: RequestDecision,
    terms: Terms | None,
    reason: str | None,
    decided_at: datetime,
    valid_until: date | None,
) -> RenderedPacket:
    """One packet per request, ever (a request is decided once)."""
    key = dedupe_key(agency_id, placement_id, PACKET_TYPE, request_id)
    packet = RequestDecided(
        type="request.decided",
        timestamp=decided_at,
        data=RequestDecidedData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            request_id=request_id,
            request_type=kind,
            decision=decision,
            terms=None if terms is None else approved_terms(terms),
            reason=reason,
            decided_at=decided_at,
            valid_until=valid_until,
        ),
    )
    return RenderedPacket(key, PACKET_TYPE, version, packet_bytes(packet))


__all__ = ["PACKET_TYPE", "approved_terms", "render_decided"]
