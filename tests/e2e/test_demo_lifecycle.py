"""The demo's second act through the real console script: a hold recalls a placed case, an
escalation is approved, the early-stage agency's placements expire (one renewed), and the
second allocation round takes returned and expired cases to the next tier, never back to an
agency that had them; the demo's own acceptance counts are all zero. Then its month: every
lender receipt attributed or named unattributable, a statement per agency that reconciles to
the cent with the attributions and the agency's schedule (recomputed here, independently of
gateway.settlement), one disputed line with its mismatch, one waiver approved, one rejected."""

import hashlib
import json
import sqlite3
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import cli, keyed, keyed_copy  # noqa: F401  (fixtures)


def test_the_demo_moves_cases_through_their_life(request: pytest.FixtureRequest) -> None:
    workspace: Path = request.getfixturevalue("keyed_copy")
    result = cli(workspace, "demo", "--once", "--json", "--accounts", "300")
    assert result.code == 0, result.output[-3000:]
    summary: Any = result.json()
    life = summary["lifecycle"]
    assert set(life["checks"].values()) == {0}, life["checks"]
    assert life["escalations_approved"] == 1
    assert life["renewed"] and life["expiry_warnings"] > 0
    assert sum(life["expired_by_agency"].values()) > 0
    assert life["second_round_placed_by_tier"].get("secondary", 0) > 0
    assert life["second_round_placed_by_tier"].get("legal", 0) >= 1
    assert "no_eligible_agency" not in life["second_round_unallocated_by_reason"]
    # The webhook sandboxes fetched every listed document, checked its SHA-256 and the
    # letters' signatures, and were refused the documents of recalled placements (a placement
    # recalled before its agency got to its documents is refused them too: 410, not a failure).
    documents = [
        s["documents"]
        for s in summary["sandbox"]
        if "refused_after_recall" in (s.get("documents") or {})
    ]
    assert sum(d["listed"] for d in documents) > 0
    assert all(
        d["verified"] == d["fetched"] == d["listed"] - d["gone_before_fetch"] for d in documents
    ), documents
    assert sum(d["letters_verified"] for d in documents) > 0
    assert sum(d["letters_failed"] + d["failed"] + d["served_after_recall"] for d in documents) == 0
    assert sum(d["refused_after_recall"] for d in documents) > 0
    # The SFTP agency checked every document its batches carried against the manifest, and
    # the law firm every attachment against the SHA-256 listed in the mail's body.
    files = [s for s in summary["sandbox"] if "batches_rejected" in s]
    assert files and sum(s["documents_verified"] for s in files) > 0, files
    firms = [s for s in summary["sandbox"] if "document_problems" in s]
    assert firms and sum(s["documents_verified"] for s in firms) > 0, firms
    assert all(s["document_problems"] == [] for s in firms), firms

    database = workspace / "var" / "demo" / "gateway.db"
    with sqlite3.connect(database) as con:
        held = con.execute(
            "SELECT c.id, p.recall_reason FROM cases c JOIN placements p ON p.case_id = c.id "
            "WHERE c.status = 'held' AND p.state = 'recalled'"
        ).fetchall()
        assert "DECEASED" in {reason for _, reason in held}, held
        expired = con.execute(
            "SELECT count(*) FROM placements WHERE recall_reason = 'EXPIRED'"
        ).fetchone()[0]
        assert expired == sum(life["expired_by_agency"].values())
        moved = con.execute(
            "SELECT count(*) FROM case_history WHERE event = 'expire' AND actor = 'expiry'"
        ).fetchone()[0]
        assert moved == expired
        again = con.execute(
            "SELECT count(*) FROM placements a JOIN placements b ON a.case_id = b.case_id "
            "AND a.agency_id = b.agency_id AND a.id < b.id"
        ).fetchone()[0]
        assert again == 0
        check_month(con, workspace, summary["month"])
        check_annual(con, workspace, summary["annual"])


