"""The lender's intake row: one overdue account as exported by the lender's core system."""

from datetime import date
from typing import Annotated

from pydantic import Field, field_validator

from schemas.base import MAX_MINOR, CurrencyCode, Identifier, StrictModel

Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 \-]{5,19}$")]


class IntakeAccount(StrictModel):
    """One overdue account. PII fields (name, national_id, phones, address) are encrypted at rest.

    In CSV files ``phones`` is a single column with numbers separated by ``;``.
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

    @field_validator("phones", mode="before")
    @classmethod
    def _split_phones(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(";") if p.strip())
        return value


__all__ = ["IntakeAccount"]
