"""Verifying the evidence log, trusting nothing stored: each leaf hash is recomputed from its
body, each checkpoint root from those hashes, every checkpoint signature is checked against
the verifier keys, and the packet, inbound, mail, receipt and remote-file rows must still
match what their leaves attest (gateway.evidence.checks). Reads one snapshot, streamed."""

from collections import deque
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from gateway.errors import EvidenceError
from gateway.evidence.checks import ATTESTED, Problem, VerificationReport, check_body, check_rows
from gateway.evidence.merkle import CompactRange, leaf_hash
from gateway.evidence.signed_note import NoteVerifier, open_note, parse_checkpoint
from gateway.store.database import Database
from gateway.store.tables import Checkpoint, EvidenceLeaf

LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
CHECKPOINTS = Checkpoint.__table__  # type: ignore[attr-defined]
_VERIFY_BATCH = 500


async def verify_log(
    db: Database, origin: str, verifiers: Sequence[NoteVerifier]
) -> VerificationReport:
    """Recompute and check the whole log of ``origin``; every problem goes into the report,
    none is raised."""
    report = VerificationReport()
    async with db.snapshot() as conn:
        checkpoints = list(
            await conn.execute(
                sa.select(CHECKPOINTS).order_by(CHECKPOINTS.c.tree_size, CHECKPOINTS.c.id)
            )
        )
        for row in checkpoints:
            _check_note(row, origin, verifiers, report)
        due = deque(checkpoints)
        compact = CompactRange()
        _check_roots(due, compact, report)
        stmt = (
            sa.select(LEAVES.c.seq, LEAVES.c.kind, LEAVES.c.ref, LEAVES.c.body, LEAVES.c.leaf_hash)
            .order_by(LEAVES.c.seq)
            .execution_options(yield_per=_VERIFY_BATCH)
        )
        result = await conn.stream(stmt)
        async for batch in result.partitions(_VERIFY_BATCH):
            attested: list[tuple[int, dict[str, Any]]] = []
            for seq, kind, ref, body, stored_hash in batch:
                if isinstance(body, str):  # rewritten as TEXT behind our back
                    report.problems.append(
                        Problem("body", "the leaf body is stored as text, not bytes", seq)
                    )
                    body = body.encode()
                if seq != compact.size:
                    detail = f"expected leaf {compact.size}, found {seq}"
                    report.problems.append(Problem("seq_gap", detail, seq))
                computed = leaf_hash(body)
                if computed != stored_hash:
                    detail = "the stored leaf hash does not match the body"
                    report.problems.append(Problem("leaf_hash", detail, seq))
                compact.append(computed)
                document = check_body(seq, kind, ref, body, report)
                # The signed body says which row is attested, not the unsigned columns.
                if document is not None and document.get("kind") in ATTESTED:
                    attested.append((seq, document))
                if due and due[0].tree_size == compact.size:
                    _check_roots(due, compact, report)
            report.leaves_checked += len(batch)
            await check_rows(conn, attested, report)
        for row in due:
            detail = f"the checkpoint covers {row.tree_size} leaves, the log has {compact.size}"
            report.problems.append(Problem("truncated", detail, checkpoint_id=row.id))
    report.checkpoints_checked = len(checkpoints)
    report.root = compact.root()
    return report


def _check_note(
    row: sa.Row[Any], expected: str, verifiers: Sequence[NoteVerifier], report: VerificationReport
) -> None:
    try:
        text, _names = open_note(row.note, verifiers)
        origin, size, root_hash = parse_checkpoint(text)
    except EvidenceError as exc:
        report.problems.append(Problem("signature", str(exc), checkpoint_id=row.id))
        return
    if origin != expected:
        detail = f"the note is for origin {origin!r}, expected {expected!r}"
        report.problems.append(Problem("origin", detail, checkpoint_id=row.id))
    if size != row.tree_size:
        detail = f"the signed note says tree size {size}, the row says {row.tree_size}"
        report.problems.append(Problem("note_mismatch", detail, checkpoint_id=row.id))
    if root_hash != row.root_hash:
        detail = (
            f"the signed note says root {root_hash.hex()}, "
            f"the row says {bytes(row.root_hash).hex()}"
        )
        report.problems.append(Problem("note_mismatch", detail, checkpoint_id=row.id))


def _check_roots(
    due: "deque[sa.Row[Any]]", compact: CompactRange, report: VerificationReport
) -> None:
    """Check every checkpoint at the current tree size against the recomputed root."""
    while due and due[0].tree_size <= compact.size:
        row = due.popleft()
        computed = compact.root()
        if row.tree_size != compact.size or computed != row.root_hash:
            detail = (
                f"leaves 0..{compact.size - 1} hash to {computed.hex()}, "
                f"checkpoint of size {row.tree_size} signed {bytes(row.root_hash).hex()}"
            )
            report.problems.append(Problem("root_mismatch", detail, checkpoint_id=row.id))


__all__ = ["verify_log"]
