"""Preparing the document packs of placements being created or renewed, in the caller's
transaction (the allocation commit, a renewal).

Theory of operation: for a batch of placements, ``PackPreparer.prepare_packs``

1. asks the letter service (gateway.letters, handed in by the composition root) for one
   signed authorisation letter per placement; it writes the letter's ``case_documents`` and
   ``authorisation_letters`` rows and their evidence leaves. With no letter service and
   ``[documents] letters = "required"`` nothing is placed: LettersUnavailable says what to
   configure;
2. renders the repayment history and balance breakdown of each placement's case
   (gateway.documents.statements) from the ``cases`` row and the lender's payments, seals them
   with the PII key ring the database carries, and writes them with one ``document`` leaf
   each: one query per kind of input and one batched insert for the whole batch;
3. lists each placement's pack (gateway.documents.pack: the generated documents and the
   case's store documents, hashed at intake) as wire descriptors for the packet.

``revoke`` asks the letter service to revoke the letters of placements that end (recall,
expiry), and returns their numbers for ``placement.recalled``.
"""

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.documents import statements
from gateway.documents.pack import DOCUMENTS, PackDocument, pack_of, sealed_binding
from gateway.errors import DocumentError, GatewayError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.store.database import sealer_of
from gateway.store.recon_tables import LenderPayment
from gateway.store.tables import Case
from schemas.packets import Authorisation, DocumentDescriptor, DocumentKind

log = logging.getLogger(__name__)

CASES = Case.__table__  # type: ignore[attr-defined]
PAYMENTS = LenderPayment.__table__  # type: ignore[attr-defined]
CHUNK = 500


class LettersUnavailable(GatewayError):
    """No authorisation letter can be issued: configure the lender's registration and
    signing certificate ([lender]), or set [documents] letters = "off"."""


@dataclass(frozen=True, slots=True)
class PackRequest:
    """A placement whose pack is wanted: who holds it, for which case, valid when."""

    placement_id: str
    case_id: str
    agency_id: str
    valid_from: date
    valid_until: date


class IssuedLetterView(Protocol):
    """What the letter service tells us about a letter it issued."""

    @property
    def letter_no(self) -> str: ...

    @property
    def valid_until(self) -> date: ...


class LetterIssuer(Protocol):
    """The port of the letter service (gateway.letters), seen from the packs: issue and
    revoke letters in the caller's transaction."""

    async def issue(
        self, conn: AsyncConnection, requests: Sequence[PackRequest], *, now: datetime
    ) -> Mapping[str, IssuedLetterView]:
        """Placement id → its newly issued letter (rows and leaves written)."""
        ...

    async def revoke(
        self, conn: AsyncConnection, placement_ids: Sequence[str], *, reason: str, now: datetime
    ) -> list[str]:
        """Revoke the placements' active letters; the letter numbers revoked."""
        ...


@dataclass(frozen=True, slots=True)
class PreparedPack:
    """One placement's letter and document descriptors, for its packet."""

    authorisation: Authorisation | None
    documents: tuple[DocumentDescriptor, ...] = field(default=())


def descriptor(doc: PackDocument) -> DocumentDescriptor:
    """The wire descriptor of a stored document. Built without validation: every value comes
    from a ``case_documents`` row we wrote (the packet tests validate the rendered bytes
    against the published JSON Schema)."""
    return DocumentDescriptor.model_construct(
        document_id=doc.id,
        kind=cast(DocumentKind, doc.kind),
        name=doc.name,
        media_type=doc.media_type,
        size=doc.size,
        sha256=doc.sha256,
        reference=doc.reference,
    )


class PackPreparer:
    """Prepares packs (see the module docstring).

    Args:
        letters: the letter service; None when the lender has none configured.
        require_letters: refuse to prepare packs (so to place cases) without letters.
        statements: generate the repayment history and balance breakdown.
        verify_url: the public verification page, printed in the packet's ``authorisation``.
    """

    def __init__(
        self,
        *,
        letters: LetterIssuer | None,
        require_letters: bool,
        statements: bool = True,
        verify_url: str,
    ) -> None:
        self._letters = letters
        self._require_letters = require_letters
        self._statements = statements
        self._verify_url = verify_url

    async def prepare_packs(
        self, conn: AsyncConnection, requests: Sequence[PackRequest], *, now: datetime
    ) -> dict[str, PreparedPack]:
        """Placement id → its prepared pack, for every request (see the module docstring)."""
        if not requests:
            return {}
        issued: Mapping[str, IssuedLetterView] = {}
        if self._letters is not None:
            issued = await self._letters.issue(conn, requests, now=now)
        elif self._require_letters:
            raise LettersUnavailable()
        if self._statements:
            await write_statements(conn, requests, now=now)
        packs = await pack_of(conn, [r.placement_id for r in requests])
        prepared: dict[str, PreparedPack] = {}
        for r in requests:
            letter = issued.get(r.placement_id)
            prepared[r.placement_id] = PreparedPack(
                authorisation=None
                if letter is None
                else Authorisation(
                    letter_no=letter.letter_no,
                    valid_from=r.valid_from,
                    valid_until=letter.valid_until,
                    verify_url=self._verify_url,
                ),
                documents=tuple(descriptor(d) for d in packs[r.placement_id]),
            )
        return prepared

    async def revoke(
        self, conn: AsyncConnection, placement_ids: Sequence[str], *, reason: str, now: datetime
    ) -> list[str]:
        """The letters of the placements, revoked (none without a letter service)."""
        if self._letters is None or not placement_ids:
            return []
        return await self._letters.revoke(conn, placement_ids, reason=reason, now=now)


