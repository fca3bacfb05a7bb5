"""Intake: the lender's overdue-account file → one ``cases`` row per account.

Theory of operation: the file is streamed (never loaded whole) through
``gateway.intake.reader`` in batches of ``batch_size`` rows. Parsing, validation, hashing and
encryption run in a worker thread; ``gateway.intake.writer`` writes each batch in ONE
transaction (insert new cases, update changed ones, apply the file's holds and close, recall
or reopen cases paid off, cured or overdue again (gateway.cases.scrubs), queue amendments for
changed balances), so re-importing a file writes nothing. At the end one ``intake`` evidence
leaf records the file's SHA-256 and the counts, and the run's confirmation batch (opened before
the first write, so every case written points at it) is closed with the file's figures for a
second person to approve (gateway.claims). With the lender's document store, the store files
of the file's cases are hashed into ``case_documents`` and the evidence log after the
accounts are written (gateway.documents.hashing; unchanged files write nothing). In strict
mode a first streaming pass validates the whole file and nothing is written unless every row
is valid.
"""

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from gateway.allocation.placements import PlacementService
from gateway.claims.batches import SYSTEM, BatchRecord, close_batch, count_gone, open_batch
from gateway.claims.tally import Tally
from gateway.clock import to_datetime
from gateway.config.settings import AllocationSection
from gateway.documents.hashing import hash_store_documents
from gateway.documents.store import DocumentStore
from gateway.errors import IntakeError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.intake.reader import Format, ParsedRow, RowError, detect_format, read_accounts
from gateway.intake.writer import CaseWriter, ValidRow, WriteCounts, content_mac
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database

log = logging.getLogger(__name__)

MAX_KEPT_ERRORS = 1000
STRICT_ERRORS_SHOWN = 20


@dataclass(slots=True)
class IntakeReport:
    """What one import did. ``rows`` counts every data row read, valid or not."""

    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    amended: int = 0
    holds_added: int = 0
    holds_released: int = 0
    closed: int = 0
    """Cases closed (or their placement recalled) because the account was paid off or cured."""
    reopened: int = 0
    recalled: int = 0
    """Placements recalled by a new hold or a paid-off or cured account."""
    rejected: int = 0
    documents_recorded: int = 0
    """Store documents hashed for the first time, or new versions of changed ones."""
    documents_changed: int = 0
    documents_refused: int = 0
    """Store files refused (symbolic links, unreadable), each logged with its case."""
    errors: list[RowError] = field(default_factory=list)
    sha256: str = ""
    claim_batch: BatchRecord | None = None
    """The run's confirmation batch (gateway.claims): its figures and review status."""
    elapsed_seconds: float = 0.0

    def reject(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)

    def add(self, counts: WriteCounts) -> None:
        """Add what one written batch did."""
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.unchanged += counts.unchanged
        self.amended += counts.amended
        self.holds_added += counts.scrubs.held
        self.holds_released += counts.scrubs.released
        self.closed += counts.scrubs.closed
        self.reopened += counts.scrubs.reopened
        self.recalled += counts.scrubs.recalled


@dataclass(slots=True)
class _Batch:
    valid: list[ValidRow]
    errors: list[RowError]
    bytes_read: int = 0


class _MeteredFile:
    """Lines of a binary file, hashed and counted as they are read."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()
        self.bytes_read = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self._fh:
            self.digest.update(line)
            self.bytes_read += len(line)
            yield line


def _next_batch(
    rows: Iterator[ParsedRow | RowError], metered: _MeteredFile, size: int, pii: PiiKeyRing
) -> _Batch:
    """Read up to ``size`` data rows (valid or not); runs in a worker thread."""
    batch = _Batch([], [])
    for row in rows:
        if isinstance(row, RowError):
            if row.fatal:
                raise IntakeError(f"{row}; nothing was imported")
            batch.errors.append(row)
        else:
            batch.valid.append(ValidRow(row.account, content_mac(row.account, pii)))
        if len(batch.valid) + len(batch.errors) >= size:
            break
    batch.bytes_read = metered.bytes_read
    return batch


def _open(path: Path) -> tuple[BinaryIO, int]:
    """Open the file for reading and return it with its size, or raise IntakeError."""
    try:
        fh = path.open("rb")
        return fh, os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise IntakeError(f"{path}: cannot read the file: {exc.strerror}") from None


def _validate_all(path: Path, fmt: Format) -> tuple[list[RowError], int, str]:
    """Strict mode's first pass: (first errors, total errors, sha256). Runs in a thread."""
    shown: list[RowError] = []
    total = 0
    fh, _size = _open(path)
    with fh:
        metered = _MeteredFile(fh)
        for row in read_accounts(metered, fmt=fmt, source=str(path)):
            if isinstance(row, RowError):
                if row.fatal:
                    raise IntakeError(f"{row}; nothing was imported")
                total += 1
                if len(shown) < STRICT_ERRORS_SHOWN:
                    shown.append(row)
    return shown, total, metered.digest.hexdigest()


async def _record(db: Database, clock: Clock, path: Path, report: IntakeReport) -> None:
    """Append the import's closing ``intake`` evidence leaf."""
    fields = {
        "file": path.name,
        "sha256": report.sha256,
        "rows": report.rows,
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "holds_added": report.holds_added,
        "holds_released": report.holds_released,
        "closed": report.closed,
        "reopened": report.reopened,
        "recalled": report.recalled,
    }
    async with db.transaction() as conn:
        await append_leaves(
            conn,
            [LeafInput(kind="intake", ref=f"intake:{report.sha256}", fields=fields)],
            now=to_datetime(clock.now()),
        )


