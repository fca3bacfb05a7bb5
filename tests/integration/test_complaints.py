"""Complaints (gateway.complaints) on SQLite and PostgreSQL: opened by the agency's event on
arrival, by the lender's file and by ops; attributed, deadlined, held and released, moved
through their states, counted per agency and reported monthly as XLSX read back."""

import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from gateway.complaints import complaint_counts
from gateway.complaints.report import monthly_report
from gateway.complaints.service import ComplaintService
from gateway.complaints.store import COMPLAINTS, ComplaintFilter, DeadlinePolicy
from gateway.errors import ComplaintRefused, GatewayError, NotFound
from gateway.monitoring.cluster import read_cluster
from tests.case_world import AGENCY, START, CaseWorld, account, build_case_world

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    await w.intake([account(n) for n in range(3)])
    assert await w.allocate() == 3
    yield w
    await w.gateway.aclose()


def _service(world: CaseWorld) -> ComplaintService:
    """The gateway's service, with a regulator's referral due in 10 days (as the shipped
    gateway.toml says)."""
    g = world.gateway
    policy = DeadlinePolicy(by_channel=(("regulator", 10),), zone=SHANGHAI)
    return ComplaintService(db=g.db, clock=world.clock, pii=g.pii, cases=g.cases, policy=policy)


async def _stored(world: CaseWorld) -> list[dict[str, Any]]:
    return await world.rows(sa.select(COMPLAINTS).order_by(COMPLAINTS.c.id))


async def test_the_agency_event_opens_a_complaint_on_arrival_held_against_its_collector(
    world: CaseWorld,
) -> None:
    [placement] = await world.placements("ACC-0001")
    pid = placement["id"]
    contact = {
        "placement_id": pid,
        "channel": "call",
        "outcome": "reached",
        "attempted_at": START.isoformat(),
        "effective": True,
        "collector_id": "C-0042",
    }
    assert await world.post("contact.attempted", contact) == 200
    world.clock.advance(3600)
    complaint = {"placement_id": pid, "channel": "12378 hotline", "summary": "called at 22:10"}
    assert await world.post("complaint.received", complaint) == 200
    [row] = await _stored(world)
    assert (row["source"], row["case_id"], row["placement_id"], row["agency_id"]) == (
        "agency",
        "ACC-0001",
        pid,
        AGENCY,
    )
    assert (row["collector_id"], row["state"], row["channel"]) == (
        "C-0042",
        "open",
        "12378 hotline",
    )
    assert row["source_ref"] == f"{AGENCY}:{row['event_id']}"
    # 15 days from the day of receipt, to the end of that day in Shanghai.
    received = START + timedelta(hours=1)
    assert row["received_at"] == received
    assert row["deadline_at"] == datetime(2026, 3, 17, 15, 59, 59, tzinfo=UTC)
    # The summary is the event's: not copied, shown from there.
    assert row["summary_enc"] is None
    assert await _service(world).summary(row["id"]) == "called at 22:10"
    [leaf] = await world.leaves("complaint", f"complaint:{row['id']}")
    assert (leaf["event"], leaf["actor"], leaf["agency_id"]) == ("open", "inbound", AGENCY)
    assert "called" not in json.dumps(leaf)

    # Each report is a complaint of its own (the source reference is the event id).
    assert await world.post("complaint.received", complaint) == 200
    assert len(await _stored(world)) == 2


async def test_ops_open_with_a_hold_recalls_the_placement_and_closing_releases_it(
    world: CaseWorld,
) -> None:
    service = _service(world)
    [placement] = await world.placements("ACC-0000")
    opened = await service.open(
        case_id="ACC-0000",
        channel="branch",
        category="harassment",
        summary="张三 says the collector threatened him",
        owner="olga",
        hold=True,
        actor="ops:vic",
    )
    record = opened.complaint
    assert (opened.created, opened.held, record.owner, record.state) == (True, True, "olga", "open")
    assert (record.placement_id, record.agency_id) == (placement["id"], AGENCY)
    # The agency is told on its channel: the placement is recalled with code COMPLAINT.
    [packet] = await world.packets("placement.recalled")
    assert (packet["data"]["placement_id"], packet["data"]["reason_code"]) == (
        placement["id"],
        "COMPLAINT",
    )
    assert await world.status("ACC-0000") == "held"
    [hold] = await world.holds("ACC-0000")
    assert hold["code"] == "COMPLAINT"
    # The summary is sealed at rest and opens only through the service.
    [row] = await _stored(world)
    assert "张三".encode() not in row["summary_enc"]
    assert await service.summary(record.id) == "张三 says the collector threatened him"

    moved = await service.act(record.id, "investigate", actor="ops:olga")
    with pytest.raises(ComplaintRefused, match="needs an outcome"):
        await service.act(record.id, "resolve", actor="ops:olga")
    with pytest.raises(ComplaintRefused, match="it can: resolve"):
        await service.act(record.id, "close", actor="ops:olga")
    moved = await service.act(
        record.id, "resolve", outcome="upheld", note="recording confirms", actor="ops:olga"
    )
    assert (moved.state, moved.outcome, moved.hold_id is not None) == ("resolved", "upheld", True)
    closed = await service.act(record.id, "close", actor="ops:olga")
    assert (closed.state, closed.hold_id) == ("closed", None)
    assert await world.holds("ACC-0000") == []
    assert await world.status("ACC-0000") == "open"
    with pytest.raises(ComplaintRefused, match="reopen it first"):
        await service.act(record.id, "assign", owner="ana", actor="ops:olga")
    reopened = await service.act(record.id, "reopen", note="debtor came back", actor="ops:olga")
    assert (reopened.state, reopened.outcome, reopened.reopened) == ("investigating", None, 1)
    events = [leaf["event"] for leaf in await world.leaves("complaint", f"complaint:{record.id}")]
    assert events == [
        "open",
        "hold",
        "assign",
        "investigate",
        "resolve",
        "close",
        "release",
        "reopen",
    ]