async def _breakdowns(
    conn: AsyncConnection, case_ids: Sequence[str]
) -> dict[str, statements.Breakdown]:
    c = CASES.c
    found: dict[str, statements.Breakdown] = {}
    for start in range(0, len(case_ids), CHUNK):
        rows = await conn.execute(
            sa.select(
                c.id,
                c.currency,
                c.balance_minor,
                c.principal_minor,
                c.principal_due_minor,
                c.interest_minor,
                c.penalty_minor,
                c.fees_minor,
                c.contract_no,
                c.disbursed_on,
                c.annual_rate_bp,
                c.due_date,
                c.dpd,
            ).where(c.id.in_(list(case_ids[start : start + CHUNK])))
        )
        for m in rows.mappings():
            found[str(m["id"])] = statements.Breakdown(
                case_id=str(m["id"]),
                currency=m["currency"],
                balance_minor=m["balance_minor"],
                principal_minor=m["principal_minor"],
                principal_due_minor=m["principal_due_minor"],
                interest_minor=m["interest_minor"],
                penalty_minor=m["penalty_minor"],
                fees_minor=m["fees_minor"],
                contract_no=m["contract_no"],
                disbursed_on=m["disbursed_on"],
                annual_rate_bp=m["annual_rate_bp"],
                due_date=m["due_date"],
                dpd=m["dpd"],
            )
    return found


async def _repayments(
    conn: AsyncConnection, case_ids: Sequence[str]
) -> dict[str, list[statements.Repayment]]:
    p = PAYMENTS.c
    found: dict[str, list[statements.Repayment]] = {}
    for start in range(0, len(case_ids), CHUNK):
        rows = await conn.execute(
            sa.select(
                p.case_id, p.payment_id, p.received_at, p.amount_minor, p.currency, p.kind
            ).where(p.case_id.in_(list(case_ids[start : start + CHUNK])))
        )
        for case_id, payment_id, received_at, amount, currency, kind in rows:
            found.setdefault(str(case_id), []).append(
                statements.Repayment(str(payment_id), received_at, amount, currency, kind)
            )
    return found


async def write_statements(
    conn: AsyncConnection, requests: Sequence[PackRequest], *, now: datetime
) -> int:
    """Generate, seal and write each placement's repayment history and balance breakdown
    (one ``document`` leaf each); a statement of the same name already written for the
    placement (a second renewal on one day) is kept as it is. The number written."""
    sealer = sealer_of(conn)
    if sealer is None:
        raise DocumentError("generated documents are sealed, and this database has no key ring")
    case_ids = sorted({r.case_id for r in requests})
    breakdowns = await _breakdowns(conn, case_ids)
    repayments = await _repayments(conn, case_ids)
    as_of = now.date()
    stamp = as_of.strftime("%Y%m%d")
    wanted: list[tuple[PackRequest, str, str, bytes]] = []
    for r in requests:
        b = breakdowns.get(r.case_id)
        if b is None:
            raise DocumentError(f"case {r.case_id} does not exist; placement {r.placement_id}")
        wanted.append(
            (
                r,
                "repayment_history",
                f"repayment-history-{r.case_id}-{stamp}.csv",
                statements.repayment_history(r.case_id, repayments.get(r.case_id, []), as_of=as_of),
            )
        )
        wanted.append(
            (
                r,
                "balance_breakdown",
                f"balance-breakdown-{r.case_id}-{stamp}.csv",
                statements.balance_breakdown(b, as_of=as_of),
            )
        )
    existing = await _existing_names(conn, [r.placement_id for r in requests])
    rows: list[dict[str, object]] = []
    leaves: list[LeafInput] = []
    for r, kind, name, data in wanted:
        if (r.placement_id, name) in existing:
            continue
        sha256 = hashlib.sha256(data).hexdigest()
        rows.append(
            {
                "case_id": r.case_id,
                "placement_id": r.placement_id,
                "kind": kind,
                "name": name,
                "media_type": statements.MEDIA_TYPE,
                "size": len(data),
                "sha256": sha256,
                "content": sealer.seal(data, bound_to=sealed_binding(r.case_id, sha256)),
                "source": None,
                "reference": None,
                "created_at": now,
            }
        )
        leaves.append(
            LeafInput(
                kind="document",
                ref=f"document:{r.case_id}:{sha256}",
                fields={
                    "case_id": r.case_id,
                    "placement_id": r.placement_id,
                    "agency_id": r.agency_id,
                    "name": name,
                    "document_kind": kind,
                    "size": len(data),
                    "sha256": sha256,
                },
            )
        )
    if rows:
        await conn.execute(DOCUMENTS.insert(), rows)
        await append_leaves(conn, leaves, now=now)
    return len(rows)


async def _existing_names(
    conn: AsyncConnection, placement_ids: Sequence[str]
) -> set[tuple[str, str]]:
    d = DOCUMENTS.c
    found: set[tuple[str, str]] = set()
    for start in range(0, len(placement_ids), CHUNK):
        rows = await conn.execute(
            sa.select(d.placement_id, d.name).where(
                d.placement_id.in_(list(placement_ids[start : start + CHUNK]))
            )
        )
        found.update((str(p), str(n)) for p, n in rows)
    return found


__all__ = [
    "IssuedLetterView",
    "LetterIssuer",
    "LettersUnavailable",
    "PackPreparer",
    "PackRequest",
    "PreparedPack",
    "descriptor",
    "write_statements",
]
