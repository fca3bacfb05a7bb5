"""A confirmation batch's figures (pure): totals per currency, product and bucket, the holds
the file applies, and the differences from the cases known before it.

Theory of operation: the intake streams the file in batches; each valid row is ``add``-ed to
one ``Tally`` (a few integers per group, never the rows), and each written batch reports its
new cases and balance changes through ``note_new`` and ``note_change``. After the file, the
cases the store knew but the file no longer lists are counted with ``note_gone``. The JSON
the batch stores is ``Tally.totals_json`` etc.; the same figures go into the approval's
payload and evidence leaf, so what was approved is exactly what was shown.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from schemas.account import BREAKDOWN_FIELDS


class Row(Protocol):
    """What the tally reads of an intake row (``IntakeAccount`` has it)."""

    @property
    def currency(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def balance_minor(self) -> int: ...
    @property
    def principal_due_minor(self) -> int | None: ...
    @property
    def interest_minor(self) -> int | None: ...
    @property
    def penalty_minor(self) -> int | None: ...
    @property
    def fees_minor(self) -> int | None: ...
    @property
    def holds(self) -> tuple[str, ...]: ...


@dataclass(slots=True)
class GroupTotals:
    """The cases of one currency, product and bucket and what they owe.

    ``unbroken`` counts cases that gave no full breakdown: their balance is in
    ``balance_minor`` but in none of the parts."""

    cases: int = 0
    principal_due_minor: int = 0
    interest_minor: int = 0
    penalty_minor: int = 0
    fees_minor: int = 0
    balance_minor: int = 0
    unbroken: int = 0


@dataclass(slots=True)
class Movement:
    """How many cases moved one way and by how much in total (minor units, positive)."""

    cases: int = 0
    total_minor: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"cases": self.cases, "total_minor": self.total_minor}


@dataclass(slots=True)
class Tally:
    groups: dict[tuple[str, str, str], GroupTotals] = field(default_factory=dict)
    holds: Counter[str] = field(default_factory=Counter)
    new: Movement = field(default_factory=Movement)
    gone: Movement = field(default_factory=Movement)
    up: Movement = field(default_factory=Movement)
    down: Movement = field(default_factory=Movement)

    def add(self, row: Row, bucket: str) -> None:
        """Count one valid row of the file."""
        group = self.groups.setdefault((row.currency, row.product, bucket), GroupTotals())
        group.cases += 1
        group.balance_minor += row.balance_minor
        parts = [getattr(row, name) for name in BREAKDOWN_FIELDS]
        if any(p is None for p in parts):
            group.unbroken += 1
        else:
            group.principal_due_minor += parts[0]
            group.interest_minor += parts[1]
            group.penalty_minor += parts[2]
            group.fees_minor += parts[3]
        self.holds.update(row.holds)

    def note_new(self, balance_minor: int) -> None:
        self.new.cases += 1
        self.new.total_minor += balance_minor

    def note_change(self, old_minor: int, new_minor: int) -> None:
        """An existing case whose balance the file changed."""
        if new_minor > old_minor:
            self.up.cases += 1
            self.up.total_minor += new_minor - old_minor
        elif new_minor < old_minor:
            self.down.cases += 1
            self.down.total_minor += old_minor - new_minor

    def note_gone(self, cases: int, balance_minor: int) -> None:
        self.gone.cases += cases
        self.gone.total_minor += balance_minor

    @property
    def cases(self) -> int:
        return sum(g.cases for g in self.groups.values())

    @property
    def balance_minor(self) -> int:
        return sum(g.balance_minor for g in self.groups.values())

    def totals(self) -> list[dict[str, object]]:
        """One entry per group, sorted by currency, product and bucket."""
        return [
            {
                "currency": currency,
                "product": product,
                "bucket": bucket,
                "cases": g.cases,
                "principal_due_minor": g.principal_due_minor,
                "interest_minor": g.interest_minor,
                "penalty_minor": g.penalty_minor,
                "fees_minor": g.fees_minor,
                "balance_minor": g.balance_minor,
                "unbroken": g.unbroken,
            }
            for (currency, product, bucket), g in sorted(self.groups.items())
        ]

    def by_currency(self) -> dict[str, dict[str, int]]:
        """The totals summed per currency (what the approval's summary shows)."""
        out: dict[str, dict[str, int]] = {}
        for (currency, _p, _b), g in sorted(self.groups.items()):
            sums = out.setdefault(
                currency,
                dict.fromkeys(("cases", *BREAKDOWN_FIELDS, "balance_minor", "unbroken"), 0),
            )
            sums["cases"] += g.cases
            sums["principal_due_minor"] += g.principal_due_minor
            sums["interest_minor"] += g.interest_minor
            sums["penalty_minor"] += g.penalty_minor
            sums["fees_minor"] += g.fees_minor
            sums["balance_minor"] += g.balance_minor
            sums["unbroken"] += g.unbroken
        return out

    def differences(self) -> dict[str, dict[str, int]]:
        return {
            "new": self.new.as_dict(),
            "gone": self.gone.as_dict(),
            "balance_up": self.up.as_dict(),
            "balance_down": self.down.as_dict(),
        }

    def hold_counts(self) -> dict[str, int]:
        return dict(sorted(self.holds.items()))


__all__ = ["GroupTotals", "Movement", "Row", "Tally"]
