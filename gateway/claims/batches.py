"""Confirmation batches in the store: opened by an intake run, closed with the file's figures,
approved or rejected by a second person.

Theory of operation: ``open_batch`` writes the batch ``importing`` before the first case, so
the run's cases can point at it as they are written; ``close_batch`` counts the cases the
store knew that the file no longer lists, stores the figures (gateway.claims.tally), writes
the ``claim_batch`` evidence leaf and either asks for the second person (an ``approvals`` row
of action ``claim_confirmation``, made by the importer) or, with ``[claims] confirmation =
"off"``, approves it as ``system`` with a leaf saying so. ``decide_batch`` is the checker's
approval or rejection: the four-eyes checks, the approval's leaf carrying the batch's totals
and the approver, and the batch's new state, in one transaction.
"""

import json
import secrets
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals import store as approvals
from gateway.approvals.store import ApprovalRecord
from gateway.claims.states import next_batch_state
from gateway.claims.tally import Tally
from gateway.config.settings import FourEyesSection
from gateway.errors import ActionRefused, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.store.claim_tables import ClaimBatch
from gateway.store.database import Database
from gateway.store.tables import Case

BATCHES = ClaimBatch.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]
B, C = BATCHES.c, CASES.c

SYSTEM = "system"
ACTION = "claim_confirmation"
GONE_STATES = ("closed", "written_off")
"""Cases in these states are not claims any more: a file that leaves them out loses nothing."""


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: str
    file_name: str
    file_sha256: str
    maker: str
    status: str
    rows: int
    cases: int
    balance_minor: int
    totals: list[dict[str, Any]]
    holds: dict[str, int]
    differences: dict[str, dict[str, int]]
    approval_id: int | None
    created_at: datetime
    imported_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    note: str | None

    def by_currency(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for line in self.totals:
            sums = out.setdefault(str(line["currency"]), {})
            for key, value in line.items():
                if isinstance(value, int):
                    sums[key] = sums.get(key, 0) + value
        return out

    def as_dict(self) -> dict[str, object]:
        def iso(at: datetime | None) -> str | None:
            return None if at is None else at.isoformat()

        return {
            "id": self.id,
            "file": self.file_name,
            "sha256": self.file_sha256,
            "maker": self.maker,
            "status": self.status,
            "rows": self.rows,
            "cases": self.cases,
            "balance_minor": self.balance_minor,
            "by_currency": self.by_currency(),
            "totals": self.totals,
            "holds": self.holds,
            "differences": self.differences,
            "approval_id": self.approval_id,
            "created_at": self.created_at.isoformat(),
            "imported_at": iso(self.imported_at),
            "decided_by": self.decided_by,
            "decided_at": iso(self.decided_at),
            "note": self.note,
        }


def _record(row: Any) -> BatchRecord:
    return BatchRecord(
        id=row.id,
        file_name=row.file_name,
        file_sha256=row.file_sha256,
        maker=row.maker,
        status=row.status,
        rows=int(row.rows),
        cases=int(row.cases),
        balance_minor=int(row.balance_minor),
        totals=json.loads(row.totals),
        holds=json.loads(row.holds),
        differences=json.loads(row.differences),
        approval_id=row.approval_id,
        created_at=row.created_at,
        imported_at=row.imported_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        note=row.note,
    )


def new_batch_id(now: datetime) -> str:
    return f"CB-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


async def open_batch(db: Database, *, file_name: str, maker: str, now: datetime) -> str:
    """Record the start of an intake run; its id."""
    batch_id = new_batch_id(now)
    async with db.transaction() as conn:
        await conn.execute(
            BATCHES.insert().values(
                id=batch_id,
                file_name=file_name[:255],
                maker=maker,
                status="importing",
                rows=0,
                cases=0,
                balance_minor=0,
                totals="[]",
                holds="{}",
                differences="{}",
                created_at=now,
            )
        )
    return batch_id


async def count_gone(db: Database, listed: Set[str], batch: int = 5000) -> tuple[int, int]:
    """(cases, balance) the store holds as claims that the file does not list."""
    cases = balance = 0
    async with db.snapshot() as conn:
        result = await conn.stream(
            sa.select(C.id, C.balance_minor)
            .where(C.status.not_in(GONE_STATES))
            .execution_options(yield_per=batch)
        )
        async for case_id, minor in result:
            if case_id not in listed:
                cases += 1
                balance += int(minor)
    return cases, balance


def payload_of(batch_id: str, file_name: str, sha256: str, tally: Tally) -> dict[str, object]:
    """What a checker approves: the file and its figures."""
    return {
        "batch": batch_id,
        "file": file_name,
        "sha256": sha256,
        "cases": tally.cases,
        "by_currency": tally.by_currency(),
        "totals": tally.totals(),
        "holds": tally.hold_counts(),
        "differences": tally.differences(),
    }


async def close_batch(
    db: Database,
    batch_id: str,
    *,
    file_name: str,
    sha256: str,
    rows: int,
    tally: Tally,
    maker: str,
    confirmation: str,
    now: datetime,
) -> BatchRecord:
    """Store the file's figures and ask for confirmation (or, ``off``, confirm as system)."""
    payload = payload_of(batch_id, file_name, sha256, tally)
    currencies = list(tally.by_currency())
    async with db.transaction() as conn:
        batch = await get(conn, batch_id)
        status = next_batch_state(batch.status, "imported", batch_id=batch_id)
        await conn.execute(
            BATCHES.update()
            .where(B.id == batch_id)
            .values(
                status=status,
                file_sha256=sha256,
                rows=rows,
                cases=tally.cases,
                balance_minor=tally.balance_minor,
                totals=json.dumps(tally.totals(), ensure_ascii=False),
                holds=json.dumps(tally.hold_counts(), ensure_ascii=False),
                differences=json.dumps(tally.differences()),
                imported_at=now,
            )
        )
        await append_leaves(
            conn,
            [
                LeafInput(
                    kind="claim_batch",
                    ref=f"claim_batch:{batch_id}",
                    fields={"event": "imported", "maker": maker, **payload},
                )
            ],
            now=now,
        )
        if confirmation == "off":
            await conn.execute(
                BATCHES.update()
                .where(B.id == batch_id)
                .values(
                    status=next_batch_state(status, "approve", batch_id=batch_id),
                    decided_by=SYSTEM,
                    decided_at=now,
                    note="[claims] confirmation = off",
                )
            )
            await append_leaves(
                conn,
                [
                    LeafInput(
                        kind="claim_batch",
                        ref=f"claim_batch:{batch_id}",
                        fields={
                            "event": "approve",
                            "by": SYSTEM,
                            "automatic": True,
                            "reason": "[claims] confirmation = off: no second person reviewed it",
                            "cases": tally.cases,
                            "by_currency": tally.by_currency(),
                        },
                    )
                ],
                now=now,
            )
        else:
            approval = await approvals.request(
                conn,
                action=ACTION,
                subject=f"claim_batch:{batch_id}",
                payload=payload,
                maker=maker,
                now=now,
                count=tally.cases,
                amount_minor=tally.balance_minor if len(currencies) == 1 else None,
                currency=currencies[0] if len(currencies) == 1 else None,
            )
            await conn.execute(
                BATCHES.update().where(B.id == batch_id).values(approval_id=approval.id)
            )
        return await get(conn, batch_id)


async def get(conn: AsyncConnection, batch_id: str) -> BatchRecord:
    row = (await conn.execute(sa.select(BATCHES).where(B.id == batch_id))).first()
    if row is None:
        raise NotFound(f"claim batch {batch_id} does not exist; `claims list` shows them")
    return _record(row)


async def listing(
    conn: AsyncConnection, *, status: str | None = None, limit: int = 100
) -> list[BatchRecord]:
    query = sa.select(BATCHES).order_by(B.created_at.desc(), B.id.desc()).limit(limit)
    if status is not None:
        query = query.where(B.status == status)
    return [_record(r) for r in await conn.execute(query)]


async def decide_batch(
    conn: AsyncConnection,
    batch_id: str,
    *,
    approve: bool,
    checker: str,
    checker_role: str,
    four_eyes: FourEyesSection,
    now: datetime,
    note: str | None = None,
) -> BatchRecord:
    """The checker approves or rejects a pending batch, in the caller's transaction."""
    batch = await get(conn, batch_id)
    event = "approve" if approve else "reject"
    status = next_batch_state(batch.status, event, batch_id=batch_id)
    if batch.approval_id is None:
        raise ActionRefused(f"claim batch {batch_id} has no approval request to decide")
    decided = await approvals.decide(
        conn,
        batch.approval_id,
        approve=approve,
        checker=checker,
        checker_role=checker_role,
        four_eyes=four_eyes,
        now=now,
        note=note,
        fields={
            "batch": batch_id,
            "file": batch.file_name,
            "sha256": batch.file_sha256,
            "cases": batch.cases,
            "by_currency": batch.by_currency(),
            "differences": batch.differences,
        },
    )
    if approve:
        await approvals.execute(conn, decided.id, action=ACTION, now=now, by=checker)
    await conn.execute(
        BATCHES.update()
        .where(B.id == batch_id, B.status == batch.status)
        .values(status=status, decided_by=checker, decided_at=now, note=note)
    )
    return await get(conn, batch_id)


async def batch_of_approval(conn: AsyncConnection, approval: ApprovalRecord) -> str:
    """The batch id a ``claim_confirmation`` approval is about."""
    prefix = "claim_batch:"
    if approval.action != ACTION or not approval.subject.startswith(prefix):
        raise ActionRefused(f"approval #{approval.id} is not a claim confirmation")
    return approval.subject[len(prefix) :]


__all__ = [
    "ACTION",
    "SYSTEM",
    "BatchRecord",
    "batch_of_approval",
    "close_batch",
    "count_gone",
    "decide_batch",
    "get",
    "listing",
    "new_batch_id",
    "open_batch",
    "payload_of",
]
