"""The lender's own complaint channel (pure): one complaint per CSV row or webhook body.

The lender's complaint system (its hotline, app, the regulator's referrals) sends what its
people recorded; the same ``complaint_id`` never opens two complaints. CSV files have a header
row naming the columns in any order (unknown columns are refused, empty cells are absent);
the webhook body is one JSON object with the same fields:

=================  ========  =====================================================
field              required  meaning
=================  ========  =====================================================
complaint_id       yes       the lender's reference, unique per complaint
case_id            one of    the case; resolved to the placement that held it at
placement_id                 ``contact_at`` (else at receipt), or the placement itself
received_at        yes       when the lender received it, ISO 8601 with an offset
channel            yes       how: ``hotline``, ``app``, ``regulator``, ``branch``...
category           no        one of gateway.complaints.states.CATEGORIES (``other``)
contact_at         no        when the complained-of contact happened
collector_id       no        the collector named by the debtor
summary            no        what the debtor said (personal data: sealed at rest)
=================  ========  =====================================================
"""

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field, ValidationError, field_validator, model_validator

from gateway.complaints.states import CATEGORIES
from schemas.base import Identifier, StrictModel, UtcDatetime

FIELDS = (
    "complaint_id",
    "case_id",
    "placement_id",
    "received_at",
    "channel",
    "category",
    "contact_at",
    "collector_id",
    "summary",
)


class LenderComplaint(StrictModel):
    """One complaint from the lender's channel."""

    complaint_id: Identifier
    case_id: Identifier | None = None
    placement_id: Identifier | None = None
    received_at: UtcDatetime
    channel: str = Field(min_length=1, max_length=32)
    category: str = Field(default="other", max_length=32)
    contact_at: UtcDatetime | None = None
    collector_id: str | None = Field(default=None, min_length=1, max_length=64)
    summary: str | None = Field(default=None, max_length=2000)

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        normal = value.strip().lower() or "other"
        if normal not in CATEGORIES:
            raise ValueError(f"must be one of {', '.join(CATEGORIES)}")
        return normal

    @model_validator(mode="after")
    def _names_a_case(self) -> "LenderComplaint":
        if self.case_id is None and self.placement_id is None:
            raise ValueError("give case_id or placement_id")
        return self


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row that cannot be read: its line number, the field and why."""

    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


def problems_of(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) for each error of a LenderComplaint."""
    return [(".".join(str(p) for p in e["loc"]) or "(row)", e["msg"]) for e in exc.errors()]


def parse_body(body: Mapping[str, object]) -> LenderComplaint:
    """The webhook body as a complaint; ValidationError when it is not one."""
    return LenderComplaint.model_validate(dict(body))


def read_csv(text: str) -> Iterator[tuple[int, LenderComplaint] | RowProblem]:
    """Each data row as (line number, complaint) or a RowProblem; a header naming an unknown
    column or missing a required one is one problem on line 1 and nothing else is read."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in FIELDS]
    missing = [f for f in ("complaint_id", "received_at", "channel") if f not in header]
    if unknown or missing:
        reason = "; ".join(
            ([f"unknown columns {', '.join(unknown)}"] if unknown else [])
            + ([f"missing columns {', '.join(missing)}"] if missing else [])
        )
        yield RowProblem(1, "(header)", f"{reason} (columns: {', '.join(FIELDS)})")
        return
    for row in reader:
        line = reader.line_num
        values = {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}
        try:
            yield line, LenderComplaint.model_validate(values)
        except ValidationError as exc:
            for field, reason in problems_of(exc):
                yield RowProblem(line, field, reason)


def when(complaint: LenderComplaint) -> datetime:
    """The moment that decides who is held responsible: the contact, else the receipt."""
    return complaint.contact_at or complaint.received_at


__all__ = [
    "FIELDS",
    "LenderComplaint",
    "RowProblem",
    "parse_body",
    "problems_of",
    "read_csv",
    "when",
]
