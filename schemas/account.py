"""The lender's intake row: one overdue account as exported by the lender's core system,
with the hold codes that say it must not be worked."""

import re
from datetime import date
from typing import Annotated, Final

from pydantic import Field, WithJsonSchema, field_validator, model_validator
from pydantic_core import PydanticCustomError

from schemas.base import MAX_MINOR, CurrencyCode, Identifier, StrictModel

Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 \-]{5,19}$")]

HOLD_CODE_PATTERN: Final = r"^[A-Z][A-Z0-9_]{1,31}$"
KNOWN_HOLD_CODES: Final = (
    "DECEASED",
    "BANKRUPT",
    "DISPUTE",
    "LITIGATION_HOLD",
    "COMPLAINT",
    "STUDENT",
    "SERIOUS_ILLNESS",
    "IMPRISONED",
)
"""The hold codes every part of the gateway knows; any other code matching
``HOLD_CODE_PATTERN`` (the lender's own) is accepted and works the same way."""

MAX_HOLDS: Final = 16

BREAKDOWN_FIELDS: Final = ("principal_due_minor", "interest_minor", "penalty_minor", "fees_minor")
"""The optional parts of ``balance_minor``; when all four are given they must add up to it."""

HoldCode = Annotated[str, Field(pattern=HOLD_CODE_PATTERN)]
"""A reason not to work a case: upper-case letters, digits and ``_``, 2 to 32 long."""

_HOLD_CODE = re.compile(HOLD_CODE_PATTERN)
_HOLDS_SCHEMA: Final = {
    "anyOf": [
        {
            "type": "array",
            "items": {"type": "string", "pattern": HOLD_CODE_PATTERN},
            "maxItems": MAX_HOLDS,
        },
        {"type": "string", "description": "codes separated by ';' (may be empty)"},
        {"type": "null"},
    ],
    "default": [],
}


def hold_codes(value: object) -> object:
    """The codes of a ``holds`` cell or list: split on ``;``, trimmed, upper-cased, without
    blanks and repeats, in the order given. Other values are left for validation to reject."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(";")
    if not isinstance(value, list | tuple):
        return value
    if not all(isinstance(v, str) for v in value):
        return value
    return tuple(dict.fromkeys(v.strip().upper() for v in value if v.strip()))


def is_hold_code(code: str) -> bool:
    return _HOLD_CODE.fullmatch(code) is not None


class IntakeAccount(StrictModel):
    """One overdue account. PII fields (name, national_id, phones, address) are encrypted at rest.

    In CSV files ``phones`` is a single column with numbers separated by ``;``, and so is the
    optional ``holds`` column (hold codes, e.g. ``DECEASED;DISPUTE``; empty for none).
    The optional breakdown (``principal_due_minor``, ``interest_minor``, ``penalty_minor``,
    ``fees_minor``), ``contract_no``, ``disbursed_on`` and ``annual_rate_bp`` may be left out
    or empty; when all four parts are given they must add up to ``balance_minor``.
    """

    account_id: Identifier = Field(description="The lender's account number; the case key")
    debtor_id: Identifier = Field(
        description="The lender's customer id; accounts of one debtor stay together"
    )
    name: str = Field(min_length=1, max_length=200)
    national_id: str = Field(min_length=6, max_length=32)
    phones: tuple[Phone, ...] = Field(min_length=1, max_length=8)
    address: str = Field(min_length=1, max_length=500)
    region: str = Field(
        min_length=2, max_length=16, description="Province or state code, e.g. CN-31"
    )
    product: str = Field(min_length=1, max_length=64)
    currency: CurrencyCode
    principal_minor: int = Field(
        ge=0, le=MAX_MINOR, description="Original principal in minor units"
    )
    balance_minor: int = Field(ge=0, le=MAX_MINOR, description="Outstanding balance in minor units")
    dpd: int = Field(ge=0, le=3650, description="Days past due as of export")
    credit_grade: str = Field(pattern=r"^[A-E]$")
    due_date: date = Field(description="Date the oldest unpaid instalment fell due")
    principal_due_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MINOR,
        description="Optional. Outstanding principal in minor units (principal_minor is the "
        "original principal)",
    )
    interest_minor: int | None = Field(
        default=None, ge=0, le=MAX_MINOR, description="Optional. Interest owed in minor units"
    )
    penalty_minor: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MINOR,
        description="Optional. Penalty interest and late charges owed in minor units",
    )
    fees_minor: int | None = Field(
        default=None, ge=0, le=MAX_MINOR, description="Optional. Fees owed in minor units"
    )
    contract_no: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Optional. The loan contract number",
    )
    disbursed_on: date | None = Field(
        default=None, description="Optional. Date the loan was disbursed"
    )
    annual_rate_bp: int | None = Field(
        default=None,
        ge=0,
        le=10_000,
        description="Optional. Annual interest rate in basis points (2400 = 24%)",
    )
    holds: Annotated[tuple[HoldCode, ...], WithJsonSchema(_HOLDS_SCHEMA)] = Field(
        default=(),
        max_length=MAX_HOLDS,
        description="Optional. Reasons not to work the account: DECEASED, BANKRUPT, DISPUTE, "
        "LITIGATION_HOLD, COMPLAINT, STUDENT, SERIOUS_ILLNESS, IMPRISONED or any code of the "
        "lender's matching ^[A-Z][A-Z0-9_]{1,31}$ (lower case is upper-cased). A list, or one "
        "string with codes separated by ';'. Each import sets the account's holds to this "
        "list: codes no longer listed are released.",
    )

    @field_validator("phones", mode="before")
    @classmethod
    def _split_phones(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(";") if p.strip())
        return value

    @field_validator("holds", mode="before")
    @classmethod
    def _split_holds(cls, value: object) -> object:
        return hold_codes(value)

    @field_validator(
        *BREAKDOWN_FIELDS, "contract_no", "disbursed_on", "annual_rate_bp", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        # An empty CSV cell of an optional column means "not given".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _breakdown_adds_up(self) -> "IntakeAccount":
        parts = [getattr(self, name) for name in BREAKDOWN_FIELDS]
        if all(p is not None for p in parts) and sum(parts) != self.balance_minor:
            raise PydanticCustomError(
                "breakdown_mismatch",
                "{fields} add up to {total}, not to balance_minor {balance}; the breakdown "
                "must add up to the balance",
                {
                    "fields": " + ".join(BREAKDOWN_FIELDS),
                    "total": sum(parts),
                    "balance": self.balance_minor,
                },
            )
        return self

    @field_validator("holds", mode="after")
    @classmethod
    def _sort_holds(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # One order for one set, so the same holds always hash the same (content_mac).
        return tuple(sorted(value))


__all__ = [
    "BREAKDOWN_FIELDS",
    "HOLD_CODE_PATTERN",
    "KNOWN_HOLD_CODES",
    "MAX_HOLDS",
    "HoldCode",
    "IntakeAccount",
    "hold_codes",
    "is_hold_code",
]