async def test_two_complaints_on_a_case_keep_the_hold_until_both_release_it(
    world: CaseWorld,
) -> None:
    service = _service(world)
    first = (
        await service.open(case_id="ACC-0002", channel="app", hold=True, actor="ops:a")
    ).complaint
    second = (
        await service.open(case_id="ACC-0002", channel="hotline", hold=True, actor="ops:a")
    ).complaint
    assert second.hold_id == first.hold_id
    await service.act(first.id, "release", actor="ops:a")
    assert [h["code"] for h in await world.holds("ACC-0002")] == ["COMPLAINT"]
    await service.act(second.id, "release", actor="ops:a")
    assert await world.holds("ACC-0002") == []
    assert await world.status("ACC-0002") == "open"


async def test_the_lender_file_opens_each_complaint_once_and_names_bad_rows(
    world: CaseWorld,
) -> None:
    [placement] = await world.placements("ACC-0001")
    path = world.tmp_path / "complaints.csv"
    path.write_text(
        "complaint_id,case_id,placement_id,received_at,channel,category,contact_at,summary\n"
        f"LC-1,ACC-0001,,2026-03-03T10:00:00+08:00,hotline,contact_hours,"
        "2026-03-02T22:30:00+08:00,called late\n"
        f"LC-2,,{placement['id']},2026-03-03T11:00:00+08:00,regulator,fees,,\n"
        "LC-3,NO-SUCH-CASE,,2026-03-03T11:00:00+08:00,hotline,,,\n"
        "LC-4,ACC-0001,,yesterday,hotline,,,\n"
        "LC-5,ACC-0001,,2026-03-03T11:00:00+08:00,hotline,rudeness,,\n",
        encoding="utf-8",
    )
    service = _service(world)
    report = await service.import_file(path, actor="ops:importer")
    assert len(report.opened) == 2
    problems = [str(p) for p in report.problems]
    assert any(p.startswith("line 5: received_at:") for p in problems), problems
    assert any(p.startswith("line 6: category:") for p in problems), problems
    assert any(p.startswith("line 4: case_id:") and "NO-SUCH-CASE" in p for p in problems)
    again = await service.import_file(path, actor="ops:importer")
    assert (again.opened, sorted(again.known)) == ([], ["LC-1", "LC-2"])

    by_ref = {r["source_ref"]: r for r in await _stored(world)}
    # Held against the placement that held the case at the complained-of contact.
    assert (by_ref["LC-1"]["placement_id"], by_ref["LC-1"]["agency_id"]) == (
        placement["id"],
        AGENCY,
    )
    assert by_ref["LC-1"]["source"] == "lender_import"
    # [complaints] by_channel: the regulator's referral is due in 10 days, not 15.
    assert by_ref["LC-2"]["deadline_at"] == datetime(2026, 3, 13, 15, 59, 59, tzinfo=UTC)
    assert by_ref["LC-1"]["deadline_at"] == datetime(2026, 3, 18, 15, 59, 59, tzinfo=UTC)

    # Ops correct the attribution to a collector; the leaf keeps what it was.
    fixed = await service.act(
        by_ref["LC-1"]["id"], "attribute", collector_id="C-7", actor="ops:olga"
    )
    assert fixed.collector_id == "C-7"
    *_, leaf = await world.leaves("complaint", f"complaint:{fixed.id}")
    assert (leaf["event"], leaf["from_collector_id"], leaf["collector_id"]) == (
        "attribute",
        "",
        "C-7",
    )
    with pytest.raises(NotFound):
        await service.act(fixed.id, "attribute", placement_id="PL-NOPE", actor="ops:olga")


