"""The lender's payment feed: money the lender actually received, for three-way matching.

Theory of operation
-------------------
The lender's bank or repayment system exports receipts as CSV (header row, any column order,
empty cells for absent values) or JSON Lines. Each line is one receipt:

* ``debtor``: the debtor paid the lender (into the repayment account). ``case_id`` or
  ``placement_id`` is required; ``agency_payment_ref`` names the agency's payment id when
  the debtor paid at the agency's instruction and the lender knows it.
* ``remittance``: an agency remitted what it collected in ``period_start..period_end``
  (net of commission or gross, per its contract). ``agency_id`` and the period are required.

``read_feed`` validates line by line and yields ``FeedLine`` or a ``RowError`` naming file,
line and field (never a value). ``import_feed`` hashes the file before parsing, records the
import with an evidence leaf, and stores the valid lines, resolving a case to the placement
that held it when the money arrived. Re-importing is idempotent: the same file is
recognised by its hash and changes nothing; a receipt id seen before with the same content
is a duplicate, with different content a line error.
"""

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Literal, Self

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import IntakeError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.intake.reader import Format, RowError, detect_format
from gateway.store.database import Database
from gateway.store.recon_tables import LenderPayment, PaymentFeed
from gateway.store.tables import Placement
from schemas.base import MAX_MINOR, CurrencyCode, Identifier, UtcDatetime

FEEDS = PaymentFeed.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
BATCH = 2_000


