"""The core's English sentences in the console's language (gateway.console.core_texts):
every template reads back to the very sentence in English and to a translation in Chinese,
and the sentences the core's producers really write (the live rules, their batch
re-derivation, statements, allocation verdicts) are all recognised."""

import re
from datetime import timedelta

import pytest

from gateway.allocation.routing import fit_verdict
from gateway.console.core_texts import CODE_SLOTS, PHRASE_SLOTS, TEMPLATES, recognised, said
from gateway.console.i18n import Display, use
from gateway.reconciliation.event_audit import EventAudit
from gateway.reconciliation.event_rules import assess
from gateway.reconciliation.match_inputs import Tolerance
from gateway.reconciliation.statements import HeldPlacement, Statement, StatementLine, compare
from tests.factories import NOW, agency_config, case_to_allocate, event, money, placement_view
from tests.unit.test_event_audit import AGENCY, PID, PLACED, as_facts, facts

SLOT = re.compile(r"%\((\w+)\)s")
ENGLISH, CHINESE = Display(language="en"), Display(language="zh-CN")


def _value(name: str) -> str:
    if name in CODE_SLOTS:
        return "placed"
    if name in PHRASE_SLOTS:
        return "is full"
    if name == "verdicts":
        return "AGY_A: disabled; AGY_B: had this case before"
    return f"V-{name.upper()}-7"


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_reads_back_in_english_and_translates_to_chinese(template: str) -> None:
    values = {name: _value(name) for name in SLOT.findall(template)}
    sentence = template % values
    assert recognised(sentence) is not None
    with use(ENGLISH):
        assert said(sentence) == sentence
    with use(CHINESE):
        chinese = said(sentence)
    assert chinese != sentence and re.search(r"[\u4e00-\u9fff]", chinese), chinese
    for name, value in values.items():
        if name not in CODE_SLOTS | PHRASE_SLOTS | {"verdicts"}:
            assert value in chinese, (name, chinese)


def test_codes_and_joined_sentences_and_the_unknown() -> None:
    with use(CHINESE):
        assert said("DISPUTE") == "争议"
        assert said("eligible") == "可分派"
        assert said("placed with AGY_A; balance changed at the lender") == (
            "委派给 AGY_A；出借方余额变动"
        )
        assert said(
            "no agency can take it (AGY_A: disabled; AGY_B: bucket M5 not in contract)"
        ) == ("没有机构可以接收（AGY_A: 已停用；AGY_B: 账龄段 M5 不在合同范围内）")
        assert said("a note an operator typed") == "a note an operator typed"
        assert said(None) == ""
    with use(ENGLISH):
        assert said("DISPUTE") == "DISPUTE"


def _live() -> list[str]:
    active = placement_view(state="active", collected_minor=10_000, payments=(("PAY-1", 10_000),))
    decisions = [
        assess(event("contact.attempted", placement_id="PL-NOPE-1"), AGENCY, None),
        assess(event("payment.reported"), "AGY_X", placement_view()),
        assess(event("payment.reported", amount=money(10_000, "USD")), AGENCY, placement_view()),
        assess(event("payment.reported"), AGENCY, placement_view(state="recalled")),
        assess(event("payment.reported"), AGENCY, placement_view(state="closed")),
        assess(
            event("placement.acknowledged", balance=99_000),
            AGENCY,
            placement_view(state="placed", acked_balance_minor=None),
        ),
        assess(event("payment.reported", payment_id="PAY-1", amount=12_000), AGENCY, active),
        assess(event("payment.reported", payment_id="PAY-7", amount=95_000), AGENCY, active),
        assess(event("payment.reversed", payment_id="PAY-1", amount=10_001), AGENCY, active),
        assess(event("payment.reversed", payment_id="PAY-9", amount=1), AGENCY, active),
        assess(
            event("payment.reported", paid_at=(PLACED - timedelta(days=3)).isoformat()),
            AGENCY,
            placement_view(state="active", placed_at=PLACED),
        ),
        assess(
            event("payment.reported", paid_at=(NOW + timedelta(days=3)).isoformat()),
            AGENCY,
            placement_view(state="active"),
        ),
        assess(event("payment.reported"), AGENCY, placement_view(state="disputed")),
        assess(event("case.closed", reason="paid_in_full"), AGENCY, active),
        assess(event("case.returned", reason="recalled"), AGENCY, active),
    ]
    return [m.detail for d in decisions for m in d.mismatches]


def _batch() -> list[str]:
    recalled = int((NOW - timedelta(hours=1)).timestamp())
    early = (PLACED - timedelta(days=3)).isoformat()
    rows = [
        event("contact.attempted", placement_id="PL-NOPE-1"),
        event("payment.reported", amount=money(100, "USD")),
        event("payment.reported", payment_id="P1", amount=60_000),
        event("payment.reported", payment_id="P1", amount=61_000),
        event("payment.reported", payment_id="P2", amount=50_000),
        event("payment.reversed", payment_id="P9", amount=100),
        event("payment.reported", payment_id="P3", amount=1, paid_at=early),
        event("dispute.opened"),
        event("payment.reported", payment_id="P4", amount=1_000),
        event("case.closed", reason="paid_in_full"),
    ]
    found = EventAudit({PID: facts()}).feed([as_facts(n, e) for n, e in enumerate(rows, 1)])
    after_recall = EventAudit({PID: facts(recalled_s=recalled)}).feed(
        [as_facts(1, event("payment.reported"))]
    )
    other = EventAudit({PID: facts()}).feed([as_facts(1, event("contact.attempted"), "AGY_X")])
    return [b.draft.detail for b in [*found, *after_recall, *other]]


def _statements() -> list[str]:
    held = {
        PID: HeldPlacement(PID, "placed", "CNY", 100_000, PLACED.date()),
        "PL-2": HeldPlacement("PL-2", "placed", "CNY", 5_000, PLACED.date()),
    }
    lines = (
        StatementLine(PID, 90_000, "CNY", "closed"),
        StatementLine("PL-NEVER", 1, "CNY", "active"),
        StatementLine("PL-NEVER", 1, "CNY", "active"),
    )
    statement = Statement(AGENCY, "ST-1", PLACED.date(), NOW.date(), lines)
    return [b.draft.detail for b in compare(statement, held, Tolerance()).breaks]


def _verdicts() -> list[str]:
    case = case_to_allocate()
    found = [
        fit_verdict(agency_config(enabled=False), [case], "M2"),
        fit_verdict(agency_config(), [case_to_allocate(currency="USD")], "M2"),
        fit_verdict(agency_config(), [case], "M9"),
        fit_verdict(agency_config(eligibility={"min_balance_minor": 900_000}), [case], "M2"),
        fit_verdict(agency_config(eligibility={"max_balance_minor": 1_000}), [case], "M2"),
        fit_verdict(agency_config(eligibility={"regions": ["CN-11"]}), [case], "M2"),
    ]
    return [v for v in found if v is not None]


@pytest.mark.parametrize("producer", [_live, _batch, _statements, _verdicts])
def test_every_sentence_the_core_writes_is_recognised(producer: object) -> None:
    assert callable(producer)
    sentences = producer()
    assert len(sentences) >= 4
    with use(CHINESE):
        english = [s for s in sentences if said(s) == s]
    assert english == [], "the Chinese console would show these in English"
