"""Rendering referral mail: allowlist, templates, Chinese headers and attachment names."""

import csv
import email
import io
import json
import re
from datetime import UTC, date, datetime
from email.policy import default as default_policy
from pathlib import Path

import jinja2
import pytest

from adapters.email.adapter import batch_reference, template_environment
from adapters.email.headers import message_id_for, outer_headers
from adapters.email.render import (
    CaseDocument,
    inner_entity,
    mail_case,
    minor_to_text,
    render_content,
)
from gateway.config.email import DEFAULT_TEMPLATE_NAMES
from gateway.dispatch.packets import (
    LEGAL_BASIS,
    render_created,
    render_deletion_request,
    render_recalled,
)
from schemas.packets import PACKET_TYPES, DeletionReason
from tests.factories import PII

TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "email"
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def created(allowed: frozenset[str], pii: dict[str, object] | None = None) -> bytes:
    return render_created(
        agency_id="ZHENGYI",
        placement_id="PL-AC0000000001-1",
        case_id="AC0000000001",
        bucket="LEGAL",
        dpd=400,
        balance_minor=12_345_678,
        principal_minor=10_000_000,
        currency="CNY",
        due_date=date(2025, 1, 27),
        product="CASH_LOAN",
        credit_grade="E",
        debtor_id="CU0000000001",
        region="CN-31",
        pii=pii if pii is not None else PII,
        allowed_fields=allowed,
        placed_at=NOW,
        return_by=date(2026, 8, 29),
    ).payload


def render(cases, **kw):
    env = template_environment(TEMPLATES)
    defaults = dict(
        template="referral",
        language="zh",
        cases=cases,
        firm_name="正义律师事务所",
        sender_name="贷方法务部",
        case_file_kind="csv",
    )
    defaults.update(kw)
    return render_content(env, **defaults)


def test_debtor_fields_outside_the_allowlist_never_reach_the_mail():
    # The packet carries every field; the firm may only see the name and region.
    payload = created(frozenset({"debtor.name", "debtor.national_id", "debtor.address"}))
    case = mail_case(payload, frozenset({"debtor.name", "debtor.region"}))
    assert case.fields["debtor_name"] == "张三"
    assert "debtor_national_id" not in case.fields and "debtor_address" not in case.fields
    content = render([case])
    everything = content.text + "".join(
        a.data.decode("utf-8", "replace") for a in content.attachments
    )
    assert "110101199003074514" not in everything
    assert "上海市浦东新区" not in everything
    assert "张三" in content.text


def test_amounts_are_exact_decimal_text():
    case = mail_case(created(frozenset()), frozenset())
    assert case.fields["balance"] == "123456.78"
    assert minor_to_text(-5, "CNY") == "-0.05"
    assert minor_to_text(1200, "JPY") == "1200"


def test_subject_carries_the_tag_and_the_case_file_matches_the_body():
    case = mail_case(created(frozenset({"debtor.name"})), frozenset({"debtor.name"}))
    content = render([case])
    assert content.subject == "[案件 PL-AC0000000001-1] 委托律师催收函：AC0000000001"
    names = [a.filename for a in content.attachments]
    assert names == ["案件资料_PL-AC0000000001-1.csv", "回复表_PL-AC0000000001-1.csv"]
    sheet = content.attachments[0].data
    assert sheet.startswith(b"\xef\xbb\xbf")  # so Excel reads the Chinese correctly
    [row] = list(csv.DictReader(io.StringIO(sheet.decode("utf-8-sig"))))
    assert row["placement_id"] == "PL-AC0000000001-1" and row["balance"] == "123456.78"
    assert row["debtor_name"] == "张三"
    reply_sheet = content.attachments[1].data.decode("utf-8-sig").splitlines()
    assert reply_sheet[0].startswith("event_type,placement_id,occurred_at")
    assert reply_sheet[1].startswith(",PL-AC0000000001-1,")


def test_json_case_file_and_english_templates():
    case = mail_case(created(frozenset()), frozenset())
    content = render([case], language="en", case_file_kind="json", with_reply_sheet=False)
    assert content.subject.startswith("[Case PL-AC0000000001-1] Legal collection referral")
    [attachment] = content.attachments
    assert attachment.filename == "case_PL-AC0000000001-1.json"
    assert json.loads(attachment.data)[0]["case_id"] == "AC0000000001"
    assert "Dear 正义律师事务所" in content.text


