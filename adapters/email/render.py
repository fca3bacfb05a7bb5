"""Rendering referral mail to a law firm: packet bytes → subject, body, attachments, MIME (pure).

* The case data comes from the outbox packet (already rendered from the firm's field
  allowlist) and is filtered against the allowlist once more: a debtor field the firm's
  contract does not name never reaches a template, the body or the attached case file.
* Subject and body come from the firm's Jinja2 templates
  (``<templates_dir>/<language>/<name>.subject.j2`` and ``<name>.body.j2``); the subject
  always carries the tag (``[案件 PL-...]`` / ``[Case PL-...]``) that replies are matched by
  when a mail client drops ``In-Reply-To``.
* Chinese text must survive clients that do not decode RFC 2231 names (Outlook over IMAP, QQ
  Mail): the body is base64 UTF-8, headers are RFC 2047 encoded words, and each attachment
  carries both ``name="=?utf-8?b?...?="`` and ``filename*=utf-8''...``, serialised with
  ``compat32`` (the modern policy rewrites the encoded ``name`` back into RFC 2231).
* The attached case file (CSV with a UTF-8 BOM so Excel shows Chinese, or JSON) holds the
  same rows as the body. The placement's documents (its document pack) are listed with
  their SHA-256, each attached, or, for a mail that would be too large, with a signed link
  (adapters.email.links) the firm downloads it by.
"""

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32

import jinja2
from pydantic import TypeAdapter

from gateway.inbound.reply_sheet import REPLY_COLUMNS
from schemas.base import Money, decimal_text
from schemas.packets import Authorisation, CasePacket, PlacementCreated, SettlementStatement

WIRE = compat32.clone(linesep="\r\n")
CASE_PACKET: TypeAdapter[CasePacket] = TypeAdapter(CasePacket)

LABELS: Mapping[str, Mapping[str, str]] = {
    "zh": {
        "placement_id": "委托编号",
        "case_id": "案件编号",
        "bucket": "账龄分类",
        "dpd": "逾期天数",
        "balance": "欠款余额",
        "principal": "本金",
        "previous_balance": "原欠款余额",
        "currency": "币种",
        "due_date": "到期日",
        "product": "产品",
        "credit_grade": "信用等级",
        "debtor_id": "客户编号",
        "debtor_name": "姓名",
        "debtor_national_id": "身份证号",
        "debtor_phones": "电话",
        "debtor_address": "地址",
        "debtor_region": "地区",
        "placed_at": "委托时间",
        "return_by": "委托截止日",
        "recall_on": "自动撤案日",
        "version": "版本",
        "reason": "原因",
        "reason_code": "撤案原因",
        "recalled_at": "撤案时间",
        "payment_id": "还款编号",
        "amount": "金额",
        "paid_at": "还款时间",
        "ended_at": "委托终止时间",
        "delete_by": "确认删除期限",
        "categories": "个人信息类别",
        "legal_basis": "法律依据",
        "letter_no": "授权委托书编号",
        "letter_valid_until": "授权有效期至",
        "revoked_letters": "已撤销的授权委托书",
        "attribution_rule": "归属规则",
        "attribution_share": "归属比例",
        "attribution_amount": "归属金额",
        "request_id": "申请编号",
        "request_type": "申请类型",
        "decision": "审批结果",
        "decided_at": "审批时间",
        "valid_until": "有效期至",
        "waive_amount": "减免金额",
        "settlement_amount": "结清金额",
        "schedule": "分期计划",
        "total": "分期总额",
        "pause_from": "停催开始日",
        "pause_until": "停催截止日",
    },
    "en": {},
}

_NOT_FIELDS = frozenset({"packet_id", "authorisation", "documents"})
"""Packet fields that are not case fields: the letter is shown by its number, the
documents are listed on their own."""

LIST_SEPARATOR = "; "
"""Joins a list field (a deletion request's ``categories``) into one text field; the
deletion templates split it back to list the categories one per line."""

