"""Who the lender and each agency are, as printed on authorisation letters and borrower
notices: legal names, unified social credit codes (统一社会信用代码), addresses and phones; and
where the lender's letters are signed and verified.

Pure pydantic, like the rest of ``gateway.config``. Nothing here is secret except the signing
key, which is a ``SecretRef`` (a file or an environment variable).
"""

from pydantic import BaseModel, ConfigDict, Field

from gateway.config.secrets import SecretRef

CREDIT_CODE_PATTERN = r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$"
"""The 18-character unified social credit code (GB 32100-2015 alphabet: no I, O, Z, S, V)."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Registration(_Section):
    """A legal entity's registration details, printed on letters and notices."""

    legal_name: str = Field(min_length=1, max_length=200, description="registered name (Chinese)")
    legal_name_en: str | None = Field(default=None, max_length=200)
    credit_code: str = Field(pattern=CREDIT_CODE_PATTERN, description="统一社会信用代码")
    address: str = Field(min_length=1, max_length=300)
    phone: str = Field(min_length=3, max_length=40, description="the public contact number")


class RepaymentAccount(_Section):
    """The lender's account that borrowers pay into, named on every authorisation letter:
    the agency may collect into this account only."""

    bank: str = Field(min_length=1, max_length=200, description="开户行, the bank and branch")
    account_name: str = Field(min_length=1, max_length=200, description="户名")
    account_no: str = Field(pattern=r"^[0-9 ]{8,40}$", description="账号")


class LenderSection(_Section):
    """``[lender]``: the lender's registration, and the letters it issues.

    ``registration`` is required before any authorisation letter or borrower notice is
    issued; ``verify_url`` is the public collector-verification page printed on letters and
    in their QR codes (``<verify_url>?letter=<letter number>``).
    """

    registration: Registration | None = None
    verify_url: str = Field(
        default="http://127.0.0.1:8088/verify",
        pattern=r"^https?://",
        description="the public verification page printed on letters and notices",
    )
    signing_certificate: SecretRef = SecretRef(file="var/keys/lender-signing.crt")
    """The lender's document-signing certificate (PEM), chain after it in the same file."""
    signing_key: SecretRef = SecretRef(file="var/keys/lender-signing.key")
    """Its private key (PEM, unencrypted PKCS#8)."""
    letter_prefix: str = Field(
        default="SQ",
        pattern=r"^[A-Z]{2,6}$",
        description="letter numbers read <prefix><year>-<sequence>-<check>",
    )
    repayment_account: RepaymentAccount | None = None
    """The account printed on letters as the only one the agency may collect into; without
    it the letter says "the lender's own repayment channels" (README "Authorisation
    letters")."""
    letter_english: bool = Field(
        default=False,
        description="add an English translation page to each letter (Chinese stays the legal text)",
    )
    letter_workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="processes that render and sign big batches of letters (1: a thread)",
    )
    letter_font: str | None = Field(
        default=None,
        description="a TrueType (.ttf/.ttc) CJK font for letters; default: the first of "
        "WenQuanYi Micro Hei, WenQuanYi Zen Hei, AR PL UMing found in /usr/share/fonts",
    )


__all__ = ["CREDIT_CODE_PATTERN", "LenderSection", "Registration", "RepaymentAccount"]
