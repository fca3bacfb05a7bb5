"""The batch event check (``gateway.reconciliation.event_audit``) and the contact rules
(``gateway.reconciliation.contact_rules``): each rule on a small case, agreement with the
incremental rules (``assess``) on random legal sequences, and a resumed audit equal to an
uninterrupted one."""

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings, strategies as st

from gateway.reconciliation.contact_rules import ContactRules, check_contacts
from gateway.reconciliation.event_audit import EventAudit, EventFacts, PlacementFacts
from gateway.reconciliation.event_rules import assess
from schemas.events import AgencyEvent, CaseClosed, CaseReturned, PaymentReported
from tests.factories import NOW, event, money, placement_view

PID = "PL-AC0000000001-1"
AGENCY = "AGY_TEST"
PLACED = NOW - timedelta(days=10)
BALANCE = 100_000


def facts(**overrides: object) -> PlacementFacts:
    row: dict[str, object] = {
        "id": PID,
        "agency": AGENCY,
        "currency": "CNY",
        "balance": BALANCE,
        "placed_s": int(PLACED.timestamp()),
        "recalled_s": None,
        "debtor": "CU1",
    }
    row.update(overrides)
    return tuple(row.values())  # type: ignore[return-value]


def as_facts(n: int, e: AgencyEvent, agency: str = AGENCY) -> EventFacts:
    """The row the events query returns for ``e`` stored as event ``n``."""
    data = e.data
    amount = getattr(data, "amount", None) or getattr(data, "balance", None)
    at = getattr(data, "paid_at", None) or getattr(data, "attempted_at", None)
    contact = None
    if e.type == "contact.attempted":
        channels = {"call": 1, "sms": 2, "visit": 3, "app": 4, "letter": 5, "email": 6}
        contact = 2 * channels[data.channel] + int(data.effective)  # type: ignore[union-attr]
    return (
        n,
        agency,
        getattr(data, "placement_id", ""),
        e.type,
        getattr(data, "payment_id", None) or getattr(data, "promise_id", None),
        amount.amount_minor if amount else None,
        amount.currency if amount else None,
        int(e.timestamp.timestamp()),
        int(at.timestamp()) if at else None,
        contact,
        getattr(data, "reason", None) if isinstance(e, CaseClosed | CaseReturned) else None,
    )


def audit_kinds(rows: list[EventFacts], **placement: object) -> list[tuple[int, str]]:
    audit = EventAudit({PID: facts(**placement)})
    return sorted((b.event_id or 0, b.draft.kind) for b in audit.feed(rows))


def test_each_refusal_rule() -> None:
    rows = [
        as_facts(1, event("contact.attempted", placement_id="PL-NOPE-1")),
        as_facts(2, event("contact.attempted"), agency="AGY_OTHER"),
        as_facts(3, event("payment.reported", amount=money(100, "USD"))),
    ]
    assert audit_kinds(rows) == [
        (1, "unknown_placement"),
        (2, "wrong_agency"),
        (3, "currency_mismatch"),
    ]


def test_activity_after_the_recall_took_effect() -> None:
    recalled = int((NOW - timedelta(hours=1)).timestamp())
    before = event("contact.attempted", timestamp=NOW - timedelta(hours=2))
    after = event("payment.reported", timestamp=NOW)
    assert audit_kinds([as_facts(1, before), as_facts(2, after)], recalled_s=recalled) == [
        (2, "activity_after_recall")
    ]


def test_payment_rules() -> None:
    rows = [
        as_facts(1, event("payment.reported", payment_id="P1", amount=60_000)),
        as_facts(2, event("payment.reported", payment_id="P1", amount=60_000)),  # a repeat
        as_facts(3, event("payment.reported", payment_id="P1", amount=61_000)),
        as_facts(4, event("payment.reported", payment_id="P2", amount=50_000)),
        as_facts(5, event("payment.reversed", payment_id="P9", amount=100)),
        as_facts(
            6,
            event(
                "payment.reported",
                payment_id="P3",
                amount=1,
                paid_at=(PLACED - timedelta(days=2)).isoformat(),
            ),
        ),
    ]
    assert audit_kinds(rows) == [
        (3, "conflicting_duplicate"),
        (4, "over_collection"),
        (5, "unmatched_reversal"),
        (6, "date_out_of_window"),
        (6, "over_collection"),
    ]