def test_documents_are_listed_with_hashes_and_attached_only_when_loaded():
    listed = CaseDocument("contract", "contract.pdf", "ab" * 32, 10, None)
    attached = CaseDocument("other", "借款合同.pdf", "cd" * 32, 3, b"pdf")
    case = mail_case(created(frozenset()), frozenset(), [listed, attached])
    content = render([case])
    assert f"contract.pdf（10 字节）sha256={'ab' * 32}（未随附，仅列出）" in content.text
    assert [a.filename for a in content.attachments if a.subtype == "pdf"] == ["借款合同.pdf"]


def test_a_resend_says_it_may_be_a_duplicate():
    case = mail_case(created(frozenset()), frozenset())
    content = render([case], possible_duplicate=True)
    assert content.subject.startswith("[可能重复] [案件 PL-")
    assert "可能与此前发送的邮件重复" in content.text


def test_batch_mail_lists_every_case_under_the_batch_tag():
    payloads = [created(frozenset()), created(frozenset())]
    cases = [mail_case(p, frozenset()) for p in payloads]
    ref = batch_reference(["pkt_b", "pkt_a"])
    assert ref == batch_reference(["pkt_a", "pkt_b"])  # fixed by the set, so resends keep it
    content = render(cases, template="batch", batch_ref=ref)
    assert content.subject.startswith(f"[批次 {ref}] 批量委托律师催收函（2 件）")
    assert content.text.count("== ") == 2


def test_recall_template():
    payload = render_recalled(
        agency_id="ZHENGYI",
        placement_id="PL-AC0000000001-1",
        case_id="AC0000000001",
        version=2,
        reason_code="PAID_DIRECT",
        at=NOW,
    ).payload
    case = mail_case(payload, frozenset())
    assert case.fields["reason_code"] == "PAID_DIRECT"
    content = render([case], template="recall")
    assert content.subject == "[案件 PL-AC0000000001-1] 撤回委托通知：AC0000000001"
    assert "停止一切催收" in content.text


def deletion(reason: DeletionReason = "recalled") -> bytes:
    return render_deletion_request(
        agency_id="ZHENGYI",
        placement_id="PL-AC0000000001-1",
        case_id="AC0000000001",
        version=3,
        reason=reason,
        ended_at=NOW,
        delete_by=date(2026, 4, 1),
        categories=("debtor.debtor_id", "debtor.name", "debtor.phones"),
        at=NOW,
    ).payload


def test_deletion_letter_in_chinese_names_the_case_the_data_the_law_and_the_date():
    case = mail_case(deletion(), frozenset({"debtor.name"}))
    content = render([case], template="deletion", with_reply_form=True)
    assert content.subject == "[案件 PL-AC0000000001-1] 委托终止，请删除个人信息：AC0000000001"
    text = content.text
    assert "委托编号 PL-AC0000000001-1（案件编号 AC0000000001）" in text
    assert "因我司撤回委托而终止" in text
    assert (
        "  - 客户编号（debtor.debtor_id）\n  - 姓名（debtor.name）\n  - 电话号码（debtor.phones）\n"
        in text
    )
    assert "《中华人民共和国个人信息保护法》第二十一条" in text and LEGAL_BASIS in text
    assert "请于 2026-04-01 前完成删除或返还" in text
    # How to confirm: the data.deleted row (method in the reason column), sheet or form.
    assert (
        "事件 event_type 填 data.deleted" in text
        and "原因 reason 填 deleted（已删除）或 returned" in text
    )
    assert "（回复表_PL-AC0000000001-1.csv，CSV 或 XLSX 均可）" in text
    assert "---- REPLY FORM 回复表 ----" in text
    assert "placement.acknowledged" not in text  # the referral's instructions do not apply
    case_file, reply_sheet = content.attachments
    [row] = list(csv.DictReader(io.StringIO(case_file.data.decode("utf-8-sig"))))
    assert row["packet_type"] == "data.deletion_requested" and row["reason"] == "recalled"
    assert row["categories"] == "debtor.debtor_id; debtor.name; debtor.phones"
    assert reply_sheet.filename == "回复表_PL-AC0000000001-1.csv"


def test_deletion_letter_in_english():
    case = mail_case(deletion("closed"), frozenset())
    content = render([case], template="deletion", language="en", case_file_kind="none")
    assert content.subject == (
        "[Case PL-AC0000000001-1] Referral ended, please delete personal data: AC0000000001"
    )
    text = content.text
    ended = "Our referral PL-AC0000000001-1 (case AC0000000001) ended on 2026-03-02T09:30:00Z"
    assert f"{ended}: the case was closed." in text
    assert "  - name (debtor.name)\n" in text and "  - phone numbers (debtor.phones)\n" in text
    assert "Article 21 of the Personal Information Protection Law" in text
    assert "by 2026-04-01" in text
    assert "event_type data.deleted" in text and "reason the method: deleted" in text
    assert "REPLY FORM" not in text  # this firm answers with the sheet only
    assert [a.filename for a in content.attachments] == ["reply_PL-AC0000000001-1.csv"]


