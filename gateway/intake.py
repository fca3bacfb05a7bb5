"""Intake: the lender's overdue-account file → one ``cases`` row per account.

Theory of operation: the file is streamed (never loaded whole) through
``gateway.intake_reader`` in batches of ``batch_size`` rows. Parsing, validation, hashing and
encryption run in a worker thread; each batch is written in ONE transaction with batched Core
statements:

1. fetch ``(id, content_mac, balance_minor)`` of the batch's existing cases;
2. insert the new ones (``status = "open"``);
3. update the ones whose ``content_mac`` (a keyed hash of the whole validated row) differs,
   and leave the others untouched, so re-importing a file writes nothing;
4. for changed balances, ask ``PlacementService.amend_balances`` to queue
   ``placement.amended`` packets in the same transaction.

Personal fields go only into the encrypted ``pii`` blob. At the end one ``intake`` evidence
leaf records the file's SHA-256 and the counts. In strict mode a first streaming pass
validates the whole file and nothing is written unless every row is valid.
"""

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.classification import bucket_for
from gateway.clock import to_datetime
from gateway.errors import IntakeError
from gateway.evidence import LeafInput, append_leaves
from gateway.intake_reader import Format, ParsedRow, RowError, detect_format, read_accounts
from gateway.pii import PiiKeyRing
from gateway.placements import BalanceChange, PlacementService
from gateway.ports import Clock
from gateway.settings import AllocationSection
from gateway.store.database import Database
from gateway.store.tables import Case
from schemas.account import IntakeAccount

log = logging.getLogger(__name__)

CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c

MAX_KEPT_ERRORS = 1000
STRICT_ERRORS_SHOWN = 20
_LOOKUP_CHUNK = 500  # ids per IN (...) lookup; well under every SQLite parameter limit

_UPDATE = CASES.update().where(C.id == sa.bindparam("b_id"))


@dataclass(slots=True)
class IntakeReport:
    """What one import did. ``rows`` counts every data row read, valid or not."""

    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    amended: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    sha256: str = ""
    elapsed_seconds: float = 0.0

    def reject(self, error: RowError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)


@dataclass(frozen=True, slots=True)
class _Valid:
    account: IntakeAccount
    mac: str


@dataclass(slots=True)
class _Batch:
    valid: list[_Valid]
    errors: list[RowError]
    bytes_read: int = 0


@dataclass(slots=True)
class _Plan:
    inserts: list[dict[str, object]] = field(default_factory=list)
    updates: list[dict[str, object]] = field(default_factory=list)
    changes: list[BalanceChange] = field(default_factory=list)
    unchanged: int = 0


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


def content_mac(account: IntakeAccount, pii: PiiKeyRing) -> str:
    """Keyed hash of the whole validated row: equal iff the lender's data is unchanged.

    The hashed bytes are the model's compact JSON in schema field order (pydantic's Rust
    serialiser, several times faster than a sorted ``json.dumps``); changing the schema's
    field order would make every row look changed once.
    """
    return pii.mac(account.__pydantic_serializer__.to_json(account))


def case_columns(
    account: IntakeAccount,
    mac: str,
    *,
    pii: PiiKeyRing,
    allocation: AllocationSection,
    now: datetime,
) -> dict[str, object]:
    """The ``cases`` columns an intake row sets (all but id, status and created_at)."""
    record = {
        "name": account.name,
        "national_id": account.national_id,
        "phones": list(account.phones),
        "address": account.address,
    }
    return {
        "debtor_id": account.debtor_id,
        "pii": pii.encrypt(record, bound_to=account.account_id),
        "content_mac": mac,
        "region": account.region,
        "product": account.product,
        "currency": account.currency,
        "principal_minor": account.principal_minor,
        "balance_minor": account.balance_minor,
        "dpd": account.dpd,
        "credit_grade": account.credit_grade,
        "due_date": account.due_date,
        "bucket": bucket_for(
            account.dpd,
            account.balance_minor,
            legal_min_dpd=allocation.legal_min_dpd,
            legal_min_balance_minor=allocation.legal_min_balance_minor,
        ),
        "updated_at": now,
    }