DOCUMENT_KINDS = (
    "authorisation_letter",
    "loan_contract",
    "repayment_history",
    "balance_breakdown",
    "notarisation",
    "preservation",
    "other",
)
"""The kinds of a pack's documents (gateway.store.document_tables)."""
TAG_WORDS = {"zh": ("案件", "批次"), "en": ("Case", "Batch")}
DUPLICATE_MARK = {"zh": "[可能重复]", "en": "[Possible duplicate]"}


def minor_to_text(amount_minor: int, currency: str) -> str:
    """Exact decimal text of a minor-unit amount (``123456`` CNY → ``1234.56``)."""
    return decimal_text(amount_minor, currency)


@dataclass(frozen=True, slots=True)
class CaseDocument:
    """One document of a placement's pack: always listed with its hash; ``data`` is set when
    it is attached, ``link`` (valid until ``link_expires``, ISO date) when it is not."""

    kind: str
    filename: str
    sha256: str
    size: int
    data: bytes | None = None
    link: str | None = None
    link_expires: str | None = None


@dataclass(frozen=True, slots=True)
class MailCase:
    """One packet flattened for a mail: ordered, allowlisted ``fields`` as text."""

    packet_type: str
    placement_id: str
    case_id: str
    fields: Mapping[str, str]
    documents: tuple[CaseDocument, ...] = ()


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    maintype: str
    subtype: str
    data: bytes


@dataclass(frozen=True, slots=True)
class MailContent:
    subject: str
    text: str
    attachments: tuple[Attachment, ...] = field(default=())


def _money(value: Money) -> str:
    return minor_to_text(value.amount_minor, value.currency)


def mail_case(
    payload: bytes, allowed_fields: frozenset[str], documents: Sequence[CaseDocument] = ()
) -> MailCase:
    """Flatten one outbox packet; debtor fields outside ``allowed_fields`` are dropped."""
    packet = CASE_PACKET.validate_json(payload)
    if isinstance(packet, SettlementStatement):
        return statement_case(packet, documents)
    data = packet.data
    fields: dict[str, str] = {"placement_id": data.placement_id, "case_id": data.case_id}
    if isinstance(packet, PlacementCreated):
        d = packet.data
        fields.update(
            bucket=d.bucket,
            dpd=str(d.dpd),
            balance=_money(d.balance),
            principal=_money(d.principal),
            currency=d.balance.currency,
            due_date=d.due_date.isoformat(),
            product=d.product,
            credit_grade=d.credit_grade,
            debtor_id=d.debtor.debtor_id,
        )
        debtor = {
            "name": d.debtor.name,
            "national_id": d.debtor.national_id,
            "phones": LIST_SEPARATOR.join(d.debtor.phones) if d.debtor.phones else None,
            "address": d.debtor.address,
            "region": d.debtor.region,
        }
        for name, value in debtor.items():
            if value is not None and f"debtor.{name}" in allowed_fields:
                fields[f"debtor_{name}"] = value
        fields.update(placed_at=d.placed_at.isoformat(), return_by=d.return_by.isoformat())
    else:
        for name, value in data.model_dump(mode="json").items():
            if name in fields or name in _NOT_FIELDS or value is None:
                continue
            if name == "attribution" and isinstance(value, dict):
                # a lender receipt's attribution: rule, share and amount credited
                fields["attribution_rule"] = str(value["rule"])
                fields["attribution_share"] = f"{value['share_bps'] / 100:.2f}%"
                amount = value["amount"]
                fields["attribution_amount"] = minor_to_text(
                    amount["amount_minor"], amount["currency"]
                )
            elif name == "terms" and isinstance(value, dict):
                # a request.decided packet's approved terms, one field each
                for term, given in value.items():
                    if isinstance(given, dict):
                        fields[term] = minor_to_text(given["amount_minor"], given["currency"])
                        fields.setdefault("currency", given["currency"])
                    elif isinstance(given, list):
                        fields[term] = LIST_SEPARATOR.join(
                            f"{i['due_date']} {minor_to_text(**i['amount'])}" for i in given
                        )
                    else:
                        fields[term] = str(given)
            elif isinstance(value, dict) and "amount_minor" in value:
                fields[name] = minor_to_text(value["amount_minor"], value["currency"])
                fields.setdefault("currency", value["currency"])
            elif isinstance(value, list):
                fields[name] = LIST_SEPARATOR.join(str(v) for v in value)
            else:
                fields[name] = str(value)
    letter = getattr(data, "authorisation", None)
    if isinstance(letter, Authorisation):
        fields.update(letter_no=letter.letter_no, letter_valid_until=letter.valid_until.isoformat())
    return MailCase(packet.type, data.placement_id, data.case_id, fields, tuple(documents))


