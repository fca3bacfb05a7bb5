"""Attribution of lender receipts to the placement that held the case (pure).

Theory of operation
-------------------
Under the ``lender_collects`` money model the borrower repays through the lender's own
channels and each agency is paid commission on the repayments *attributed* to the placements
it held. ``attribute`` decides, for one receipt, who is credited:

* A receipt from the debtor (kind ``debtor``) is looked up on its case's *tenures*: each
  placement of the case from ``placed_at`` to its end (``recalled_at`` for a recall, an
  expiry or a hold; the last state change for a return, close or rejection; open-ended while
  it is still held). The placement holding the case when the lender received the money is
  credited in full (rule ``held``).
* In the grace window after a placement ended by recall, expiry or return (the *old*
  agency's ``settlement.grace_days``, counted in the lender's calendar days), the old agency
  is still credited: wholly (``grace_old``), or, when its contract says ``grace_rule =
  shared`` and another placement now holds the case, split with the new holder
  (``grace_shared``, the old agency's ``grace_share_bps``; the new holder's share is the
  rest, so the shares add up to the receipt to the cent). With nobody holding the case, a
  shared grace credits the old agency wholly (rule ``grace_old``, the reason says so).
* Otherwise the receipt is *unattributable*: one row with no placement and the reason
  (case unknown, never placed, before the first placement, between placements past the
  grace, currency differs from the placement's, a remittance).

A ``remittance`` is the agency's own transfer of money it collected: under ``agency_remits``
its commission is already kept out of it, under ``lender_collects`` the agency should not
handle cash at all; under both it is named unattributable (reason ``remittance``) and left to
the three-way match, so no commission is paid on it twice.

Every receipt gets at least one row; every row says which rule decided it.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, Literal

Rule = Literal["held", "grace_old", "grace_shared", "unattributable"]
RULES: Final[tuple[Rule, ...]] = ("held", "grace_old", "grace_shared", "unattributable")
FULL_BPS: Final = 10_000
GRACE_ENDINGS: Final = frozenset({"recalled", "returned"})
"""Ends of a placement after which the old agency keeps a grace window (an expiry and a
hold are recalls). A close (paid off) or a rejection has none."""


@dataclass(frozen=True, slots=True)
class GraceTerms:
    """An agency's grace window (its ``[settlement]`` ``grace_*`` keys)."""

    days: int = 0
    rule: Literal["old", "shared"] = "old"
    old_share_bps: int = 5_000


