"""The register file (``config/register.toml``): the lender's register kept as text, which
``register import`` loads. One ``[[agencies]]`` table per agency::

    [[agencies]]
    id = "AGY_ALPHA"
    legal_name = "上海阿尔法资产管理有限公司"
    registration_number = "91310115MA1K3ABC2D"     # 统一社会信用代码
    business_scope = "..."
    licence = "..."                                # optional
    status = "admitted"                            # admitted | suspended | terminated | blacklisted
    share_bps = 10000                              # optional
    contract = { reference = "C-2026-01", start = 2026-01-01, end = 2027-12-31 }
    dpa = { reference = "DPA-2026-01", signed_on = 2025-12-20 }
    deposit = { amount_minor = 50000000, currency = "CNY" }
    review = { by = "risk committee", on = 2025-12-15, conclusion = "...", reference = "RC-7" }

    [[agencies.qualifications]]
    kind = "business_licence"
    file = "register/alpha-licence.pdf"            # hashed on import (not stored); or
    # sha256 = "<64 hex digits>"                    # the hash of a file kept elsewhere
    issued = 2024-03-01
    expires = 2034-02-28                           # the last valid day; omit: no expiry
    required = true                                # allocation stops when it lapses

``read_register_file`` validates the whole file and raises ConfigError listing every problem
with its file and key; relative ``file`` paths resolve against the register file's folder.
"""

import hashlib
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.config.settings import format_validation_error, read_toml
from gateway.errors import ConfigError
from gateway.register.standing import FULL_SHARE_BPS, Qualification, Status


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContractTerms(_Strict):
    reference: str | None = Field(default=None, max_length=128)
    start: date
    end: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "ContractTerms":
        if self.end is not None and self.end < self.start:
            raise ValueError(f"contract ends ({self.end}) before it starts ({self.start})")
        return self


class Agreement(_Strict):
    reference: str = Field(max_length=128)
    signed_on: date


class Deposit(_Strict):
    amount_minor: int = Field(ge=0)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


class Review(_Strict):
    by: str = Field(max_length=64)
    on: date
    conclusion: str = Field(max_length=500)
    reference: str | None = Field(default=None, max_length=128)


class QualificationSpec(_Strict):
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")
    file: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    reference: str | None = Field(default=None, max_length=200)
    issued: date | None = None
    expires: date | None = None
    required: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> "QualificationSpec":
        if (self.file is None) == (self.sha256 is None):
            raise ValueError("give the document as exactly one of file or sha256")
        if self.issued and self.expires and self.expires < self.issued:
            raise ValueError(f"expires ({self.expires}) before issued ({self.issued})")
        return self


class AgencySpec(_Strict):
    id: str = Field(pattern=r"^[A-Z0-9_]{2,32}$")
    legal_name: str = Field(min_length=1, max_length=200)
    registration_number: str = Field(min_length=1, max_length=64)
    business_scope: str = ""
    licence: str | None = Field(default=None, max_length=200)
    status: Status = "admitted"
    status_reason: str | None = Field(default=None, max_length=500)
    share_bps: int = Field(default=FULL_SHARE_BPS, ge=0, le=FULL_SHARE_BPS)
    contract: ContractTerms
    dpa: Agreement | None = None
    deposit: Deposit = Deposit(amount_minor=0)
    review: Review | None = None
    qualifications: tuple[QualificationSpec, ...] = ()

    def details(self) -> dict[str, Any]:
        """The register's detail columns (gateway.register.store.DETAIL_FIELDS)."""
        return {
            "legal_name": self.legal_name,
            "registration_number": self.registration_number,
            "business_scope": self.business_scope,
            "licence": self.licence,
            "contract_ref": self.contract.reference,
            "contract_start": self.contract.start,
            "contract_end": self.contract.end,
            "dpa_ref": self.dpa.reference if self.dpa else None,
            "dpa_signed_on": self.dpa.signed_on if self.dpa else None,
            "deposit_minor": self.deposit.amount_minor,
            "deposit_currency": self.deposit.currency,
            "review_by": self.review.by if self.review else None,
            "review_on": self.review.on if self.review else None,
            "review_conclusion": self.review.conclusion if self.review else None,
            "review_ref": self.review.reference if self.review else None,
        }


class RegisterFile(_Strict):
    agencies: tuple[AgencySpec, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> "RegisterFile":
        seen: set[str] = set()
        for agency in self.agencies:
            if agency.id in seen:
                raise ValueError(f"agency {agency.id} is listed twice")
            seen.add(agency.id)
        return self


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def qualification_of(spec: QualificationSpec, base: Path) -> Qualification:
    """The qualification a spec names, its file hashed (ConfigError when it cannot be read)."""
    name = None
    if spec.file is not None:
        path = Path(spec.file)
        path = path if path.is_absolute() else base / path
        try:
            sha = file_sha256(path)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the {spec.kind} document: {exc}") from None
        name = path.name
    else:
        sha = str(spec.sha256)
    return Qualification(
        kind=spec.kind,
        sha256=sha,
        issued_on=spec.issued,
        expires_on=spec.expires,
        required=spec.required,
        reference=spec.reference,
        file_name=name,
    )


def read_register_file(path: Path) -> RegisterFile:
    """Read and validate a register file; ConfigError listing every problem."""
    raw = read_toml(path)
    try:
        return RegisterFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None


__all__ = [
    "AgencySpec",
    "RegisterFile",
    "file_sha256",
    "qualification_of",
    "read_register_file",
]