def test_every_packet_type_has_its_letter_in_both_languages():
    assert set(PACKET_TYPES) <= set(DEFAULT_TEMPLATE_NAMES)
    for name in DEFAULT_TEMPLATE_NAMES.values():
        for language in ("zh", "en"):
            for part in ("subject", "body"):
                assert (TEMPLATES / language / f"{name}.{part}.j2").is_file(), name


def test_a_template_typo_fails_loudly(tmp_path):
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "referral.subject.j2").write_text("{{ tag }}")
    (tmp_path / "zh" / "referral.body.j2").write_text("{{ no_such_name }}")
    case = mail_case(created(frozenset()), frozenset())
    with pytest.raises(jinja2.UndefinedError):
        render_content(
            template_environment(tmp_path),
            template="referral",
            language="zh",
            cases=[case],
            firm_name="x",
            sender_name="y",
            case_file_kind="none",
        )


def test_chinese_headers_and_names_round_trip_in_both_encodings():
    case = mail_case(created(frozenset({"debtor.name"})), frozenset({"debtor.name"}))
    doc = CaseDocument("other", "公证书 2026.pdf", "00" * 32, 3, b"pdf")
    content = render(
        [mail_case(created(frozenset({"debtor.name"})), frozenset({"debtor.name"}), [doc])]
    )
    assert case.placement_id in content.subject
    entity = inner_entity(content)
    assert b"\r\n" in entity and b"\n" not in entity.replace(b"\r\n", b"")
    headers = outer_headers(
        from_address="legal@lender.test",
        from_name="贷方法务部",
        to=["intake@zhengyi.test"],
        cc=[],
        subject=content.subject,
        message_id=message_id_for("pkt_1", "lender.test"),
        date=NOW,
        ref="pkt_1",
        possible_duplicate=False,
    )
    raw = headers + b"MIME-Version: 1.0\r\n" + entity
    assert raw.isascii()  # every header is RFC 2047, every body base64
    message = email.message_from_bytes(raw, policy=default_policy)
    assert message["subject"] == content.subject
    assert message["from"].addresses[0].display_name == "贷方法务部"
    assert message["message-id"] == "<pkt_1@lender.test>"
    body = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert body["content-transfer-encoding"] == "base64" and "正义律师事务所" in body.get_content()
    names = [p.get_filename() for p in message.walk() if p.get_filename()]
    assert "公证书 2026.pdf" in names and "案件资料_PL-AC0000000001-1.csv" in names
    # Both forms on every attachment: RFC 2047 name= for Outlook and QQ Mail, RFC 2231
    # filename*= for the rest.
    assert raw.count(b'name="=?utf-8?b?') == len(names) == 3
    assert raw.count(b"filename*=utf-8''") == 3
    # A standard mail library reads the CSV attachments' Chinese: they say their charset.
    sheets = [p for p in message.walk() if p.get_content_type() == "text/csv"]
    assert sheets and all(p.get_content_charset() == "utf-8" for p in sheets)
    assert all("\ufffd" not in p.get_content() for p in sheets)
    assert any("委托编号" in p.get_content() or "placement_id" in p.get_content() for p in sheets)


@pytest.mark.parametrize(
    "subject",
    [
        "【委托】案件 PL-AC1192070168-1 逾期贷款委托催收 张三 M3 人民币 12,345.67 元 请查收",
        "[Case PL-AC1192070168-1] " + "referral " * 12,
        "短",
        "案" * 200,
        "mixed 混合 😀 emoji and ümlauts " * 4,
    ],
)
def test_the_subject_is_folded_within_rfc_2047s_limits_and_reads_back(subject: str) -> None:
    headers = outer_headers(
        from_address="legal@lender.test",
        from_name="贷方法务部",
        to=["intake@zhengyi.test"],
        cc=[],
        subject=subject,
        message_id=message_id_for("pkt_1", "lender.test"),
        date=NOW,
        ref="pkt_1",
        possible_duplicate=False,
    )
    assert headers.isascii()
    block = headers.decode("ascii")
    subject_lines = block[block.index("Subject:") :].split("\r\n")
    subject_lines = subject_lines[
        : 1 + next(i for i, line in enumerate(subject_lines[1:]) if not line.startswith(" "))
    ]
    assert all(len(line) <= 76 for line in subject_lines), subject_lines
    words = re.findall(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=", "".join(subject_lines))
    assert all(len(word) <= 75 for word in words), [len(w) for w in words]
    message = email.message_from_bytes(headers + b"\r\n", policy=default_policy)
    assert message["subject"] == subject