@dataclass(frozen=True, slots=True)
class Tenure:
    """One placement's hold of a case: from ``start`` until ``end`` (``None``: still held).
    ``ended_by`` is the placement's end state (recalled, returned, closed, rejected)."""

    placement_id: str
    agency_id: str
    currency: str
    start: datetime
    end: datetime | None = None
    ended_by: str | None = None

    def holds(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A lender receipt: ``case_id`` is the receipt's case, or its placement's case."""

    id: int
    kind: str
    case_id: str | None
    amount_minor: int
    currency: str
    received_at: datetime
    paid_on: date
    """The lender's calendar day of ``received_at``."""


@dataclass(frozen=True, slots=True)
class Share:
    """One row of ``attributions``."""

    receipt_id: int
    case_id: str | None
    placement_id: str | None
    agency_id: str | None
    amount_minor: int
    currency: str
    share_bps: int
    paid_on: date
    rule: Rule
    reason: str | None = None


def split(amount_minor: int, old_bps: int) -> tuple[int, int]:
    """(old, new) shares of ``amount_minor``: the old one rounded half-up to the minor unit,
    the new one the rest, so they add up exactly."""
    old = (amount_minor * old_bps * 2 + FULL_BPS) // (2 * FULL_BPS)
    return old, amount_minor - old


def _unattributable(r: Receipt, reason: str) -> list[Share]:
    return [
        Share(r.id, r.case_id, None, None, r.amount_minor, r.currency, FULL_BPS, r.paid_on,
              "unattributable", reason)
    ]  # fmt: skip


def _whole(r: Receipt, t: Tenure, rule: Rule, reason: str | None = None) -> list[Share]:
    return [
        Share(r.id, r.case_id, t.placement_id, t.agency_id, r.amount_minor, r.currency,
              FULL_BPS, r.paid_on, rule, reason)
    ]  # fmt: skip


def attribute(
    receipt: Receipt,
    tenures: Sequence[Tenure] | None,
    grace: Mapping[str, GraceTerms],
    *,
    ended_on: Mapping[str, date] | None = None,
) -> list[Share]:
    """The shares of ``receipt`` (see the module docstring).

    Args:
        receipt: the lender receipt.
        tenures: every placement of its case (``None``: the case is not known to us).
        grace: grace terms by agency id (an agency not in it has no grace window).
        ended_on: the lender's calendar day each ended placement ended, by placement id
            (default: the UTC date of its end).
    """
    r = receipt
    if r.kind != "debtor":
        return _unattributable(r, f"{r.kind}: an agency's own transfer, left to the three-way "
                               "match; no commission is attributed on it")  # fmt: skip
    if r.case_id is None:
        return _unattributable(r, "the receipt names no case or placement")
    if tenures is None:
        return _unattributable(r, f"case {r.case_id} is unknown")
    if not tenures:
        return _unattributable(r, f"case {r.case_id} was never placed")
    holders = sorted((t for t in tenures if t.holds(r.received_at)), key=lambda t: t.start)
    holder = holders[-1] if holders else None
    if holder is not None and holder.currency != r.currency:
        return _unattributable(r, f"currency {r.currency} differs from placement "
                               f"{holder.placement_id}'s {holder.currency}")  # fmt: skip
    old = _in_grace(r, tenures, grace, ended_on or {}, exclude=holder)
    if old is None:
        if holder is not None:
            return _whole(r, holder, "held")
        if all(r.received_at < t.start for t in tenures):
            return _unattributable(r, f"received before case {r.case_id} was first placed")
        return _unattributable(r, f"case {r.case_id} was between placements, past any grace "
                               "window")  # fmt: skip
    terms = grace[old.agency_id]
    if old.currency != r.currency:
        return _unattributable(r, f"currency {r.currency} differs from placement "
                               f"{old.placement_id}'s {old.currency}")  # fmt: skip
    if terms.rule == "old" or holder is None:
        why = None if terms.rule == "old" else "shared grace with nobody holding the case"
        return _whole(r, old, "grace_old", why)
    if holder.agency_id == old.agency_id:
        return _whole(r, holder, "held", "back with the same agency")
    old_minor, new_minor = split(r.amount_minor, terms.old_share_bps)
    return [
        Share(r.id, r.case_id, old.placement_id, old.agency_id, old_minor, r.currency,
              terms.old_share_bps, r.paid_on, "grace_shared"),
        Share(r.id, r.case_id, holder.placement_id, holder.agency_id, new_minor, r.currency,
              FULL_BPS - terms.old_share_bps, r.paid_on, "grace_shared"),
    ]  # fmt: skip


def _in_grace(
    r: Receipt,
    tenures: Sequence[Tenure],
    grace: Mapping[str, GraceTerms],
    ended_on: Mapping[str, date],
    *,
    exclude: Tenure | None,
) -> Tenure | None:
    """The most recently ended placement whose grace window covers the receipt."""
    best: tuple[datetime, Tenure] | None = None
    for t in tenures:
        if t is exclude or t.end is None or t.ended_by not in GRACE_ENDINGS:
            continue
        terms = grace.get(t.agency_id)
        if terms is None or terms.days <= 0 or r.received_at < t.end:
            continue
        end_day = ended_on.get(t.placement_id, t.end.date())
        if (r.paid_on - end_day).days <= terms.days and (best is None or best[0] < t.end):
            best = (t.end, t)
    return None if best is None else best[1]


def check_shares(receipt: Receipt, shares: Sequence[Share]) -> None:
    """Raise ``ValueError`` when ``shares`` do not add up to the receipt (a guard for the
    store pass; the property tests show it never fires)."""
    if sum(s.amount_minor for s in shares) != receipt.amount_minor or not shares:
        raise ValueError(f"attribution of receipt {receipt.id} does not add up")
    if sum(s.share_bps for s in shares) != FULL_BPS:
        raise ValueError(f"attribution of receipt {receipt.id}: shares are not 100%")


def attributed(shares: Sequence[Share]) -> dict[str, int]:
    """Minor units credited per rule (``unattributable`` included): the demo's proof that
    every receipt was attributed or named."""
    out: dict[str, int] = {}
    for s in shares:
        out[s.rule] = out.get(s.rule, 0) + s.amount_minor
    return out


def unaccounted(receipts: Mapping[int, int], rows: Iterable[tuple[int, int]]) -> dict[int, str]:
    """What is wrong with the attribution of ``receipts`` (receipt id → amount), given the
    stored ``rows`` ((receipt id, amount_minor) of every ``attributions`` row): receipt id →
    why, for each receipt without a row or whose rows do not add up to it. Empty when every
    receipt is attributed or named unattributable (the demo month's check)."""
    credited: dict[int, int] = {}
    for receipt_id, amount in rows:
        credited[receipt_id] = credited.get(receipt_id, 0) + amount
    out: dict[int, str] = {}
    for receipt_id, amount in receipts.items():
        if receipt_id not in credited:
            out[receipt_id] = "not attributed"
        elif credited[receipt_id] != amount:
            out[receipt_id] = f"rows add up to {credited[receipt_id]}, the receipt is {amount}"
    for receipt_id in credited.keys() - receipts.keys():
        out[receipt_id] = "rows of a receipt that is not in the feed"
    return out


__all__ = [
    "FULL_BPS",
    "RULES",
    "GraceTerms",
    "Receipt",
    "Rule",
    "Share",
    "Tenure",
    "attribute",
    "attributed",
    "check_shares",
    "split",
    "unaccounted",
]
