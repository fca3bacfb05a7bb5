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

``content_mac`` leaves ``holds`` and the later optional columns (the balance breakdown,
contract number, disbursement date, rate) out when the row does not give them, so files from
before those columns existed hash as they always did.

Claim confirmation: with a ``batch_id`` every case the batch inserts or changes points at it
(``claim_batch_id``), and so does an unchanged case whose own batch was never approved (a
rejected batch, or the run of a failed import), so a new file's approval covers every case it
lists that is not yet confirmed. ``tally`` counts each valid row, each new case and each
balance change for the batch's figures (gateway.claims.tally).

Personal fields go only into the encrypted ``pii`` blob. ``debtor_key`` (the keyed hash the
console finds a debtor by, gateway.privacy.debtor_keys) is written with every row.
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
from gateway.claims.states import ALLOCATABLE_BATCH_STATES
from gateway.claims.tally import Tally
from gateway.clock import to_datetime
from gateway.config.settings import AllocationSection
from gateway.intake.classification import bucket_for
from gateway.ports import Clock
from gateway.privacy.pii import PiiKeyRing
from gateway.store.claim_tables import ClaimBatch
from gateway.store.database import Database
from gateway.store.driver_sql import bulk_insert, driver_processor
from gateway.store.tables import Case
from schemas.account import IntakeAccount

CASES = Case.__table__  # type: ignore[attr-defined]
C = CASES.c
BATCHES = ClaimBatch.__table__  # type: ignore[attr-defined]
B = BATCHES.c

_LOOKUP_CHUNK = 500  # ids per IN (...) lookup; well under every SQLite parameter limit

_UPDATE = CASES.update().where(C.id == sa.bindparam("b_id"))
INSERT_COLUMNS: tuple[str, ...] = (
    "id",
    "debtor_id",
    "debtor_key",
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
    "principal_due_minor",
    "interest_minor",
    "penalty_minor",
    "fees_minor",
    "contract_no",
    "disbursed_on",
    "annual_rate_bp",
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


@dataclass(frozen=True, slots=True)
class Existing:
    """What the writer needs of a case that already exists."""

    mac: str
    balance: int
    dpd: int
    status: str
    confirmed: bool
    """Its claim batch is approved (or it predates claim confirmation)."""


@dataclass(slots=True)
class _Plan:
    inserts: list[tuple[object, ...]] = field(default_factory=list)
    """Driver-ready rows of ``INSERT_COLUMNS``."""
    updates: list[dict[str, object]] = field(default_factory=list)
    changes: list[BalanceChange] = field(default_factory=list)
    scrubs: list[ScrubRow] = field(default_factory=list)
    repoint: list[dict[str, object]] = field(default_factory=list)
    """Unchanged cases whose own claim batch was never approved: they join this one."""
    unchanged: int = 0


_LATER_OPTIONAL: tuple[str, ...] = (
    "principal_due_minor",
    "interest_minor",
    "penalty_minor",
    "fees_minor",
    "contract_no",
    "disbursed_on",
    "annual_rate_bp",
)
"""Optional columns added after files were first imported: left out of the hash when
absent, so an older file's rows hash as they always did."""


def content_mac(account: IntakeAccount, pii: PiiKeyRing) -> str:
    """Keyed hash of the whole validated row: equal iff the lender's data is unchanged.

    The hashed bytes are the model's compact JSON in schema field order (pydantic's Rust
    serialiser, several times faster than a sorted ``json.dumps``); changing the schema's
    field order would make every row look changed once.
    """
    exclude = {name for name in _LATER_OPTIONAL if getattr(account, name) is None}
    if not account.holds:
        exclude.add("holds")
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
        "debtor_key": pii.debtor_key(account.debtor_id),
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
        "principal_due_minor": account.principal_due_minor,
        "interest_minor": account.interest_minor,
        "penalty_minor": account.penalty_minor,
        "fees_minor": account.fees_minor,
        "contract_no": account.contract_no,
        "disbursed_on": account.disbursed_on,
        "annual_rate_bp": account.annual_rate_bp,
        "bucket": _bucket(account, allocation),
        "updated_at": now,
    }


def _bucket(account: IntakeAccount, allocation: AllocationSection) -> str:
    return bucket_for(
        account.dpd,
        account.balance_minor,
        legal_min_dpd=allocation.legal_min_dpd,
        legal_min_balance_minor=allocation.legal_min_balance_minor,
        rules=allocation.buckets,
        grade=account.credit_grade,
        product=account.product,
    )


