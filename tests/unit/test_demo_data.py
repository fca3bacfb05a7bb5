"""The demo portfolio: deterministic, valid, realistic, and readable back from both file formats."""

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.demo.data import (
    CITIES,
    CSV_FIELDS,
    generate_accounts,
    national_id_check_digit,
    write_csv,
    write_jsonl,
)
from schemas.account import IntakeAccount

AS_OF = date(2026, 1, 15)
LEGAL_MIN_BALANCE_MINOR = 5_000_000  # the allocation default: CNY 50,000 goes to legal


@pytest.fixture(scope="module")
def portfolio() -> list[IntakeAccount]:
    return list(generate_accounts(1_000, seed=20260115, as_of=AS_OF))


def _debtors(accounts: list[IntakeAccount]) -> dict[str, list[IntakeAccount]]:
    grouped: dict[str, list[IntakeAccount]] = defaultdict(list)
    for account in accounts:
        grouped[account.debtor_id].append(account)
    return grouped


def _mod_11_2_valid(national_id: str) -> bool:
    """Checked independently of the module: sum(d_i * 2^(17-i)) + check value ≡ 1 (mod 11)."""
    check = 10 if national_id[17] == "X" else int(national_id[17])
    total = sum(int(d) * (1 << (17 - i)) for i, d in enumerate(national_id[:17]))
    return (total + check) % 11 == 1


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def test_same_seed_gives_the_same_accounts_and_another_seed_does_not() -> None:
    first = list(generate_accounts(300, seed=7, as_of=AS_OF))
    assert first == list(generate_accounts(300, seed=7, as_of=AS_OF))
    other = list(generate_accounts(300, seed=8, as_of=AS_OF))
    assert [a.national_id for a in first] != [a.national_id for a in other]
    assert [a.account_id for a in first] != [a.account_id for a in other]


def test_count_is_exact_and_ids_are_unique(portfolio: list[IntakeAccount]) -> None:
    assert len(portfolio) == 1_000
    assert len({a.account_id for a in portfolio}) == 1_000
    assert all(re.fullmatch(r"AC\d{10}", a.account_id) for a in portfolio)
    assert all(re.fullmatch(r"CU\d{10}", a.debtor_id) for a in portfolio)
    assert list(generate_accounts(0, seed=1, as_of=AS_OF)) == []
    with pytest.raises(ValueError, match="negative"):
        next(generate_accounts(-1, seed=1, as_of=AS_OF))


def test_every_account_is_a_valid_consistent_intake_row(portfolio: list[IntakeAccount]) -> None:
    provinces = {c.province_code: c.province for c in CITIES}
    for account in portfolio:
        assert IntakeAccount.model_validate(account.model_dump()) == account
        assert account.currency == "CNY"
        assert account.product in {"CASH_LOAN", "CARD_INSTALMENT", "BNPL", "CONSUMER_INSTALMENT"}
        assert 50_000 <= account.principal_minor <= 20_000_000
        ceiling = account.principal_minor * (1 + 0.24 * account.dpd / 365) + 50_000
        assert 0 < account.balance_minor <= ceiling
        assert account.due_date == AS_OF - timedelta(days=account.dpd)
        assert account.credit_grade in "ABCDE"
        code = account.region.removeprefix("CN-")
        assert account.address.startswith(provinces[code]), "region must match the address"


def _bucket(dpd: int) -> str:
    for bucket, last in (("M1", 30), ("M2", 60), ("M3", 90), ("M4-6", 180), ("M6+", 359)):
        if dpd <= last:
            return bucket
    return "LEGAL"


