"""``[documents]``: where the lender's document store is, and whether placements need a
signed authorisation letter (gateway.documents).

Pure pydantic, like the rest of ``gateway.config``.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DocumentsSection(BaseModel):
    """The lender's document store and the document pack of each placement.

    ``store`` is a folder laid out ``<store>/<case_id>/<file>`` (relative paths resolve
    against the gateway's base directory); a case without a folder has no store documents.
    ``letters``: ``required`` issues a signed authorisation letter for every placement and
    refuses to place cases when the letter service is not configured (no lender
    registration or signing certificate); ``off`` places cases with no letter (tests,
    benchmarks, gateways that send letters another way).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str = Field(default="var/documents", min_length=1)
    letters: Literal["required", "off"] = "required"
    statements: bool = Field(
        default=True,
        description="generate the repayment history and balance breakdown of each placement",
    )


__all__ = ["DocumentsSection"]
