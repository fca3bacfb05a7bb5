"""The pure parts of claim confirmation and four eyes: the intake row's breakdown, a batch's
totals and differences, the batch's and the approval's state tables, and who may approve."""

from datetime import date
from typing import Any

import pytest
from hypothesis import given, strategies as st

from gateway.approvals.rules import (
    APPROVAL_TRANSITIONS,
    canonical,
    check_checker,
    needs_second_person,
    next_state,
    payload_hash,
)
from gateway.claims.states import BATCH_TRANSITIONS, next_batch_state
from gateway.claims.tally import Tally
from gateway.config.settings import FourEyesRule, FourEyesSection
from gateway.demo.data import generate_accounts, rebalanced
from gateway.errors import ActionRefused, FourEyesRefused
from gateway.intake.reader import ParsedRow, RowError, read_accounts
from schemas.account import IntakeAccount

BASE: dict[str, Any] = {
    "account_id": "A1",
    "debtor_id": "D1",
    "name": "N",
    "national_id": "110101199001010000",
    "phones": "+8613800000000",
    "address": "1 Road",
    "region": "CN-31",
    "product": "CASH_LOAN",
    "currency": "CNY",
    "principal_minor": 200_000,
    "balance_minor": 100_000,
    "dpd": 40,
    "credit_grade": "B",
    "due_date": "2026-01-01",
}


def row(**overrides: object) -> IntakeAccount:
    return IntakeAccount.model_validate({**BASE, **overrides})


def broken(balance: int, principal: int, interest: int, penalty: int, fees: int) -> IntakeAccount:
    return row(
        balance_minor=balance,
        principal_due_minor=principal,
        interest_minor=interest,
        penalty_minor=penalty,
        fees_minor=fees,
    )


def test_a_breakdown_that_does_not_add_up_is_a_row_error_naming_the_fields() -> None:
    header = ",".join(
        [*BASE, "principal_due_minor", "interest_minor", "penalty_minor", "fees_minor"]
    )
    good = ",".join(str(v) for v in BASE.values()) + ",90000,6000,3000,1000"
    bad = ",".join(str(v) for v in BASE.values()).replace("A1", "A2") + ",90000,6000,3000,999"
    out = list(read_accounts([header, good, bad], fmt="csv", source="f.csv"))
    assert isinstance(out[0], ParsedRow)
    assert isinstance(out[1], RowError)
    assert out[1].field == "principal_due_minor,interest_minor,penalty_minor,fees_minor"
    assert "99999" in out[1].message and "100000" in out[1].message


def test_the_new_columns_are_optional_and_blank_cells_mean_not_given() -> None:
    account = row(interest_minor="", contract_no=" ", disbursed_on="", annual_rate_bp="")
    assert (account.interest_minor, account.contract_no, account.disbursed_on) == (None, None, None)
    partial = row(interest_minor=5)  # not all four parts: nothing to add up
    assert partial.interest_minor == 5
    with pytest.raises(ValueError, match="annual_rate_bp"):
        row(annual_rate_bp=10_001)
    assert row(disbursed_on="2024-05-01").disbursed_on == date(2024, 5, 1)


def test_totals_per_group_count_unbroken_cases_apart() -> None:
    tally = Tally()
    tally.add(broken(100, 70, 20, 10, 0), "M2")
    tally.add(broken(50, 40, 5, 0, 5), "M2")
    tally.add(row(balance_minor=30, holds="DISPUTE;DECEASED"), "M2")
    tally.add(row(balance_minor=7, product="CAR", currency="USD"), "M1")
    [cash, car] = tally.totals()  # sorted: CNY before USD
    assert (car["currency"], car["product"], car["bucket"], car["cases"]) == ("USD", "CAR", "M1", 1)
    assert cash["cases"] == 3 and cash["unbroken"] == 1 and cash["balance_minor"] == 180
    assert [
        cash[k] for k in ("principal_due_minor", "interest_minor", "penalty_minor", "fees_minor")
    ] == [
        110,
        25,
        10,
        5,
    ]
    assert tally.hold_counts() == {"DECEASED": 1, "DISPUTE": 1}
    assert tally.by_currency()["CNY"]["balance_minor"] == 180


