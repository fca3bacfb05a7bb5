"""The borrower notice: what the gateway POSTs to the lender's messaging service.

When a case is placed with an agency, moved from one agency to another, or recalled, the
borrower must be told who holds their case, how to check that a collector really acts for the
lender, and (PIPL Art. 23) to whom their personal information was provided, what categories,
why, and whom to ask. The gateway renders the text (Chinese, optionally English) and the
lender's messaging service delivers it by SMS, app message or letter; it finds the borrower by
``debtor_id`` in its own records, so no contact details travel in the notice.

Sent as a Standard Webhooks v1.0 signed POST (``webhook-id`` is ``notice_id``, stable across
retries: deduplicate on it). Answer 2xx once it is durably accepted.
"""

from typing import Literal

from pydantic import Field

from schemas.base import Identifier, StrictModel, UtcDatetime, WireDate

NoticeKind = Literal["placed", "moved", "recalled"]
NoticeLanguage = Literal["zh-CN", "en"]


class NoticeAgency(StrictModel):
    """The agency or law firm, as registered (from its config)."""

    agency_id: Identifier
    legal_name: str = Field(min_length=1, max_length=200)
    legal_name_en: str | None = Field(default=None, max_length=200)
    phone: str = Field(min_length=3, max_length=40, description="the agency's public number")


class NoticeLetter(StrictModel):
    """The authorisation letter (授权委托书) the agency holds for this case."""

    letter_no: str = Field(min_length=1, max_length=32)
    valid_from: WireDate
    valid_until: WireDate
    verify_url: str = Field(
        description="the public verification page for this letter "
        "(`<verify page>?letter=<letter_no>`); the borrower adds the last 4 digits of their "
        "phone or ID number"
    )


class NoticeDisclosure(StrictModel):
    """The PIPL notice of providing personal information to another handler."""

    recipient: str = Field(description="the agency's registered name")
    recipient_phone: str
    categories: tuple[str, ...] = Field(
        description="the personal information provided: debtor.debtor_id, debt.details, and "
        "any of debtor.name, debtor.national_id, debtor.phones, debtor.address, debtor.region"
    )
    purpose: str = Field(description="why it was provided, e.g. collection")
    lender_contact: str = Field(description="whom the borrower asks about their information")


class NoticeMessage(StrictModel):
    """The notice's text in one language, ready to send."""

    language: NoticeLanguage
    subject: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000)


class BorrowerNoticeData(StrictModel):
    """One notice about one placement."""

    notice_id: str = Field(description="stable across retries; equals the webhook-id header")
    kind: NoticeKind = Field(
        description="placed: the case is now with `agency`; moved: it is now with `agency` "
        "and no longer with `previous_agency`; recalled: `agency` no longer acts on it"
    )
    lender_id: Identifier
    case_id: Identifier
    debtor_id: Identifier
    placement_id: Identifier
    agency: NoticeAgency
    previous_agency: NoticeAgency | None = None
    letter: NoticeLetter | None = Field(
        default=None, description="the letter the agency holds (placed, moved) or held"
    )
    ended_on: WireDate | None = Field(default=None, description="recalled: since when")
    disclosure: NoticeDisclosure | None = Field(
        default=None, description="placed and moved: the PIPL notice"
    )
    language: NoticeLanguage = Field(description="the borrower's default language")
    messages: tuple[NoticeMessage, ...] = Field(min_length=1)


class BorrowerNotice(StrictModel):
    """The envelope, like a case packet's."""

    type: Literal["borrower.notice"]
    timestamp: UtcDatetime
    data: BorrowerNoticeData


__all__ = [
    "BorrowerNotice",
    "BorrowerNoticeData",
    "NoticeAgency",
    "NoticeDisclosure",
    "NoticeKind",
    "NoticeLanguage",
    "NoticeLetter",
    "NoticeMessage",
]