def check_annual(con: sqlite3.Connection, workspace: Path, annual: dict[str, Any]) -> None:
    """The year of history and an evaluation of every agency, each with its three documents
    (checked against the stored rows, independently of gateway.evaluation)."""
    assert annual["problems"] == [], annual
    history = annual["history"]
    assert len(history["months"]) == 12 and history["statements"] > 0
    con.row_factory = sqlite3.Row
    placed = {
        r["agency_id"]: r["n"]
        for r in con.execute(
            "SELECT agency_id, count(*) AS n FROM placements WHERE id LIKE 'HIST-%' "
            "GROUP BY agency_id"
        )
    }
    assert placed == history["placements"] and len(placed) >= 3
    recovered = {
        r["agency_id"]: r["amount"]
        for r in con.execute(
            "SELECT agency_id, sum(amount_minor) AS amount FROM attributions "
            "WHERE placement_id LIKE 'HIST-%' GROUP BY agency_id"
        )
    }
    assert recovered == history["recovered_minor"]
    agencies = {
        tomllib.loads(f.read_text(encoding="utf-8"))["id"]
        for f in (workspace / "config" / "agencies").glob("*.toml")
    }
    assert set(annual["reports"]) == agencies
    rows = {
        r["agency_id"]: r
        for r in con.execute("SELECT agency_id, figures, canonical_sha256 FROM evaluation_reports")
    }
    for agency_id, report in annual["reports"].items():
        figures = rows[agency_id]["figures"]
        assert hashlib.sha256(figures.encode()).hexdigest() == report["sha256"]
        assert json.loads(figures)["performance"]["placements"] == placed.get(agency_id, 0)
        for kind, path in report["documents"].items():
            body = Path(path).read_bytes()
            assert body.startswith(b"PK" if kind == "xlsx" else b"%PDF-"), (agency_id, kind)
    # The history's weakest profile (most violations, upheld complaints) is not renewed.
    weakest = max(history["violations"], key=lambda a: history["violations"][a])
    assert annual["reports"][weakest]["recommendation"] != "renew"
    assert "high_violations" in annual["reports"][weakest]["reasons"]


def _half_up(numerator: int, denominator: int) -> int:
    return (numerator * 2 + denominator) // (2 * denominator)


def expected_total(schedule: dict[str, Any], month: str, lines: list[sqlite3.Row]) -> int:
    """The statement total the agency's ``[commission]`` schedule gives these lines (no
    adjustments or fees in the demo): first matching rule, whole-amount tier bonus, half-up
    per line, line cap, then the month's minimum and maximum."""
    first = date.fromisoformat(f"{month}-01")
    (period,) = [
        p for p in schedule["periods"] if p["from"] <= first <= p["to"]
    ]  # exactly one period covers the month
    recovered = sum(line["amount_minor"] for line in lines)
    reached = [t for t in period.get("tiers", []) if recovered >= t["from_minor"]]
    bonus = reached[-1]["bonus_bps"] if reached else 0
    commission = 0
    for line in lines:
        age = (
            date.fromisoformat(line["paid_on"]) - date.fromisoformat(line["placed_at"][:10])
        ).days
        facts = {"bucket": line["bucket"], "age": age, "legal": bool(line["legal"])}
        rule = next(r for r in period["rules"] if _matches(r, facts))
        earned = _half_up(line["amount_minor"] * min(10_000, rule["rate_bps"] + bonus), 10_000)
        if "line_cap_minor" in period:
            earned = min(earned, period["line_cap_minor"])
        commission += earned
    commission = max(commission, int(period.get("monthly_minimum_minor", 0)))
    if "monthly_maximum_minor" in period:
        commission = min(commission, int(period["monthly_maximum_minor"]))
    return commission


def _matches(rule: dict[str, Any], facts: dict[str, Any]) -> bool:
    return (
        (not rule.get("buckets") or facts["bucket"] in rule["buckets"])
        and facts["age"] <= rule.get("age_max_days", facts["age"])
        and facts["age"] >= rule.get("age_min_days", facts["age"])
        and rule.get("legal", facts["legal"]) == facts["legal"]
        and not {"dpd_min", "dpd_max"} & rule.keys()  # the demo's schedules use no DPD rule
    )


