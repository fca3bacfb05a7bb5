"""``bench cluster`` on a small load: real serve processes on PostgreSQL deliver every
packet once with the same bytes, store every event with its leaf, and leave nothing staged."""

import os

import pytest

from gateway.bench.cluster import run
from tests.conftest import PG_ENV

pytestmark = pytest.mark.postgres


async def test_each_fleet_delivers_and_stores_everything() -> None:
    server = os.environ.get(PG_ENV)
    if not server:
        pytest.skip(f"{PG_ENV} is not set")
    report = await run(database_url=server, sizes=(1, 2), placements=60, events=80)
    assert [f["processes"] for f in report["fleets"]] == [1, 2]
    for fleet in report["fleets"]:
        out, inbound = fleet["outbound"], fleet["inbound"]
        assert out["packets"] + out["sent_before_all_were_up"] == 60
        assert out["changed"] == 0  # a copy sent twice (a lease outlived) is the same bytes
        assert (inbound["events"], inbound["stored"]) == (80, 80)
        assert fleet["evidence_staged"] == 0
        assert out["ratio_to_one_process"] is not None
    assert isinstance(report["target_met"], bool)
