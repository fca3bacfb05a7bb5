"""Conduct on arrival over SFTP, against a real asyncssh server on loopback (the sandbox
server): the result file's PARTY, PURPOSE, COLLECTOR_ID and RECORDING_REF columns reach
the stored event, and a third party contacted about the debt and a contact on a case with
a standing hold each raise their violation as the file is committed, and so does a call in
the quiet hours (the channel gets the lender's contact rules)."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from gateway.bootstrap import Gateway
from gateway.store.case_tables import CaseHold
from gateway.store.tables import AgencyEventRow, Mismatch
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.integration.test_sftp_pickup import pickup_of, put, render

HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(tmp_path, database_url)
    yield w
    await w.aclose()


@pytest.fixture
async def gateway(world: SftpWorld) -> AsyncIterator[Gateway]:
    await seed(world, 2)
    gw = world.gateway()
    try:
        assert (await (await gw.dispatcher()).drain_once()).delivered == 2
        yield gw
    finally:
        await gw.aclose()


async def test_conduct_columns_of_a_result_file_raise_violations_on_arrival(
    world: SftpWorld, gateway: Gateway
) -> None:
    async with gateway.db.connect() as conn:
        (p1, _c1, b1, cur), (p2, c2, b2, _cur) = (
            await conn.execute(
                sa.text("SELECT id, case_id, balance_minor, currency FROM placements ORDER BY id")
            )
        ).all()
    now = datetime.now(UTC).replace(microsecond=0)
    async with gateway.db.transaction() as conn:
        await conn.execute(
            HOLDS.insert().values(
                case_id=c2,
                code="PAUSE",
                source="ops",
                placed_by="ops:ana",
                placed_at=now - timedelta(days=1),
            )
        )

    def contact(pid: str, minutes: int, **extra: str) -> dict[str, object]:
        at = (now - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = {"placement_id": pid, "channel": "call", "outcome": "reached"}
        data.update(attempted_at=at, effective="false", **extra)
        return {"type": "contact.attempted", "timestamp": at, "data": data}

    stamp = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows: list[dict[str, object]] = [
        {
            "type": "placement.acknowledged",
            "timestamp": stamp,
            "data": {
                "placement_id": pid,
                "agency_case_ref": f"R-{n}",
                "balance": {"amount_minor": balance, "currency": cur},
            },
        }
        for n, (pid, balance) in enumerate(((p1, b1), (p2, b2)))
    ]
    rows += [
        contact(
            p1,
            30,
            party="third_party",
            purpose="debt",
            collector_id="C-1",
            recording_ref="rec/2026/a.mp3",
        ),
        contact(p1, 20, party="third_party", purpose="locate"),
        contact(p2, 10, party="guarantor"),
    ]
    body = render(world, "result", rows)
    assert b",PARTY,PURPOSE,COLLECTOR_ID,RECORDING_REF" in body.split(b"\n")[0]
    put(world, f"{AGENCY_ID}_LENDERX_RESULT_20260301_0001.csv", body)
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}

    async with gateway.db.connect() as conn:
        events = (
            await conn.execute(
                sa.select(EVENTS.c.id, EVENTS.c.data)
                .where(EVENTS.c.event_type == "contact.attempted")
                .order_by(EVENTS.c.id)
            )
        ).all()
        found = (
            await conn.execute(
                sa.select(MISMATCHES.c.kind, MISMATCHES.c.event_id, MISMATCHES.c.agency_id).where(
                    MISMATCHES.c.kind.in_(["third_party_contact", "contact_during_hold"])
                )
            )
        ).all()
    [(debt, first), (_located, second), (on_hold, third)] = [
        (eid, json.loads(data)) for eid, data in events
    ]
    assert (first["party"], first["purpose"], first["collector_id"], first["recording_ref"]) == (
        "third_party",
        "debt",
        "C-1",
        "rec/2026/a.mp3",
    )
    assert (second["party"], second["purpose"], second["collector_id"]) == (
        "third_party",
        "locate",
        None,
    )
    assert third["party"] == "guarantor"
    assert sorted(found) == sorted(
        [("third_party_contact", debt, AGENCY_ID), ("contact_during_hold", on_hold, AGENCY_ID)]
    )


async def test_a_call_in_the_quiet_hours_of_a_result_file_is_raised_as_the_file_arrives(
    world: SftpWorld, gateway: Gateway
) -> None:
    """The SFTP channel gets the lender's contact rules: a call at 23:xx in Shanghai breaks
    the quiet hours on arrival, before any batch run, and the batch run adds nothing."""
    async with gateway.db.connect() as conn:
        (pid,) = (
            await conn.execute(sa.text("SELECT id FROM placements ORDER BY id LIMIT 1"))
        ).one()
    zone = ZoneInfo(gateway.settings.reconciliation.timezone)
    local = datetime.now(UTC).astimezone(zone)
    late = local.replace(hour=23, minute=5, second=0, microsecond=0)
    if late > local:
        late -= timedelta(days=1)
    at = late.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = {"placement_id": pid, "channel": "call", "outcome": "no_answer"}
    data.update(attempted_at=at, effective="false")
    body = render(world, "result", [{"type": "contact.attempted", "timestamp": at, "data": data}])
    put(world, f"{AGENCY_ID}_LENDERX_RESULT_20260301_0002.csv", body)
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}

    async def quiet_breaks() -> list[str]:
        async with gateway.db.connect() as conn:
            return list(
                (
                    await conn.execute(
                        sa.select(MISMATCHES.c.detail).where(
                            MISMATCHES.c.kind == "contact_rule_violation"
                        )
                    )
                ).scalars()
            )

    [detail] = await quiet_breaks()
    assert "quiet" in detail
    report = await gateway.recon_engine().run()
    assert report.as_dict()["counts"]["contacts"]["violations"] == 1
    assert len(await quiet_breaks()) == 1
