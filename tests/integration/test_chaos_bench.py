"""The chaos benchmark end to end at a small size: real dispatcher processes SIGKILLed while
they deliver to counting agencies on loopback, on SQLite and PostgreSQL, under both kill
profiles. Nothing may be lost or change bytes, and every duplicate must be a copy a killed
worker had sent and never recorded; the duplicate rate itself is never asserted."""

import json
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.bench import chaos
from gateway.bench.chaos_tally import Arrival, Recorded, answer_to_commit

pytestmark = pytest.mark.slow

PLACEMENTS = 300
KILLS = 3
STEADY_PLACEMENTS = 120
STEADY_KILLS = 2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite files) or the PostgreSQL server the benchmark creates its databases on."""
    if request.param == "sqlite":
        yield None
        return
    url = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    yield url


async def test_killed_dispatchers_lose_nothing_and_every_duplicate_was_unrecorded_at_a_kill(
    server_url: str | None,
) -> None:
    # Slow answers keep requests in flight for most of the run, so the kills (which only
    # strike a worker holding leases) land before the last packet arrives on any machine.
    report = await chaos.run(
        placements=PLACEMENTS,
        kills=KILLS,
        lease_seconds=5,
        agency_latency_ms=300,
        database_url=server_url,
    )

    at_risk = check(report, placements=PLACEMENTS, kills=KILLS, server_url=server_url)
    # Every kill strikes a worker holding leases, mid-dispatch.
    assert at_risk > 0, "the kills must land while sent packets are unrecorded"


async def test_under_a_steady_intake_the_kills_land_at_random_times_and_explain_every_duplicate(
    server_url: str | None,
) -> None:
    # One worker and one started ahead in standby: every kill strikes the dispatching one
    # (busy or idle) and the standby takes over at once, so the planned kills all happen.
    report = await chaos.run(
        placements=STEADY_PLACEMENTS,
        kills=STEADY_KILLS,
        workers=1,
        lease_seconds=5,
        profile="steady",
        rate=40,
        database_url=server_url,
    )

    check(report, placements=STEADY_PLACEMENTS, kills=STEADY_KILLS, server_url=server_url)
    for side in ("ours", "baseline"):
        r = report[side]
        assert r["kills"] == STEADY_KILLS
        assert r["intake"]["due_to_first_arrival_ms"] is not None
        # Every packet's delivery is recorded once by the worker that saw it through.
        assert r["answer_to_commit"]["outcomes"] >= STEADY_PLACEMENTS
    assert report["setup"]["profile"] == "steady" and report["setup"]["standby_workers"] == 1


def check(report: dict[str, Any], *, placements: int, kills: int, server_url: str | None) -> int:
    """What every run must show, whatever its profile (module docstring); return how many
    copies the kills caught unrecorded."""
    json.dumps(report)
    assert report["placements"] == placements
    assert report["nothing_lost"] and report["no_changed_bytes"]
    assert report["all_duplicates_explained"]
    at_risk = 0
    for side in ("ours", "baseline"):
        r = report[side]
        # A kill planned after the run's last packet cannot happen: at least one must.
        assert 1 <= r["kills"] <= kills and r["kills"] == len(r["per_kill"])
        assert r["distinct_ids"] == placements
        assert (r["ids_lost"], r["ids_changed_bytes"], r["not_delivered"]) == (0, 0, 0)
        assert r["refused_requests"] == 0
        assert r["deliveries_received"] == placements + r["duplicates"]
        unrecorded = r["at_kills"]["in_flight"] + r["at_kills"]["answered_not_recorded"]
        assert r["duplicates_unexplained"] == 0
        assert r["duplicates"] == r["duplicates_explained"] <= unrecorded
        at_risk += unrecorded
        assert r["answer_to_commit"]["outcomes"] > 0
    assert ("postgresql" in report["context"]["database"]) == (server_url is not None)
    return at_risk


def test_the_steady_plan_spreads_the_same_kills_over_the_intake_for_both_sides() -> None:
    plan = chaos.KillPlan.make("steady", packets=1000, kills=50, rate=100, rng=random.Random(7))

    assert len(plan) == 50 and list(plan.times) == sorted(plan.times)
    assert all(0 <= t < 10 for t in plan.times)
    assert plan == chaos.KillPlan.make(
        "steady", packets=1000, kills=50, rate=100, rng=random.Random(7)
    )
    # A side with fewer packets (seeding may place fewer) keeps only the kills within its run.
    assert all(t < 5 for t in plan.within(500).times)


def test_answers_wait_for_their_commit_from_the_agencys_answer_on() -> None:
    arrivals = {"a": [Arrival(1.0, 1.05)], "b": [Arrival(1.0, 1.1), Arrival(20.0, 20.05)]}
    recorded = [Recorded(begin=1.2, commit=1.3, keys=("a", "b"), answered=(1.06, 1.1))]

    timing = answer_to_commit(recorded, arrivals)

    assert (timing["outcomes"], timing["transactions"]) == (2, 1)
    assert timing["commit_ms"]["max"] == pytest.approx(100, abs=0.2)
    assert timing["wait_ms"]["max"] == pytest.approx(140, abs=0.2)
    # From the agency's last answer before the worker had it (b's first copy).
    assert timing["agency_answer_to_commit_ms"]["max"] == pytest.approx(250, abs=0.2)
