"""The pure core of collector verification: reading what was typed, matching the digits, the
answer for each letter state (gateway.verification.check), and the page's language."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, strategies as st

from gateway.verification.check import (
    NO_MATCH,
    LetterFacts,
    ShownAgency,
    as_typed,
    candidates,
    decide,
    digits_match,
    last_digits,
    letter_number,
)
from gateway.verification.texts import language_from

SHANGHAI = ZoneInfo("Asia/Shanghai")
AGENCY = ShownAgency("甲催收服务有限公司", "Alpha Collections Ltd.", "021-5555-0101")
NOW = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # 2026-03-11 04:00 in Shanghai


def letter(**overrides: object) -> LetterFacts:
    values: dict[str, object] = {
        "letter_no": "SQ2026-000001-K",
        "status": "active",
        "valid_from": date(2026, 3, 1),
        "valid_until": date(2026, 3, 11),
        "revoked_at": None,
    }
    values.update(overrides)
    return LetterFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("SQ2026-000001-K", "SQ2026-000001-K"),
        ("  sq2026-000001-k ", "SQ2026-000001-K"),
        ("ＳＱ２０２６－０００００１－Ｋ", "SQ2026-000001-K"),  # noqa: RUF001 (full width, as typed on a phone)
        ("SQ2026\u2013000001\u2013K", "SQ2026-000001-K"),
        ("", None),
        ("<script>", None),
        ("SQ", None),
        ("X" * 33, None),
    ],
)
def test_letter_numbers_are_read_forgivingly_and_nothing_else_passes(
    typed: str, expected: str | None
) -> None:
    assert letter_number(typed) == expected


def test_last_digits_take_four_digits_or_an_id_numbers_x() -> None:
    assert [last_digits(t) for t in ("1234", " 123x ", "12X4", "123", "12345", "")] == [
        "1234",
        "123X",
        None,
        None,
        None,
        None,
    ]


def test_the_typed_letter_is_kept_printable_and_short() -> None:
    assert as_typed("ab\x00c\n" + "d" * 100) == "abc" + "d" * 37


def test_candidates_are_each_phones_and_the_id_numbers_last_four() -> None:
    record = {
        "phones": ["+86 139-0000-5678", "021 5555 0101", "12"],
        "national_id": "11010119900101123x",
    }
    assert candidates(record) == ["5678", "0101", "123X"]
    assert candidates({}) == []


@given(
    st.text("0123456789X", min_size=4, max_size=4),
    st.lists(st.text("0123456789X", min_size=4, max_size=4)),
)
def test_digits_match_exactly_when_one_candidate_is_equal(typed: str, values: list[str]) -> None:
    assert digits_match(typed, values) == (typed in values)


@pytest.mark.parametrize(
    ("facts", "outcome", "since"),
    [
        (letter(), "authorised", None),
        (letter(valid_until=date(2026, 3, 10)), "expired", date(2026, 3, 10)),
        (letter(valid_from=date(2026, 3, 12), valid_until=date(2026, 4, 1)), "not_yet", None),
        (
            letter(status="revoked", revoked_at=datetime(2026, 3, 5, 17, 0, tzinfo=UTC)),
            "revoked",
            date(2026, 3, 6),  # the lender's day
        ),
        (
            letter(status="superseded", revoked_at=datetime(2026, 3, 4, 1, 0, tzinfo=UTC)),
            "superseded",
            date(2026, 3, 4),
        ),
        (letter(status="draft"), "no_match", None),
    ],
)
def test_each_letter_state_answers_as_the_table_says(
    facts: LetterFacts, outcome: str, since: date | None
) -> None:
    verdict = decide(facts, True, AGENCY, now=NOW, zone=SHANGHAI)
    assert (verdict.outcome, verdict.since) == (outcome, since)
    assert decide(facts, False, AGENCY, now=NOW, zone=SHANGHAI) is NO_MATCH


def test_no_match_says_nothing_but_no_match() -> None:
    assert decide(None, True, AGENCY, now=NOW, zone=SHANGHAI).as_json() == {"outcome": "no_match"}
    assert NO_MATCH.as_json() == {"outcome": "no_match"}


@pytest.mark.parametrize(
    ("query", "header", "expected"),
    [
        (None, None, "zh-CN"),
        ("en", "zh-CN", "en"),
        (None, "en-GB,en;q=0.9,zh;q=0.5", "en"),
        (None, "fr, zh-TW;q=0.8, en;q=0.7", "zh-CN"),
        (None, "en;q=0, zh;q=0.1", "zh-CN"),
        ("xx", "en", "en"),
    ],
)
def test_the_page_speaks_chinese_unless_asked_otherwise(
    query: str | None, header: str | None, expected: str
) -> None:
    assert language_from(query, header) == expected
