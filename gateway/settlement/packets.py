"""The ``settlement.statement`` packet: an issued statement's totals, lines and documents,
queued to the agency in the issuing transaction with its evidence leaf
(gateway.dispatch.queue).

The outbox keys packets by placement; a statement belongs to no placement, so its outbox
row's placement id is ``statement:<id>`` (never a real placement id, which is ``PL-...``).
Webhook agencies get the packet and fetch its documents (gateway.settlement.fetch); email
agencies (law firms) get it as a ``settlement_statement`` letter with the XLSX and the PDF
attached (adapters.email: ``statement_documents`` below); SFTP agencies get it in a
``SETTLEMENT`` batch, one row per line and a summary row in their layout, with the XLSX and
the PDF in the batch's documents folder (adapters.sftp: ``statement_document_rows``).
"""

import hashlib
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.config.agencies import AgencyConfig
from gateway.dispatch.packets import RenderedPacket, dedupe_key, packet_bytes
from gateway.dispatch.queue import queue_packets
from gateway.errors import SettlementError
from gateway.settlement.views import StatementView
from gateway.store.statement_tables import SettlementDocument, SettlementStatement as StatementRow
from schemas.packets import SettlementStatement, SettlementStatementData

PACKET_TYPE = "settlement.statement"
DOCUMENTS = SettlementDocument.__table__  # type: ignore[attr-defined]
STATEMENTS = StatementRow.__table__  # type: ignore[attr-defined]
DOCUMENTS_ROUTE = "/v1/agencies/{agency_id}/settlement-documents"
"""Where a webhook agency fetches the documents (gateway.settlement.fetch); each document of
the packet names this path in ``fetch`` (POST ``{"statement_id": ..., "kind": ...}``, signed)."""


def outbox_key(statement_id: object) -> str:
    return f"statement:{statement_id}"


def _money(amount: object, currency: str) -> dict[str, object]:
    return {"amount_minor": int(str(amount)), "currency": currency}


def render_statement(agency_id: str, view: StatementView, *, at: datetime) -> RenderedPacket:
    """The packet of an issued statement (its canonical SHA-256 must be set)."""
    st = view.statement
    currency = str(st["currency"])
    sha = str(st["canonical_sha256"])
    key = dedupe_key(agency_id, outbox_key(st["id"]), PACKET_TYPE, f"{st['revision']}:{sha}")
    lines = [
        {
            "line_no": line["line_no"],
            "placement_id": line["placement_id"],
            "case_id": line["case_id"],
            "payment_id": str(line["receipt_id"]),
            "paid_on": date.fromisoformat(str(line["paid_on"])),
            "amount": _money(line["amount_minor"], currency),
            "attribution_rule": line["attribution_rule"],
            "rule": line["rule"],
            "rate_bps": line["rate_bps"],
            "commission": None
            if line["commission_minor"] is None
            else _money(line["commission_minor"], currency),
            "withheld": bool(line["withheld"]),
        }
        for line in view.lines
    ]
    commission = (
        int(str(st["lines_minor"]))
        + int(str(st["floor_topup_minor"]))
        - int(str(st["ceiling_cut_minor"]))
    )
    data = SettlementStatementData.model_validate(
        {
            "packet_id": key,
            "statement_id": st["id"],
            "revision": st["revision"],
            "month": st["month"],
            "sha256": sha,
            "recovered": _money(st["recovered_minor"], currency),
            "commission": _money(commission, currency),
            "adjustments": _money(st["adjustments_minor"], currency),
            "fees": _money(st["fees_minor"], currency),
            "total": _money(st["total_minor"], currency),
            "withheld": _money(st["withheld_minor"], currency),
            "lines": lines,
            "documents": [
                {
                    "kind": d["kind"],
                    "name": d["name"],
                    "sha256": d["sha256"],
                    "fetch": DOCUMENTS_ROUTE.format(agency_id=agency_id),
                }
                for d in view.documents
            ],
        }
    )
    packet = SettlementStatement(type=PACKET_TYPE, timestamp=at, data=data)
    return RenderedPacket(key, PACKET_TYPE, int(str(st["revision"])), packet_bytes(packet))


async def queue_statement(
    conn: AsyncConnection, agency: AgencyConfig, view: StatementView, now: datetime
) -> None:
    """Queue the packet on the agency's channel (see the module docstring)."""
    packet = render_statement(agency.id, view, at=now)
    await queue_packets(conn, [(agency, outbox_key(view.statement["id"]), packet)], now=now)


async def statement_document_rows(
    conn: AsyncConnection, agency_id: str, statement_id: int
) -> list[tuple[int, str, str, str, bytes]]:
    """(document id, kind, file name, SHA-256, bytes) of an agency's statement's documents,
    XLSX first; the bytes are checked against their SHA-256 (SettlementError naming the
    statement). Another agency's statement has none."""
    d, s = DOCUMENTS.c, STATEMENTS.c
    rows = (
        await conn.execute(
            sa.select(d.id, d.kind, d.name, d.sha256, d.body)
            .join(STATEMENTS, s.id == d.statement_id)
            .where(d.statement_id == statement_id, s.agency_id == agency_id)
            .order_by(d.kind.desc())
        )
    ).all()
    out = []
    for row in rows:
        body = bytes(row.body)
        if hashlib.sha256(body).hexdigest() != row.sha256:
            raise SettlementError(
                f"statement {statement_id}: its {row.kind} document does not match its "
                "recorded SHA-256; it was not sent"
            )
        out.append((int(row.id), str(row.kind), str(row.name), str(row.sha256), body))
    return out


async def statement_documents(
    conn: AsyncConnection, agency_id: str, statement_id: int
) -> list[tuple[str, str, str, bytes]]:
    """(kind, file name, SHA-256, bytes) of an agency's statement's documents, XLSX first
    (``statement_document_rows`` without the ids)."""
    rows = await statement_document_rows(conn, agency_id, statement_id)
    return [(kind, name, sha, body) for _, kind, name, sha, body in rows]


__all__ = [
    "DOCUMENTS_ROUTE",
    "PACKET_TYPE",
    "outbox_key",
    "queue_statement",
    "render_statement",
    "statement_document_rows",
    "statement_documents",
]
