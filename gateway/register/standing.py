"""An agency's standing in the register on a given day, and the status state machine (pure).

Theory of operation
-------------------
An agency may receive cases on day D when all of these hold:

* its ``status`` is ``admitted`` (not suspended, terminated or blacklisted);
* its contract has started (``contract_start`` <= D) and not ended (D <= ``contract_end``,
  the contract's last day; no end: open-ended);
* every *required* qualification, taken as the latest document recorded of its kind, is in
  force: issued (``issued_on`` <= D, when known) and not expired (D <= ``expires_on``, the
  last valid day);
* its allocation share (``share_bps``) is above zero.

``standing`` says whether, why not (each reason a short English phrase naming the date or
status, the words allocation records and the console shows) and ``next_lapse``: the first
day after D on which it stops, with nothing changed, being allowed (a contract end or an
expiry), so reminders and the lapse job can look ahead.

The status moves only along ``TRANSITIONS`` (a table, not branches): ``blacklisted`` is
final; a terminated agency can come back only through a new admission (``admit``); a
suspended one is reinstated. Every move names its action, which the history records.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Final, Literal

Status = Literal["admitted", "suspended", "terminated", "blacklisted"]
STATUSES: Final[tuple[Status, ...]] = ("admitted", "suspended", "terminated", "blacklisted")

TRANSITIONS: Final[Mapping[tuple[str, str], str]] = {
    # (from, to): the action that makes the move
    ("admitted", "suspended"): "suspend",
    ("admitted", "terminated"): "terminate",
    ("admitted", "blacklisted"): "blacklist",
    ("suspended", "admitted"): "reinstate",
    ("suspended", "terminated"): "terminate",
    ("suspended", "blacklisted"): "blacklist",
    ("terminated", "admitted"): "admit",
    ("terminated", "blacklisted"): "blacklist",
}
"""Every allowed status change; anything else (and anything out of ``blacklisted``) is refused."""

FULL_SHARE_BPS: Final = 10_000

LAPSED_STATUSES: Final = frozenset({"terminated", "blacklisted"})
"""Statuses whose open placements the lapse job recalls (a suspended agency keeps its own)."""


@dataclass(frozen=True, slots=True)
class Qualification:
    """One qualification document: its kind, the SHA-256 of its file, and when it is valid."""

    kind: str
    sha256: str
    issued_on: date | None = None
    expires_on: date | None = None
    """The last day it is valid (None: it does not expire)."""
    required: bool = True
    reference: str | None = None
    file_name: str | None = None
    id: int | None = None
    recorded_at: datetime | None = None
    recorded_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterEntry:
    """One agency's register row with its qualifications."""

    agency_id: str
    legal_name: str
    registration_number: str
    contract_start: date
    status: Status = "admitted"
    business_scope: str = ""
    licence: str | None = None
    contract_ref: str | None = None
    contract_end: date | None = None
    """The contract's last day (None: open-ended)."""
    dpa_ref: str | None = None
    dpa_signed_on: date | None = None
    deposit_minor: int = 0
    deposit_currency: str = "CNY"
    review_by: str | None = None
    review_on: date | None = None
    review_conclusion: str | None = None
    review_ref: str | None = None
    status_reason: str | None = None
    status_since: datetime | None = None
    share_bps: int = FULL_SHARE_BPS
    revision: int = 1
    lapse_recalled_on: date | None = None
    updated_at: datetime | None = None
    updated_by: str | None = None
    qualifications: tuple[Qualification, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Standing:
    """Whether the agency may receive cases on the day asked, why not, and when that changes."""

    allowed: bool
    reasons: tuple[str, ...] = ()
    next_lapse: date | None = None
    """The first later day it stops being allowed with nothing changed (None: none known)."""

    def verdict(self) -> str | None:
        """The allocation verdict: None when allowed, else "register: <reasons>"."""
        return None if self.allowed else "register: " + "; ".join(self.reasons)


def current(qualifications: Iterable[Qualification]) -> dict[str, Qualification]:
    """The document standing for each kind: the latest recorded (highest id, else last)."""
    latest: dict[str, Qualification] = {}
    for q in qualifications:
        held = latest.get(q.kind)
        if held is None or (q.id or 0) >= (held.id or 0):
            latest[q.kind] = q
    return latest


def standing(entry: RegisterEntry, qualifications: Sequence[Qualification], day: date) -> Standing:
    """The agency's standing on ``day`` (see the module docstring)."""
    reasons: list[str] = []
    lapses: list[date] = []
    if entry.status != "admitted":
        why = f" ({entry.status_reason})" if entry.status_reason else ""
        reasons.append(f"{entry.status}{why}")
    if day < entry.contract_start:
        reasons.append(f"contract starts {entry.contract_start.isoformat()}")
    if entry.contract_end is not None:
        if day > entry.contract_end:
            reasons.append(f"contract ended {entry.contract_end.isoformat()}")
        else:
            lapses.append(entry.contract_end + timedelta(days=1))
    for kind, q in sorted(current(qualifications).items()):
        if not q.required:
            continue
        if q.issued_on is not None and day < q.issued_on:
            reasons.append(f"{kind} not valid before {q.issued_on.isoformat()}")
        if q.expires_on is not None:
            if day > q.expires_on:
                reasons.append(f"{kind} expired {q.expires_on.isoformat()}")
            else:
                lapses.append(q.expires_on + timedelta(days=1))
    if entry.share_bps <= 0:
        reasons.append("allocation share 0")
    return Standing(not reasons, tuple(reasons), min(lapses) if lapses else None)


@dataclass(frozen=True, slots=True)
class Lapse:
    """Why and since when an agency lapsed for good: ``code`` is the recall reason its open
    placements are recalled with (``placement.recalled`` ``reason_code``)."""

    since: date
    code: str
    why: str


def lapse(entry: RegisterEntry, day: date) -> Lapse | None:
    """The agency's lapse as of ``day``, or None: its status is terminated or blacklisted,
    its contract's end passed, or a required qualification expired (a suspension or a
    contract not yet started is not a lapse). The earliest, when several apply."""
    found: list[Lapse] = []
    if entry.status in LAPSED_STATUSES and entry.status_since is not None:
        code = "AGENCY_BLACKLISTED" if entry.status == "blacklisted" else "AGENCY_TERMINATED"
        found.append(Lapse(entry.status_since.date(), code, entry.status))
    if entry.contract_end is not None and day > entry.contract_end:
        found.append(
            Lapse(
                entry.contract_end + timedelta(days=1),
                "CONTRACT_END",
                f"contract ended {entry.contract_end.isoformat()}",
            )
        )
    for kind, q in sorted(current(entry.qualifications).items()):
        if q.required and q.expires_on is not None and day > q.expires_on:
            found.append(
                Lapse(
                    q.expires_on + timedelta(days=1),
                    "QUALIFICATION_LAPSED",
                    f"{kind} expired {q.expires_on.isoformat()}",
                )
            )
    return min(found, key=lambda f: f.since) if found else None


def transition(current_status: str, target: str) -> str:
    """The action moving ``current_status`` to ``target``; ValueError naming what is allowed."""
    if target not in STATUSES:
        raise ValueError(f"unknown status {target!r} (one of {', '.join(STATUSES)})")
    action = TRANSITIONS.get((current_status, target))
    if action is None:
        allowed = sorted(to for (frm, to) in TRANSITIONS if frm == current_status)
        raise ValueError(
            f"cannot go from {current_status} to {target}"
            + (f" (from {current_status}: {', '.join(allowed)})" if allowed else ": it is final")
        )
    return action


@dataclass(frozen=True, slots=True)
class Expiry:
    """Something of an agency's that ends on ``ends_on`` (its last day)."""

    agency_id: str
    subject: str
    """``contract`` or ``qualification:<kind>``."""
    ends_on: date
    days_left: int


def expiring(entries: Iterable[RegisterEntry], day: date, horizon_days: int) -> list[Expiry]:
    """Contracts and required qualifications ending within ``horizon_days`` of ``day`` (or
    already ended), for agencies not terminated or blacklisted; soonest first."""
    found: list[Expiry] = []
    for entry in entries:
        if entry.status in LAPSED_STATUSES:
            continue
        ends = [("contract", entry.contract_end)] + [
            (f"qualification:{kind}", q.expires_on)
            for kind, q in sorted(current(entry.qualifications).items())
            if q.required
        ]
        for subject, end in ends:
            if end is not None and (end - day).days <= horizon_days:
                found.append(Expiry(entry.agency_id, subject, end, (end - day).days))
    return sorted(found, key=lambda e: (e.ends_on, e.agency_id, e.subject))


def due_reminders(
    expiries: Iterable[Expiry], thresholds: Iterable[int]
) -> list[tuple[Expiry, int]]:
    """(expiry, threshold) for each threshold an expiry has reached: the smallest threshold
    at or above its days left (one reminder per crossing; an expiry already past gives
    none: the lapse takes over)."""
    steps = sorted(set(thresholds))
    due: list[tuple[Expiry, int]] = []
    for e in expiries:
        if e.days_left < 0:
            continue
        reached = [t for t in steps if e.days_left <= t]
        if reached:
            due.append((e, reached[0]))
    return due


def gate(
    entries: Mapping[str, RegisterEntry],
    agency_ids: Iterable[str],
    day: date,
    *,
    enforce: bool,
) -> tuple[dict[str, str], dict[str, float]]:
    """What allocation applies on ``day``: (agency → why it may not receive cases, agency →
    weight factor from its share). An agency with no entry is refused when ``enforce``,
    and takes cases at full share otherwise."""
    barred: dict[str, str] = {}
    shares: dict[str, float] = {}
    for agency_id in agency_ids:
        entry = entries.get(agency_id)
        if entry is None:
            if enforce:
                barred[agency_id] = "register: not in the agency register"
            continue
        verdict = standing(entry, entry.qualifications, day).verdict()
        if verdict is not None:
            barred[agency_id] = verdict
        shares[agency_id] = entry.share_bps / FULL_SHARE_BPS
    return barred, shares


__all__ = [
    "FULL_SHARE_BPS",
    "LAPSED_STATUSES",
    "STATUSES",
    "TRANSITIONS",
    "Expiry",
    "Lapse",
    "Qualification",
    "RegisterEntry",
    "Standing",
    "Status",
    "current",
    "due_reminders",
    "expiring",
    "gate",
    "lapse",
    "standing",
    "transition",
]