def test_payment_rules_on_their_edges() -> None:
    """Exactly at a limit is fine; one second or one minor unit past it breaks."""
    placed = int(PLACED.timestamp())
    occurred = placed + 5 * 86_400

    def paid(n: int, amount: int, at_s: int | None) -> EventFacts:
        return (
            n,
            AGENCY,
            PID,
            "payment.reported",
            f"P{n}",
            amount,
            "CNY",
            occurred,
            at_s,
            None,
            None,
        )

    rows = [
        paid(1, 10_000, placed - 86_400),  # a day before placement: the grace
        paid(2, 10_000, placed - 86_401),
        paid(3, 10_000, occurred + 86_400),  # a day after the report: clock skew
        paid(4, 10_000, occurred + 86_401),
        paid(5, BALANCE - 40_000, occurred),  # collected == balance
        paid(6, 1, occurred),
        paid(7, 5, None),  # no paid_at: only the amount is checked
    ]
    assert audit_kinds(rows) == [
        (2, "date_out_of_window"),
        (4, "date_out_of_window"),
        (6, "over_collection"),
        (7, "over_collection"),
    ]
    audit = EventAudit({PID: facts()})
    audit.feed(rows)
    assert audit.counts == {"ok": 3, "date_out_of_window": 2, "over_collection": 2}
    assert [p.day for p in audit.payments.values()][-1] == occurred // 86_400


def test_the_agencys_own_reports_disagreeing_are_status_conflicts() -> None:
    rows = [
        as_facts(1, event("dispute.opened")),
        as_facts(2, event("payment.reported", amount=1_000)),
        as_facts(3, event("case.closed", reason="paid_in_full")),
    ]
    assert audit_kinds(rows) == [(2, "status_conflict"), (3, "status_conflict")]
    returned = as_facts(1, event("case.returned", reason="recalled", balance=BALANCE))
    assert audit_kinds([returned]) == [(1, "status_conflict")]


SHARED = {
    "conflicting_duplicate",
    "over_collection",
    "unmatched_reversal",
    "status_conflict",
    "date_out_of_window",
}


@st.composite
def legal_sequences(draw: st.DrawFn) -> list[AgencyEvent]:
    """Events legal in sequence on an acknowledged placement, ending at most once."""
    events: list[AgencyEvent] = []
    for n in range(draw(st.integers(0, 14))):
        at = NOW + timedelta(minutes=n)
        kind = draw(
            st.sampled_from(
                ["payment.reported"] * 4
                + ["payment.reversed"] * 2
                + ["contact.attempted", "dispute.opened", "legal.action"]
            )
        )
        ref = draw(st.sampled_from(["P1", "P2", "P3"]))
        amount = draw(st.sampled_from([10_000, 30_000, 60_000]))
        if kind == "payment.reported":
            early = draw(st.booleans()) and draw(st.booleans())
            paid = PLACED - timedelta(days=1) if early else at
            events.append(
                event(kind, payment_id=ref, amount=amount, paid_at=paid.isoformat(), timestamp=at)
            )
        elif kind == "payment.reversed":
            events.append(event(kind, payment_id=ref, amount=amount, timestamp=at))
        else:
            events.append(event(kind, timestamp=at))
    end = draw(st.sampled_from([None, "paid_in_full", "settled", "recalled", "uncollectable"]))
    at = NOW + timedelta(hours=1)
    if end in ("paid_in_full", "settled"):
        events.append(event("case.closed", reason=end, timestamp=at))
    elif end is not None:
        events.append(event("case.returned", reason=end, balance=BALANCE, timestamp=at))
    return events


@settings(max_examples=300, deadline=None)
@given(legal_sequences())
def test_the_batch_check_agrees_with_the_incremental_rules(events: list[AgencyEvent]) -> None:
    view = placement_view(id=PID, balance_minor=BALANCE, placed_at=PLACED, state="active")
    incremental = []
    for n, e in enumerate(events, start=1):
        decision = assess(e, AGENCY, view)
        incremental += [(n, m.kind) for m in decision.mismatches if m.kind in SHARED]
        if decision.placement is not None:
            view = decision.placement
    batch = audit_kinds([as_facts(n, e) for n, e in enumerate(events, start=1)])
    assert batch == sorted(incremental)


