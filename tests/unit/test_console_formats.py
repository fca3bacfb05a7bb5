"""Amounts per locale, moments in the lender's zone, language tags, codes by their names."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.console.formats import NONE, money, timestamp, zone_label
from gateway.console.i18n import Display, language_of, use
from gateway.console.rendering import environment
from gateway.console.vocabulary import action_label, term

CHINESE = Display(language="zh-CN", zone=ZoneInfo("Asia/Shanghai"))
ENGLISH = Display(language="en", zone=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize(
    ("minor", "currency", "at", "shown"),
    [
        (123456, "CNY", CHINESE, "¥1,234.56"),
        (123456, "CNY", ENGLISH, "CN¥1,234.56"),
        (-5, "CNY", CHINESE, "-¥0.05"),
        (1234, "JPY", ENGLISH, "¥1,234"),
        (100_000_000_01, "CNY", CHINESE, "¥100,000,000.01"),
        (123456, None, CHINESE, "1,234.56"),
        (None, "CNY", CHINESE, NONE),
    ],
)
def test_amounts_follow_the_locale(
    minor: int | None, currency: str | None, at: Display, shown: str
) -> None:
    assert money(minor, currency, at=at) == shown


def test_moments_are_shown_in_the_lenders_zone_with_the_offset() -> None:
    moment = datetime(2026, 3, 2, 17, 30, tzinfo=UTC)
    assert timestamp(moment, at=CHINESE) == "2026-03-03 01:30:00 +08:00"
    naive = datetime(2026, 3, 2, 17, 30)  # stored without a zone: UTC
    assert timestamp(naive, at=CHINESE) == "2026-03-03 01:30:00 +08:00"
    new_york = Display(language="en", zone=ZoneInfo("America/New_York"))
    assert timestamp(moment, at=new_york) == "2026-03-02 12:30:00 -05:00"
    assert timestamp(date(2026, 3, 2), at=CHINESE) == "2026-03-02"
    assert timestamp(None) == NONE
    assert zone_label(CHINESE) == "Asia/Shanghai (UTC+08:00)"


def test_the_current_display_is_used_when_none_is_given() -> None:
    with use(ENGLISH):
        assert money(100, "CNY") == "CN¥1.00"
    with use(CHINESE):
        assert money(100, "CNY") == "¥1.00"


@pytest.mark.parametrize(
    ("tag", "language"),
    [("zh", "zh-CN"), ("zh-CN", "zh-CN"), ("zh_cn", "zh-CN"), ("en", "en"), ("en-GB", "en"),
     ("fr", None), ("", None), (None, None)],
)  # fmt: skip
def test_language_tags(tag: str | None, language: str | None) -> None:
    assert language_of(tag) == language


def test_codes_show_by_their_name_in_the_language() -> None:
    with use(CHINESE):
        assert term("ack_balance_differs") == "确认余额不一致"
        assert term("write_off") == "核销"
        assert action_label("recall") == "撤案"
        assert term("some_new_code") == "some new code"
    with use(ENGLISH):
        assert term("ack_balance_differs") == "ack balance differs"
        assert action_label("recall") == "Recall placement"


def test_translated_messages_escape_what_they_are_given() -> None:
    template = environment().from_string(
        '{{ _("<strong>%(actor)s</strong> commented: “%(body)s”", actor=who, body=text) }}'
    )
    with use(CHINESE):
        html = template.render(who="<i>olga</i>", text="<script>alert(1)</script>")
    assert html == (
        "<strong>&lt;i&gt;olga&lt;/i&gt;</strong> 备注：“&lt;script&gt;alert(1)&lt;/script&gt;”"
    )