def _plan(
    batch: Sequence[_Valid],
    existing: Mapping[str, tuple[str, int]],
    *,
    pii: PiiKeyRing,
    allocation: AllocationSection,
    now: datetime,
) -> _Plan:
    plan = _Plan()
    for item in batch:
        account = item.account
        known = existing.get(account.account_id)
        if known is not None and known[0] == item.mac:
            plan.unchanged += 1
            continue
        columns = case_columns(account, item.mac, pii=pii, allocation=allocation, now=now)
        if known is None:
            plan.inserts.append(
                {"id": account.account_id, "status": "open", "created_at": now, **columns}
            )
            continue
        plan.updates.append({"b_id": account.account_id, **columns})
        if known[1] != account.balance_minor:
            plan.changes.append(BalanceChange(account.account_id, known[1], account.balance_minor))
    return plan


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
            batch.valid.append(_Valid(row.account, content_mac(row.account, pii)))
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


@dataclass(frozen=True, slots=True)
class _Writer:
    """Writes batches of valid rows, one transaction each, and the closing evidence leaf."""

    db: Database
    pii: PiiKeyRing
    placements: PlacementService
    allocation: AllocationSection
    clock: Clock

    async def write(self, batch: Sequence[_Valid], report: IntakeReport) -> None:
        now = to_datetime(self.clock.now())
        async with self.db.transaction() as conn:
            existing = await _existing(conn, [v.account.account_id for v in batch])
            plan = await asyncio.to_thread(
                _plan, batch, existing, pii=self.pii, allocation=self.allocation, now=now
            )
            if plan.inserts:
                await conn.execute(CASES.insert(), plan.inserts)
            if plan.updates:
                await conn.execute(_UPDATE, plan.updates)
            amended = await self.placements.amend_balances(conn, plan.changes, now=now)
        report.inserted += len(plan.inserts)
        report.updated += len(plan.updates)
        report.unchanged += plan.unchanged
        report.amended += amended

    async def record(self, path: Path, report: IntakeReport) -> None:
        fields = {
            "file": path.name,
            "sha256": report.sha256,
            "rows": report.rows,
            "inserted": report.inserted,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "rejected": report.rejected,
        }
        async with self.db.transaction() as conn:
            await append_leaves(
                conn,
                [LeafInput(kind="intake", ref=f"intake:{report.sha256}", fields=fields)],
                now=to_datetime(self.clock.now()),
            )


async def _existing(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        result = await conn.execute(
            sa.select(C.id, C.content_mac, C.balance_minor).where(C.id.in_(chunk))
        )
        for case_id, mac, balance in result:
            found[case_id] = (mac, balance)
    return found


async def _stream(
    path: Path,
    fmt: Format,
    writer: _Writer,
    report: IntakeReport,
    *,
    strict: bool,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
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
            report.rows += len(batch.valid) + len(batch.errors)
            if batch.valid:
                await writer.write(batch.valid, report)
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
) -> IntakeReport:
    """Import the lender's CSV or JSON Lines file of overdue accounts.

    Valid rows are inserted or updated in batches of ``batch_size``, one transaction each;
    invalid rows are reported (at most 1000 kept, all counted) and skipped. With
    ``strict=True`` the whole file is validated first and any invalid row raises IntakeError
    (the first 20 errors and the total) before anything is written. A wrong CSV header, an
    unknown extension or an unreadable file always raise IntakeError before any write.
    ``progress(bytes_done, bytes_total)`` is called after each batch of the import pass.
    Returns the counts, the kept errors, the file's SHA-256 and the elapsed time.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.perf_counter()
    fmt = detect_format(path)
    validated_sha: str | None = None
    report = IntakeReport()
    writer = _Writer(db, pii, placements, allocation, clock)
    if strict:
        shown, total, validated_sha = await asyncio.to_thread(_validate_all, path, fmt)
        if total:
            listing = "\n".join(f"  {e}" for e in shown)
            more = f"\n  ... and {total - len(shown)} more" if total > len(shown) else ""
            raise IntakeError(
                f"{path}: {total} invalid row{'s' if total > 1 else ''}; nothing was "
                f"imported (strict mode). Fix them and import again:\n{listing}{more}"
            )
    await _stream(
        path, fmt, writer, report, strict=strict, batch_size=batch_size, progress=progress
    )
    if validated_sha is not None and validated_sha != report.sha256:
        raise IntakeError(
            f"{path}: the file changed between validation and import; import it again"
        )
    await writer.record(path, report)
    report.elapsed_seconds = time.perf_counter() - started
    log.info(
        "intake %s: %d rows (%d inserted, %d updated, %d unchanged, %d amended, "
        "%d rejected) in %.1f s",
        path.name,
        report.rows,
        report.inserted,
        report.updated,
        report.unchanged,
        report.amended,
        report.rejected,
        report.elapsed_seconds,
    )
    return report


__all__ = [
    "MAX_KEPT_ERRORS",
    "IntakeReport",
    "case_columns",
    "content_mac",
    "import_file",
]