@settings(max_examples=200, deadline=None)
@given(legal_sequences(), st.integers(0, 15))
def test_a_resumed_audit_emits_what_an_uninterrupted_one_emits_after_the_cut(
    events: list[AgencyEvent], cut: int
) -> None:
    rows = [as_facts(n, e) for n, e in enumerate(events, start=1)]
    whole = EventAudit({PID: facts()}).feed(rows)
    resumed = EventAudit({PID: facts()})
    resumed.feed(rows[:cut], emit=False)
    after = resumed.feed(rows[cut:])
    assert [b.dedupe_key for b in after] == [b.dedupe_key for b in whole if (b.event_id or 0) > cut]
    again = EventAudit({PID: facts()})
    again.feed(rows)
    assert resumed.payments == again.payments


def test_a_payment_reported_by_the_agency_keeps_its_paid_at() -> None:
    paid = NOW - timedelta(hours=3)
    audit = EventAudit({PID: facts()})
    audit.feed([as_facts(1, event("payment.reported", payment_id="P1", paid_at=paid.isoformat()))])
    (payment,) = audit.payments.values()
    assert (payment.ref, payment.day) == ("P1", int(paid.timestamp()) // 86_400)
    assert isinstance(event("payment.reported"), PaymentReported)


# contact rules

SHANGHAI = ContactRules(ZoneInfo("Asia/Shanghai"), time(22), time(8), 3, 5)


def call(
    n: int, local: str, *, channel: str = "call", effective: bool = True, pid: str = PID
) -> EventFacts:
    at = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    e = event(
        "contact.attempted",
        placement_id=pid,
        channel=channel,
        effective=effective,
        attempted_at=at.astimezone(UTC).isoformat(),
        timestamp=at.astimezone(UTC),
    )
    return as_facts(n, e)


def violations(
    rows: list[EventFacts],
    rules: ContactRules = SHANGHAI,
    more: dict[str, PlacementFacts] | None = None,
) -> list[tuple[int | None, str]]:
    placements = {PID: facts(), **(more or {})}
    audit = EventAudit(placements)  # the contact attempts as the events pass keeps them
    assert audit.feed(rows) == []
    return [(b.event_id, b.rule) for b in check_contacts(audit.contacts, placements, rules)]


def test_quiet_hours_are_local_and_letters_are_not_intrusive() -> None:
    rows = [
        call(1, "2026-03-03T21:59"),
        call(2, "2026-03-03T22:00"),
        call(3, "2026-03-04T07:59", channel="sms"),
        call(4, "2026-03-04T08:00"),
        call(5, "2026-03-03T23:00", channel="letter"),
    ]
    assert violations(rows) == [(2, "quiet_hours"), (3, "quiet_hours")]


def test_the_call_beyond_the_daily_cap_of_effective_calls_is_flagged() -> None:
    rows = [
        call(1, "2026-03-04T14:00"),
        call(2, "2026-03-04T09:00"),
        call(3, "2026-03-04T10:00", effective=False),
        call(4, "2026-03-04T11:00"),
        call(5, "2026-03-04T12:00"),
        call(6, "2026-03-05T09:00"),
    ]
    assert violations(rows, replace(SHANGHAI, max_calls_per_7_days=None)) == [
        (1, "daily_effective_calls")
    ]


def test_calls_count_per_debtor_across_placements() -> None:
    other = "PL-AC0000000002-1"
    rows = [call(n, f"2026-03-04T1{n}:00", pid=PID if n % 2 else other) for n in range(4)]
    same_debtor = violations(rows, more={other: facts(id=other)})
    assert same_debtor == [(3, "daily_effective_calls")]
    assert violations(rows, more={other: facts(id=other, debtor="CU2")}) == []


def test_seven_calls_in_seven_days() -> None:
    rows = [call(n, f"2026-03-0{n}T10:00", effective=False) for n in range(1, 8)]
    assert violations(rows) == [(6, "calls_per_7_days"), (7, "calls_per_7_days")]
    spread = [call(1, "2026-03-01T10:00", effective=False), *rows[1:5]]
    spread += [call(9, "2026-03-09T10:00", effective=False)]
    assert violations(spread) == []
    assert violations(rows, replace(SHANGHAI, max_calls_per_7_days=None)) == []
