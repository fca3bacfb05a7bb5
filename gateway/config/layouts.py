"""Configuration of file layouts: the ``[sftp.layout]`` section of an SFTP agency's file.

How records are written to and read from the files exchanged with an agency, for both
directions: the format (CSV, JSON Lines or fixed-width), encoding, date, timestamp and money
formats, and per record kind the columns, each mapping a header to a dotted field of the
record. Kinds the agency file does not map use :data:`DEFAULT_COLUMNS`::

    [sftp.layout]
    format = "csv"
    encoding = "gb18030"

    [[sftp.layout.columns."placement.created"]]
    name = "PLACEMENT_ID"
    field = "data.placement_id"

These models only describe a layout: adapters/sftp/layouts.py writes records with it and
adapters/sftp/parsing.py reads them back.
"""

from datetime import UTC, tzinfo
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RecordKind = Literal[
    "placement.created",
    "placement.amended",
    "placement.expiring",
    "placement.recalled",
    "payment.direct",
    "payment.attributed",
    "data.deletion_requested",
    "request.decided",
    "settlement.statement",
    "result",
    "statement",
]
"""What a row describes: one of our packet types (a ``settlement.statement`` is one row per
statement line and a summary row), an agency result event or a statement line."""

CellKind = Literal["text", "int", "money", "currency", "date", "timestamp", "bool", "list"]
"""How a cell is written and read (see adapters/sftp/layouts.py)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnSpec(_Section):
    """One column: its header ``name`` and the dotted ``field`` of the record it carries
    (``data.balance``, ``data.debtor.name``; ``type`` and ``timestamp`` for the envelope).
    ``width``, ``align`` and ``pad`` apply to fixed-width files (width in encoded bytes).
    ``separator`` joins the items of a ``list`` cell (the layout's ``list_separator`` when
    unset)."""

    name: str = Field(min_length=1, max_length=64)
    field: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
    kind: CellKind = "text"
    width: int | None = Field(default=None, ge=1, le=1000)
    align: Literal["left", "right"] = "left"
    pad: str = Field(default=" ", min_length=1, max_length=1)
    separator: str | None = Field(default=None, min_length=1, max_length=1)

    @model_validator(mode="after")
    def _separator_fits_a_cell(self) -> Self:
        if self.separator is not None and self.separator in ("\r", "\n", '"'):
            raise ValueError(f"{self.name}: separator cannot be a quote or a line break")
        return self


def _cols(*specs: tuple[str, str, CellKind]) -> tuple[ColumnSpec, ...]:
    return tuple(ColumnSpec(name=n, field=f, kind=k) for n, f, k in specs)


def _fixed(*specs: tuple[str, str, CellKind, int]) -> tuple[ColumnSpec, ...]:
    return tuple(ColumnSpec(name=n, field=f, kind=k, width=w) for n, f, k, w in specs)


DEFAULT_COLUMNS: dict[RecordKind, tuple[ColumnSpec, ...]] = {
    "placement.created": _cols(
        ("RECORD_TYPE", "type", "text"),
        ("PACKET_ID", "data.packet_id", "text"),
        ("PLACEMENT_ID", "data.placement_id", "text"),
        ("CASE_ID", "data.case_id", "text"),
        ("BUCKET", "data.bucket", "text"),
        ("DPD", "data.dpd", "int"),
        ("BALANCE", "data.balance", "money"),
        ("PRINCIPAL", "data.principal", "money"),
        ("CURRENCY", "data.balance.currency", "currency"),
        ("DUE_DATE", "data.due_date", "date"),
        ("PRODUCT", "data.product", "text"),
        ("CREDIT_GRADE", "data.credit_grade", "text"),
        ("DEBTOR_ID", "data.debtor.debtor_id", "text"),
        ("NAME", "data.debtor.name", "text"),
        ("NATIONAL_ID", "data.debtor.national_id", "text"),
        ("PHONES", "data.debtor.phones", "list"),
        ("ADDRESS", "data.debtor.address", "text"),
        ("REGION", "data.debtor.region", "text"),
        ("PLACED_AT", "data.placed_at", "timestamp"),
        ("RETURN_BY", "data.return_by", "date"),
    ),
    "placement.amended": _cols(
        ("RECORD_TYPE", "type", "text"),
        ("PACKET_ID", "data.packet_id", "text"),
        ("PLACEMENT_ID", "data.placement_id", "text"),
        ("CASE_ID", "data.case_id", "text"),
        ("VERSION", "data.version", "int"),
        ("BALANCE", "data.balance", "money"),
        ("PREVIOUS_BALANCE", "data.previous_balance", "money"),
        ("CURRENCY", "data.balance.currency", "currency"),
        ("REASON", "data.reason", "text"),
        # Added with renewals: empty unless the amendment renews the placement.
        ("RETURN_BY", "data.return_by", "date"),
    ),
    # With widths, like data.deletion_requested, so fixed-width layouts agreed before this
    # kind existed still load.
    "placement.expiring": _fixed(
        ("RECORD_TYPE", "type", "text", 24),
        ("PACKET_ID", "data.packet_id", "text", 44),
        ("PLACEMENT_ID", "data.placement_id", "text", 64),
        ("CASE_ID", "data.case_id", "text", 64),
        ("RETURN_BY", "data.return_by", "date", 10),
        ("RECALL_ON", "data.recall_on", "date", 10),
    ),
    "placement.recalled": _cols(
        ("RECORD_TYPE", "type", "text"),
        ("PACKET_ID", "data.packet_id", "text"),
        ("PLACEMENT_ID", "data.placement_id", "text"),
        ("CASE_ID", "data.case_id", "text"),
        ("REASON_CODE", "data.reason_code", "text"),
        ("RECALLED_AT", "data.recalled_at", "timestamp"),
    ),
    "payment.direct": _cols(
        ("RECORD_TYPE", "type", "text"),
        ("PACKET_ID", "data.packet_id", "text"),
        ("PLACEMENT_ID", "data.placement_id", "text"),
        ("CASE_ID", "data.case_id", "text"),
        ("PAYMENT_ID", "data.payment_id", "text"),
        ("AMOUNT", "data.amount", "money"),
        ("CURRENCY", "data.amount.currency", "currency"),
        ("PAID_AT", "data.paid_at", "timestamp"),
        # Added with the lender_collects money model: empty under agency_remits.
        ("ATTRIBUTION_RULE", "data.attribution.rule", "text"),
        ("ATTRIBUTION_SHARE_BPS", "data.attribution.share_bps", "int"),
        ("ATTRIBUTED_AMOUNT", "data.attribution.amount", "money"),
    ),
    # With widths, so fixed-width layouts agreed before this kind existed still load.
    "payment.attributed": _fixed(
        ("RECORD_TYPE", "type", "text", 24),
        ("PACKET_ID", "data.packet_id", "text", 44),
        ("PLACEMENT_ID", "data.placement_id", "text", 64),
        ("CASE_ID", "data.case_id", "text", 64),
        ("PAYMENT_ID", "data.payment_id", "text", 64),
        ("AMOUNT", "data.amount", "money", 20),
        ("CURRENCY", "data.amount.currency", "currency", 3),
        ("PAID_AT", "data.paid_at", "timestamp", 25),
        ("ATTRIBUTION_RULE", "data.attribution.rule", "text", 12),
        ("ATTRIBUTION_SHARE_BPS", "data.attribution.share_bps", "int", 5),
        ("ATTRIBUTED_AMOUNT", "data.attribution.amount", "money", 20),
    ),
    # With widths, so that fixed-width layouts agreed before this kind existed still load;
    # CSV ignores them. CATEGORIES joins the data categories with "|".
    "data.deletion_requested": (
        *_fixed(
            ("RECORD_TYPE", "type", "text", 24),
            ("PACKET_ID", "data.packet_id", "text", 44),
            ("PLACEMENT_ID", "data.placement_id", "text", 64),
            ("CASE_ID", "data.case_id", "text", 64),
            ("REASON", "data.reason", "text", 8),
            ("ENDED_AT", "data.ended_at", "timestamp", 25),
            ("DELETE_BY", "data.delete_by", "date", 10),
        ),
        ColumnSpec(
            name="CATEGORIES", field="data.categories", kind="list", width=200, separator="|"
        ),
        *_fixed(("LEGAL_BASIS", "data.legal_basis", "text", 200)),
    ),
    # With widths, like data.deletion_requested. An approved plan's rows give its TOTAL and
    # VALID_UNTIL (the last due date); the schedule itself is the one the agency asked for
    # (a row's FIRST_DUE_DATE and FREQUENCY), in full in JSON Lines files.
    "request.decided": _fixed(
        ("RECORD_TYPE", "type", "text", 24),
        ("PACKET_ID", "data.packet_id", "text", 44),
        ("PLACEMENT_ID", "data.placement_id", "text", 64),
        ("CASE_ID", "data.case_id", "text", 64),
        ("REQUEST_ID", "data.request_id", "text", 64),
        ("REQUEST_TYPE", "data.request_type", "text", 10),
        ("DECISION", "data.decision", "text", 8),
        ("CURRENCY", "currency", "currency", 3),
        ("WAIVE_AMOUNT", "data.terms.waive_amount", "money", 20),
        ("SETTLEMENT_AMOUNT", "data.terms.settlement_amount", "money", 20),
        ("TOTAL", "data.terms.total", "money", 20),
        ("PAUSE_FROM", "data.terms.pause_from", "date", 10),
        ("PAUSE_UNTIL", "data.terms.pause_until", "date", 10),
        ("VALID_UNTIL", "data.valid_until", "date", 10),
        ("DECIDED_AT", "data.decided_at", "timestamp", 25),
        ("REASON", "data.reason", "text", 500),
    ),
    # With widths, like data.deletion_requested. A monthly statement is one LINE row per
    # statement line and one SUMMARY row with its totals (ROW says which; each row repeats
    # the statement's id, revision, month and SHA-256, which the agency's answer names).
    # Line columns are empty on the SUMMARY row and the totals' columns on LINE rows; the
    # control total is the sum of the lines' AMOUNT.
    "settlement.statement": _fixed(
        ("RECORD_TYPE", "type", "text", 24),
        ("ROW", "row", "text", 7),
        ("PACKET_ID", "data.packet_id", "text", 44),
        ("STATEMENT_ID", "data.statement_id", "int", 12),
        ("REVISION", "data.revision", "int", 4),
        ("MONTH", "data.month", "text", 7),
        ("SHA256", "data.sha256", "text", 64),
        ("LINE_NO", "data.line_no", "int", 6),
        ("PLACEMENT_ID", "data.placement_id", "text", 64),
        ("CASE_ID", "data.case_id", "text", 64),
        ("PAYMENT_ID", "data.payment_id", "text", 64),
        ("PAID_ON", "data.paid_on", "date", 10),
        ("AMOUNT", "data.amount", "money", 20),
        ("CURRENCY", "currency", "currency", 3),
        ("ATTRIBUTION_RULE", "data.attribution_rule", "text", 12),
        ("RULE", "data.rule", "text", 64),
        ("RATE_BPS", "data.rate_bps", "int", 6),
        ("COMMISSION", "data.commission", "money", 20),
        ("WITHHELD", "data.withheld", "bool", 5),
        ("LINE_COUNT", "data.line_count", "int", 6),
        ("RECOVERED", "data.recovered", "money", 20),
        ("ADJUSTMENTS", "data.adjustments", "money", 20),
        ("FEES", "data.fees", "money", 20),
        ("TOTAL", "data.total", "money", 20),
        ("WITHHELD_AMOUNT", "data.withheld_amount", "money", 20),
    ),
    "result": _cols(
        ("EVENT_TYPE", "type", "text"),
        ("EVENT_TIME", "timestamp", "timestamp"),
        ("PLACEMENT_ID", "data.placement_id", "text"),
        ("AGENCY_CASE_REF", "data.agency_case_ref", "text"),
        ("CURRENCY", "currency", "currency"),
        ("AMOUNT", "data.amount", "money"),
        ("BALANCE", "data.balance", "money"),
        ("PAYMENT_ID", "data.payment_id", "text"),
        ("PAID_AT", "data.paid_at", "timestamp"),
        ("PROMISE_ID", "data.promise_id", "text"),
        ("PROMISED_DATE", "data.promised_date", "date"),
        ("CHANNEL", "data.channel", "text"),
        ("OUTCOME", "data.outcome", "text"),
        ("ATTEMPTED_AT", "data.attempted_at", "timestamp"),
        ("EFFECTIVE", "data.effective", "bool"),
        ("ACTION", "data.action", "text"),
        ("OCCURRED_AT", "data.occurred_at", "timestamp"),
        ("COURT", "data.court", "text"),
        ("COURT_CASE_NUMBER", "data.court_case_number", "text"),
        ("REASON", "data.reason", "text"),
        ("SUMMARY", "data.summary", "text"),
        # Added with data.deleted; a CSV file whose header names only the columns before
        # them is still read (adapters.sftp.parsing).
        ("METHOD", "data.method", "text"),
        ("REFERENCE", "data.reference", "text"),
        # Added with the waiver, instalment and pause requests; a plan's own schedule (a
        # list of dates and amounts) travels in JSON Lines files and webhooks only: a CSV
        # or fixed-width row gives FIRST_DUE_DATE and FREQUENCY.
        ("REQUEST_ID", "data.request_id", "text"),
        ("WAIVE_AMOUNT", "data.waive_amount", "money"),
        ("SETTLEMENT_AMOUNT", "data.settlement_amount", "money"),
        ("EVIDENCE_REF", "data.evidence_ref", "text"),
        ("INSTALMENTS", "data.instalments", "int"),
        ("FIRST_DUE_DATE", "data.first_due_date", "date"),
        ("FREQUENCY", "data.frequency", "text"),
        ("TOTAL", "data.total", "money"),
        ("PAUSE_FROM", "data.pause_from", "date"),
        ("PAUSE_UNTIL", "data.pause_until", "date"),
        # Added with attribution.disputed (REASON says why).
        ("RECEIPT_ID", "data.receipt_id", "text"),
        ("AMOUNT_CLAIMED", "data.amount_claimed", "money"),
        # Added with settlement statements: the answer to a settlement.statement (REASON
        # says why a dispute; LINE_NOS joins the line numbers in question).
        ("STATEMENT_ID", "data.statement_id", "int"),
        ("REVISION", "data.revision", "int"),
        ("SHA256", "data.sha256", "text"),
        ("LINE_NOS", "data.line_nos", "list"),
        ("CLAIMED", "data.claimed", "money"),
        # Added with collector conduct: whom a contact reached (debtor when empty), why a
        # third party, the collector and the call recording.
        ("PARTY", "data.party", "text"),
        ("PURPOSE", "data.purpose", "text"),
        ("COLLECTOR_ID", "data.collector_id", "text"),
        ("RECORDING_REF", "data.recording_ref", "text"),
    ),
    "statement": _cols(
        ("PLACEMENT_ID", "placement_id", "text"),
        ("BALANCE", "balance", "money"),
        ("CURRENCY", "currency", "currency"),
        ("STATUS", "status", "text"),
        ("PERIOD_START", "period_start", "date"),
        ("PERIOD_END", "period_end", "date"),
    ),
}
"""Columns used for a record kind the agency file does not map itself."""


class LayoutSection(_Section):
    """How records are written to and read from files, for both directions.

    ``columns`` maps a record kind (a packet type, ``result`` or ``statement``) to its
    columns; kinds left out use ``DEFAULT_COLUMNS``. JSON Lines files carry whole records
    (the packet exactly as it is stored and hashed, one per line) and ignore columns.
    """

    format: Literal["csv", "jsonl", "fixed"] = "csv"
    encoding: Literal["utf-8", "utf-8-sig", "gb18030"] = Field(
        default="utf-8", description="utf-8-sig writes a byte-order mark"
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = True
    line_ending: Literal["lf", "crlf"] = "lf"
    date_format: str = "%Y-%m-%d"
    timestamp_format: str = "%Y-%m-%dT%H:%M:%SZ"
    timezone: str = Field(
        default="Asia/Shanghai",
        description="the zone of times written without an offset (the lender's by default); "
        "a format ending in a literal Z is UTC, one with %z carries its offset",
    )
    money_format: Literal["decimal", "minor"] = Field(
        default="decimal", description="decimal: 1234.56; minor: 123456 (integer minor units)"
    )
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    list_separator: str = Field(default=";", min_length=1, max_length=1)
    trailer: bool = Field(
        default=False, description="end data files with a TRAILER record (count, total)"
    )
    columns: dict[RecordKind, tuple[ColumnSpec, ...]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from None
        return value

    @property
    def zone(self) -> tzinfo:
        """Where a time without an offset is: UTC for a format that ends in a literal ``Z``
        (the default ISO form says so itself), else ``timezone``."""
        if self.timestamp_format.endswith("Z") and not self.timestamp_format.endswith("%Z"):
            return UTC
        return ZoneInfo(self.timezone)

    def columns_for(self, kind: RecordKind) -> tuple[ColumnSpec, ...]:
        return self.columns.get(kind) or DEFAULT_COLUMNS[kind]

    @property
    def extension(self) -> str:
        return {"csv": "csv", "jsonl": "jsonl", "fixed": "txt"}[self.format]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.format == "jsonl" and self.encoding != "utf-8":
            raise ValueError("JSON Lines files are always utf-8 (without a byte-order mark)")
        if self.format == "fixed":
            for kind in DEFAULT_COLUMNS:
                missing = [c.name for c in self.columns_for(kind) if c.width is None]
                if missing:
                    raise ValueError(
                        f"fixed-width columns need a width: columns.{kind}: {missing} "
                        "(map every record kind the agency exchanges, with widths)"
                    )
        if self.delimiter in ("\r", "\n", '"'):
            raise ValueError("delimiter cannot be a quote or a line break")
        return self


__all__ = ["DEFAULT_COLUMNS", "CellKind", "ColumnSpec", "LayoutSection", "RecordKind"]
