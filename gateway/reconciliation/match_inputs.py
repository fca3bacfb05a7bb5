"""What payment matching compares: the two sides' records and the terms they agree by (pure).

An ``AgencyPayment`` is what an agency says it collected; a ``LenderReceipt`` is what the
lender's bank feed shows (see gateway.reconciliation.matching). The I/O shells build them from the
store (gateway.reconciliation.three_way, gateway.reconciliation.event_audit). ``Tolerance`` is how
far two amounts and dates may disagree and still be the same money: ``|received - expected| <=
max(amount_minor, expected * amount_bps / 10_000)``, whichever allows more; statement balances are
judged by it too (gateway.reconciliation.statements). ``Contract`` is the commission an agency
keeps and whether it remits net or gross.
"""

from dataclasses import dataclass
from typing import Literal, NamedTuple

ReceiptKind = Literal["debtor", "remittance"]


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far two records may disagree and still be the same money."""

    amount_minor: int = 0
    amount_bps: int = 0
    days: int = 0

    def allowance(self, expected_minor: int) -> int:
        return max(self.amount_minor, abs(expected_minor) * self.amount_bps // 10_000)

    def amount_ok(self, expected_minor: int, received_minor: int) -> bool:
        return abs(received_minor - expected_minor) <= self.allowance(expected_minor)

    def days_ok(self, a: int, b: int) -> bool:
        return abs(a - b) <= self.days

    def expected_range(self, received_minor: int) -> tuple[int, int]:
        """Every expected amount that could be within tolerance of ``received_minor``."""
        low = received_minor - self.amount_minor
        high = received_minor + self.amount_minor
        if self.amount_bps:
            low = min(low, received_minor * 10_000 // (10_000 + self.amount_bps))
            if self.amount_bps < 10_000:
                high = max(high, -(-received_minor * 10_000 // (10_000 - self.amount_bps)))
            else:
                high = max(high, 2**62)
        return low, high


@dataclass(frozen=True, slots=True)
class Contract:
    """The money terms of an agency's contract that matching needs."""

    commission_bps: int = 0
    remittance: Literal["net", "gross"] = "net"

    def commission(self, gross_minor: int) -> int:
        """Commission on one collection, rounded half up to a minor unit."""
        return (gross_minor * self.commission_bps + 5_000) // 10_000


class AgencyPayment(NamedTuple):
    """An agency-reported payment (a tuple: hundreds of thousands are built per run)."""

    id: int
    agency_id: str
    placement_id: str
    ref: str
    amount_minor: int
    currency: str
    day: int
    """Days since 1970-01-01 of ``paid_at``."""


class LenderReceipt(NamedTuple):
    """A receipt of the lender's payment feed."""

    id: int
    kind: ReceiptKind
    placement_id: str | None
    agency_id: str | None
    """The agency holding the placement (debtor) or remitting (remittance)."""
    ref: str | None
    """The agency's payment ref this receipt settles, when the lender knows it."""
    amount_minor: int
    currency: str
    day: int
    period: tuple[int, int] | None = None
    """A remittance's first and last day of collections (inclusive)."""


__all__ = ["AgencyPayment", "Contract", "LenderReceipt", "ReceiptKind", "Tolerance"]
