"""Approvals in the store: request, approve or reject, withdraw, execute; each decision an
``approval`` evidence leaf written in the same transaction (the rules are
gateway.approvals.rules).

Every function takes the caller's open connection, so an action and its approval's change of
state commit together (an allocation round marks its approval executed in the transaction
that writes the round's first placements).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals.rules import (
    canonical,
    check_checker,
    next_state,
    payload_hash,
)
from gateway.config.settings import FourEyesSection
from gateway.errors import ActionRefused, NotFound
from gateway.evidence.log import LeafInput, append_leaves
from gateway.store.claim_tables import Approval

APPROVALS = Approval.__table__  # type: ignore[attr-defined]
A = APPROVALS.c


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    id: int
    action: str
    subject: str
    payload: dict[str, Any]
    payload_sha256: str
    count: int
    amount_minor: int | None
    currency: str | None
    maker: str
    made_at: datetime
    status: str
    checker: str | None
    checked_at: datetime | None
    executed_at: datetime | None
    note: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "action": self.action,
            "subject": self.subject,
            "payload": self.payload,
            "payload_sha256": self.payload_sha256,
            "count": self.count,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "maker": self.maker,
            "made_at": self.made_at.isoformat(),
            "status": self.status,
            "checker": self.checker,
            "checked_at": None if self.checked_at is None else self.checked_at.isoformat(),
            "executed_at": None if self.executed_at is None else self.executed_at.isoformat(),
            "note": self.note,
        }


def _record(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        id=int(row.id),
        action=row.action,
        subject=row.subject,
        payload=json.loads(row.payload),
        payload_sha256=row.payload_sha256,
        count=int(row.count),
        amount_minor=row.amount_minor,
        currency=row.currency,
        maker=row.maker,
        made_at=row.made_at,
        status=row.status,
        checker=row.checker,
        checked_at=row.checked_at,
        executed_at=row.executed_at,
        note=row.note,
    )


async def request(
    conn: AsyncConnection,
    *,
    action: str,
    subject: str,
    payload: object,
    maker: str,
    now: datetime,
    count: int = 0,
    amount_minor: int | None = None,
    currency: str | None = None,
    status: str = "pending",
) -> ApprovalRecord:
    """Store a request for ``action`` on ``subject`` by ``maker``; its ``approval_request``
    leaf records the payload's hash."""
    body = canonical(payload)
    digest = payload_hash(payload)
    new_id = (
        await conn.execute(
            APPROVALS.insert()
            .values(
                action=action,
                subject=subject,
                payload=body,
                payload_sha256=digest,
                count=count,
                amount_minor=amount_minor,
                currency=currency,
                maker=maker,
                made_at=now,
                status=status,
            )
            .returning(A.id)
        )
    ).scalar_one()
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="approval",
                ref=f"approval:{new_id}",
                fields={
                    "event": "request",
                    "action": action,
                    "subject": subject,
                    "payload_sha256": digest,
                    "count": count,
                    "amount_minor": amount_minor,
                    "currency": currency,
                    "maker": maker,
                },
            )
        ],
        now=now,
    )
    return await get(conn, int(new_id))


async def get(conn: AsyncConnection, approval_id: int) -> ApprovalRecord:
    row = (await conn.execute(sa.select(APPROVALS).where(A.id == approval_id))).first()
    if row is None:
        raise NotFound(f"approval #{approval_id} does not exist; `approvals list` shows them")
    return _record(row)


async def listing(
    conn: AsyncConnection, *, status: str | None = None, limit: int = 200
) -> list[ApprovalRecord]:
    query = sa.select(APPROVALS).order_by(A.id.desc()).limit(limit)
    if status is not None:
        query = query.where(A.status == status)
    return [_record(r) for r in await conn.execute(query)]


async def _move(
    conn: AsyncConnection,
    approval: ApprovalRecord,
    event: str,
    values: dict[str, object],
) -> str:
    after = next_state(approval.status, event, approval_id=approval.id)
    done = await conn.execute(
        APPROVALS.update()
        .where(A.id == approval.id, A.status == approval.status)
        .values(status=after, **values)
    )
    if done.rowcount != 1:
        raise ActionRefused(f"approval #{approval.id} changed meanwhile; look at it again")
    return after


async def decide(
    conn: AsyncConnection,
    approval_id: int,
    *,
    approve: bool,
    checker: str,
    checker_role: str,
    four_eyes: FourEyesSection,
    now: datetime,
    note: str | None = None,
    fields: dict[str, object] | None = None,
) -> ApprovalRecord:
    """The checker approves or rejects a pending request (never the maker; a permitted
    role); an ``approval`` leaf records it with the payload's hash and ``fields``."""
    approval = await get(conn, approval_id)
    check_checker(
        four_eyes,
        approval.action,
        maker=approval.maker,
        checker=checker,
        checker_role=checker_role,
        approval_id=approval_id,
    )
    event = "approve" if approve else "reject"
    after = await _move(
        conn,
        approval,
        event,
        {"checker": checker, "checked_at": now, "note": None if note is None else note[:500]},
    )
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="approval",
                ref=f"approval:{approval_id}",
                fields={
                    "event": event,
                    "action": approval.action,
                    "subject": approval.subject,
                    "payload_sha256": approval.payload_sha256,
                    "maker": approval.maker,
                    "checker": checker,
                    "checker_role": checker_role,
                    "note": note or "",
                    **(fields or {}),
                },
            )
        ],
        now=now,
    )
    return await get(conn, approval_id) if after else approval


async def withdraw(
    conn: AsyncConnection, approval_id: int, *, by: str, now: datetime
) -> ApprovalRecord:
    """The maker takes back a pending request."""
    approval = await get(conn, approval_id)
    if by != approval.maker:
        raise ActionRefused(
            f"approval #{approval_id}: only its maker {approval.maker} may withdraw it"
        )
    await _move(conn, approval, "withdraw", {"checked_at": now})
    return await get(conn, approval_id)


async def execute(
    conn: AsyncConnection,
    approval_id: int,
    *,
    action: str,
    now: datetime,
    by: str,
    payload: object = None,
    max_count: int | None = None,
) -> ApprovalRecord:
    """Mark an approved request run, after checking it is for ``action`` and still matches
    what was approved: ``payload`` (re-computed now) hashes as the approved one did, or the
    ``max_count`` cases it would touch now are no more than were approved."""
    approval = await get(conn, approval_id)
    if approval.action != action:
        raise ActionRefused(f"approval #{approval_id} is for {approval.action}, not {action}")
    if approval.status != "approved":
        next_state(approval.status, "execute", approval_id=approval_id)
    if max_count is not None and max_count > approval.count:
        raise ActionRefused(
            f"approval #{approval_id} approved {action} of {approval.count} cases; it would "
            f"now touch {max_count}; ask for a new approval"
        )
    digest = approval.payload_sha256 if payload is None else payload_hash(payload)
    if digest != approval.payload_sha256:
        raise ActionRefused(
            f"approval #{approval_id} approved a different {action} than the one that would "
            "run now (the cases or placements changed); ask for a new approval"
        )
    await _move(conn, approval, "execute", {"executed_at": now})
    await append_leaves(
        conn,
        [
            LeafInput(
                kind="approval",
                ref=f"approval:{approval_id}",
                fields={
                    "event": "execute",
                    "action": action,
                    "subject": approval.subject,
                    "payload_sha256": digest,
                    "by": by,
                },
            )
        ],
        now=now,
    )
    return await get(conn, approval_id)


__all__ = ["ApprovalRecord", "decide", "execute", "get", "listing", "request", "withdraw"]