class FeedLine(BaseModel):
    """One receipt of the lender's payment feed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_id: Identifier = Field(description="The lender's receipt id, unique")
    kind: Literal["debtor", "remittance"]
    amount_minor: int = Field(gt=0, le=MAX_MINOR)
    currency: CurrencyCode
    received_at: UtcDatetime
    case_id: Identifier | None = None
    placement_id: Identifier | None = None
    agency_id: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]{1,31}$")
    agency_payment_ref: Identifier | None = None
    remittance_id: Identifier | None = None
    period_start: date | None = None
    period_end: date | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> Self:
        if self.kind == "debtor" and not (self.case_id or self.placement_id):
            raise ValueError("a debtor receipt needs case_id or placement_id")
        if self.kind == "remittance":
            if not self.agency_id:
                raise ValueError("a remittance needs agency_id")
            if self.period_start is None or self.period_end is None:
                raise ValueError("a remittance needs period_start and period_end")
            if self.period_start > self.period_end:
                raise ValueError("period_start is after period_end")
        return self

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


FIELDS: tuple[str, ...] = tuple(FeedLine.model_fields)
REQUIRED: tuple[str, ...] = tuple(n for n, f in FeedLine.model_fields.items() if f.is_required())


@dataclass(frozen=True, slots=True)
class ParsedLine:
    line: int
    receipt: FeedLine


def _error(line: int, source: str, exc: ValidationError) -> RowError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "-"
    msg = "required field is missing" if err["type"] == "missing" else err["msg"]
    if err["type"] == "extra_forbidden":
        msg = f"unknown field; expected only: {', '.join(FIELDS)}"
    return RowError(line, loc, msg.removeprefix("Value error, "), source)


def read_feed(text: Iterator[str], *, fmt: Format, source: str) -> Iterator[ParsedLine | RowError]:
    """Yield each receipt line as ParsedLine or RowError, in file order (see module doc)."""
    seen: dict[str, int] = {}

    def check(line: int, data: object) -> ParsedLine | RowError:
        if not isinstance(data, dict):
            return RowError(line, "-", f"expected an object, found {type(data).__name__}", source)
        try:
            receipt = FeedLine.model_validate(data)
        except ValidationError as exc:
            return _error(line, source, exc)
        first = seen.setdefault(receipt.payment_id, line)
        if first != line:
            return RowError(line, "payment_id", f"duplicate; first seen on line {first}", source)
        return ParsedLine(line, receipt)

    if fmt == "jsonl":
        for n, raw in enumerate(text, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield RowError(n, "-", f"not valid JSON ({exc.msg} at column {exc.colno})", source)
                continue
            yield check(n, data)
        return
    reader = csv.reader(text, strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield RowError(start, "-", f"malformed CSV: {exc}", source)
            continue
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            unknown = [c for c in header if c not in FIELDS]
            missing = [c for c in REQUIRED if c not in header]
            if unknown or missing or len(set(header)) != len(header):
                what = (
                    f"unknown column(s) {unknown}"
                    if unknown
                    else f"missing column(s) {missing}"
                    if missing
                    else "a column appears twice"
                )
                yield RowError(start, "-", f"{what}; columns: {', '.join(FIELDS)}", source, True)
                return
            continue
        if len(record) != len(header):
            yield RowError(
                start, "-", f"expected {len(header)} columns, found {len(record)}", source
            )
            continue
        yield check(start, {k: v.strip() for k, v in zip(header, record, strict=True) if v.strip()})
    if header is None and fmt == "csv":
        yield RowError(1, "-", "file is empty; expected a header row", source, True)


@dataclass(slots=True)
class FeedReport:
    source: str
    sha256: str
    feed_id: int | None = None
    already_imported: bool = False
    lines: int = 0
    imported: int = 0
    duplicates: int = 0
    unplaced: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "feed_id": self.feed_id,
            "already_imported": self.already_imported,
            "lines": self.lines,
            "imported": self.imported,
            "duplicates": self.duplicates,
            "unplaced": self.unplaced,
            "errors": [str(e) for e in self.errors],
        }


def _parse(path: Path, data: bytes, fmt: Format) -> tuple[list[ParsedLine], list[RowError]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IntakeError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
    parsed: list[ParsedLine] = []
    errors: list[RowError] = []
    for item in read_feed(iter(io.StringIO(text, newline="")), fmt=fmt, source=str(path)):
        if isinstance(item, RowError):
            if item.fatal:
                raise IntakeError(str(item))
            errors.append(item)
        else:
            parsed.append(item)
    return parsed, errors


async def import_feed(path: Path, *, db: Database, now: datetime) -> FeedReport:
    """Import one payment feed file (see module doc). Raises IntakeError when the file
    cannot be read at all; bad lines are reported and skipped."""
    fmt = detect_format(path)
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise IntakeError(f"{path}: cannot read the payment feed: {exc.strerror}") from None
    report = FeedReport(str(path), hashlib.sha256(data).hexdigest())
    parsed, report.errors = await asyncio.to_thread(_parse, path, data, fmt)
    report.lines = len(parsed) + len(report.errors)
    async with db.transaction() as conn:
        known = (
            await conn.execute(sa.select(FEEDS.c.id).where(FEEDS.c.sha256 == report.sha256))
        ).scalar()
        if known is not None:
            report.feed_id, report.already_imported = int(known), True
            report.errors = []
            return report
        report.feed_id = int(
            (
                await conn.execute(
                    FEEDS.insert().returning(FEEDS.c.id),
                    {
                        "source": str(path)[:500],
                        "sha256": report.sha256,
                        "format": fmt,
                        "lines": report.lines,
                        "imported": 0,
                        "duplicates": 0,
                        "errors": 0,
                        "imported_at": now,
                    },
                )
            ).scalar_one()
        )
        for start in range(0, len(parsed), BATCH):
            await _store(conn, parsed[start : start + BATCH], report, now)
        await conn.execute(
            FEEDS.update()
            .where(FEEDS.c.id == report.feed_id)
            .values(
                imported=report.imported,
                duplicates=report.duplicates,
                errors=len(report.errors),
            )
        )
        await append_leaves(
            conn,
            [
                LeafInput(
                    kind="payment_feed",
                    ref=f"feed:{report.feed_id}",
                    fields={
                        "feed_id": report.feed_id,
                        "sha256": report.sha256,
                        "lines": report.lines,
                        "imported": report.imported,
                    },
                )
            ],
            now=now,
        )
    return report


async def _store(
    conn: AsyncConnection, batch: Sequence[ParsedLine], report: FeedReport, now: datetime
) -> None:
    ids = [p.receipt.payment_id for p in batch]
    existing = {
        r.payment_id: r
        for r in (
            await conn.execute(
                sa.select(RECEIPTS.c.payment_id, RECEIPTS.c.line_sha256, RECEIPTS.c.feed_id)
                .add_columns(RECEIPTS.c.line_no)
                .where(RECEIPTS.c.payment_id.in_(ids))
            )
        ).all()
    }
    holders = await _holders(conn, {p.receipt.case_id for p in batch if p.receipt.case_id})
    named = await _placements(
        conn, {p.receipt.placement_id for p in batch if p.receipt.placement_id}
    )
    rows = []
    for p in batch:
        r = p.receipt
        digest = r.digest()
        problem = _placement_problem(r, named)
        if problem is not None:
            report.errors.append(RowError(p.line, problem[0], problem[1], report.source))
            continue
        before = existing.get(r.payment_id)
        if before is not None:
            if before.line_sha256 == digest:
                report.duplicates += 1
            else:
                report.errors.append(
                    RowError(
                        p.line,
                        "payment_id",
                        f"already imported with other content (feed {before.feed_id} line "
                        f"{before.line_no}); a receipt never changes, give a correction a new id",
                        report.source,
                    )
                )
            continue
        placement_id, agency_id, case_id = r.placement_id, r.agency_id, r.case_id
        if placement_id is not None and placement_id in named:
            # A receipt keyed by the placement is matched like one keyed by the case: the
            # agency holding it and its case come from the placement itself.
            case_id, agency_id = named[placement_id][0], agency_id or named[placement_id][1]
        if r.kind == "debtor" and placement_id is None and r.case_id is not None:
            placement_id, holder = _holder_at(holders.get(r.case_id, []), r.received_at)
            agency_id = agency_id or holder
        if r.kind == "debtor" and placement_id is None:
            report.unplaced += 1
        rows.append(
            {
                "payment_id": r.payment_id,
                "feed_id": report.feed_id,
                "line_no": p.line,
                "line_sha256": digest,
                "kind": r.kind,
                "case_id": case_id,
                "placement_id": placement_id,
                "agency_id": agency_id,
                "agency_payment_ref": r.agency_payment_ref,
                "remittance_id": r.remittance_id,
                "period_start": r.period_start,
                "period_end": r.period_end,
                "amount_minor": r.amount_minor,
                "currency": r.currency,
                "received_at": r.received_at,
                "created_at": now,
            }
        )
    if rows:
        await conn.execute(RECEIPTS.insert(), rows)
        report.imported += len(rows)


async def _holders(
    conn: AsyncConnection, case_ids: set[str]
) -> dict[str, list[tuple[datetime, str, str]]]:
    """Every placement of the cases: case id → [(placed_at, placement id, agency)]."""
    found: dict[str, list[tuple[datetime, str, str]]] = {}
    if not case_ids:
        return found
    P = PLACEMENTS.c
    rows = await conn.execute(
        sa.select(P.case_id, P.placed_at, P.id, P.agency_id).where(P.case_id.in_(sorted(case_ids)))
    )
    for case_id, placed_at, pid, agency in rows.all():
        found.setdefault(case_id, []).append((placed_at, pid, agency))
    return found


async def _placements(conn: AsyncConnection, ids: set[str]) -> dict[str, tuple[str, str]]:
    """The placements receipts name: placement id → (case id, agency)."""
    if not ids:
        return {}
    P = PLACEMENTS.c
    rows = await conn.execute(sa.select(P.id, P.case_id, P.agency_id).where(P.id.in_(sorted(ids))))
    return {pid: (case_id, agency) for pid, case_id, agency in rows.all()}


def _placement_problem(r: FeedLine, named: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """Why a receipt's placement cannot be taken as written: (field, reason), or None."""
    if r.placement_id is None:
        return None
    if r.placement_id not in named:
        return "placement_id", f"no placement {r.placement_id}"
    case_id, agency = named[r.placement_id]
    if r.case_id is not None and r.case_id != case_id:
        return "case_id", f"{r.case_id} is not the case of placement {r.placement_id} ({case_id})"
    if r.agency_id is not None and r.agency_id != agency:
        return "agency_id", f"placement {r.placement_id} is held by {agency}, not {r.agency_id}"
    return None


def _holder_at(
    placements: list[tuple[datetime, str, str]], at: datetime
) -> tuple[str | None, str | None]:
    """The placement that held the case at ``at``: the latest placed on or before it."""
    held = [p for p in placements if p[0] <= at]
    if not held:
        return None, None
    _placed, pid, agency = max(held)
    return pid, agency


__all__ = ["FIELDS", "FeedLine", "FeedReport", "ParsedLine", "import_feed", "read_feed"]
