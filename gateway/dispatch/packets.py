"""Rendering case packets: wire model → exact bytes, with the agency's field allowlist (pure).

The bytes rendered here are the bytes stored in the outbox, hashed into the evidence log and
put on the wire; nothing re-serialises them later.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel

from schemas.base import NonNegativeMoney, PositiveMoney
from schemas.packets import (
    AttributionTerms,
    Authorisation,
    Bucket,
    DataDeletionRequested,
    DataDeletionRequestedData,
    Debtor,
    DeletionReason,
    DocumentDescriptor,
    PaymentAttributed,
    PaymentAttributedData,
    PaymentDirect,
    PaymentDirectData,
    PlacementAmended,
    PlacementAmendedData,
    PlacementCreated,
    PlacementCreatedData,
    PlacementExpiring,
    PlacementExpiringData,
    PlacementRecalled,
    PlacementRecalledData,
)


def canonical_json(value: object) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (Chinese stays readable)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def packet_bytes(packet: BaseModel) -> bytes:
    return canonical_json(packet.model_dump(mode="json", exclude_none=True))


def dedupe_key(agency_id: str, placement_id: str, packet_type: str, discriminator: str) -> str:
    """Stable id of one packet: the outbox unique key and the ``webhook-id`` the agency sees."""
    digest = hashlib.sha256(f"{agency_id}|{placement_id}|{packet_type}|{discriminator}".encode())
    return "pkt_" + digest.hexdigest()[:40]


def placement_id_for(case_id: str, ordinal: int) -> str:
    return f"PL-{case_id}-{ordinal}"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class RenderedPacket:
    dedupe_key: str
    packet_type: str
    packet_version: int
    payload: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def render_created(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    bucket: Bucket,
    dpd: int,
    balance_minor: int,
    principal_minor: int,
    currency: str,
    due_date: date,
    product: str,
    credit_grade: str,
    debtor_id: str,
    region: str,
    pii: Mapping[str, object],
    allowed_fields: frozenset[str],
    placed_at: datetime,
    return_by: date,
    authorisation: Authorisation | None = None,
    documents: Sequence[DocumentDescriptor] | None = None,
) -> RenderedPacket:
    """Render ``placement.created``; personal fields only where the allowlist names them.
    ``authorisation`` and ``documents`` are the placement's letter and document pack
    (gateway.documents.prepare); a gateway without packs leaves them out."""

    def allowed(name: str) -> object:
        return pii.get(name) if f"debtor.{name}" in allowed_fields else None

    phones = allowed("phones")
    debtor = Debtor(
        debtor_id=debtor_id,
        name=_text(allowed("name")),
        national_id=_text(allowed("national_id")),
        phones=tuple(phones) if isinstance(phones, list | tuple) else None,
        address=_text(allowed("address")),
        region=region if "debtor.region" in allowed_fields else None,
    )
    key = dedupe_key(agency_id, placement_id, "placement.created", "1")
    packet = PlacementCreated(
        type="placement.created",
        timestamp=placed_at,
        data=PlacementCreatedData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            bucket=bucket,
            dpd=dpd,
            balance=NonNegativeMoney(amount_minor=balance_minor, currency=currency),
            principal=NonNegativeMoney(amount_minor=principal_minor, currency=currency),
            due_date=due_date,
            product=product,
            credit_grade=credit_grade,
            debtor=debtor,
            placed_at=placed_at,
            return_by=return_by,
            authorisation=authorisation,
            documents=None if documents is None else tuple(documents),
        ),
    )
    return RenderedPacket(key, "placement.created", 1, packet_bytes(packet))


def render_amended(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    balance_minor: int,
    previous_balance_minor: int,
    currency: str,
    reason: str,
    at: datetime,
    return_by: date | None = None,
    authorisation: Authorisation | None = None,
    documents: Sequence[DocumentDescriptor] | None = None,
) -> RenderedPacket:
    """``placement.amended`` bringing the agency to ``version``; ``return_by`` when the
    amendment renews the placement (one key per version, so a renewal and a balance change
    never share one), with the renewal's new letter and pack when there are packs."""
    key = dedupe_key(agency_id, placement_id, "placement.amended", str(version))
    packet = PlacementAmended(
        type="placement.amended",
        timestamp=at,
        data=PlacementAmendedData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            version=version,
            balance=NonNegativeMoney(amount_minor=balance_minor, currency=currency),
            previous_balance=NonNegativeMoney(
                amount_minor=previous_balance_minor, currency=currency
            ),
            reason=reason,
            return_by=return_by,
            authorisation=authorisation,
            documents=None if documents is None else tuple(documents),
        ),
    )
    return RenderedPacket(key, "placement.amended", version, packet_bytes(packet))