def check_month(con: sqlite3.Connection, workspace: Path, month: dict[str, Any]) -> None:
    assert month["problems"] == [] and month["unaccounted"] == {}, month
    con.row_factory = sqlite3.Row
    # Every receipt of the feed: its rows add up to it, and an unattributable one says why.
    receipts = con.execute(
        "SELECT l.payment_id, l.amount_minor, sum(a.amount_minor) AS credited, "
        "count(a.id) AS rows_, sum(a.rule = 'unattributable' AND coalesce(a.reason, '') = '') "
        "AS unexplained, group_concat(a.rule) AS rules "
        "FROM lender_payments l LEFT JOIN attributions a ON a.receipt_id = l.id "
        "GROUP BY l.id"
    ).fetchall()
    assert receipts and month["receipts"] == len(receipts)
    for r in receipts:
        assert r["rows_"] > 0 and r["credited"] == r["amount_minor"], dict(r)
        assert r["unexplained"] == 0, dict(r)
    rules = {rule for r in receipts for rule in r["rules"].split(",")}
    assert {"held", "grace_old", "unattributable"} <= rules, rules
    assert len(month["unattributable"]) >= 2 and all(month["unattributable"].values()), month
    # A statement per agency with a schedule, its total recomputed from the attribution rows.
    agencies = {
        data["id"]: data
        for data in (
            tomllib.loads(f.read_text(encoding="utf-8"))
            for f in sorted((workspace / "config" / "agencies").glob("*.toml"))
        )
        if data.get("enabled", True) and data.get("commission", {}).get("periods")
    }
    latest = con.execute(
        "SELECT s.* FROM settlement_statements s WHERE s.month = ? AND s.revision = "
        "(SELECT max(revision) FROM settlement_statements t WHERE t.agency_id = s.agency_id "
        "AND t.month = s.month)",
        (month["month"],),
    ).fetchall()
    assert {s["agency_id"] for s in latest} == set(agencies) == set(month["statements"])
    first = date.fromisoformat(f"{month['month']}-01")
    end = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    for s in latest:
        lines = con.execute(
            "SELECT a.amount_minor, a.paid_on, p.placed_at, "
            "coalesce(d.bucket, c.bucket) AS bucket, "
            "(p.tier = 'legal' OR EXISTS (SELECT 1 FROM agency_events e WHERE "
            "e.placement_id = p.id AND e.event_type = 'legal.action' "
            "AND date(e.occurred_at) <= a.paid_on)) AS legal "
            "FROM attributions a JOIN placements p ON p.id = a.placement_id "
            "JOIN cases c ON c.id = p.case_id "
            "LEFT JOIN allocation_decisions d ON d.id = p.decision_id "
            "WHERE a.agency_id = ? AND a.paid_on >= ? AND a.paid_on < ? AND a.state != 'disputed'",
            (s["agency_id"], first.isoformat(), end.isoformat()),
        ).fetchall()
        total = expected_total(agencies[s["agency_id"]]["commission"], month["month"], lines)
        assert s["adjustments_minor"] == 0 and s["fees_minor"] == 0, dict(s)
        assert s["total_minor"] == total, (dict(s), [dict(line) for line in lines])
        assert s["recovered_minor"] == sum(line["amount_minor"] for line in lines)
        assert month["statements"][s["agency_id"]]["total_minor"] == total
    states = sorted(s["state"] for s in latest)
    assert states.count("confirmed") == 1 and states.count("disputed") == 1, states
    # The confirmed statement locked its attributions; the disputed line is a mismatch.
    (confirmed,) = [s for s in latest if s["state"] == "confirmed"]
    unsettled = con.execute(
        "SELECT count(*) FROM attributions WHERE agency_id = ? AND paid_on >= ? AND paid_on < ? "
        "AND (state != 'settled' OR statement_id != ?)",
        (confirmed["agency_id"], first.isoformat(), end.isoformat(), confirmed["id"]),
    ).fetchone()[0]
    assert unsettled == 0
    (disputed,) = [s for s in latest if s["state"] == "disputed"]
    dispute = month["dispute"]
    assert dispute["agency_id"] == disputed["agency_id"] and len(dispute["line_nos"]) == 1
    mismatch = con.execute(
        "SELECT kind, state, agency_id FROM mismatches WHERE id = ?", (dispute["mismatch_id"],)
    ).fetchone()
    assert mismatch["kind"] == "settlement_disputed" and mismatch["state"] == "open", dict(mismatch)
    assert mismatch["agency_id"] == disputed["agency_id"]
    # The two waivers, decided.
    decided = dict(
        con.execute(
            "SELECT state, count(*) FROM concession_requests WHERE kind = 'waiver' GROUP BY state"
        ).fetchall()
    )
    assert decided.get("approved") == 1 and decided.get("rejected") == 1, decided
    assert month["waivers"]["approved"]["state"] == "approved"
    assert month["waivers"]["rejected"]["state"] == "rejected"