async def test_deadlines_overdue_counts_and_the_monthly_report(world: CaseWorld) -> None:
    service = _service(world)
    late = (await service.open(case_id="ACC-0000", channel="app", actor="ops:a")).complaint
    answered = (
        await service.open(case_id="ACC-0001", channel="app", category="fees", actor="ops:a")
    ).complaint
    extended = (await service.open(case_id="ACC-0002", channel="app", actor="ops:a")).complaint
    world.clock.advance(3 * 86_400)
    await service.act(answered.id, "resolve", outcome="partly_upheld", actor="ops:a")
    with pytest.raises(ComplaintRefused, match="needs a reason"):
        await service.act(extended.id, "extend", actor="ops:a")
    pushed = await service.act(extended.id, "extend", note="needs the recording", actor="ops:a")
    assert pushed.deadline_at - extended.deadline_at == timedelta(days=15)
    with pytest.raises(ComplaintRefused, match="once already"):
        await service.act(extended.id, "extend", note="again", actor="ops:a")

    assert await service.overdue() == 0
    world.clock.advance(13 * 86_400)  # day 16: past the first deadline
    assert await service.overdue() == 1
    async with world.db.connect() as conn:
        snapshot = await read_cluster(conn, agencies={}, now=world.clock.now())
    assert snapshot.complaints == {"no": 1, "yes": 1}  # gateway_complaints_waiting
    [overdue] = await service.find(ComplaintFilter(overdue=True))
    assert (overdue.id, overdue.overdue) == (late.id, True)
    assert [r.id for r in await service.find(ComplaintFilter(state="waiting"))] == [
        late.id,
        extended.id,
    ]

    async with world.db.connect() as conn:
        now = service.now()
        counts = await complaint_counts(
            conn, start=START - timedelta(days=1), end=START + timedelta(days=1), now=now
        )
        before = await complaint_counts(conn, start=START - timedelta(days=9), end=START)
        xlsx = await monthly_report(conn, "2026-03", zone=SHANGHAI, now=now)
    tally = counts[AGENCY]
    assert (tally.received, tally.upheld, tally.overdue, tally.open) == (3, 1, 1, 2)
    assert tally.per_10k(3) == 10_000
    assert before == {}
    # Answered after its deadline: no longer waiting, still counted as overdue.
    await service.act(late.id, "resolve", outcome="not_upheld", actor="ops:a")
    async with world.db.connect() as conn:
        after = await complaint_counts(
            conn,
            start=START - timedelta(days=1),
            end=START + timedelta(days=1),
            now=service.now(),
        )
    tally = after[AGENCY]
    assert (tally.received, tally.upheld, tally.overdue, tally.open) == (3, 1, 1, 1)
    assert await service.overdue() == 0

    book = load_workbook(io.BytesIO(xlsx))
    assert book.sheetnames == [
        "Summary",
        "By agency",
        "By category",
        "By channel",
        "By outcome",
        "Complaints",
    ]
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True)}
    assert summary["收到 Received"] == 3
    assert summary["逾期未答复 Overdue"] == 1
    assert summary["按时答复 On time"] == 1
    assert summary["答复天数中位数 Median days to answer"] == 3.0
    agencies = list(book["By agency"].iter_rows(values_only=True))
    assert agencies[1][:3] == (AGENCY, 3, 0)
    categories = {r[0]: r[1] for r in book["By category"].iter_rows(min_row=2, values_only=True)}
    assert categories == {"fees": 1, "other": 2}
    listing = list(book["Complaints"].iter_rows(values_only=True))
    assert len(listing) == 4
    text = json.dumps(listing, default=str)
    assert "Debtor" not in text and "+86" not in text


async def test_hold_on_open_skips_a_case_that_cannot_be_held(world: CaseWorld) -> None:
    [placement] = await world.placements("ACC-0002")
    ack = {
        "placement_id": placement["id"],
        "agency_case_ref": "R-2",
        "balance": {"amount_minor": placement["balance_minor"], "currency": "CNY"},
    }
    assert await world.post("placement.acknowledged", ack) == 200
    closing = {"placement_id": placement["id"], "reason": "paid_in_full"}
    assert await world.post("case.closed", closing) == 200
    assert await world.status("ACC-0002") == "closed"
    g = world.gateway
    service = ComplaintService(
        db=g.db,
        clock=world.clock,
        pii=g.pii,
        cases=g.cases,
        policy=DeadlinePolicy(zone=SHANGHAI),
        hold_on_open=True,
    )
    with pytest.raises(GatewayError, match="cannot be held"):
        await service.open(case_id="ACC-0002", channel="app", hold=True, actor="ops:a")
    assert await _stored(world) == []
    opened = await service.open(case_id="ACC-0002", channel="app", actor="ops:a")
    assert (opened.created, opened.held) == (True, False)
    held = await service.open(case_id="ACC-0000", channel="app", actor="ops:a")
    assert held.held and await world.status("ACC-0000") == "held"
    events = [
        leaf["event"]
        for leaf in await world.leaves("complaint", f"complaint:{opened.complaint.id}")
    ]
    assert events == ["open", "hold_skipped"]
