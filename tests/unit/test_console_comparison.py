""" "Our record against theirs" (gateway.console.comparison) on the records the core really
writes: for every mismatch kind that compares two records, built by its producer (the live
rules, their batch re-derivation, statements, three-way matching), the field at issue is one
row, marked as differing, whichever name each side gives it."""

from datetime import timedelta
from typing import Any

import pytest

from gateway.console.comparison import SAME_QUANTITY, FieldRow, compare, same
from gateway.reconciliation.event_audit import EventAudit
from gateway.reconciliation.event_rules import assess
from gateway.reconciliation.kinds import MISMATCH_KINDS, MismatchDraft
from gateway.reconciliation.match_inputs import AgencyPayment, LenderReceipt, Tolerance
from gateway.reconciliation.statements import (
    HeldPlacement,
    Statement,
    StatementLine,
    compare as compare_statement,
)
from gateway.reconciliation.three_way import _payment, _receipt
from tests.factories import NOW, event, money, placement_view
from tests.unit.test_event_audit import AGENCY, PID, PLACED, as_facts, facts


def live(e: Any, view: Any, agency: str = AGENCY) -> MismatchDraft:
    [draft] = assess(e, agency, view).mismatches
    return draft


def batch(*events: Any, **placement: object) -> MismatchDraft:
    rows = [as_facts(n, e) for n, e in enumerate(events, 1)]
    *_, last = EventAudit({PID: facts(**placement)}).feed(rows)
    return last.draft


def statement(line: StatementLine, held: HeldPlacement) -> MismatchDraft:
    found = compare_statement(
        Statement(AGENCY, "ST-1", PLACED.date(), NOW.date(), (line,)),
        {held.id: held},
        Tolerance(amount_minor=100),
    )
    [b] = found.breaks
    return b.draft


def paid(amount: int, currency: str = "CNY") -> dict[str, object]:
    return _payment(AgencyPayment(1, AGENCY, PID, "P1", amount, currency, 100))


def received(amount: int, currency: str = "CNY") -> dict[str, object]:
    return _receipt(LenderReceipt(2, "debtor", PID, AGENCY, "P1", amount, "CNY", 101, None))


HELD = HeldPlacement(PID, "placed", "CNY", 100_000, PLACED.date())
ACTIVE = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))

