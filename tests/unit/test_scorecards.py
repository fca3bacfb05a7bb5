"""Scorecards from grouped counts (pure)."""

from gateway.reconciliation.kinds import MISMATCH_KINDS
from gateway.reporting.scorecards import CONDUCT, REPORTING, SERVICE, rate, score


def test_rates_breaks_and_open_mismatches_per_agency() -> None:
    [a, b, c] = score(
        ["AGA", "AGB", "AGC"],
        [
            ("AGA", "CNY", 3, 30_000, 7_500, 1),
            ("AGA", "USD", 1, 1_000, 0, 0),
            ("AGB", "CNY", 2, 10_000, 10_000, 0),
        ],
        [
            ("AGA", "ack", "met", 3),
            ("AGA", "ack", "breached", 1),
            ("AGA", "ack", "open", 5),  # not yet due: counts in neither
            ("AGA", "promise_payment", "breached", 2),
            ("AGB", "first_activity", "met", 2),
            ("AGB", "deletion", "met", 3),
            ("AGB", "deletion", "breached", 1),
            ("AGB", "statement", "breached", 1),  # not a placement service line
        ],
        [
            ("AGA", "contact_rule_violation", "open", 2),
            ("AGA", "amount_mismatch", "resolved", 1),
            ("AGA", "dead_delivery", "investigating", 1),  # ours, not the agency's
            ("AGB", "activity_after_recall", "dismissed", 1),
        ],
    )
    assert (a.agency_id, a.placements, a.recalled) == ("AGA", 4, 1)
    assert a.recovery_bps == {"CNY": 2_500, "USD": 0}
    assert (a.ack.met, a.ack.breached, a.ack.on_time_bps) == (3, 1, 7_500)
    assert (a.promises.on_time_bps, a.first_activity.on_time_bps) == (0, None)
    assert (a.contact_violations, a.reporting_breaks, a.open_mismatches) == (2, 1, 3)
    assert b.recovery_bps == {"CNY": 10_000} and b.first_activity.on_time_bps == 10_000
    assert (b.contact_violations, b.open_mismatches) == (1, 0)
    assert (b.deletions.met, b.deletions.breached, b.deletions.on_time_bps) == (3, 1, 7_500)
    assert a.as_dict()["deletions"] == {"met": 0, "breached": 0, "on_time_bps": None}
    assert (c.placements, c.recovery_bps, c.ack.on_time_bps) == (0, {}, None)
    assert c.as_dict()["ack"] == {"met": 0, "breached": 0, "on_time_bps": None}


def test_an_agency_only_the_store_knows_keeps_its_card() -> None:
    [gone] = score([], [("OLD", "CNY", 1, 100, 50, 0)], [], [])
    assert (gone.agency_id, gone.recovery_bps) == ("OLD", {"CNY": 5_000})


def test_the_categories_name_real_mismatch_kinds() -> None:
    assert CONDUCT <= set(MISMATCH_KINDS) and REPORTING <= set(MISMATCH_KINDS)
    assert not CONDUCT & REPORTING
    assert set(SERVICE) == {"ack", "first_activity", "promise_payment", "deletion"}
    assert (rate(None), rate(0), rate(9_999)) == ("-", "0.00%", "99.99%")
