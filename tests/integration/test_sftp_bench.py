"""``bench sftp-out`` on a small batch: every case is delivered and recorded in the measured
round, the baseline puts the very bytes ours uploaded, and the result file is picked up."""

import pytest

from gateway.bench.sftp_out import TARGET_RATIO, run

pytestmark = pytest.mark.slow


async def test_the_sftp_benchmark_measures_a_whole_batch_against_a_raw_put() -> None:
    report = await run(cases=200, rounds=1)
    [measured] = report["per_round"]
    ours, alone = measured["ours"], measured["channel_alone"]
    assert (ours["delivered"], ours["delivered_rows"], ours["attempts"]) == (200, 200, 200)
    assert (ours["receipt_leaves"], ours["file_leaves"]) == (200, 3)
    assert alone["delivered"] == 200
    assert report["data_file_bytes"] > 200 * 50
    assert report["target_ratio"] == TARGET_RATIO
    assert report["meets_target"] == (report["ratio"] >= TARGET_RATIO)
    assert report["pickup"]["rows"] == 200 and report["pickup"]["ours"]["outcome"] == {"done": 1}
    rss = report["peak_rss_mb"]
    assert rss["ours_full_batch"] > 0 and rss["ours_tenth_batch_cases"] == 20