async def _stream(
    path: Path,
    fmt: Format,
    writer: CaseWriter,
    report: IntakeReport,
    *,
    strict: bool,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
    listed: set[str] | None = None,
) -> None:
    fh, total_bytes = await asyncio.to_thread(_open, path)
    metered = _MeteredFile(fh)
    rows = read_accounts(metered, fmt=fmt, source=str(path))

    def read_ahead() -> "asyncio.Future[_Batch]":
        return asyncio.ensure_future(
            asyncio.to_thread(_next_batch, rows, metered, batch_size, writer.pii)
        )

    # The next batch is parsed in a thread while this one is written: SQLite does its
    # work (and fsync) without the GIL, so the two overlap.
    pending = read_ahead()
    try:
        reported = -1
        while True:
            # Shielded: cancelling the import must not orphan the thread that reads the file.
            batch = await asyncio.shield(pending)
            if not batch.valid and not batch.errors:
                break
            pending = read_ahead()
            if strict and batch.errors:
                raise IntakeError(
                    f"{path}: the file changed while it was being imported "
                    f"({batch.errors[0]}); earlier batches were written; import it again"
                )
            for error in batch.errors:
                report.reject(error)
            if listed is not None:
                listed.update(v.account.account_id for v in batch.valid)
            report.rows += len(batch.valid) + len(batch.errors)
            if batch.valid:
                report.add(await writer.write(batch.valid))
            if progress is not None:
                progress(batch.bytes_read, total_bytes)
                reported = batch.bytes_read
        if progress is not None and reported != metered.bytes_read:
            progress(metered.bytes_read, total_bytes)
        report.sha256 = metered.digest.hexdigest()
    finally:
        # Never close the file under the reading thread; a read-ahead error after a failed
        # write is superseded by that failure.
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()
        fh.close()


async def import_file(
    path: Path,
    *,
    db: Database,
    pii: PiiKeyRing,
    placements: PlacementService,
    allocation: AllocationSection,
    clock: Clock,
    strict: bool = False,
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    confirmation: Literal["four_eyes", "off"] = "four_eyes",
    maker: str = SYSTEM,
    documents: DocumentStore | None = None,
) -> IntakeReport:
    """Import the lender's CSV or JSON Lines file of overdue accounts.

    Valid rows are inserted or updated in batches of ``batch_size``, one transaction each;
    invalid rows are reported (at most 1000 kept, all counted) and skipped. With
    ``strict=True`` the whole file is validated first and any invalid row raises IntakeError
    (the first 20 errors and the total) before anything is written. A wrong CSV header, an
    unknown extension or an unreadable file always raise IntakeError before any write.
    ``progress(bytes_done, bytes_total)`` is called after each batch of the import pass.
    With ``documents`` (the lender's document store) the store files of the file's cases
    are hashed after the accounts are written (gateway.documents.hashing).
    Returns the counts, the kept errors, the file's SHA-256 and the elapsed time.

    Every run records a confirmation batch (gateway.claims.batches) made by ``maker``, and
    the cases it creates or changes point at it: with ``confirmation="four_eyes"`` (the
    default, as in ``[claims]``) none of them is allocated until a second person approves
    it; with ``"off"`` it is approved at once by ``system``.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    fmt = detect_format(path)
    validated_sha: str | None = None
    report = IntakeReport()
    tally = Tally()
    listed: set[str] = set()
    if strict:
        shown, total, validated_sha = await asyncio.to_thread(_validate_all, path, fmt)
        if total:
            listing = "\n".join(f"  {e}" for e in shown)
            more = f"\n  ... and {total - len(shown)} more" if total > len(shown) else ""
            raise IntakeError(
                f"{path}: {total} invalid row{'s' if total > 1 else ''}; nothing was "
                f"imported (strict mode). Fix them and import again:\n{listing}{more}"
            )
    batch_id = await open_batch(db, file_name=path.name, maker=maker, now=to_datetime(clock.now()))
    writer = CaseWriter(db, pii, placements, allocation, clock, batch_id=batch_id, tally=tally)
    await _stream(
        path,
        fmt,
        writer,
        report,
        strict=strict,
        batch_size=batch_size,
        progress=progress,
        listed=listed,
    )
    if validated_sha is not None and validated_sha != report.sha256:
        raise IntakeError(
            f"{path}: the file changed between validation and import; import it again"
        )
    if documents is not None and listed:
        counts = await hash_store_documents(db, documents, listed, now=to_datetime(clock.now()))
        report.documents_recorded = counts.recorded + counts.changed
        report.documents_changed = counts.changed
        report.documents_refused = len(counts.refused)
    gone = await count_gone(db, listed)
    listed.clear()
    tally.note_gone(*gone)
    await _record(db, clock, path, report)
    report.claim_batch = await close_batch(
        db,
        batch_id,
        file_name=path.name,
        sha256=report.sha256,
        rows=report.rows,
        tally=tally,
        maker=maker,
        confirmation=confirmation,
        now=to_datetime(clock.now()),
    )
    report.elapsed_seconds = time.perf_counter() - started
    log.info(
        "intake %s: %d rows (%d inserted, %d updated, %d unchanged, %d amended, "
        "%d rejected; %d holds added, %d released, %d closed, %d reopened, %d recalled) "
        "in %.1f s",
        path.name,
        report.rows,
        report.inserted,
        report.updated,
        report.unchanged,
        report.amended,
        report.rejected,
        report.holds_added,
        report.holds_released,
        report.closed,
        report.reopened,
        report.recalled,
        report.elapsed_seconds,
    )
    return report


__all__ = ["MAX_KEPT_ERRORS", "IntakeReport", "import_file"]
