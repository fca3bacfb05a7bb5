"""The rules that end or extend a placement's term (pure): expiry, its warning, renewal and
escalation to the legal tier.

Theory of operation
-------------------
A placement is agreed until its ``return_by`` date. ``[allocation] expiry_grace_days`` after
that date it has *expired*: the expiry job (gateway.cases.expiry) recalls it on the next day,
``recall_on``, with the code ``EXPIRED`` and the case event ``expire`` (the case goes back to
``returned`` and on to the next tier). Agencies whose contract has ``expiry_warning = true`` are
told once per term, ``[allocation] expiry_warning_days`` before ``return_by``, with a
``placement.expiring`` packet. A renewal by ops moves ``return_by`` on by whole days and starts
a new term (a new warning is due before the new date); a renewal that would leave the
placement expired still is refused.

A placed case whose bucket becomes ``LEGAL`` while its agency is not of ``[allocation]
legal_tier`` *needs escalation*: it is recalled (code ``LEGAL_ESCALATION``, case event
``escalate``) so that the next allocation places it with a law firm. By ``[allocation]
escalation``: ``off`` leaves it; ``auto`` recalls at once; ``approval`` proposes the recall,
and ops approve or reject it. An escalation moves by ``ESCALATION_TRANSITIONS``; there is at
most one per placement, so a rejected one is never proposed again.

All dates are UTC calendar dates; "today" is the UTC date of the clock.
"""

from datetime import date, timedelta
from typing import Final, Literal

from gateway.errors import GatewayError

EXPIRED_CODE: Final = "EXPIRED"
"""The recall code of an expired placement (``placement.recalled`` ``reason_code``)."""
ESCALATION_CODE: Final = "LEGAL_ESCALATION"
"""The recall code of an escalation to the legal tier."""
LEGAL_BUCKET: Final = "LEGAL"
MAX_RENEWAL_DAYS: Final = 730
"""The longest single renewal (the longest placement ``[allocation] placement_days`` allows)."""

EscalationMode = Literal["off", "auto", "approval"]

ESCALATION_TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "proposed": {"approve": "approved", "reject": "rejected"},
    "approved": {},
    "rejected": {},
}
"""Escalation state → {decision → next state}. ``auto`` mode writes ``approved`` at once."""


def expiry_cutoff(today: date, grace_days: int) -> date:
    """Placements whose ``return_by`` is before this date have expired (``return_by`` plus
    the grace is before today)."""
    return today - timedelta(days=grace_days)


def has_expired(return_by: date, today: date, grace_days: int) -> bool:
    return return_by < expiry_cutoff(today, grace_days)


def recall_on(return_by: date, grace_days: int) -> date:
    """The day the expiry job recalls a placement that is not renewed."""
    return return_by + timedelta(days=grace_days + 1)


def warning_window(today: date, *, warning_days: int, grace_days: int) -> tuple[date, date]:
    """The ``return_by`` dates (inclusive) whose placements are due a warning today: from
    the first one not yet expired to ``warning_days`` ahead."""
    return expiry_cutoff(today, grace_days), today + timedelta(days=warning_days)


def warning_due(return_by: date, today: date, *, warning_days: int, grace_days: int) -> bool:
    first, last = warning_window(today, warning_days=warning_days, grace_days=grace_days)
    return first <= return_by <= last


def renewed_return_by(return_by: date, days: int, *, today: date, grace_days: int) -> date:
    """``return_by`` moved on by ``days``; GatewayError when ``days`` is out of range or the
    placement would still have expired (it would be recalled at the next expiry run)."""
    if not 1 <= days <= MAX_RENEWAL_DAYS:
        raise GatewayError(f"renew by 1 to {MAX_RENEWAL_DAYS} days, not {days}")
    new = return_by + timedelta(days=days)
    if has_expired(new, today, grace_days):
        short = (expiry_cutoff(today, grace_days) - new).days
        raise GatewayError(
            f"renewing by {days} days would end the placement on {new}, which has already "
            f"expired; renew by at least {days + short} days"
        )
    return new


def needs_escalation(bucket: str, agency_tier: str, legal_tier: str) -> bool:
    """A case in the legal bucket held by an agency outside the legal tier (never when there
    is no legal tier)."""
    return bool(legal_tier) and bucket == LEGAL_BUCKET and agency_tier != legal_tier


def next_escalation_state(state: str, decision: str) -> str | None:
    """The state after ``decision`` (``approve`` or ``reject``), or None when it is not
    allowed in ``state``."""
    return ESCALATION_TRANSITIONS.get(state, {}).get(decision)


__all__ = [
    "ESCALATION_CODE",
    "ESCALATION_TRANSITIONS",
    "EXPIRED_CODE",
    "LEGAL_BUCKET",
    "MAX_RENEWAL_DAYS",
    "EscalationMode",
    "expiry_cutoff",
    "has_expired",
    "needs_escalation",
    "next_escalation_state",
    "recall_on",
    "renewed_return_by",
    "warning_due",
    "warning_window",
]
