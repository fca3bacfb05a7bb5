"""The pure parts of authorisation letters: numbers and their check character, what a letter
prints (masked id, scope, validity, the verification link), and the PDF's text layout."""

import random
import string
from datetime import date

import pytest
from hypothesis import given, strategies as st

from gateway.config.lender import Registration, RepaymentAccount
from gateway.letters.content import (
    LetterContent,
    Money,
    blocks,
    chinese_blocks,
    mask_national_id,
    verify_link,
)
from gateway.letters.numbers import (
    ALPHABET,
    format_number,
    parse_number,
    sequence_of,
    series_of,
)

prefixes = st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=6)
years = st.integers(min_value=2000, max_value=2099)
sequences = st.integers(min_value=1, max_value=9_999_999)


@given(prefixes, years, sequences)
def test_a_number_parses_back_to_itself(prefix: str, year: int, sequence: int) -> None:
    text = format_number(prefix, year, sequence)
    parsed = parse_number(text)
    assert parsed is not None
    assert (parsed.prefix, parsed.year, parsed.sequence) == (prefix, year, sequence)
    assert str(parsed) == text and text.startswith(series_of(prefix, year))
    assert sequence_of(text) == sequence
    assert parse_number(" " + text.lower() + " ") == parsed  # read aloud, typed loosely


@given(prefixes, years, sequences, st.data())
def test_any_single_mistyped_character_is_caught(
    prefix: str, year: int, sequence: int, data: st.DataObject
) -> None:
    text = format_number(prefix, year, sequence)
    positions = [i for i, ch in enumerate(text) if ch != "-"]
    i = data.draw(st.sampled_from(positions))
    wrong = data.draw(st.sampled_from([c for c in ALPHABET if c != text[i]]))
    assert parse_number(text[:i] + wrong + text[i + 1 :]) is None


def test_nearly_every_swap_of_neighbours_is_caught() -> None:
    # MOD 37,36 is a hybrid system: it misses a few swaps of neighbouring values (01, 12...)
    # at some positions. Over a fixed sample, fewer than 1 in 100 get through (a plain sum
    # would let every swap through).
    rng = random.Random(17)
    swaps = missed = 0
    for _ in range(500):
        text = format_number(
            "".join(rng.choice("ABCDEFGHJKLMNPQRSTUWXY") for _ in range(2)),
            rng.randint(2000, 2099),
            rng.randint(1, 9_999_999),
        )
        for i in range(len(text) - 1):
            a, b = text[i], text[i + 1]
            if a == b or "-" in (a, b):
                continue
            swaps += 1
            missed += parse_number(text[:i] + b + a + text[i + 2 :]) is not None
    assert swaps > 5_000
    assert missed / swaps < 0.01


def test_numbers_out_of_range_or_malformed_are_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        format_number("SQ", 2026, 10_000_000)
    for text in ("", "SQ2026-123-K", "SQ26-0000001-0", "S2026-0000001-0", "SQ2026-0000001-"):
        assert parse_number(text) is None


@pytest.mark.parametrize(
    ("national_id", "printed"),
    [
        ("110101199001011234", "110101********1234"),
        ("11010119900101123X", "110101********123X"),
        ("G12345678", "*****5678"),
        ("123", "***"),
    ],
)
def test_national_ids_are_masked(national_id: str, printed: str) -> None:
    assert mask_national_id(national_id) == printed


def test_the_verification_link_carries_the_number() -> None:
    assert verify_link("https://v.example/verify", "SQ2026-0000001-0") == (
        "https://v.example/verify?letter=SQ2026-0000001-0"
    )
    assert verify_link("https://v.example/v?lang=zh", "SQ2026-0000001-0") == (
        "https://v.example/v?lang=zh&letter=SQ2026-0000001-0"
    )


