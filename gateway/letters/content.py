"""What an authorisation letter (授权委托书) says: one frozen ``LetterContent`` per letter and
the text blocks printed from it, in Chinese (the legal text) and, optionally, English.

Pure: no store, no clock, no files. ``gateway.letters.service`` gathers the values (the
lender's and the agency's registration from config, the debtor from the case's sealed
personal data, the placement dates) and ``gateway.letters.render`` lays the blocks out.
"""

from dataclasses import dataclass
from datetime import date
from typing import Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from gateway.config.lender import Registration, RepaymentAccount

Style = Literal["title", "heading", "body", "small"]


@dataclass(frozen=True, slots=True)
class Block:
    """One paragraph: its style and its text (wrapped by the renderer)."""

    style: Style
    text: str


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units with its ISO currency."""

    minor: int
    currency: str

    def __str__(self) -> str:
        sign = "-" if self.minor < 0 else ""
        major, cents = divmod(abs(self.minor), 100)
        return f"{self.currency} {sign}{major:,}.{cents:02d}"


@dataclass(frozen=True, slots=True)
class LetterContent:
    """Everything printed on one letter."""

    letter_no: str
    issued_on: date
    valid_from: date
    valid_until: date
    lender: Registration
    agency: Registration
    account: RepaymentAccount | None
    case_id: str
    placement_id: str
    debtor_name: str
    debtor_id_masked: str
    contract_no: str | None
    balance: Money
    principal_due: Money | None
    interest: Money | None
    penalty: Money | None
    fees: Money | None
    verify_link: str
    english: bool = False


def mask_national_id(national_id: str) -> str:
    """The id as printed: the first six and last four characters, the rest starred
    (``110101********1234``); a short id keeps only its last four."""
    text = national_id.strip()
    if len(text) <= 4:
        return "*" * len(text)
    if len(text) < 12:
        return "*" * (len(text) - 4) + text[-4:]
    return text[:6] + "*" * (len(text) - 10) + text[-4:]


def verify_link(verify_url: str, letter_no: str) -> str:
    """``<verify_url>?letter=<letter_no>`` (kept in the QR code and printed under it)."""
    parts = urlsplit(verify_url)
    query = "&".join(q for q in (parts.query, urlencode({"letter": letter_no})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _account_cn(account: RepaymentAccount | None) -> str:
    if account is None:
        return "委托人通过其官方渠道公布的委托人名下还款账户"
    return (
        f"委托人名下账户（开户行：{account.bank}；户名：{account.account_name}；"
        f"账号：{account.account_no}）"
    )


def _account_en(account: RepaymentAccount | None) -> str:
    if account is None:
        return "the Principal's own repayment account as published through its official channels"
    return (
        f"the Principal's account (bank: {account.bank}; account name: "
        f"{account.account_name}; account no.: {account.account_no})"
    )


def _party_cn(role: str, reg: Registration) -> list[Block]:
    return [
        Block("heading", f"{role}：{reg.legal_name}"),
        Block("body", f"统一社会信用代码：{reg.credit_code}"),
        Block("body", f"地址：{reg.address}　　联系电话：{reg.phone}"),
    ]


def chinese_blocks(c: LetterContent) -> list[Block]:
    """The Chinese letter, the legal text."""
    debt = [
        f"合同编号：{c.contract_no or '（未提供）'}",
        f"截至委托之日的欠款余额：{c.balance}",
    ]
    parts = [
        ("本金", c.principal_due),
        ("利息", c.interest),
        ("罚息", c.penalty),
        ("费用", c.fees),
    ]
    given = [f"{label} {amount}" for label, amount in parts if amount is not None]
    if given:
        debt.append("其中：" + "；".join(given))
    return [
        Block("title", "授权委托书"),
        Block("small", f"编号：{c.letter_no}"),
        *_party_cn("委托人", c.lender),
        *_party_cn("受托人", c.agency),
        Block(
            "body",
            f"兹委托受托人就下列债务人所欠委托人的债务提供催收服务，案件编号 {c.case_id}，"
            f"委托编号 {c.placement_id}。",
        ),
        Block("heading", f"债务人：{c.debtor_name}　　身份证号：{c.debtor_id_masked}"),
        *[Block("body", line) for line in debt],
        Block("heading", "授权范围"),
        Block("body", "一、以合法方式（电话、短信、信函、上门等）提醒债务人按时还款；"),
        Block("body", "二、在委托人书面确认的范围内与债务人协商还款方案；"),
        Block(
            "body",
            f"三、催收款项只能由债务人直接支付至{_account_cn(c.account)}。"
            "受托人及其工作人员不得以任何名义收取现金，不得要求债务人向任何其他账户付款；",
        ),
        Block(
            "body",
            "四、除法律允许的情形外，不得联系债务人以外的第三人，不得向任何人泄露债务人信息；",
        ),
        Block("body", "五、受托人不得将本委托事项转委托他人。"),
        Block(
            "body",
            f"授权期限：自{_cn_date(c.valid_from)}起至{_cn_date(c.valid_until)}止。"
            "委托提前收回或期限届满时，本授权自动失效。",
        ),
        Block(
            "body",
            f"真伪查验：访问 {c.verify_link} 或扫描二维码，输入本委托书编号及债务人手机号"
            "或身份证号后几位，即可查询受托人当前是否获得授权。",
        ),
        Block("body", f"委托人：{c.lender.legal_name}（电子签名）"),
        Block("body", f"签发日期：{_cn_date(c.issued_on)}"),
        Block("small", "本委托书以 PDF 电子签名签署，任何修改都会使签名失效。"),
    ]


def english_blocks(c: LetterContent) -> list[Block]:
    """The English translation page (the Chinese text prevails)."""
    lender = c.lender.legal_name_en or c.lender.legal_name
    agency = c.agency.legal_name_en or c.agency.legal_name
    return [
        Block("title", "Letter of Authorisation"),
        Block("small", f"No. {c.letter_no} (translation; the Chinese text prevails)"),
        Block("heading", f"Principal: {lender} (credit code {c.lender.credit_code})"),
        Block("heading", f"Agent: {agency} (credit code {c.agency.credit_code})"),
        Block(
            "body",
            f"The Principal authorises the Agent to collect the debt of {c.debtor_name} "
            f"(ID {c.debtor_id_masked}), contract {c.contract_no or '(not given)'}, balance "
            f"{c.balance}, case {c.case_id}, placement {c.placement_id}.",
        ),
        Block(
            "body",
            "Scope: remind the debtor lawfully; negotiate repayment within terms the Principal "
            f"confirms in writing; payments go only to {_account_en(c.account)}; the Agent "
            "never receives cash or asks for payment to any other account; no contact with "
            "third parties beyond what the law allows; no sub-delegation.",
        ),
        Block(
            "body",
            f"Valid from {c.valid_from.isoformat()} to {c.valid_until.isoformat()}; it ends "
            "early if the placement is recalled.",
        ),
        Block("body", f"Verify at {c.verify_link} (or scan the QR code)."),
    ]


def blocks(c: LetterContent) -> list[list[Block]]:
    """The letter's pages: Chinese, then English when asked for."""
    pages = [chinese_blocks(c)]
    if c.english:
        pages.append(english_blocks(c))
    return pages


__all__ = [
    "Block",
    "LetterContent",
    "Money",
    "Style",
    "blocks",
    "chinese_blocks",
    "english_blocks",
    "mask_national_id",
    "verify_link",
]
