"""Statement reconciliation: an agency's inventory statement against our placements (pure).

Theory of operation
-------------------
Agencies periodically list every case they hold (``statement.submitted``: statement id,
period, and one line per placement with its balance and status). ``compare`` joins the
lines with the placements we hold with that agency, both keyed by placement id (a hash
join), and reports, vExchange style:

* ``statement_phantom``: they list a placement we never placed with them (or list one
  twice);
* ``statement_orphan``: a placement open with them at the end of the period is not listed;
* ``statement_balance_drift``: their balance differs from what we hold outstanding
  (placed balance less collections reported) by more than the tolerance, or is in another
  currency;
* ``statement_status_disagreement``: their status does not correspond to our state
  (``active`` ↔ placed, acknowledged or active; ``disputed``, ``legal``, ``closed`` the
  same; ``returned`` ↔ returned, rejected or recalled).

Each break's dedupe key names the agency, statement and placement, so reconciling the same
statement again raises nothing new.
"""

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

from gateway.lifecycle import OPEN_PLACEMENT_STATES
from gateway.reconciliation.kinds import MismatchDraft
from gateway.reconciliation.match_inputs import Tolerance

STATUS_OF_STATE: Final = {
    "placed": "active",
    "acknowledged": "active",
    "active": "active",
    "disputed": "disputed",
    "legal": "legal",
    "closed": "closed",
    "returned": "returned",
    "rejected": "returned",
    "recalled": "returned",
}


@dataclass(frozen=True, slots=True)
class StatementLine:
    placement_id: str
    balance_minor: int
    currency: str
    status: str


@dataclass(frozen=True, slots=True)
class Statement:
    agency_id: str
    statement_id: str
    period_start: date
    period_end: date
    lines: tuple[StatementLine, ...]

    @classmethod
    def from_data(cls, agency_id: str, data: Mapping[str, object]) -> "Statement":
        """From the stored ``data`` of a ``statement.submitted`` event (already validated
        against the schema when it arrived)."""
        items = data.get("items")
        lines = []
        for item in items if isinstance(items, list) else []:
            balance = item["balance"]
            lines.append(
                StatementLine(
                    str(item["placement_id"]),
                    int(balance["amount_minor"]),
                    str(balance["currency"]),
                    str(item["status"]),
                )
            )
        return cls(
            agency_id,
            str(data["statement_id"]),
            date.fromisoformat(str(data["period_start"])),
            date.fromisoformat(str(data["period_end"])),
            tuple(lines),
        )


@dataclass(frozen=True, slots=True)
class HeldPlacement:
    """One of our placements with the agency, as statement reconciliation needs it."""

    id: str
    state: str
    currency: str
    outstanding_minor: int
    placed_on: date
    recalled_on: date | None = None

    def open_at(self, day: date) -> bool:
        """Open with the agency at the end of ``day``, as far as our record can tell."""
        if self.placed_on > day:
            return False
        if self.recalled_on is not None:
            return self.recalled_on > day
        return self.state in OPEN_PLACEMENT_STATES


@dataclass(frozen=True, slots=True)
class StatementBreak:
    dedupe_key: str
    draft: MismatchDraft


@dataclass(slots=True)
class StatementResult:
    breaks: list[StatementBreak] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def compare(
    statement: Statement, held: Mapping[str, HeldPlacement], tolerance: Tolerance
) -> StatementResult:
    """Reconcile one statement against ``held``: every placement ever placed with the
    agency on or before the period end, by id."""
    result = StatementResult()
    seen: set[str] = set()
    prefix = f"{statement.agency_id}:{statement.statement_id}"

    def add(
        kind: str,
        pid: str,
        detail: str,
        ours: dict[str, object],
        theirs: dict[str, object],
        delta: int | None = None,
    ) -> None:
        result.counts[kind] += 1
        draft = MismatchDraft(
            kind, pid, detail, ours, {"statement_id": statement.statement_id, **theirs}, delta
        )
        key = f"{kind}:statement:{prefix}:{pid}"
        if len(key) > 128:
            key = f"{kind}:statement:{hashlib.sha256(key.encode()).hexdigest()}"
        result.breaks.append(StatementBreak(key, draft))

    for line in statement.lines:
        theirs: dict[str, object] = {
            "balance_minor": line.balance_minor,
            "currency": line.currency,
            "status": line.status,
        }
        ours_p = held.get(line.placement_id)
        if ours_p is None or line.placement_id in seen:
            twice = line.placement_id in seen
            add(
                "statement_phantom",
                line.placement_id,
                f"{statement.agency_id} lists {line.placement_id} "
                + ("more than once" if twice else "which we never placed with them"),
                {"placement": None if not twice else "listed before"},
                theirs,
            )
            continue
        seen.add(line.placement_id)
        ours: dict[str, object] = {
            "state": ours_p.state,
            "outstanding_minor": ours_p.outstanding_minor,
            "currency": ours_p.currency,
        }
        if line.currency != ours_p.currency or not tolerance.amount_ok(
            ours_p.outstanding_minor, line.balance_minor
        ):
            add(
                "statement_balance_drift",
                line.placement_id,
                f"{statement.agency_id} holds {line.placement_id} at {line.balance_minor} "
                f"{line.currency}, we hold {ours_p.outstanding_minor} {ours_p.currency} "
                f"outstanding (minor units)",
                ours,
                theirs,
                line.balance_minor - ours_p.outstanding_minor
                if line.currency == ours_p.currency
                else None,
            )
        expected = STATUS_OF_STATE.get(ours_p.state)
        if expected is not None and expected != line.status:
            add(
                "statement_status_disagreement",
                line.placement_id,
                f"{statement.agency_id} reports {line.placement_id} {line.status}, "
                f"our record says {ours_p.state}",
                ours,
                theirs,
            )
    for pid in sorted(set(held) - seen):
        p = held[pid]
        if p.open_at(statement.period_end):
            add(
                "statement_orphan",
                pid,
                f"{statement.agency_id} does not list {pid}, open with them on "
                f"{statement.period_end}",
                {"state": p.state, "outstanding_minor": p.outstanding_minor},
                {"listed": False},
            )
    result.counts["lines"] = len(statement.lines)
    return result


def statement_periods(period: str, today: date, *, back: int = 1) -> list[tuple[str, date, date]]:
    """The (key, first day, last day) of the last ``back`` complete statement periods
    before ``today``: ``weekly`` are ISO weeks (Monday to Sunday), ``monthly`` calendar
    months, ``none`` has none."""
    found = []
    if period == "weekly":
        monday = today - timedelta(days=today.weekday())
        for n in range(1, back + 1):
            start = monday - timedelta(weeks=n)
            iso = start.isocalendar()
            found.append((f"{iso.year}-W{iso.week:02d}", start, start + timedelta(days=6)))
    elif period == "monthly":
        first = today.replace(day=1)
        for _ in range(back):
            end = first - timedelta(days=1)
            first = end.replace(day=1)
            found.append((f"{first:%Y-%m}", first, end))
    return found


__all__ = [
    "STATUS_OF_STATE",
    "HeldPlacement",
    "Statement",
    "StatementBreak",
    "StatementLine",
    "StatementResult",
    "compare",
    "statement_periods",
]