def test_every_bucket_is_populated_with_a_skew_to_early_ones(
    portfolio: list[IntakeAccount],
) -> None:
    counts = Counter(_bucket(a.dpd) for a in portfolio)
    assert set(counts) == {"M1", "M2", "M3", "M4-6", "M6+", "LEGAL"}
    assert min(counts.values()) >= 20
    assert counts["M1"] > counts["M2"] > counts["M3"]
    assert counts["M1"] == max(counts.values())
    assert all(a.dpd >= 1 for a in portfolio)
    large_but_young = [
        a for a in portfolio if a.balance_minor >= LEGAL_MIN_BALANCE_MINOR and a.dpd < 360
    ]
    assert large_but_young, "some accounts must go to legal on balance alone"


def test_national_ids_have_valid_checksum_region_and_adult_birth_date(
    portfolio: list[IntakeAccount],
) -> None:
    province_codes = {c.province_code for c in CITIES}
    for account in portfolio:
        national_id = account.national_id
        assert re.fullmatch(r"\d{17}[\dX]", national_id)
        assert _mod_11_2_valid(national_id)
        if national_id.startswith("9"):  # foreign permanent resident: 9 + province + country
            assert national_id[1:3] == account.region.removeprefix("CN-")
        else:
            assert national_id[:2] in province_codes
        born = date(int(national_id[6:10]), int(national_id[10:12]), int(national_id[12:14]))
        assert 18 <= _age(born, AS_OF) <= 65


def test_check_digit_matches_the_gb_11643_examples() -> None:
    assert national_id_check_digit("11010519491231002") == "X"
    assert national_id_check_digit("44052418800101001") == "4"
    with pytest.raises(ValueError):
        national_id_check_digit("1234")


def test_names_are_mostly_chinese_with_some_latin(portfolio: list[IntakeAccount]) -> None:
    names = [group[0].name for group in _debtors(portfolio).values()]
    latin = [n for n in names if re.fullmatch(r"[A-Za-zÀ-ÿ ]+", n)]
    chinese = [n for n in names if re.fullmatch(r"[\u4e00-\u9fff]{2,3}", n)]
    assert len(latin) + len(chinese) == len(names)
    assert 0.10 <= len(latin) / len(names) <= 0.20
    assert Counter(n[0] for n in chinese).most_common(1)[0][1] > len(chinese) * 0.04


def test_phones_are_mainland_mobiles(portfolio: list[IntakeAccount]) -> None:
    for account in portfolio:
        assert 1 <= len(account.phones) <= 3
        assert len(set(account.phones)) == len(account.phones)
        assert all(re.fullmatch(r"\+861[3-9]\d{9}", p) for p in account.phones)
    assert max(len(a.phones) for a in portfolio) == 3


def test_multi_account_debtors_share_their_personal_data(portfolio: list[IntakeAccount]) -> None:
    debtors = _debtors(portfolio)
    shared = [group for group in debtors.values() if len(group) > 1]
    assert 0.05 <= len(shared) / len(debtors) <= 0.15
    assert {len(group) for group in shared} <= {2, 3}
    for group in shared:
        people = {(a.name, a.national_id, a.phones, a.address, a.region) for a in group}
        assert len(people) == 1
    national_ids = [group[0].national_id for group in debtors.values()]
    assert len(set(national_ids)) == len(national_ids), "different debtors, different ids"


def test_csv_round_trips_through_intake_account(
    portfolio: list[IntakeAccount], tmp_path: Path
) -> None:
    path = tmp_path / "accounts.csv"
    assert write_csv(portfolio, path) == len(portfolio)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == CSV_FIELDS
        rows = list(reader)
    assert any(";" in row["phones"] for row in rows)
    assert [IntakeAccount.model_validate(row) for row in rows] == portfolio


def test_jsonl_round_trips_through_intake_account(
    portfolio: list[IntakeAccount], tmp_path: Path
) -> None:
    path = tmp_path / "accounts.jsonl"
    assert write_jsonl(portfolio, path) == len(portfolio)
    lines = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r["phones"], list) for r in records)
    assert records[0] == portfolio[0].model_dump(mode="json")
    assert [IntakeAccount.model_validate(r) for r in records] == portfolio
