"""Where a command meets four eyes: ask for an approval when ``[four_eyes]`` says a second
person is needed, or run under one that was given (``--approval ID``) after checking it
still matches what was approved.

``gate`` returns normally when the action may run now (under no approval, or under an
approved one it has just marked executed); otherwise it stores a pending request and raises
ApprovalRequired naming it, so the maker can tell the checker which one to approve.
"""

from datetime import datetime

from gateway.approvals import store
from gateway.approvals.rules import Person, needs_second_person
from gateway.config.settings import FourEyesSection
from gateway.errors import ApprovalRequired, FourEyesRefused
from gateway.evidence.log import LeafInput, append_leaves
from gateway.store.database import Database


async def gate(
    db: Database,
    four_eyes: FourEyesSection,
    *,
    action: str,
    subject: str,
    size: int,
    payload: object,
    maker: Person | None,
    approval_id: int | None,
    now: datetime,
    count: int = 0,
    amount_minor: int | None = None,
    currency: str | None = None,
    match: str = "payload",
) -> int | None:
    """Let ``action`` run, or ask for a second person (see the module docstring).

    ``size`` is what ``[four_eyes]`` compares with ``above`` (cases or minor units). With
    ``match="count"`` an approval stands for any run that touches no more than its count
    (an allocation round re-planned later); otherwise the payload's hash must be equal.
    Returns the approval id the action ran under, if any."""
    if approval_id is None and not needs_second_person(four_eyes, action, size):
        return None
    if maker is None:
        raise FourEyesRefused(
            f"{action} of {size} needs a second person's approval, so it needs a known "
            "maker: pass --as USER or --token before the command name"
        )
    async with db.transaction() as conn:
        if approval_id is not None:
            approval = await store.get(conn, approval_id)
            await store.execute(
                conn,
                approval_id,
                action=action,
                now=now,
                by=maker.name,
                payload=None if match == "count" else payload,
                max_count=count if match == "count" else None,
            )
            return approval.id
        approval = await store.request(
            conn,
            action=action,
            subject=subject,
            payload=payload,
            maker=maker.name,
            now=now,
            count=count,
            amount_minor=amount_minor,
            currency=currency,
        )
    raise ApprovalRequired(
        f"{action} of {size} needs a second person: approval #{approval.id} is pending. "
        f"Another user ({' or '.join(getattr(four_eyes, action).checker_roles)}) runs "
        f"`--as USER approvals approve {approval.id}`; then run this again with "
        f"--approval {approval.id}",
        approval_id=approval.id,
    )


async def attest(
    db: Database, *, kind: str, ref: str, fields: dict[str, object], now: datetime
) -> None:
    """One evidence leaf saying who ran a command and what it did."""
    async with db.transaction() as conn:
        await append_leaves(conn, [LeafInput(kind=kind, ref=ref, fields=fields)], now=now)


__all__ = ["attest", "gate"]
