"""What a borrower notice says: the wire model and its text in each language (pure).

``render_notice`` turns the facts of one placement (the agency's and the lender's registration,
the letter, what was shared) into the exact bytes queued in the outbox. The text comes from
Jinja2 templates, one per notice kind and language (``<kind>.<language>.txt``: first line the
subject, the rest the body), shipped in ``gateway/notices/templates`` and overridable per file
by the lender (``[notices] templates_dir``). Templates are read once, when the
``NoticeTemplates`` is built; rendering does no I/O.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import jinja2

from gateway.config.lender import Registration
from gateway.dispatch.packets import RenderedPacket, canonical_json, dedupe_key
from gateway.errors import ConfigError
from schemas.notices import (
    BorrowerNotice,
    BorrowerNoticeData,
    NoticeAgency,
    NoticeDisclosure,
    NoticeKind,
    NoticeLanguage,
    NoticeLetter,
    NoticeMessage,
)

NOTICE_SENDER: Final = "lender.notices"
"""The outbox's recipient id for the lender's messaging service. Agency ids are upper case
(``^[A-Z][A-Z0-9_]*$``), so this can never be an agency's."""
NOTICE_PACKET: Final = "borrower.notice"
PACKAGED_TEMPLATES: Final = Path(__file__).with_name("templates")
KINDS: Final[tuple[NoticeKind, ...]] = ("placed", "moved", "recalled")
DEBT_DETAILS: Final = "debt.details"
"""The loan itself (contract, amounts, days overdue): always provided with a placement."""

CATEGORY_LABELS: Final[dict[str, dict[str, str]]] = {
    "zh-CN": {
        "debtor.debtor_id": "客户编号",
        DEBT_DETAILS: "借款及欠款信息",
        "debtor.name": "姓名",
        "debtor.national_id": "身份证号码",
        "debtor.phones": "手机号码",
        "debtor.address": "地址",
        "debtor.region": "所在地区",
    },
    "en": {
        "debtor.debtor_id": "customer number",
        DEBT_DETAILS: "loan and amounts owed",
        "debtor.name": "name",
        "debtor.national_id": "ID number",
        "debtor.phones": "phone numbers",
        "debtor.address": "address",
        "debtor.region": "region",
    },
}
PURPOSE_LABELS: Final[dict[str, dict[str, str]]] = {
    "collection": {"zh-CN": "委托催收您的逾期借款", "en": "collecting your overdue loan"},
}


def notice_key(placement_id: str, kind: NoticeKind) -> str:
    """The notice's outbox dedupe key and ``webhook-id``. A placement has one notice that
    starts it (placed or moved) and one that ends it (recalled), whatever scan finds it."""
    phase = "end" if kind == "recalled" else "start"
    return dedupe_key(NOTICE_SENDER, placement_id, NOTICE_PACKET, phase)


@dataclass(frozen=True, slots=True)
class NoticeFacts:
    """Everything one notice says (read from the store and config by the scan)."""

    kind: NoticeKind
    lender_id: str
    lender: Registration
    case_id: str
    debtor_id: str
    placement_id: str
    agency: NoticeAgency
    letter: NoticeLetter | None
    categories: tuple[str, ...]
    purpose: str
    contact: str
    previous_agency: NoticeAgency | None = None
    ended_on: date | None = None


class NoticeTemplates:
    """The notice templates, read once (see the module docstring).

    Args:
        languages: the languages every notice is written in; the first is the default.
        override_dir: the lender's own templates; a file there replaces the packaged one.
    """

    def __init__(
        self, languages: Sequence[NoticeLanguage], *, override_dir: Path | None = None
    ) -> None:
        self.languages: tuple[NoticeLanguage, ...] = tuple(languages)
        search = [str(override_dir)] if override_dir is not None else []
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([*search, str(PACKAGED_TEMPLATES)], encoding="utf-8"),
            autoescape=False,  # plain text for SMS and letters, never HTML
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        self._templates: dict[tuple[str, str], jinja2.Template] = {}
        for kind in KINDS:
            for language in self.languages:
                name = f"{kind}.{language}.txt"
                try:
                    self._templates[(kind, language)] = env.get_template(name)
                except jinja2.TemplateError as exc:
                    where = override_dir or PACKAGED_TEMPLATES
                    raise ConfigError(f"[notices] template {where}/{name}: {exc}") from exc

    def message(self, facts: NoticeFacts, language: NoticeLanguage) -> NoticeMessage:
        """The notice's subject and text in ``language``."""
        labels = CATEGORY_LABELS[language]
        purpose = PURPOSE_LABELS.get(facts.purpose, {}).get(language, facts.purpose)
        context = {
            "lender": facts.lender,
            "case_id": facts.case_id,
            "agency": facts.agency,
            "previous_agency": facts.previous_agency,
            "letter": facts.letter,
            "ended_on": facts.ended_on.isoformat() if facts.ended_on else None,
            "categories": [labels.get(c, c) for c in facts.categories],
            "purpose": purpose,
            "contact": facts.contact,
        }
        try:
            rendered = self._templates[(facts.kind, language)].render(context)
        except jinja2.TemplateError as exc:
            raise ConfigError(
                f"[notices] template {facts.kind}.{language}.txt failed for placement "
                f"{facts.placement_id}: {exc}"
            ) from exc
        subject, _, body = rendered.strip().partition("\n")
        return NoticeMessage(language=language, subject=subject.strip(), text=body.strip())


def render_notice(
    facts: NoticeFacts, templates: NoticeTemplates, *, now: datetime
) -> RenderedPacket:
    """The notice's exact bytes, with its dedupe key (see ``notice_key``)."""
    key = notice_key(facts.placement_id, facts.kind)
    starts = facts.kind != "recalled"
    notice = BorrowerNotice(
        type=NOTICE_PACKET,
        timestamp=now,
        data=BorrowerNoticeData(
            notice_id=key,
            kind=facts.kind,
            lender_id=facts.lender_id,
            case_id=facts.case_id,
            debtor_id=facts.debtor_id,
            placement_id=facts.placement_id,
            agency=facts.agency,
            previous_agency=facts.previous_agency,
            letter=facts.letter,
            ended_on=facts.ended_on,
            disclosure=NoticeDisclosure(
                recipient=facts.agency.legal_name,
                recipient_phone=facts.agency.phone,
                categories=facts.categories,
                purpose=facts.purpose,
                lender_contact=facts.contact,
            )
            if starts
            else None,
            language=templates.languages[0],
            messages=tuple(templates.message(facts, lang) for lang in templates.languages),
        ),
    )
    payload = canonical_json(notice.model_dump(mode="json", exclude_none=True))
    return RenderedPacket(key, NOTICE_PACKET, 1, payload)


__all__ = [
    "CATEGORY_LABELS",
    "DEBT_DETAILS",
    "KINDS",
    "NOTICE_PACKET",
    "NOTICE_SENDER",
    "NoticeFacts",
    "NoticeTemplates",
    "notice_key",
    "render_notice",
]
