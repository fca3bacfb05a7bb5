"""Commission on a month of attributed repayments: pure, exact, integer minor units.

Theory of operation
-------------------
Input: one agency's commission period (``gateway.config.commission``) and the facts of each
attributed repayment of the month (amount, bucket and DPD at placement, placement age at
payment, legal stage). Output: each line's rule, rate and commission, and the month's totals.

1. The month's *recovered* total (every line's amount) picks the tier: the highest
   ``from_minor`` it reaches. Tiers apply to the whole amount: the tier's ``bonus_bps`` is
   added to every line's base rate, not only to the part above the threshold. That is how
   the contracts we settle are written (当月回款总额达到档位，全部回款按该档费率计), and it
   keeps one rate per line, so each line of the statement can be checked by hand.
2. Each line's base rate is the first matching rule's ``rate_bps``; its rate is base +
   bonus (at most 10 000 bps).
3. Line commission = amount x rate / 10 000, rounded half-up (away from zero for a
   negative amount, a reversal) to the minor unit, *per line*; then cut to
   ``line_cap_minor``.
4. The month's commission is the sum of the lines, raised to ``monthly_minimum_minor`` or
   cut to ``monthly_maximum_minor``; the difference is shown as its own amount
   (``floor_topup_minor`` / ``ceiling_cut_minor``), never spread over the lines.

Legal fees are reimbursed at cost, or at most the cap of their kind (``reimbursed``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from gateway.config.commission import CommissionPeriod, LegalFees, RateRule, Tier
from gateway.errors import SettlementError

BPS = 10_000


class CommissionError(SettlementError):
    """A line cannot be rated by the agency's commission schedule."""


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What the schedule looks at for one attributed repayment."""

    line_no: int
    amount_minor: int
    currency: str
    paid_on: date
    bucket: str
    dpd_at_placement: int
    age_days: int
    legal: bool


@dataclass(frozen=True, slots=True)
class RatedLine:
    facts: LineFacts
    rule: str
    base_bps: int
    bonus_bps: int
    rate_bps: int
    uncapped_minor: int
    commission_minor: int

    @property
    def capped(self) -> bool:
        return self.commission_minor != self.uncapped_minor


@dataclass(frozen=True, slots=True)
class MonthCommission:
    currency: str
    lines: tuple[RatedLine, ...]
    recovered_minor: int
    tier: Tier | None
    lines_minor: int
    floor_topup_minor: int
    ceiling_cut_minor: int

    @property
    def commission_minor(self) -> int:
        return self.lines_minor + self.floor_topup_minor - self.ceiling_cut_minor


def half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, halves away from zero."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    sign = -1 if numerator < 0 else 1
    return sign * ((abs(numerator) * 2 + denominator) // (2 * denominator))


def matches(rule: RateRule, facts: LineFacts) -> bool:
    if rule.buckets and facts.bucket not in rule.buckets:
        return False
    if rule.dpd_min is not None and facts.dpd_at_placement < rule.dpd_min:
        return False
    if rule.dpd_max is not None and facts.dpd_at_placement > rule.dpd_max:
        return False
    if rule.age_min_days is not None and facts.age_days < rule.age_min_days:
        return False
    if rule.age_max_days is not None and facts.age_days > rule.age_max_days:
        return False
    return rule.legal is None or rule.legal == facts.legal


def first_rule(rules: Sequence[RateRule], facts: LineFacts) -> RateRule:
    for rule in rules:
        if matches(rule, facts):
            return rule
    raise CommissionError(
        f"line {facts.line_no}: no commission rule matches (bucket {facts.bucket}, dpd "
        f"{facts.dpd_at_placement}, age {facts.age_days} days, legal {facts.legal}); add a "
        "rule without conditions as the fallback"
    )


def tier_for(tiers: Sequence[Tier], recovered_minor: int) -> Tier | None:
    reached = [t for t in tiers if recovered_minor >= t.from_minor]
    return reached[-1] if reached else None


def line_commission(amount_minor: int, rate_bps: int, cap_minor: int | None) -> tuple[int, int]:
    """(uncapped, capped) commission of one line."""
    uncapped = half_up(amount_minor * rate_bps, BPS)
    if cap_minor is None:
        return uncapped, uncapped
    return uncapped, min(uncapped, cap_minor)


def compute_month(period: CommissionPeriod, lines: Sequence[LineFacts]) -> MonthCommission:
    """Rate every line of one agency's month by ``period``; CommissionError when a line is in
    another currency or no rule matches it."""
    for facts in lines:
        if facts.currency != period.currency:
            raise CommissionError(
                f"line {facts.line_no}: currency {facts.currency} is not the period's "
                f"{period.currency}; a schedule settles one currency"
            )
    recovered = sum(f.amount_minor for f in lines)
    tier = tier_for(period.tiers, recovered)
    bonus = tier.bonus_bps if tier is not None else 0
    rated = []
    for facts in lines:
        rule = first_rule(period.rules, facts)
        rate = min(BPS, rule.rate_bps + bonus)
        uncapped, commission = line_commission(facts.amount_minor, rate, period.line_cap_minor)
        rated.append(
            RatedLine(
                facts, rule.name, rule.rate_bps, rate - rule.rate_bps, rate, uncapped, commission
            )
        )
    lines_minor = sum(r.commission_minor for r in rated)
    topup = max(0, period.monthly_minimum_minor - lines_minor)
    ceiling = period.monthly_maximum_minor
    cut = max(0, lines_minor - ceiling) if ceiling is not None else 0
    return MonthCommission(
        currency=period.currency,
        lines=tuple(rated),
        recovered_minor=recovered,
        tier=tier,
        lines_minor=lines_minor,
        floor_topup_minor=topup,
        ceiling_cut_minor=cut,
    )


def reimbursed(policy: LegalFees, kind: str, advanced_minor: int) -> int:
    """What the lender pays back of a fee the firm advanced."""
    cap = policy.cap(kind)
    return advanced_minor if cap is None else min(advanced_minor, cap)


__all__ = [
    "BPS",
    "CommissionError",
    "LineFacts",
    "MonthCommission",
    "RatedLine",
    "compute_month",
    "first_rule",
    "half_up",
    "line_commission",
    "matches",
    "reimbursed",
    "tier_for",
]
