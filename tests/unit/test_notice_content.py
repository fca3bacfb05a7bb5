"""Rendering a borrower notice (gateway.notices.content): the wire model, the text in each
language from the packaged or the lender's templates, and a stable notice id per placement and
phase."""

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.notices.content import NoticeFacts, NoticeTemplates, notice_key, render_notice
from schemas.notices import BorrowerNotice, NoticeAgency, NoticeLetter
from tests.notice_world import LENDER

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AGENCY = NoticeAgency(
    agency_id="AGY_ONE", legal_name="甲催收服务有限公司", legal_name_en="Alpha Ltd.", phone="021-1"
)
BEFORE = NoticeAgency(agency_id="AGY_TWO", legal_name="乙信息咨询有限公司", phone="021-2")
LETTER = NoticeLetter(
    letter_no="SQ2026-000007-K",
    valid_from=date(2026, 3, 2),
    valid_until=date(2026, 8, 29),
    verify_url="https://verify.example.cn/verify?letter=SQ2026-000007-K",
)


def facts(**overrides: object) -> NoticeFacts:
    values: dict[str, object] = {
        "kind": "placed",
        "lender_id": "LENDERX",
        "lender": LENDER,
        "case_id": "ACC-0007",
        "debtor_id": "DEB-0007",
        "placement_id": "PL-ACC-0007-1",
        "agency": AGENCY,
        "letter": LETTER,
        "categories": ("debtor.debtor_id", "debtor.name", "debtor.phones", "debt.details"),
        "purpose": "collection",
        "contact": "400-800-0000",
    }
    values.update(overrides)
    return NoticeFacts(**values)  # type: ignore[arg-type]


def test_a_placed_notice_names_the_agency_the_letter_and_what_was_shared() -> None:
    packet = render_notice(facts(), NoticeTemplates(["zh-CN", "en"]), now=NOW)
    notice = BorrowerNotice.model_validate_json(packet.payload)
    assert packet.dedupe_key == notice.data.notice_id == notice_key("PL-ACC-0007-1", "placed")
    assert packet.packet_type == "borrower.notice"
    zh, en = notice.data.messages
    assert zh.subject == "您的借款已委托甲催收服务有限公司催收"
    for needle in (
        "SQ2026-000007-K",
        "2026-08-29",
        LETTER.verify_url,
        "姓名、手机号码",
        "400-800-0000",
    ):
        assert needle in zh.text
    assert "Alpha Ltd." in en.subject and "name, phone numbers" in en.text
    assert notice.data.disclosure is not None
    assert notice.data.disclosure.categories[-1] == "debt.details"
    # Canonical bytes: what is stored, hashed and signed, rendered the same way twice.
    again = render_notice(facts(), NoticeTemplates(["zh-CN", "en"]), now=NOW)
    assert again.payload == packet.payload
    assert json.loads(packet.payload)["type"] == "borrower.notice"


def test_moved_and_recalled_notices_share_the_placements_phase_ids() -> None:
    templates = NoticeTemplates(["zh-CN"])
    moved = render_notice(facts(kind="moved", previous_agency=BEFORE), templates, now=NOW)
    assert moved.dedupe_key == notice_key("PL-ACC-0007-1", "placed")  # one start per placement
    assert (
        "乙信息咨询有限公司"
        in BorrowerNotice.model_validate_json(moved.payload).data.messages[0].text
    )
    ended = render_notice(facts(kind="recalled", ended_on=date(2026, 4, 1)), templates, now=NOW)
    notice = BorrowerNotice.model_validate_json(ended.payload)
    assert ended.dedupe_key != moved.dedupe_key
    assert notice.data.disclosure is None
    assert "2026-04-01" in notice.data.messages[0].text and "已撤销" in notice.data.messages[0].text


def test_the_lenders_template_replaces_the_packaged_one(tmp_path: Path) -> None:
    (tmp_path / "placed.en.txt").write_text(
        "Notice {{ letter.letter_no }}\nCall {{ agency.phone }}.\n", encoding="utf-8"
    )
    templates = NoticeTemplates(["en"], override_dir=tmp_path)
    notice = BorrowerNotice.model_validate_json(render_notice(facts(), templates, now=NOW).payload)
    [message] = notice.data.messages
    assert (message.subject, message.text) == ("Notice SQ2026-000007-K", "Call 021-1.")


def test_a_broken_template_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "placed.en.txt").write_text("{{ agency.nickname }}\nx\n", encoding="utf-8")
    templates = NoticeTemplates(["en"], override_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"placed\.en\.txt failed for placement PL-ACC-0007-1"):
        render_notice(facts(), templates, now=NOW)
    (tmp_path / "moved.en.txt").write_text("{% if %}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"moved\.en\.txt"):
        NoticeTemplates(["en"], override_dir=tmp_path)
