"""Writing validated intake rows into ``cases``: one batch, one transaction.

Theory of operation: the plan is pure; the writer is its thin database shell. Each batch is
written in ONE transaction with batched Core statements:

1. fetch ``(id, content_mac, balance_minor, dpd, status)`` of the batch's existing cases;
2. insert the new ones (``status = "open"``) as plain driver rows in one ``executemany``
   (``bulk_insert``: SQLAlchemy's per-row parameter processing would cost more than the
   insert itself);
3. update the ones whose ``content_mac`` (a keyed hash of the whole validated row) differs,
   and leave the others untouched, so re-importing a file writes nothing;
4. hand the rows that may need a lifecycle step — new or changed rows that list holds or
   are no longer overdue, changed rows of held, closed or written-off cases — to
   ``gateway.cases.scrubs`` (holds follow the file; paid-off and cured cases are closed or
   recalled; overdue-again ones reopened), in the same transaction;
5. for changed balances, ask ``PlacementService.amend_balances`` to queue
   ``placement.amended`` packets in the same transaction (after the scrubs: a placement they
   recalled gets no amendment).

``content_mac`` leaves ``holds`` out when the row lists none, so files from before the
column existed hash as they always did.

Personal fields go only into the encrypted ``pii`` blob.
"""

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import BalanceChange, PlacementService
from gateway.cases.scrubs import (
    HOLD_BEARING_STATES,
    ScrubCounts,
    ScrubRow,
    apply_scrubs,
    is_overdue,
)
from gateway.clock import to_datetime
from gateway.config.settings import AllocationSection
from gateway.intake.classification import bucket_for
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database
from gateway.store.driver_sql import bulk_insert, driver_processor
from gateway.store.tables import Case
from schemas.account import IntakeAccount

CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c

_LOOKUP_CHUNK = 500  # ids per IN (...) lookup; well under every SQLite parameter limit

_UPDATE = CASES.update().where(C.id == sa.bindparam("b_id"))
INSERT_COLUMNS: tuple[str, ...] = (
    "id",
    "debtor_id",
    "pii",
    "content_mac",
    "region",
    "product",
    "currency",
    "principal_minor",
    "balance_minor",
    "dpd",
    "credit_grade",
    "due_date",
    "bucket",
)
"""The columns of a new case that differ per row, in ``_Plan.inserts`` order."""


@dataclass(frozen=True, slots=True)
class ValidRow:
    """A validated account and its ``content_mac``."""

    account: IntakeAccount
    mac: str


@dataclass(frozen=True, slots=True)
class WriteCounts:
    """What writing one batch did to ``cases`` and how many amendments it queued."""

    inserted: int
    updated: int
    unchanged: int
    amended: int
    scrubs: ScrubCounts = field(default_factory=ScrubCounts)
    """Holds added and released, cases closed, reopened and recalled."""


@dataclass(slots=True)
class _Plan:
    inserts: list[tuple[object, ...]] = field(default_factory=list)
    """Driver-ready rows of ``INSERT_COLUMNS``."""
    updates: list[dict[str, object]] = field(default_factory=list)
    changes: list[BalanceChange] = field(default_factory=list)
    scrubs: list[ScrubRow] = field(default_factory=list)
    unchanged: int = 0


_WITHOUT_HOLDS: set[str] = {"holds"}


def content_mac(account: IntakeAccount, pii: PiiKeyRing) -> str:
    """Keyed hash of the whole validated row: equal iff the lender's data is unchanged.

    The hashed bytes are the model's compact JSON in schema field order (pydantic's Rust
    serialiser, several times faster than a sorted ``json.dumps``); changing the schema's
    field order would make every row look changed once.
    """
    exclude = None if account.holds else _WITHOUT_HOLDS
    return pii.mac(account.__pydantic_serializer__.to_json(account, exclude=exclude))


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
            rules=allocation.buckets,
            grade=account.credit_grade,
            product=account.product,
        ),
        "updated_at": now,
    }


def _plan(
    batch: Sequence[ValidRow],
    existing: Mapping[str, tuple[str, int, int, str]],
    *,
    pii: PiiKeyRing,
    allocation: AllocationSection,
    now: datetime,
    day: Callable[[date], object],
) -> _Plan:
    """What to write for ``batch``; ``day`` turns a date into the driver's value."""
    plan = _Plan()
    for item in batch:
        account = item.account
        known = existing.get(account.account_id)
        if known is not None and known[0] == item.mac:
            plan.unchanged += 1
            continue
        columns = case_columns(account, item.mac, pii=pii, allocation=allocation, now=now)
        overdue = is_overdue(account.balance_minor, account.dpd)
        if known is None:
            columns["id"] = account.account_id
            columns["due_date"] = day(account.due_date)
            plan.inserts.append(tuple(columns[name] for name in INSERT_COLUMNS))
            if account.holds or not overdue:
                plan.scrubs.append(_scrub(account, was_overdue=True, new=True))
            continue
        _mac, balance, dpd, status = known
        plan.updates.append({"b_id": account.account_id, **columns})
        if account.holds or not overdue or status in HOLD_BEARING_STATES:
            plan.scrubs.append(_scrub(account, was_overdue=is_overdue(balance, dpd)))
        if balance != account.balance_minor:
            plan.changes.append(BalanceChange(account.account_id, balance, account.balance_minor))
    return plan


def _scrub(account: IntakeAccount, *, was_overdue: bool, new: bool = False) -> ScrubRow:
    return ScrubRow(
        account.account_id,
        account.holds,
        account.balance_minor,
        account.dpd,
        was_overdue=was_overdue,
        new=new,
    )


@dataclass(frozen=True, slots=True)
class CaseWriter:
    """Writes batches of valid rows, one transaction each."""

    db: Database
    pii: PiiKeyRing
    placements: PlacementService
    allocation: AllocationSection
    clock: Clock

    async def write(self, batch: Sequence[ValidRow]) -> WriteCounts:
        now = to_datetime(self.clock.now())
        async with self.db.transaction() as conn:
            existing = await _existing(conn, [v.account.account_id for v in batch])
            day = driver_processor(C.due_date, conn.dialect) or _as_is
            plan = await asyncio.to_thread(
                _plan, batch, existing, pii=self.pii, allocation=self.allocation, now=now, day=day
            )
            await bulk_insert(
                conn,
                CASES,
                INSERT_COLUMNS,
                plan.inserts,
                constants={"status": "open", "created_at": now, "updated_at": now},
            )
            if plan.updates:
                await conn.execute(_UPDATE, plan.updates)
            scrubs = await apply_scrubs(conn, plan.scrubs, placements=self.placements, now=now)
            amended = await self.placements.amend_balances(conn, plan.changes, now=now)
        return WriteCounts(len(plan.inserts), len(plan.updates), plan.unchanged, amended, scrubs)


def _as_is(value: date) -> object:
    return value


async def _existing(
    conn: AsyncConnection, ids: Sequence[str]
) -> dict[str, tuple[str, int, int, str]]:
    """case id → (content_mac, balance_minor, dpd, status) of the cases that exist."""
    found: dict[str, tuple[str, int, int, str]] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        result = await conn.execute(
            sa.select(C.id, C.content_mac, C.balance_minor, C.dpd, C.status).where(C.id.in_(chunk))
        )
        for case_id, mac, balance, dpd, status in result:
            found[case_id] = (mac, balance, dpd, status)
    return found


__all__ = ["CaseWriter", "ValidRow", "WriteCounts", "case_columns", "content_mac"]