def statement_case(packet: SettlementStatement, documents: Sequence[CaseDocument] = ()) -> MailCase:
    """A settlement statement as one mail "case": no placement (its outbox key
    ``statement:<id>`` stands in), the totals as fields; its lines travel in the attached
    XLSX and the signed PDF (``documents``, added by the adapter)."""
    d = packet.data
    fields = {
        "statement_id": str(d.statement_id),
        "revision": str(d.revision),
        "month": d.month,
        "sha256": d.sha256,
        "recovered": _money(d.recovered),
        "commission": _money(d.commission),
        "adjustments": _money(d.adjustments),
        "fees": _money(d.fees),
        "total": _money(d.total),
        "withheld": _money(d.withheld),
        "currency": d.total.currency,
        "lines": str(len(d.lines)),
    }
    return MailCase(packet.type, f"statement:{d.statement_id}", "", fields, tuple(documents))


def tag_for(language: str, placement_ids: Sequence[str], batch_ref: str | None) -> str:
    """The subject tag replies are matched by when threading headers are lost."""
    case_word, batch_word = TAG_WORDS[language]
    if batch_ref is not None:
        return f"[{batch_word} {batch_ref}]"
    return f"[{case_word} {placement_ids[0]}]"


def case_file(cases: Sequence[MailCase], kind: str) -> bytes:
    """The case rows as CSV (UTF-8 with BOM, CRLF) or JSON (UTF-8)."""
    rows = [dict(c.fields) for c in cases]
    for row, case in zip(rows, cases, strict=True):
        row["packet_type"] = case.packet_type
        row["documents"] = "; ".join(f"{d.filename} sha256={d.sha256}" for d in case.documents)
    if kind == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2).encode() + b"\n"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def reply_sheet(cases: Sequence[MailCase]) -> bytes:
    """A CSV the firm fills in and attaches to its reply, one pre-filled row per case."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REPLY_COLUMNS)
    for case in cases:
        if case.packet_type == "settlement.statement":
            # pre-filled to confirm: the statement, its revision and SHA-256
            given = {k: case.fields[k] for k in ("statement_id", "revision", "sha256")}
            writer.writerow([given.get(c, "") for c in REPLY_COLUMNS])
            continue
        writer.writerow(["", case.placement_id] + [""] * (len(REPLY_COLUMNS) - 2))
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def reply_form(cases: Sequence[MailCase]) -> str:
    """The plain-text reply form for firms that answer in the body (gateway.inbound.sheets)."""
    blocks = []
    for case in cases:
        blocks.append(
            "---- REPLY FORM 回复表 ----\n"
            "事件 event_type: \n"
            f"委托编号 placement_id: {case.placement_id}\n"
            "日期 occurred_at: \n"
            "律所案号 agency_case_ref: \n"
            "行动 action: \n"
            "法院 court: \n"
            "案号 court_case_number: \n"
            "还款编号 payment_id: \n"
            "金额 amount: \n"
            "原因 reason: \n"
            "---- END ----"
        )
    return "\n\n".join(blocks)


def render_content(
    env: jinja2.Environment,
    *,
    template: str,
    language: str,
    cases: Sequence[MailCase],
    firm_name: str,
    sender_name: str,
    case_file_kind: str,
    batch_ref: str | None = None,
    possible_duplicate: bool = False,
    with_reply_sheet: bool = True,
    with_reply_form: bool = False,
) -> MailContent:
    """Render subject, body and attachments for ``cases`` with the named template."""
    placement_ids = [c.placement_id for c in cases]
    tag = tag_for(language, placement_ids, batch_ref)
    zh = language == "zh"
    stem = batch_ref if batch_ref is not None else placement_ids[0]
    attachments: list[Attachment] = []
    file_name = None
    if case_file_kind != "none":
        file_name = f"{'案件资料' if zh else 'case'}_{stem}.{case_file_kind}"
        subtype = "csv" if case_file_kind == "csv" else "json"
        maintype = "text" if case_file_kind == "csv" else "application"
        attachments.append(
            Attachment(file_name, maintype, subtype, case_file(cases, case_file_kind))
        )
    sheet_name = f"{'回复表' if zh else 'reply'}_{stem}.csv" if with_reply_sheet else None
    context = {
        "cases": [
            {
                "packet_type": c.packet_type,
                "placement_id": c.placement_id,
                "case_id": c.case_id,
                "fields": dict(c.fields),
                "documents": c.documents,
            }
            for c in cases
        ],
        "firm_name": firm_name,
        "sender_name": sender_name,
        "tag": tag,
        "ref": stem,
        "labels": LABELS.get(language, {}),
        "possible_duplicate": possible_duplicate,
        "case_file_name": file_name,
        "reply_sheet_name": sheet_name,
        "reply_form": reply_form(cases) if with_reply_form else "",
        "document_kinds": DOCUMENT_KINDS,
    }
    context["case"] = context["cases"][0]  # type: ignore[index]
    subject = " ".join(
        env.get_template(f"{language}/{template}.subject.j2").render(context).split()
    )
    if tag not in subject:
        subject = f"{tag} {subject}"
    if possible_duplicate:
        subject = f"{DUPLICATE_MARK[language]} {subject}"
    text = env.get_template(f"{language}/{template}.body.j2").render(context).rstrip() + "\n"
    for case in cases:
        attachments.extend(
            Attachment(d.filename, "application", _subtype(d.filename), d.data)
            for d in case.documents
            if d.data is not None
        )
    if sheet_name is not None:
        attachments.append(Attachment(sheet_name, "text", "csv", reply_sheet(cases)))
    return MailContent(subject, text, tuple(attachments))


def _subtype(filename: str) -> str:
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"pdf": "pdf", "json": "json", "zip": "zip", "xml": "xml"}.get(ext, "octet-stream")


def attachment_part(attachment: Attachment) -> MIMEBase:
    """The compatible recipe: RFC 2047 ``name`` plus RFC 2231 ``filename``, base64 body."""
    part = MIMEBase(attachment.maintype, attachment.subtype)
    if attachment.maintype == "text":
        # Our text attachments (CSV case files, the reply sheet) are UTF-8; without the
        # charset a standard mail library decodes their Chinese as U+FFFD.
        part.set_param("charset", "utf-8")
    part.set_payload(attachment.data)
    encoders.encode_base64(part)
    part.set_param("name", Header(attachment.filename, "utf-8").encode())
    part.add_header(
        "Content-Disposition", "attachment", filename=("utf-8", "", attachment.filename)
    )
    return part


def inner_entity(content: MailContent) -> bytes:
    """The MIME entity that gets signed: text body plus attachments, CRLF line endings."""
    body = MIMEText(content.text, "plain", "utf-8")  # compat32 sends UTF-8 text as base64
    if not content.attachments:
        entity: Message = body
    else:
        entity = MIMEMultipart("mixed")
        entity.attach(body)
        for attachment in content.attachments:
            entity.attach(attachment_part(attachment))
    del entity["MIME-Version"]
    return entity.as_bytes(policy=WIRE)


__all__ = [
    "DOCUMENT_KINDS",
    "LABELS",
    "LIST_SEPARATOR",
    "Attachment",
    "CaseDocument",
    "MailCase",
    "MailContent",
    "attachment_part",
    "case_file",
    "inner_entity",
    "mail_case",
    "minor_to_text",
    "render_content",
    "reply_form",
    "reply_sheet",
    "statement_case",
    "tag_for",
]
