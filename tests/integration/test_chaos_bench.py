"""The chaos benchmark end to end at a small size: real dispatcher processes SIGKILLed while
they deliver to counting agencies on loopback, on SQLite and PostgreSQL. Nothing may be lost
or change bytes, and every duplicate must be a copy a killed worker had sent and never
recorded; the duplicate rate itself is never asserted."""

import json
import os
from collections.abc import Iterator

import pytest

from gateway.bench import chaos

pytestmark = pytest.mark.slow

PLACEMENTS = 300
KILLS = 5


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

    json.dumps(report)
    assert report["placements"] == PLACEMENTS
    assert report["nothing_lost"] and report["no_changed_bytes"]
    assert report["all_duplicates_explained"]
    at_risk = 0
    for side in ("ours", "baseline"):
        r = report[side]
        # A kill planned after the run's last packet cannot happen: at least one must.
        assert 1 <= r["kills"] <= KILLS and r["kills"] == len(r["per_kill"])
        assert r["distinct_ids"] == PLACEMENTS
        assert (r["ids_lost"], r["ids_changed_bytes"], r["not_delivered"]) == (0, 0, 0)
        assert r["refused_requests"] == 0
        assert r["deliveries_received"] == PLACEMENTS + r["duplicates"]
        unrecorded = r["at_kills"]["in_flight"] + r["at_kills"]["answered_not_recorded"]
        assert r["duplicates_unexplained"] == 0
        assert r["duplicates"] == r["duplicates_explained"] <= unrecorded
        at_risk += unrecorded
    assert at_risk > 0, "the kills must land while sent packets are unrecorded"
    assert ("postgresql" in report["context"]["database"]) == (server_url is not None)