def _plan(
    batch: Sequence[ValidRow],
    existing: Mapping[str, Existing],
    *,
    pii: PiiKeyRing,
    allocation: AllocationSection,
    now: datetime,
    day: Callable[[date], object],
    batch_id: str | None = None,
    tally: Tally | None = None,
) -> _Plan:
    """What to write for ``batch``; ``day`` turns a date into the driver's value."""
    plan = _Plan()
    for item in batch:
        account = item.account
        known = existing.get(account.account_id)
        if known is not None and known.mac == item.mac:
            plan.unchanged += 1
            if batch_id is not None and not known.confirmed:
                plan.repoint.append({"b_id": account.account_id})
            if tally is not None:
                tally.add(account, _bucket(account, allocation))
            continue
        columns = case_columns(account, item.mac, pii=pii, allocation=allocation, now=now)
        if batch_id is not None:
            columns["claim_batch_id"] = batch_id
        if tally is not None:
            tally.add(account, str(columns["bucket"]))
        overdue = is_overdue(account.balance_minor, account.dpd)
        if known is None:
            columns["id"] = account.account_id
            columns["due_date"] = day(account.due_date)
            if account.disbursed_on is not None:
                columns["disbursed_on"] = day(account.disbursed_on)
            plan.inserts.append(tuple(columns[name] for name in INSERT_COLUMNS))
            if tally is not None:
                tally.note_new(account.balance_minor)
            if account.holds or not overdue:
                plan.scrubs.append(_scrub(account, was_overdue=True, new=True))
            continue
        plan.updates.append({"b_id": account.account_id, **columns})
        if account.holds or not overdue or known.status in HOLD_BEARING_STATES:
            plan.scrubs.append(_scrub(account, was_overdue=is_overdue(known.balance, known.dpd)))
        if known.balance != account.balance_minor:
            plan.changes.append(
                BalanceChange(account.account_id, known.balance, account.balance_minor)
            )
            if tally is not None:
                tally.note_change(known.balance, account.balance_minor)
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
    """Writes batches of valid rows, one transaction each (see the module docstring for
    ``batch_id`` and ``tally``)."""

    db: Database
    pii: PiiKeyRing
    placements: PlacementService
    allocation: AllocationSection
    clock: Clock
    batch_id: str | None = None
    tally: Tally | None = None

    async def write(self, batch: Sequence[ValidRow]) -> WriteCounts:
        now = to_datetime(self.clock.now())
        async with self.db.transaction() as conn:
            existing = await _existing(conn, [v.account.account_id for v in batch])
            day = driver_processor(C.due_date, conn.dialect) or _as_is
            plan = await asyncio.to_thread(
                _plan,
                batch,
                existing,
                pii=self.pii,
                allocation=self.allocation,
                now=now,
                day=day,
                batch_id=self.batch_id,
                tally=self.tally,
            )
            await bulk_insert(
                conn,
                CASES,
                INSERT_COLUMNS,
                plan.inserts,
                constants={
                    "status": "open",
                    "claim_batch_id": self.batch_id,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if plan.updates:
                await conn.execute(_UPDATE, plan.updates)
            if plan.repoint:
                await conn.execute(
                    CASES.update()
                    .where(C.id == sa.bindparam("b_id"))
                    .values(claim_batch_id=self.batch_id),
                    plan.repoint,
                )
            scrubs = await apply_scrubs(conn, plan.scrubs, placements=self.placements, now=now)
            amended = await self.placements.amend_balances(conn, plan.changes, now=now)
        return WriteCounts(len(plan.inserts), len(plan.updates), plan.unchanged, amended, scrubs)


def _as_is(value: date) -> object:
    return value


async def _existing(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Existing]:
    """case id → what the writer needs of it, for the cases that exist."""
    found: dict[str, Existing] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        result = await conn.execute(
            sa.select(
                C.id, C.content_mac, C.balance_minor, C.dpd, C.status, C.claim_batch_id, B.status
            )
            .outerjoin(BATCHES, B.id == C.claim_batch_id)
            .where(C.id.in_(chunk))
        )
        for case_id, mac, balance, dpd, status, batch_id, batch_status in result:
            confirmed = batch_id is None or batch_status in ALLOCATABLE_BATCH_STATES
            found[case_id] = Existing(mac, balance, dpd, status, confirmed)
    return found


__all__ = [
    "CaseWriter",
    "Existing",
    "ValidRow",
    "WriteCounts",
    "case_columns",
    "content_mac",
]
