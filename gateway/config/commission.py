"""An agency's commission schedule: the ``[commission]`` section of its TOML file.

Each contract period (``[[commission.periods]]``) runs in whole calendar months, ``from``
the first day of a month ``to`` the last day of a month (both inclusive), and periods never
overlap, so every statement month has at most one schedule. A period names its currency
(caps, minimums and tier thresholds are minor units of it) and holds:

- ``[[commission.periods.rules]]``: base rates in basis points; the *first* rule whose
  conditions all hold for a line decides its rate. Conditions (all optional): ``buckets``
  (the bucket the case was placed in), ``dpd_min``/``dpd_max`` (days past due at
  placement), ``age_min_days``/``age_max_days`` (days from placement to the payment) and
  ``legal`` (true: the case was with the legal tier or had a ``legal.action``; false: not).
  A rule without conditions is the fallback; a line no rule matches stops the build.
- ``[[commission.periods.tiers]]``: ``from_minor`` and ``bonus_bps``. The month's whole
  attributed total picks the highest tier it reaches, and that tier's bonus is added to the
  rate of *every* line of the month (whole-amount tiers, not marginal; README says why).
- ``line_cap_minor`` (the most commission one line can earn), ``monthly_minimum_minor`` and
  ``monthly_maximum_minor`` (the month's commission is raised to / cut down to them).

``[commission.legal_fees]`` says how court and lawyers' fees a law firm advanced are
reimbursed: ``at_cost`` or ``capped`` with a cap per fee kind.

Validation errors come out like the rest of the agency file:
``config/agencies/a.toml: commission.periods.0.rules.1.rate_bps: ...``.
"""

from datetime import date, timedelta
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config.settings import BUCKET_NAMES

FEE_KINDS = ("court", "lawyer")
"""Legal fees a firm may advance: court fees (诉讼费) and lawyers' fees (律师费)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RateRule(_Section):
    """One base-rate rule; every condition given must hold."""

    name: str = Field(min_length=1, max_length=48)
    rate_bps: int = Field(ge=0, le=10_000)
    buckets: tuple[str, ...] = ()
    dpd_min: int | None = Field(default=None, ge=0)
    dpd_max: int | None = Field(default=None, ge=0)
    age_min_days: int | None = Field(default=None, ge=0)
    age_max_days: int | None = Field(default=None, ge=0)
    legal: bool | None = None

    @model_validator(mode="after")
    def _sane(self) -> "RateRule":
        unknown = [b for b in self.buckets if b not in BUCKET_NAMES]
        if unknown:
            raise ValueError(f"unknown bucket(s) {unknown}; known: {list(BUCKET_NAMES)}")
        if self.dpd_min is not None and self.dpd_max is not None and self.dpd_min > self.dpd_max:
            raise ValueError(f"dpd_min {self.dpd_min} is above dpd_max {self.dpd_max}")
        if (
            self.age_min_days is not None
            and self.age_max_days is not None
            and self.age_min_days > self.age_max_days
        ):
            raise ValueError(
                f"age_min_days {self.age_min_days} is above age_max_days {self.age_max_days}"
            )
        return self


class Tier(_Section):
    """Reached when the month's attributed total is at least ``from_minor``."""

    from_minor: int = Field(ge=0)
    bonus_bps: int = Field(ge=0, le=10_000)
    name: str = ""


class CommissionPeriod(_Section):
    """The schedule of one contract period (whole months, both ends inclusive)."""

    start: date = Field(alias="from")
    end: date = Field(alias="to")
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    rules: tuple[RateRule, ...] = Field(min_length=1)
    tiers: tuple[Tier, ...] = ()
    line_cap_minor: int | None = Field(default=None, ge=0)
    monthly_minimum_minor: int = Field(default=0, ge=0)
    monthly_maximum_minor: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _sane(self) -> "CommissionPeriod":
        if self.start.day != 1:
            raise ValueError(f"from {self.start} must be the first day of a month")
        if (self.end + timedelta(days=1)).day != 1:
            raise ValueError(f"to {self.end} must be the last day of a month")
        if self.end < self.start:
            raise ValueError(f"to {self.end} is before from {self.start}")
        thresholds = [t.from_minor for t in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tiers must be listed by from_minor, rising, each threshold once")
        if (
            self.monthly_maximum_minor is not None
            and self.monthly_maximum_minor < self.monthly_minimum_minor
        ):
            raise ValueError(
                f"monthly_maximum_minor {self.monthly_maximum_minor} is below "
                f"monthly_minimum_minor {self.monthly_minimum_minor}"
            )
        return self

    def covers(self, day: date) -> bool:
        return self.start <= day <= self.end


class LegalFees(_Section):
    """How advanced legal fees are reimbursed."""

    mode: Literal["at_cost", "capped"] = "at_cost"
    court_cap_minor: int | None = Field(default=None, ge=0)
    lawyer_cap_minor: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _caps(self) -> "LegalFees":
        if self.mode == "capped" and self.court_cap_minor is None and self.lawyer_cap_minor is None:
            raise ValueError("mode 'capped' needs court_cap_minor or lawyer_cap_minor")
        return self

    def cap(self, kind: str) -> int | None:
        if self.mode == "at_cost":
            return None
        return self.court_cap_minor if kind == "court" else self.lawyer_cap_minor


class CommissionSection(_Section):
    """The agency's commission schedule (no periods: no commission statements)."""

    periods: tuple[CommissionPeriod, ...] = ()
    legal_fees: LegalFees = LegalFees()
    four_eyes_above_minor: int | None = Field(
        default=None,
        ge=0,
        description="issuing a statement whose total is above this needs a second person",
    )

    @model_validator(mode="after")
    def _no_overlap(self) -> "CommissionSection":
        ordered = sorted(self.periods, key=lambda p: p.start)
        for before, after in pairwise(ordered):
            if after.start <= before.end:
                raise ValueError(
                    f"periods overlap: {before.start}..{before.end} and {after.start}..{after.end}"
                )
        return self

    def period_for(self, month_start: date) -> CommissionPeriod | None:
        """The period covering the month that begins on ``month_start``."""
        return next((p for p in self.periods if p.covers(month_start)), None)


__all__ = [
    "FEE_KINDS",
    "CommissionPeriod",
    "CommissionSection",
    "LegalFees",
    "RateRule",
    "Tier",
]
