"""The demo's second act through the real console script: a hold recalls a placed case, an
escalation is approved, the early-stage agency's placements expire (one renewed), and the
second allocation round takes returned and expired cases to the next tier, never back to an
agency that had them; the demo's own acceptance counts are all zero."""

import sqlite3
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
