"""Building blocks shared by every wire model: strict frozen models, money, identifiers."""

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = "1"
"""Major version of the wire contract. Breaking changes get a new major and a new route."""


class StrictModel(BaseModel):
    """A frozen wire model that rejects unknown fields, so a typo never passes silently."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: such an event could be signed and sent, but
        # never stored, and the agency would retry it forever.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL (U+0000)")
        return value


MIN_YEAR, MAX_YEAR = 2000, 2099
"""Dates and timestamps on the wire fall in these years; anything else is a typo or a test of
our limits, and would overflow date arithmetic (a promise due in 9999 plus its grace days)."""


def _in_range(value: date) -> None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must fall in the years {MIN_YEAR} to {MAX_YEAR}")


def _bounded_date(value: date) -> date:
    _in_range(value)
    return value


WireDate = Annotated[date, AfterValidator(_bounded_date)]
"""A calendar date (``2026-01-30``) in the years ``MIN_YEAR`` to ``MAX_YEAR``."""


def _aware_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a UTC offset, e.g. 2026-01-15T08:30:00Z")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is outside the years 1 to 9999 once in UTC") from None
    _in_range(utc)
    return utc


UtcDatetime = Annotated[datetime, AfterValidator(_aware_utc)]
"""An ISO-8601 timestamp with an explicit offset, normalised to UTC, in the years ``MIN_YEAR``
to ``MAX_YEAR``."""

Identifier = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")
]
"""An opaque ASCII identifier (case, placement, agency, payment ids)."""

MAX_MINOR = 999_999_999_999_999
"""The largest amount in minor units (15 digits): far above any one loan in any currency,
and sums of many such amounts still fit the database's 64-bit integers."""

MINOR_EXPONENT: dict[str, int] = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI"), 0
    ),
    **dict.fromkeys(("VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
"""ISO 4217 minor-unit exponents that are not 2: every place that turns minor units into
decimal text, or back (files, mail, reply sheets, the console), reads this one table."""


def minor_exponent(currency: str) -> int:
    """Digits after the decimal point in ``currency`` (2 unless ISO 4217 says otherwise)."""
    return MINOR_EXPONENT.get(currency, 2)


def decimal_text(amount_minor: int, currency: str, *, grouping: bool = False) -> str:
    """Exact decimal text of a minor-unit amount: ``123456`` CNY → ``1234.56`` (``1,234.56``
    with ``grouping``), ``1234`` JPY → ``1234``. Integer arithmetic, never a float."""
    exponent = minor_exponent(currency)
    sign = "-" if amount_minor < 0 else ""
    whole, minor = divmod(abs(amount_minor), 10**exponent)
    whole_text = f"{whole:,}" if grouping else str(whole)
    return f"{sign}{whole_text}.{minor:0{exponent}d}" if exponent else f"{sign}{whole_text}"


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 alphabetic code")]


class Money(StrictModel):
    """An amount of money: integer minor units (fen, cents) plus an ISO 4217 code. Never a float."""

    amount_minor: int = Field(
        ge=-MAX_MINOR,
        le=MAX_MINOR,
        description="Amount in minor units, e.g. 12345 = CNY 123.45",
    )
    currency: CurrencyCode

    def __str__(self) -> str:
        return money_text(self.amount_minor, self.currency)


def money_text(amount_minor: int, currency: str) -> str:
    """How an amount reads in messages and mismatch details (``CNY 1,234.50``): what
    ``str(Money(...))`` gives, without building the model, for figures already checked."""
    sign = "-" if amount_minor < 0 else ""
    whole, minor = divmod(abs(amount_minor), 100)
    return f"{currency} {sign}{whole:,}.{minor:02d}"


class _BoundedMoney(Money):
    @model_validator(mode="before")
    @classmethod
    def _from_money(cls, value: object) -> object:
        # A plain Money instance is accepted and checked against the bound.
        return value.model_dump() if isinstance(value, Money) else value


class NonNegativeMoney(_BoundedMoney):
    """Money that may be zero but never negative (balances)."""

    amount_minor: int = Field(ge=0, le=MAX_MINOR, description="Amount in minor units, zero or more")


class PositiveMoney(_BoundedMoney):
    """Money greater than zero (payments, promises, reversals)."""

    amount_minor: int = Field(
        gt=0, le=MAX_MINOR, description="Amount in minor units, greater than zero"
    )


__all__ = [
    "MAX_MINOR",
    "MAX_YEAR",
    "MIN_YEAR",
    "SCHEMA_VERSION",
    "CurrencyCode",
    "Identifier",
    "Money",
    "NonNegativeMoney",
    "PositiveMoney",
    "StrictModel",
    "UtcDatetime",
    "WireDate",
    "money_text",
]