CASES: list[tuple[str, MismatchDraft, str, str]] = [
    # (name, draft, our field at issue, the agency's name for it ("" when the same))
    ("wrong_agency", live(event("payment.reported"), placement_view(), "AGY_X"), "agency_id", ""),
    (
        "currency_mismatch",
        live(event("payment.reported", amount=money(10_000, "USD")), placement_view()),
        "balance",
        "amount",
    ),
    (
        "currency_mismatch (batch)",
        batch(event("payment.reported", amount=money(100, "USD"))),
        "currency",
        "",
    ),
    (
        "currency_mismatch (three-way)",
        MismatchDraft(
            "currency_mismatch",
            PID,
            "",
            {"lender_receipts": [received(10_000)]},
            {"agency_payments": [paid(10_000, "USD")]},
        ),
        "lender_receipts.total",
        "agency_payments.total",
    ),
    (
        "activity_after_recall",
        live(event("payment.reported"), placement_view(state="recalled")),
        "state",
        "type",
    ),
    (
        "activity_after_recall (batch)",
        batch(event("payment.reported"), recalled_s=int((NOW - timedelta(hours=1)).timestamp())),
        "recalled_s",
        "occurred_s",
    ),
    (
        "illegal_transition",
        live(event("payment.reported"), placement_view(state="closed")),
        "state",
        "type",
    ),
    (
        "ack_balance_differs",
        live(
            event("placement.acknowledged", balance=99_000),
            placement_view(state="placed", acked_balance_minor=None),
        ),
        "balance",
        "amount",
    ),
    (
        "conflicting_duplicate",
        live(event("payment.reported", payment_id="PAY-1", amount=12_000), ACTIVE),
        "amount_minor",
        "amount",
    ),
    (
        "conflicting_duplicate (batch)",
        batch(
            event("payment.reported", payment_id="P1", amount=60_000),
            event("payment.reported", payment_id="P1", amount=61_000),
        ),
        "amount_minor",
        "",
    ),
    (
        "conflicting_duplicate (webhook)",
        MismatchDraft(  # as gateway.inbound.store writes it
            "conflicting_duplicate", PID, "", {"sha256": "a" * 64}, {"sha256": "b" * 64}
        ),
        "sha256",
        "",
    ),
    (
        "unmatched_reversal",
        live(event("payment.reversed", payment_id="PAY-1", amount=10_001), ACTIVE),
        "payment_minor",
        "amount",
    ),
    (
        "unmatched_reversal (batch)",
        batch(event("payment.reversed", payment_id="P9", amount=100)),
        "payment_minor",
        "amount_minor",
    ),
    (
        "date_out_of_window",
        live(
            event("payment.reported", paid_at=(PLACED - timedelta(days=3)).isoformat()),
            placement_view(state="active", placed_at=PLACED),
        ),
        "placed_at",
        "paid_at",
    ),
    (
        "date_out_of_window (batch)",
        batch(event("payment.reported", paid_at=(PLACED - timedelta(days=3)).isoformat())),
        "placed_s",
        "paid_s",
    ),
    (
        "status_conflict",
        live(event("payment.reported", amount=1_000), placement_view(state="disputed")),
        "state",
        "type",
    ),
    (
        "status_conflict (returned)",
        live(event("case.returned", reason="recalled"), placement_view(state="active")),
        "state",
        "reason",
    ),
    (
        "amount_mismatch",
        MismatchDraft(  # as gateway.reconciliation.three_way writes it
            "amount_mismatch",
            PID,
            "",
            {"lender_receipts": [received(9_000)]},
            {"agency_payments": [paid(10_000)]},
        ),
        "lender_receipts.total",
        "agency_payments.total",
    ),
    (
        "remittance_short",
        MismatchDraft(
            "remittance_short",
            PID,
            "",
            {"lender_receipts": [received(9_000)]},
            {"agency_payments": [paid(6_000), paid(4_000)]},
        ),
        "lender_receipts.total",
        "agency_payments.total",
    ),
    (
        "statement_balance_drift",
        statement(StatementLine(PID, 90_000, "CNY", "active"), HELD),
        "outstanding_minor",
        "balance_minor",
    ),
    (
        "statement_status_disagreement",
        statement(StatementLine(PID, 100_000, "CNY", "closed"), HELD),
        "state",
        "status",
    ),
]


def _row(rows: list[FieldRow], name: str) -> FieldRow:
    [row] = [r for r in rows if r.field == name]
    return row


@pytest.mark.parametrize(("name", "draft", "ours", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_the_field_at_issue_is_one_row_marked_as_differing(
    name: str, draft: MismatchDraft, ours: str, theirs: str
) -> None:
    assert name.split()[0] == draft.kind
    rows = compare(draft.ours, draft.theirs, draft.kind)
    row = _row(rows, ours)
    assert row.in_ours and row.in_theirs and row.differs, row
    assert row.their_field == theirs
    if theirs:
        assert theirs not in {r.field for r in rows}, "the agency's name is folded into ours"


def test_every_kind_with_an_alias_has_a_case_and_every_kind_is_known() -> None:
    covered = {draft.kind for _n, draft, _o, _t in CASES}
    assert set(SAME_QUANTITY) <= covered
    assert covered <= set(MISMATCH_KINDS)


def test_equal_values_under_two_names_are_not_marked() -> None:
    # The same amount reported twice would not be a mismatch; folded in, it is not marked.
    rows = compare({"amount_minor": 12_000}, {"amount": "CNY 120.00"}, "conflicting_duplicate")
    assert [(r.field, r.their_field, r.differs) for r in rows] == [
        ("amount_minor", "amount", False)
    ]
    # Without the kind's alias the names stay apart and nothing is compared.
    rows = compare({"amount_minor": 12_000}, {"amount": "CNY 120.00"})
    assert [(r.field, r.differs) for r in rows] == [("amount", False), ("amount_minor", False)]


def test_an_amount_in_minor_units_equals_the_same_amount_as_money_text() -> None:
    assert same(123_450, "CNY 1,234.50")
    assert same("CNY -0.50", -50)
    assert not same(123_451, "CNY 1,234.50")
    assert not same("CNY 1.00", "USD 1.00")
    assert not same(100, "100")
