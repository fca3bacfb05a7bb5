"""A checker's decision on any approval: claim confirmations change their batch too
(gateway.claims.batches); every other action is only approved here and runs when its maker
runs the command again with ``--approval ID`` (which checks it still matches)."""

from datetime import datetime

from gateway.approvals import store
from gateway.approvals.rules import Person
from gateway.approvals.store import ApprovalRecord
from gateway.claims import batches
from gateway.config.settings import FourEyesSection
from gateway.store.database import Database


async def decide(
    db: Database,
    approval_id: int,
    *,
    approve: bool,
    checker: Person,
    four_eyes: FourEyesSection,
    now: datetime,
    note: str | None = None,
) -> ApprovalRecord:
    """Approve or reject approval ``approval_id`` as ``checker``, in one transaction."""
    async with db.transaction() as conn:
        approval = await store.get(conn, approval_id)
        if approval.action == batches.ACTION:
            await batches.decide_batch(
                conn,
                await batches.batch_of_approval(conn, approval),
                approve=approve,
                checker=checker.name,
                checker_role=checker.role,
                four_eyes=four_eyes,
                now=now,
                note=note,
            )
            return await store.get(conn, approval_id)
        return await store.decide(
            conn,
            approval_id,
            approve=approve,
            checker=checker.name,
            checker_role=checker.role,
            four_eyes=four_eyes,
            now=now,
            note=note,
        )


async def decide_batch(
    db: Database,
    batch_id: str,
    *,
    approve: bool,
    checker: Person,
    four_eyes: FourEyesSection,
    now: datetime,
    note: str | None = None,
) -> batches.BatchRecord:
    """Approve or reject claim batch ``batch_id`` as ``checker``, in one transaction."""
    async with db.transaction() as conn:
        return await batches.decide_batch(
            conn,
            batch_id,
            approve=approve,
            checker=checker.name,
            checker_role=checker.role,
            four_eyes=four_eyes,
            now=now,
            note=note,
        )


__all__ = ["decide", "decide_batch"]
