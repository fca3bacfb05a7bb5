"""The two webhook benchmarks end to end with tiny loads: real child processes, real loopback
HTTP, real SQLite files. What is checked is the report's shape and that every event was
stored and every packet delivered and recorded; speed is never asserted."""

import json
import statistics
from collections import Counter
from datetime import UTC, datetime

import pytest

from gateway.bench import webhook_in, webhook_out
from gateway.bench.dataset import SeededPlacement
from gateway.config.settings import ReconciliationSection
from gateway.reconciliation.conduct_rules import ContactSeen, contact_rule_breaks
from gateway.reconciliation.contact_rules import ContactRules

pytestmark = pytest.mark.slow

SIDE_KEYS = {"rate_per_s", "peak_rss_mb", "seconds"}
REPORT_KEYS = {
    "benchmark",
    "measure",
    "ratio",
    "cpu_ratio",
    "target_ratio",
    "meets_target",
    "ours",
    "baseline",
    "count",
    "concurrency",
    "rounds",
    "per_round",
    "setup",
    "context",
    "wall_seconds",
}
CONTEXT_KEYS = {"python", "cpu_count", "database", "cpu_pinning", "load_average_at_start"}


def check_common(
    report: dict[str, object], *, count: int, concurrency: int, rounds: int, cpu_key: str
) -> None:
    assert REPORT_KEYS <= report.keys()
    assert (report["count"], report["concurrency"], report["rounds"]) == (
        count,
        concurrency,
        rounds,
    )
    per_round = report["per_round"]
    assert isinstance(per_round, list) and len(per_round) == rounds
    assert [r["round"] for r in per_round] == list(range(1, rounds + 1))
    for r in per_round:
        for side in ("ours", "baseline"):
            assert r[side]["rate_per_s"] > 0
            assert r[side]["peak_rss_mb"] > 0
        assert r["ratio"] == pytest.approx(
            r["ours"]["rate_per_s"] / r["baseline"]["rate_per_s"], abs=1e-3
        )
    assert all(r["ours"][cpu_key] > 0 for r in per_round)
    cpu_ratios = [r["baseline"][cpu_key] / r["ours"][cpu_key] for r in per_round]
    assert report["cpu_ratio"] == pytest.approx(statistics.median(cpu_ratios), abs=1e-3)
    assert report["ratio"] == pytest.approx(
        statistics.median(r["ratio"] for r in per_round), abs=1e-3
    )
    for side in ("ours", "baseline"):
        summary = report[side]
        assert isinstance(summary, dict) and SIDE_KEYS | {cpu_key} <= summary.keys()
        assert len(summary["seconds"]) == rounds
    context = report["context"]
    assert isinstance(context, dict) and CONTEXT_KEYS <= context.keys()
    assert "sqlite" in str(context["database"])
    json.dumps(report)


async def test_webhook_in_stores_every_accepted_event(capfd: pytest.CaptureFixture[str]) -> None:
    report = await webhook_in.run(count=200, concurrency=8, rounds=2)

    check_common(report, count=200, concurrency=8, rounds=2, cpu_key="server_cpu_ms_per_event")
    assert report["benchmark"] == "webhook-in"
    assert report["stored"] == report["stored_expected"] == 400
    for r in report["per_round"]:
        ours = r["ours"]
        assert ours["statuses"] == {"200": 200}
        assert r["baseline"]["statuses"] == {"200": 200}
        assert ours["stored"] == ours["inbound_rows"] == ours["agency_events"] == 200
        assert ours["inbound_evidence_leaves"] == 200
        assert ours["mismatches"] == 0
    assert sum(report["setup"]["event_mix"].values()) == 200
    out, err = capfd.readouterr()
    assert out == ""
    assert "round" not in err


async def test_webhook_out_delivers_and_records_every_packet(
    capfd: pytest.CaptureFixture[str],
) -> None:
    report = await webhook_out.run(count=200, concurrency=8, rounds=1, batch_size=50, progress=True)

    check_common(report, count=200, concurrency=8, rounds=1, cpu_key="sender_cpu_ms_per_packet")
    assert report["benchmark"] == "webhook-out"
    assert report["delivered"] == report["delivered_expected"] == 200
    ours = report["per_round"][0]["ours"]
    assert ours["delivered"] == ours["claimed"] == ours["delivered_rows"] == 200
    assert ours["not_delivered_rows"] == 0
    assert ours["attempts"] == ours["receipt_evidence_leaves"] == 200
    assert ours["expectations"] == 400  # ack and first activity per delivered placement
    assert report["per_round"][0]["baseline"]["delivered"] == 200
    assert report["setup"]["agency_retry_concurrency"] == 8
    assert report["setup"]["dispatch_batch_size"] == 50
    out, err = capfd.readouterr()
    assert out == ""
    assert "round 1/1: ours" in err


def test_event_mix_is_accepted_without_mismatches_by_construction() -> None:
    fresh = [SeededPlacement(f"PL-F{i}", 10_000 + i, "CNY") for i in range(12)]
    worked = [SeededPlacement(f"PL-W{i}", 2_500, "CNY") for i in range(6)]
    bodies = webhook_in.event_bodies(fresh, worked, 100, now=datetime(2026, 3, 2, tzinfo=UTC))

    assert len({webhook_id for webhook_id, _ in bodies}) == 100
    events = [json.loads(body) for _, body in bodies]
    acks = [e["data"] for e in events if e["type"] == "placement.acknowledged"]
    assert sorted(a["placement_id"] for a in acks) == sorted(p.placement_id for p in fresh)
    balances = {p.placement_id: p.balance_minor for p in fresh}
    assert all(a["balance"]["amount_minor"] == balances[a["placement_id"]] for a in acks)
    paid: Counter[str] = Counter()
    for e in events:
        if e["type"] == "payment.reported":
            paid[e["data"]["placement_id"]] += e["data"]["amount"]["amount_minor"]
        else:
            assert e["type"] in ("placement.acknowledged", "contact.attempted")
    assert paid and all(total <= 2_500 for total in paid.values())
    assert {e["data"]["placement_id"] for e in events} <= {p.placement_id for p in fresh + worked}
    # Contacts are judged on arrival too: none in quiet hours or over a cap.
    contacts = [
        ContactSeen(
            n,
            "AGY",
            e["data"]["placement_id"],
            "",
            datetime.fromisoformat(e["data"]["attempted_at"]),
            e["data"]["channel"],
            e["data"]["effective"],
        ).facts()
        for n, e in enumerate(events)
        if e["type"] == "contact.attempted"
    ]
    rules = ContactRules.from_settings(ReconciliationSection())
    debtors = {p.placement_id: p.placement_id for p in worked}
    assert contacts and contact_rule_breaks(contacts, [], debtors, rules) == []
