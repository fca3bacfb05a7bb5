"""Checks of the evidence log's leaves and of the rows they attest (used by
``gateway.evidence.log.EvidenceLog.verify``).

A leaf body must be a JSON object whose ``kind`` and ``ref`` are the leaf's columns. Leaves
of the kinds in ``ATTESTED`` name a row: a packet, inbound message or sent mail must still
hash to the leaf's ``sha256``; a delivery receipt or an uploaded remote file must still hold
the leaf's values verbatim. Every failure is a ``Problem`` in the ``VerificationReport``.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.dispatch.outbox import open_payload
from gateway.errors import EvidenceError, GatewayError
from gateway.store.mail_tables import MailMessage
from gateway.store.tables import DeliveryAttempt, InboundMessage, OutboxItem
from gateway.store.transfer_tables import RemoteFile

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
MAIL = MailMessage.__table__  # type: ignore[attr-defined]
REMOTE_FILES = RemoteFile.__table__  # type: ignore[attr-defined]

RECEIPT_COLUMNS = ("outcome", "http_status", "response_sha256", "request_timestamp")
REMOTE_FILE_COLUMNS = (
    "remote_path",
    "size",
    "sha256",
    "plaintext_sha256",
    "record_count",
    "recipient_fpr",
)
_REPORT_LINES = 50
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Problem:
    """One way the log or an attested row fails to verify, and where.

    Codes: ``seq_gap``, ``leaf_hash``, ``body`` (unparseable, or its kind/ref differ from the
    columns), ``root_mismatch``, ``truncated`` (a checkpoint covers leaves that are gone),
    ``signature``, ``origin``, ``note_mismatch`` (the signed note differs from its row),
    ``row_missing`` and ``row_mismatch`` (an attested packet, inbound, mail, receipt or
    remote file row).
    """

    code: str
    detail: str
    seq: int | None = None
    checkpoint_id: int | None = None
    row: str | None = None

    def __str__(self) -> str:
        where = [
            f"leaf {self.seq}" if self.seq is not None else "",
            f"checkpoint {self.checkpoint_id}" if self.checkpoint_id is not None else "",
            self.row or "",
        ]
        place = ", ".join(part for part in where if part)
        return f"{self.code} ({place}): {self.detail}" if place else f"{self.code}: {self.detail}"


@dataclass
class VerificationReport:
    """What ``EvidenceLog.verify`` checked and every problem it found."""

    leaves_checked: int = 0
    checkpoints_checked: int = 0
    rows_checked: int = 0
    root: bytes = b""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Fail closed: raise EvidenceError listing every problem."""
        if self.problems:
            lines = [f"  {problem}" for problem in self.problems[:_REPORT_LINES]]
            if len(self.problems) > _REPORT_LINES:
                lines.append(f"  ... and {len(self.problems) - _REPORT_LINES} more")
            summary = "\n".join(lines)
            raise EvidenceError(f"the evidence log does not verify:\n{summary}")


def check_body(
    seq: int, kind: str, ref: str, body: bytes, report: VerificationReport
) -> dict[str, Any] | None:
    try:
        document = _DECODER.decode(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        report.problems.append(Problem("body", "the leaf body is not JSON", seq))
        return None
    if not isinstance(document, dict):
        report.problems.append(Problem("body", "the leaf body is not a JSON object", seq))
        return None
    if document.get("kind") != kind or document.get("ref") != ref:
        claimed = f"{document.get('kind')}/{document.get('ref')}"
        detail = f"the columns say {kind}/{ref}, the body says {claimed}"
        report.problems.append(Problem("body", detail, seq))
    return document


# kind -> (table, the leaf field naming the row id or None when the ref ``kind:id`` names
# it, the columns the leaf attests). A packet, inbound or mail leaf attests the SHA-256 of
# one column; a receipt or remote file attests its columns verbatim.
ATTESTED: dict[str, tuple[sa.Table, str | None, tuple[str, ...]]] = {
    "packet": (
        OUTBOX,
        "outbox_id",
        ("payload", "dedupe_key", "payload_sha256", "payload_purged_at"),
    ),
    "inbound": (INBOUND, "inbound_id", ("body",)),
    "mail": (MAIL, "mail_id", ("body",)),
    "receipt": (ATTEMPTS, "attempt_id", RECEIPT_COLUMNS),
    "remote_file": (REMOTE_FILES, None, REMOTE_FILE_COLUMNS),
}
_VERBATIM = frozenset({"receipt", "remote_file"})


async def check_rows(
    conn: AsyncConnection, attested: list[tuple[int, dict[str, Any]]], report: VerificationReport
) -> None:
    """Check a batch of leaves against the rows they attest, one query per table."""
    for kind, (table, id_field, columns) in ATTESTED.items():
        wanted: list[tuple[int, int, dict[str, Any]]] = []
        for seq, doc in attested:
            if doc.get("kind") != kind:
                continue
            row_id = doc.get(id_field) if id_field else _ref_id(doc.get("ref"))
            if type(row_id) is not int:
                what = id_field or f"{kind}:<id> ref"
                report.problems.append(Problem("body", f"the leaf has no integer {what}", seq))
                continue
            wanted.append((seq, row_id, doc))
        if not wanted:
            continue
        query = sa.select(table.c.id, *(table.c[name] for name in columns)).where(
            table.c.id.in_({row_id for _seq, row_id, _doc in wanted})
        )
        rows = {row.id: row._mapping for row in await conn.execute(query)}
        for seq, row_id, doc in wanted:
            where = f"{table.name} {row_id}"
            row = rows.get(row_id)
            if row is None:
                detail = "the attested row is gone"
                report.problems.append(Problem("row_missing", detail, seq, row=where))
                continue
            report.rows_checked += 1
            fields = _opened_packet(conn, row) if kind == "packet" else dict(row)
            for detail in _differences(kind, columns, fields, doc):
                report.problems.append(Problem("row_mismatch", detail, seq, row=where))


def _differences(
    kind: str, columns: tuple[str, ...], row: Mapping[str, Any], doc: Mapping[str, Any]
) -> list[str]:
    if kind in _VERBATIM:
        return [
            f"{name} is {row[name]!r}, the leaf attests {doc.get(name)!r}"
            for name in columns
            if row[name] != doc.get(name)
        ]
    column = columns[0]
    if kind == "packet" and not row[column] and row["payload_purged_at"] is not None:
        # Purged after its retention: the row keeps the hash of the bytes that were sent.
        actual = str(row["payload_sha256"])
        column = "payload_sha256 (bytes purged)"
    else:
        actual = hashlib.sha256(row[column]).hexdigest()
    if actual == doc.get("sha256"):
        return []
    return [f"{column} sha256 is {actual}, the leaf attests {doc.get('sha256')}"]


def _opened_packet(conn: AsyncConnection, row: sa.RowMapping) -> dict[str, Any]:
    """The outbox row with its payload opened (sealed at rest; empty once purged). Sealed
    bytes that do not open (altered, or moved to another packet) stay as they are, so their
    hash differs from the leaf's."""
    try:
        return {**row, "payload": open_payload(conn, row["dedupe_key"], row["payload"]) or b""}
    except GatewayError:
        return dict(row)


def _ref_id(ref: object) -> int | None:
    _, _, tail = str(ref).partition(":")
    return int(tail) if tail.isdigit() else None


__all__ = [
    "ATTESTED",
    "RECEIPT_COLUMNS",
    "Problem",
    "VerificationReport",
    "check_body",
    "check_rows",
]