def render_expiring(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    return_by: date,
    recall_on: date,
    at: datetime,
) -> RenderedPacket:
    """``placement.expiring``: one per placement term (its dedupe key is the ``return_by`` it
    warns about, so a renewed placement is warned again before its new end)."""
    key = dedupe_key(agency_id, placement_id, "placement.expiring", return_by.isoformat())
    packet = PlacementExpiring(
        type="placement.expiring",
        timestamp=at,
        data=PlacementExpiringData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            return_by=return_by,
            recall_on=recall_on,
        ),
    )
    return RenderedPacket(key, "placement.expiring", version, packet_bytes(packet))


def render_recalled(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    reason_code: str,
    at: datetime,
    revoked_letters: Sequence[str] = (),
) -> RenderedPacket:
    """``placement.recalled``, naming the authorisation letters the recall revoked."""
    key = dedupe_key(agency_id, placement_id, "placement.recalled", "1")
    packet = PlacementRecalled(
        type="placement.recalled",
        timestamp=at,
        data=PlacementRecalledData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            reason_code=reason_code,
            recalled_at=at,
            revoked_letters=tuple(revoked_letters) or None,
        ),
    )
    return RenderedPacket(key, "placement.recalled", version, packet_bytes(packet))


def render_direct_payment(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    payment_id: str,
    amount_minor: int,
    currency: str,
    paid_at: datetime,
    at: datetime,
    attribution: tuple[str, int, int] | None = None,
) -> RenderedPacket:
    """``payment.direct``; ``attribution`` is (rule, share in bps, amount credited) under
    the ``lender_collects`` money model."""
    key = dedupe_key(agency_id, placement_id, "payment.direct", payment_id)
    packet = PaymentDirect(
        type="payment.direct",
        timestamp=at,
        data=PaymentDirectData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            payment_id=payment_id,
            amount=PositiveMoney(amount_minor=amount_minor, currency=currency),
            paid_at=paid_at,
            attribution=None if attribution is None else _terms(*attribution, currency),
        ),
    )
    return RenderedPacket(key, "payment.direct", version, packet_bytes(packet))


def _terms(rule: str, share_bps: int, credited: int, currency: str) -> AttributionTerms:
    return AttributionTerms.model_validate(
        {
            "rule": rule,
            "share_bps": share_bps,
            "amount": {"amount_minor": credited, "currency": currency},
        }
    )


def render_attributed_payment(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    payment_id: str,
    amount_minor: int,
    currency: str,
    paid_at: datetime,
    attribution: tuple[str, int, int],
    at: datetime,
) -> RenderedPacket:
    """``payment.attributed``: a receipt credited to an agency's ended placement (grace)."""
    key = dedupe_key(agency_id, placement_id, "payment.attributed", payment_id)
    packet = PaymentAttributed(
        type="payment.attributed",
        timestamp=at,
        data=PaymentAttributedData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            payment_id=payment_id,
            amount=PositiveMoney(amount_minor=amount_minor, currency=currency),
            paid_at=paid_at,
            attribution=_terms(*attribution, currency),
        ),
    )
    return RenderedPacket(key, "payment.attributed", version, packet_bytes(packet))


LEGAL_BASIS = "PIPL Art. 21: entrusted processing has ended; delete or return the personal data"


def render_deletion_request(
    *,
    agency_id: str,
    placement_id: str,
    case_id: str,
    version: int,
    reason: DeletionReason,
    ended_at: datetime,
    delete_by: date,
    categories: tuple[str, ...],
    at: datetime,
) -> RenderedPacket:
    """``data.deletion_requested``: one per placement, ever (its dedupe key has no date)."""
    key = dedupe_key(agency_id, placement_id, "data.deletion_requested", "1")
    packet = DataDeletionRequested(
        type="data.deletion_requested",
        timestamp=at,
        data=DataDeletionRequestedData(
            packet_id=key,
            placement_id=placement_id,
            case_id=case_id,
            reason=reason,
            ended_at=ended_at,
            delete_by=delete_by,
            categories=categories,
            legal_basis=LEGAL_BASIS,
        ),
    )
    return RenderedPacket(key, "data.deletion_requested", version, packet_bytes(packet))


__all__ = [
    "LEGAL_BASIS",
    "RenderedPacket",
    "canonical_json",
    "dedupe_key",
    "packet_bytes",
    "placement_id_for",
    "render_amended",
    "render_attributed_payment",
    "render_created",
    "render_deletion_request",
    "render_direct_payment",
    "render_expiring",
    "render_recalled",
]
