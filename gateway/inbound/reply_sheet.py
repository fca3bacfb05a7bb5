"""The reply sheet: the columns a firm fills in, the words it may use for them, and how its
cells read (amounts in major units, dates in the firm's time zone). The contract shared by the
sheet we attach to a referral (adapters.email.render), the firms that fill it in, and the
readers in gateway.inbound.sheets (pure)."""

import re
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from schemas.base import minor_exponent

REPLY_COLUMNS: tuple[str, ...] = (
    "event_type",
    "placement_id",
    "occurred_at",
    "agency_case_ref",
    "action",
    "court",
    "court_case_number",
    "payment_id",
    "amount",
    "currency",
    "reason",
    "request_id",
    "instalments",
    "start",
    "until",
    "statement_id",
    "revision",
    "sha256",
    "line_nos",
    "channel",
    "outcome",
    "party",
    "purpose",
    "collector_id",
    "recording_ref",
)
"""The reply sheet's columns, in order. ``request_id`` to ``until`` carry waiver, instalment
and pause requests (``request_id``; a plan's ``instalments`` and first due date ``start``,
monthly; a pause's ``start`` and ``until``); the last four answer a settlement statement
(its ``statement_id`` and ``revision``; a confirmation's ``sha256``; a dispute's
``line_nos``, separated by ``;``, ``,`` or spaces, with ``reason`` and the commission
claimed in ``amount``); ``channel`` to ``recording_ref`` report a contact attempt (made at
``occurred_at``; effective when ``outcome`` is ``reached``; ``party`` the debtor when empty,
a third party's ``purpose``, the collector and the call recording). Sheets filled in before
a column existed still read."""

HEADER_ALIASES = {
    "事件": "event_type",
    "事件类型": "event_type",
    "event": "event_type",
    "委托编号": "placement_id",
    "placement": "placement_id",
    "日期": "occurred_at",
    "发生日期": "occurred_at",
    "date": "occurred_at",
    "律所案号": "agency_case_ref",
    "firm_ref": "agency_case_ref",
    "行动": "action",
    "法律行动": "action",
    "法院": "court",
    "案号": "court_case_number",
    "法院案号": "court_case_number",
    "还款编号": "payment_id",
    "金额": "amount",
    "币种": "currency",
    "原因": "reason",
    "申请编号": "request_id",
    "期数": "instalments",
    "开始日期": "start",
    "截止日期": "until",
    "结算单编号": "statement_id",
    "结算单": "statement_id",
    "版本": "revision",
    "sha256": "sha256",
    "哈希": "sha256",
    "行号": "line_nos",
    "渠道": "channel",
    "联系方式": "channel",
    "结果": "outcome",
    "联系对象": "party",
    "目的": "purpose",
    "催收员": "collector_id",
    "录音编号": "recording_ref",
}
EVENT_ALIASES = {
    "ack": "placement.acknowledged",
    "acknowledged": "placement.acknowledged",
    "受理": "placement.acknowledged",
    "rejected": "placement.rejected",
    "拒绝": "placement.rejected",
    "legal": "legal.action",
    "法律行动": "legal.action",
    "payment": "payment.reported",
    "回款": "payment.reported",
    "returned": "case.returned",
    "退案": "case.returned",
    "closed": "case.closed",
    "结案": "case.closed",
    "deleted": "data.deleted",
    "删除": "data.deleted",
    "attribution_disputed": "attribution.disputed",
    "归属异议": "attribution.disputed",
    "waiver": "waiver.requested",
    "减免": "waiver.requested",
    "instalment": "instalment.requested",
    "分期": "instalment.requested",
    "pause": "pause.requested",
    "停催": "pause.requested",
    "settlement_confirmed": "settlement.confirmed",
    "结算确认": "settlement.confirmed",
    "settlement_disputed": "settlement.disputed",
    "结算异议": "settlement.disputed",
    "complaint": "complaint.received",
    "投诉": "complaint.received",
    "contact": "contact.attempted",
    "联系": "contact.attempted",
    "催收联系": "contact.attempted",
}
PARTY_ALIASES = {
    "债务人": "debtor",
    "本人": "debtor",
    "担保人": "guarantor",
    "第三方": "third_party",
    "third party": "third_party",
}
"""What the ``party`` column may say besides the wire's own words."""
PURPOSE_ALIASES = {"查找": "locate", "找人": "locate", "催收": "debt", "债务": "debt"}
"""What the ``purpose`` column may say besides ``locate`` and ``debt``."""
ACTION_ALIASES = {
    "律师函": "lawyer_letter",
    "起诉": "suit_filed",
    "立案": "suit_filed",
    "判决": "judgment",
    "执行": "enforcement",
    "和解": "settlement",
    "调解": "settlement",
}
DELETION_METHODS = {
    "deleted": "deleted",
    "删除": "deleted",
    "已删除": "deleted",
    "returned": "returned",
    "返还": "returned",
    "已返还": "returned",
}
"""What the ``reason`` column of a ``data.deleted`` row may say → the event's ``method``."""
NEEDS_COURT_CASE = frozenset({"suit_filed", "judgment", "enforcement"})
_ASCII_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def column_name(header: str) -> str:
    """Map an English, Chinese or bilingual header to a reply column."""
    text = header.strip().lstrip("\ufeff")
    for token in _ASCII_KEY.findall(text):
        key = str(token).lower()
        if key in REPLY_COLUMNS:
            return key
    for alias, column in HEADER_ALIASES.items():
        if alias in text.split() or alias == text or alias == text.lower():
            return column
    return text.lower()


MAX_DIGITS = 16
"""Digits an amount may have before the decimal point (``1e400`` is refused here, before
it becomes a 400-digit integer; the wire models bound it exactly)."""


def amount_minor(text: str, currency: str) -> int:
    """``"1,234.56"`` → ``123456``; more decimals than the currency has is an error."""
    cleaned = text.strip().replace(",", "").lstrip("¥￥$").removesuffix("元").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise ValueError(f"{text!r} is not an amount (write e.g. 1234.56)")
    if value.adjusted() >= MAX_DIGITS:
        raise ValueError(f"{text!r} is too large for an amount")
    places = minor_exponent(currency)
    minor = value.scaleb(places)
    if minor != minor.to_integral_value():
        raise ValueError(f"{text!r} has more than {places} decimal places")
    return int(minor)


def moment(text: str, zone: str) -> datetime:
    """A date or date-time; without an offset it is read in ``zone``."""
    value = text.strip().replace("/", "-")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(value), time())
        except ValueError:
            raise ValueError(f"{text!r} is not a date (write e.g. 2026-03-01)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo(zone))


__all__ = [
    "ACTION_ALIASES",
    "DELETION_METHODS",
    "EVENT_ALIASES",
    "HEADER_ALIASES",
    "MAX_DIGITS",
    "NEEDS_COURT_CASE",
    "PARTY_ALIASES",
    "PURPOSE_ALIASES",
    "REPLY_COLUMNS",
    "amount_minor",
    "column_name",
    "moment",
]