def content(**overrides: object) -> LetterContent:
    values: dict[str, object] = {
        "letter_no": format_number("SQ", 2026, 5),
        "issued_on": date(2026, 3, 2),
        "valid_from": date(2026, 3, 2),
        "valid_until": date(2026, 5, 31),
        "lender": Registration(
            legal_name="示例消费金融有限公司",
            credit_code="91110000MA01ABCD2X",
            address="北京市朝阳区建国路1号",
            phone="400-000-0000",
        ),
        "agency": Registration(
            legal_name="北京示例资产管理有限公司",
            legal_name_en="Beijing Example Asset Management",
            credit_code="91110105MA02XYW12K",
            address="北京市海淀区中关村大街2号",
            phone="010-12345678",
        ),
        "account": RepaymentAccount(
            bank="招商银行北京分行",
            account_name="示例消费金融有限公司",
            account_no="1109000012345678",
        ),
        "case_id": "ACC-1",
        "placement_id": "ACC-1-P1",
        "debtor_name": "张三",
        "debtor_id_masked": "110101********1234",
        "contract_no": "HT-2025-001",
        "balance": Money(1_234_567, "CNY"),
        "principal_due": Money(1_000_000, "CNY"),
        "interest": None,
        "penalty": None,
        "fees": Money(1_500, "CNY"),
        "verify_link": "https://v.example/verify?letter=SQ2026-0000005-X",
    }
    values.update(overrides)
    return LetterContent(**values)  # type: ignore[arg-type]


def test_the_chinese_letter_says_who_what_scope_and_until_when() -> None:
    text = "\n".join(b.text for b in chinese_blocks(content()))
    for printed in (
        "授权委托书",
        "编号：SQ2026-0000005-",
        "委托人：示例消费金融有限公司",
        "受托人：北京示例资产管理有限公司",
        "91110105MA02XYW12K",
        "债务人：张三",
        "110101********1234",
        "合同编号：HT-2025-001",
        "CNY 12,345.67",
        "本金 CNY 10,000.00；费用 CNY 15.00",
        "开户行：招商银行北京分行",
        "账号：1109000012345678",
        "不得以任何名义收取现金",
        "不得联系债务人以外的第三人",
        "不得将本委托事项转委托他人",
        "自2026年3月2日起至2026年5月31日止",
        "https://v.example/verify?letter=SQ2026-0000005-X",
    ):
        assert printed in text, printed
    assert "利息" not in text  # not given: not printed as zero


def test_without_an_account_or_contract_the_letter_says_so() -> None:
    text = "\n".join(b.text for b in chinese_blocks(content(account=None, contract_no=None)))
    assert "官方渠道公布的委托人名下还款账户" in text
    assert "合同编号：（未提供）" in text


def test_english_is_a_second_page_only_when_asked() -> None:
    assert len(blocks(content())) == 1
    pages = blocks(content(english=True))
    assert len(pages) == 2
    english = "\n".join(b.text for b in pages[1])
    assert "Letter of Authorisation" in english and "the Chinese text prevails" in english
    assert "Beijing Example Asset Management" in english
    assert "never receives cash" in english and "no sub-delegation" in english


def test_lines_fit_the_width_and_never_start_with_closing_punctuation() -> None:
    from gateway.errors import ConfigError
    from gateway.letters.render import LetterRenderer, find_font

    try:
        renderer = LetterRenderer(find_font(None))
    except ConfigError as exc:
        pytest.skip(str(exc))
    per_line = int(200 // renderer._width("甲", 11))
    # The full stop falls exactly where a line breaks: it must hang, not start the next line.
    text = (
        "甲" * (2 * per_line)
        + "。乙丙，丁"
        + " https://verify.example/verify?letter=SQ2026-0000001-0 "
        + "戊" * 50
    )
    lines = renderer.wrap(text, 11, 200)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert lines[1].endswith("甲。")
    assert all(not line.startswith(("。", "，")) for line in lines)
    widest = max(renderer._width(ch, 11) for ch in text)
    assert all(sum(renderer._width(ch, 11) for ch in line) <= 200 + widest for line in lines)


def test_the_letters_benchmark_reports_ours_the_pool_and_the_baseline() -> None:
    from gateway.bench.letters import run
    from gateway.errors import ConfigError
    from gateway.letters.render import find_font

    try:
        find_font(None)
    except ConfigError as exc:
        pytest.skip(str(exc))
    report = run(letters=3, workers=1)
    assert report["letters"] == 3
    assert report["pool"]["workers"] == 1
    assert report["ours"]["median_bytes"] > 20_000  # a font subset and a signature inside
    assert set(report["ours"]) >= {"per_letter_ms", "per_letter_cpu_ms", "render_ms", "sign_ms"}
    assert report["baseline"]["per_letter_ms"] > 0
    assert isinstance(report["meets_target"], bool)
