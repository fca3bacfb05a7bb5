"""``bench sftp-out`` on a small batch: every case is delivered and recorded in the measured
round, the baseline puts the very bytes ours uploaded, and the result file is picked up."""

import sqlite3
from pathlib import Path

import pytest

from gateway.bench.sftp_dataset import AGENCY_ID, SftpBench, seed
from gateway.bench.sftp_floor import floor_records
from gateway.bench.sftp_out import TARGET_FLOOR_MULTIPLE, run

pytestmark = pytest.mark.slow


async def test_the_sftp_benchmark_measures_a_whole_batch_against_a_raw_put() -> None:
    report = await run(cases=200, rounds=1)
    [measured] = report["per_round"]
    ours, alone = measured["ours"], measured["channel_alone"]
    assert (ours["delivered"], ours["delivered_rows"], ours["attempts"]) == (200, 200, 200)
    assert (ours["receipt_leaves"], ours["file_leaves"]) == (200, 3)
    assert alone["delivered"] == 200
    floor = measured["floor"]
    assert floor["recorded"] == 200 and floor["seconds"] > 0
    # The target is against the floor measured in the same round.
    assert measured["floor_multiple"] == round(ours["seconds"] / floor["seconds"], 3)
    assert report["target_floor_multiple"] == TARGET_FLOOR_MULTIPLE == 1.5
    assert report["meets_target"] == (report["floor_multiple"] <= TARGET_FLOOR_MULTIPLE)
    assert report["data_file_bytes"] > 200 * 50
    assert report["pickup"]["rows"] == 200 and report["pickup"]["ours"]["outcome"] == {"done": 1}
    rss = report["peak_rss_mb"]
    assert rss["ours_full_batch"] > 0 and rss["ours_tenth_batch_cases"] == 20


async def test_the_floor_writes_the_records_the_issue_requires_and_nothing_else(
    tmp_path: Path,
) -> None:
    setup = SftpBench(tmp_path, tmp_path / "store.db", cases=50)
    await seed(setup, 50)
    result = floor_records(setup.database_path, AGENCY_ID, "ab" * 32)
    assert result["recorded"] == 50
    with sqlite3.connect(setup.database_path) as conn:
        states = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state"))
        expected = dict(conn.execute("SELECT kind, count(*) FROM expectations GROUP BY kind"))
        receipts = conn.execute(
            "SELECT count(*) FROM evidence_leaves WHERE kind = 'receipt'"
        ).fetchone()
        attempts = conn.execute("SELECT count(*) FROM delivery_attempts").fetchone()
    assert states == {"delivered": 50}
    assert expected == {"ack": 50, "first_activity": 50}
    assert (receipts, attempts) == ((50,), (0,))
    # A second run finds nothing due: the claim took exactly the pending items.
    assert floor_records(setup.database_path, AGENCY_ID, "ab" * 32)["recorded"] == 0
