"""The demo's claim confirmation (债权确认), done for real: one person imports the file, the
batch's totals are shown, nothing can be allocated yet, the importer's own approval is
refused, and a second person approves it.

The two people are console users the demo creates (``demo.maker``, an operator, and
``demo.checker``, an admin) with random passwords nobody needs: they exist so the batch's
maker and checker are real, distinct users, as four eyes requires. ``checks`` counts what
went wrong (0 everywhere is a pass; the demo fails otherwise).
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.allocation.routing import money
from gateway.approvals.decisions import decide_batch
from gateway.bootstrap import Gateway
from gateway.claims.batches import BatchRecord
from gateway.clock import to_datetime
from gateway.console.accounts import User, active_user, add_user
from gateway.errors import FourEyesRefused, NotFound
from gateway.intake.service import IntakeReport, import_file

MAKER = ("demo.maker", "operator")
CHECKER = ("demo.checker", "admin")


@dataclass
class Confirmation:
    """What the demo's confirmations showed."""

    notes: list[str] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)

    def fail(self, check: str, count: int = 1) -> None:
        self.checks[check] = self.checks.get(check, 0) + count

    def passed(self, check: str) -> None:
        self.checks.setdefault(check, 0)


async def _user(gateway: Gateway, name: str, role: str) -> User:
    try:
        return await active_user(gateway.db, name)
    except NotFound:
        return await add_user(
            gateway.db,
            name,
            role,
            secrets.token_urlsafe(24),
            now=to_datetime(gateway.clock.now()),
        )


def describe(batch: BatchRecord) -> str:
    totals = "; ".join(
        f"{cur} {t['cases']} cases, principal {money(t['principal_due_minor'])}, interest "
        f"{money(t['interest_minor'])}, penalty {money(t['penalty_minor'])}, fees "
        f"{money(t['fees_minor'])}, balance {money(t['balance_minor'])}"
        for cur, t in batch.by_currency().items()
    )
    d = batch.differences
    return (
        f"claim batch {batch.id} ({batch.file_name}) by {batch.maker}: {totals}; "
        f"{d['new']['cases']} new, {d['gone']['cases']} no longer listed, "
        f"{d['balance_up']['cases']} up, {d['balance_down']['cases']} down"
    )


async def import_and_confirm(
    gateway: Gateway, path: Path, confirmation: Confirmation, *, expect_placeable: bool
) -> IntakeReport:
    """Import ``path`` as the maker, check that its cases wait, that the maker cannot approve
    the batch, and approve it as the checker."""
    maker = await _user(gateway, *MAKER)
    checker = await _user(gateway, *CHECKER)
    report = await import_file(
        path,
        db=gateway.db,
        pii=gateway.pii,
        placements=gateway.placements,
        allocation=gateway.settings.allocation,
        clock=gateway.clock,
        confirmation="four_eyes",
        maker=maker.name,
        documents=gateway.documents,
    )
    batch = report.claim_batch
    if batch is None or batch.status != "pending":
        confirmation.fail("claim_batch_not_pending")
        return report
    confirmation.notes.append(describe(batch))
    waiting = await gateway.placements.preview()
    if expect_placeable:
        if waiting.placed or not waiting.reasons.get("unconfirmed"):
            confirmation.fail("allocated_before_confirmation", max(waiting.placed, 1))
        else:
            confirmation.passed("allocated_before_confirmation")
            confirmation.notes.append(
                f"before approval: {waiting.reasons['unconfirmed']} cases unconfirmed, "
                "0 would be placed"
            )
    four_eyes = gateway.settings.four_eyes
    try:
        await decide_batch(
            gateway.db,
            batch.id,
            approve=True,
            checker=maker,
            four_eyes=four_eyes,
            now=to_datetime(gateway.clock.now()),
        )
    except FourEyesRefused as exc:
        confirmation.passed("self_approval_accepted")
        confirmation.notes.append(f"self-approval refused: {exc}")
    else:
        confirmation.fail("self_approval_accepted")
        return report
    approved = await decide_batch(
        gateway.db,
        batch.id,
        approve=True,
        checker=checker,
        four_eyes=four_eyes,
        now=to_datetime(gateway.clock.now()),
        note="totals checked against the lender's ledger",
    )
    if approved.status != "approved":
        confirmation.fail("claim_batch_not_approved")
    confirmation.notes.append(f"claim batch {approved.id} approved by {approved.decided_by}")
    return report


def check_lines(confirmation: Confirmation) -> Sequence[str]:
    return [f"{k} {v}" for k, v in sorted(confirmation.checks.items())]


__all__ = ["CHECKER", "MAKER", "Confirmation", "check_lines", "describe", "import_and_confirm"]