def test_differences_count_each_direction_with_totals() -> None:
    tally = Tally()
    tally.note_new(500)
    tally.note_change(100, 80)
    tally.note_change(100, 130)
    tally.note_change(100, 100)
    tally.note_gone(2, 900)
    assert tally.differences() == {
        "new": {"cases": 1, "total_minor": 500},
        "gone": {"cases": 2, "total_minor": 900},
        "balance_up": {"cases": 1, "total_minor": 30},
        "balance_down": {"cases": 1, "total_minor": 20},
    }


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30))
def test_the_groups_add_up_to_the_file(balances: list[int]) -> None:
    tally = Tally()
    for i, balance in enumerate(balances):
        tally.add(row(balance_minor=balance, product=f"P{i % 3}"), f"M{1 + i % 2}")
    assert tally.cases == len(balances)
    assert tally.balance_minor == sum(balances)
    assert sum(int(t["balance_minor"]) for t in tally.totals()) == sum(balances)  # type: ignore[call-overload]


@given(st.integers(min_value=0, max_value=10**8))
def test_a_rebalanced_demo_account_still_adds_up(balance: int) -> None:
    [account] = generate_accounts(1, seed=3, as_of=date(2026, 3, 1), breakdown=True)
    changed = rebalanced(account, balance)
    assert IntakeAccount.model_validate(changed.model_dump()).balance_minor == balance


def test_the_breakdown_changes_no_other_field_of_the_demo_data() -> None:
    plain = list(generate_accounts(20, seed=9, as_of=date(2026, 3, 1)))
    split = list(generate_accounts(20, seed=9, as_of=date(2026, 3, 1), breakdown=True))
    assert [a.model_dump(exclude_none=True) for a in plain] == [
        s.model_dump(exclude={"principal_due_minor", "interest_minor", "penalty_minor",
                               "fees_minor", "contract_no", "disbursed_on", "annual_rate_bp"})
        for s in split
    ]  # fmt: skip


def test_state_tables() -> None:
    assert BATCH_TRANSITIONS[("pending", "approve")] == "approved"
    assert next_batch_state("importing", "imported", batch_id="B") == "pending"
    with pytest.raises(ActionRefused, match="claim batch B is importing"):
        next_batch_state("importing", "approve", batch_id="B")
    with pytest.raises(ActionRefused, match="approved"):
        next_batch_state("approved", "reject", batch_id="B")
    assert {s for s, _e in APPROVAL_TRANSITIONS} == {"pending", "approved"}
    assert next_state("approved", "execute", approval_id=4) == "executed"
    for state in ("rejected", "executed", "withdrawn"):
        with pytest.raises(ActionRefused, match=f"#4 is {state}"):
            next_state(state, "approve", approval_id=4)


def test_which_actions_need_a_second_person() -> None:
    section = FourEyesSection(
        allocation_round=FourEyesRule(above=100),
        write_off=FourEyesRule(enabled=False),
    )
    assert needs_second_person(section, "claim_confirmation", 1)
    assert not needs_second_person(section, "allocation_round", 100)
    assert needs_second_person(section, "allocation_round", 101)
    assert not needs_second_person(section, "write_off", 10**9)


def test_the_maker_is_never_the_checker_and_the_role_must_be_permitted() -> None:
    section = FourEyesSection(bulk_recall=FourEyesRule(checker_roles=("admin",)))
    with pytest.raises(FourEyesRefused, match="ana made this request"):
        check_checker(section, "bulk_recall", maker="ana", checker="ana", checker_role="admin")
    with pytest.raises(FourEyesRefused, match=r"bo is operator.*admin"):
        check_checker(section, "bulk_recall", maker="ana", checker="bo", checker_role="operator")
    check_checker(section, "bulk_recall", maker="ana", checker="bo", checker_role="admin")


def test_the_payload_hash_does_not_depend_on_key_order() -> None:
    assert canonical({"b": 1, "a": "债权"}) == '{"a":"债权","b":1}'
    assert payload_hash({"a": 1, "b": [1, 2]}) == payload_hash({"b": [1, 2], "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": 2})
