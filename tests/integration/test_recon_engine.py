"""The batch reconciliation engine end to end on a real database (SQLite, and PostgreSQL
when GATEWAY_TEST_POSTGRES_URL is set): events reported through the incremental path or
stored in bulk, the lender's payment feed imported from a real file, statements, contact
rules, promises; then runs, dry runs, resumed runs and incremental runs, checked by what
they leave in the store."""

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import ReconciliationSection
from gateway.errors import GatewayError
from gateway.reconciliation import runs as recon_runs
from gateway.reconciliation.engine import ReconEngine
from gateway.reconciliation.event_audit import Break
from gateway.reconciliation.payment_feed import import_feed
from gateway.reconciliation.recorder import IncomingEvent, apply_events
from gateway.reconciliation.runs import Run, load
from gateway.store.database import Database
from gateway.store.recon_tables import LenderPayment, PaymentMatch, ReconRun
from gateway.store.tables import (
    AgencyEventRow,
    Case,
    EvidenceLeaf,
    Expectation,
    InboundMessage,
    Mismatch,
    OutboxItem,
    Placement,
)
from schemas.events import AgencyEvent
from tests.conftest import PlacedRow, Seeder
from tests.factories import NOW, agency_config, event, money

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
MATCHES = PaymentMatch.__table__  # type: ignore[attr-defined]
RECEIPTS = LenderPayment.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
RUNS = ReconRun.__table__  # type: ignore[attr-defined]
EXPECTATIONS = Expectation.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]

SETTINGS = ReconciliationSection(amount_tolerance_minor=100, date_window_days=3)


def agencies() -> dict[str, AgencyConfig]:
    return {
        # today's remit model: these tests are about what agencies must report and remit
        "AGA": agency_config(
            id="AGA",
            settlement={
                "commission_bps": 1_000,
                "report_days": 2,
                "money_model": "agency_remits",
            },
        ),
        "AGB": agency_config(
            id="AGB",
            settlement={
                "money_model": "agency_remits",
                "commission_bps": 1_500,
                "remittance": "net",
                "report_days": 2,
                "statement_period": "monthly",
            },
        ),
    }


class World:
    """A seeded store, a clock, and ways to report events as the inbound path does."""

    def __init__(self, db: Database, placed: list[PlacedRow], clock: ManualClock) -> None:
        self.db = db
        self.clock = clock
        self.agencies = agencies()
        self.by_agency: dict[str, list[PlacedRow]] = {}
        for row in placed:
            self.by_agency.setdefault(row[2], []).append(row)
        self._n = 0

    def placement(self, agency: str, n: int = 0) -> PlacedRow:
        return self.by_agency[agency][n]

    async def report(
        self, agency: str, events: Sequence[AgencyEvent], *, bulk: bool = False
    ) -> None:
        """Store events as received from ``agency``: through the incremental path, or
        ``bulk`` (rows only, as a file channel that has not been reconciled yet would)."""
        now = to_datetime(self.clock.now())
        async with self.db.transaction() as conn:
            incoming = []
            for e in events:
                self._n += 1
                body = e.model_dump_json().encode()
                inbound_id = (
                    await conn.execute(
                        INBOUND.insert().returning(INBOUND.c.id),
                        {
                            "agency_id": agency,
                            "channel": "webhook",
                            "external_id": f"msg_{self._n}",
                            "body": body,
                            "body_sha256": hashlib.sha256(body).hexdigest(),
                            "signature_scheme": "v1",
                            "event_type": e.type,
                            "status": "accepted",
                            "response_status": 200,
                            "response_body": b"{}",
                            "received_at": now,
                        },
                    )
                ).scalar_one()
                incoming.append(IncomingEvent(agency, inbound_id, e, now))
            if not bulk:
                await apply_events(conn, incoming, now=now)
                return
            for item in incoming:
                data = item.event.data
                amount = getattr(data, "amount", None)
                await conn.execute(
                    EVENTS.insert(),
                    {
                        "inbound_id": item.inbound_id,
                        "agency_id": agency,
                        "placement_id": getattr(data, "placement_id", None),
                        "event_type": item.event.type,
                        "occurred_at": item.event.timestamp,
                        "ref": getattr(data, "payment_id", None),
                        "amount_minor": amount.amount_minor if amount else None,
                        "currency": amount.currency if amount else None,
                        "data": data.model_dump_json(),
                        "applied": True,
                        "received_at": now,
                    },
                )

    def engine(self, settings: ReconciliationSection = SETTINGS) -> ReconEngine:
        return ReconEngine(db=self.db, agencies=self.agencies, settings=settings, clock=self.clock)

    async def mismatches(self) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(sa.select(MISMATCHES).order_by(MISMATCHES.c.id))).mappings()
            return [dict(r) for r in rows.all()]

    async def count(self, table: sa.Table) -> int:
        async with self.db.connect() as conn:
            return int(
                (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
            )


@pytest.fixture
async def world(db: Database, seed_placements: Seeder) -> World:
    clock = ManualClock(NOW.timestamp())
    placed = await seed_placements(db, agencies(), 16, clock)
    w = World(db, placed, clock)
    for agency, rows in w.by_agency.items():
        await w.report(
            agency,
            [
                event(
                    "placement.acknowledged",
                    placement_id=pid,
                    balance=money(balance),
                    timestamp=NOW + timedelta(hours=1),
                )
                for pid, _case, _agency, balance in rows
            ],
        )
    clock.advance(2 * 3600)
    return w


def kinds(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["kind"] for r in rows)


def at(days: float, hours: float = 0) -> datetime:
    return NOW + timedelta(days=days, hours=hours)


async def test_bulk_stored_events_are_classified_and_a_second_run_adds_nothing(
    world: World,
) -> None:
    a0, a1 = world.placement("AGA", 0), world.placement("AGA", 1)
    b0 = world.placement("AGB", 0)
    await world.report(
        "AGA",
        [
            event("contact.attempted", placement_id="PL-NEVER-1", timestamp=at(1)),
            event("payment.reported", placement_id=b0[0], timestamp=at(1)),
            event(
                "payment.reported", placement_id=a0[0], payment_id="P1", amount=500, timestamp=at(1)
            ),
            event(
                "payment.reported", placement_id=a0[0], payment_id="P1", amount=700, timestamp=at(1)
            ),
            event(
                "payment.reported",
                placement_id=a1[0],
                payment_id="BIG",
                amount=money(a1[3] + 1),
                paid_at=at(1).isoformat(),
                timestamp=at(1),
            ),
            event(
                "payment.reported", placement_id=a0[0], amount=money(100, "USD"), timestamp=at(1)
            ),
        ],
        bulk=True,
    )
    report = await world.engine().run()
    found = kinds(await world.mismatches())
    assert found == {
        "unknown_placement": 1,
        "wrong_agency": 1,
        "conflicting_duplicate": 1,
        "over_collection": 1,
        "currency_mismatch": 1,
    }
    assert report.run.state == "completed"
    assert sum(report.run.counts["new"].values()) == 5
    assert report.run.counts["classified"]["ok"] >= 16  # the acknowledgements

    again = await world.engine().run(full=True)
    assert sum(again.run.counts.get("new", {}).values()) == 0
    assert sum(again.run.counts["found"].values()) == 5
    assert kinds(await world.mismatches()) == found


async def test_what_arrival_already_raised_is_not_raised_again(world: World) -> None:
    b0 = world.placement("AGB", 0)
    await world.report("AGA", [event("payment.reported", placement_id=b0[0], timestamp=at(1))])
    assert kinds(await world.mismatches()) == {"wrong_agency": 1}
    report = await world.engine().run()
    assert report.run.counts["found"]["wrong_agency"] == 1
    assert report.run.counts.get("new", Counter())["wrong_agency"] == 0
    assert kinds(await world.mismatches()) == {"wrong_agency": 1}


async def test_activity_after_recall_is_judged_by_when_it_happened(world: World) -> None:
    pid, _case, _, _ = world.placement("AGA", 2)
    world.clock.advance(86_400)
    recalled_at = to_datetime(world.clock.now())
    async with world.db.transaction() as conn:
        await conn.execute(
            PLACEMENTS.update()
            .where(PLACEMENTS.c.id == pid)
            .values(state="recalled", recalled_at=recalled_at)
        )
    await world.report(
        "AGA",
        [
            event(
                "contact.attempted", placement_id=pid, timestamp=recalled_at - timedelta(hours=2)
            ),
            event(
                "contact.attempted", placement_id=pid, timestamp=recalled_at + timedelta(hours=2)
            ),
        ],
        bulk=True,
    )
    await world.engine().run()
    late = [m for m in await world.mismatches() if m["kind"] == "activity_after_recall"]
    assert len(late) == 1
    assert json.loads(late[0]["theirs"])["occurred_s"] > json.loads(late[0]["ours"])["recalled_s"]


def feed_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = [
        "payment_id",
        "kind",
        "amount_minor",
        "currency",
        "received_at",
        "case_id",
        "placement_id",
        "agency_id",
        "agency_payment_ref",
        "period_start",
        "period_end",
    ]
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join(str(row.get(c, "")) for c in columns))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_three_way_matching_with_the_lender_feed(world: World, tmp_path: Path) -> None:
    a = [world.placement("AGA", n) for n in range(4)]
    b = [world.placement("AGB", n) for n in range(3)]
    paid = at(1)
    await world.report(
        "AGA",
        [
            event(
                "payment.reported",
                placement_id=a[0][0],
                payment_id="A-EXACT",
                amount=10_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            ),
            event(
                "payment.reported",
                placement_id=a[1][0],
                payment_id="A-TOL",
                amount=20_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            ),
            event(
                "payment.reported",
                placement_id=a[2][0],
                payment_id="A-LOST",
                amount=5_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            ),
            event(
                "payment.reported",
                placement_id=a[3][0],
                payment_id="A-SHORT",
                amount=9_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            ),
        ],
    )
    await world.report(
        "AGB",
        [
            event(
                "payment.reported",
                placement_id=b[0][0],
                payment_id="B1",
                amount=10_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            ),
            event(
                "payment.reported",
                placement_id=b[1][0],
                payment_id="B2",
                amount=30_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            ),
        ],
    )
    received = at(2).isoformat()
    feed = feed_csv(
        tmp_path / "feed.csv",
        [
            {
                "payment_id": "R1",
                "kind": "debtor",
                "amount_minor": 10_000,
                "currency": "CNY",
                "received_at": received,
                "case_id": a[0][1],
                "agency_payment_ref": "A-EXACT",
            },
            {
                "payment_id": "R2",
                "kind": "debtor",
                "amount_minor": 19_950,
                "currency": "CNY",
                "received_at": received,
                "placement_id": a[1][0],
            },
            {
                "payment_id": "R3",
                "kind": "debtor",
                "amount_minor": 8_000,
                "currency": "CNY",
                "received_at": received,
                "case_id": a[3][1],
                "agency_payment_ref": "A-SHORT",
            },
            {
                "payment_id": "R4",
                "kind": "debtor",
                "amount_minor": 4_200,
                "currency": "CNY",
                "received_at": received,
                "case_id": b[2][1],
            },
            {
                "payment_id": "R5",
                "kind": "remittance",
                "amount_minor": 33_000,
                "currency": "CNY",
                "received_at": received,
                "agency_id": "AGB",
                "period_start": "2026-03-01",
                "period_end": "2026-03-07",
            },
            {
                "payment_id": "R6",
                "kind": "debtor",
                "amount_minor": 4_200,
                "currency": "CNY",
                "received_at": received,
                "case_id": "AC-NEVER-PLACED",
            },
        ],
    )
    imported = await import_feed(feed, db=world.db, now=to_datetime(world.clock.now()))
    assert (imported.imported, imported.errors, imported.unplaced) == (6, [], 1)
    world.clock.advance(5 * 86_400)  # past every report window
    report = await world.engine().run()

    async with world.db.connect() as conn:
        links = (
            await conn.execute(sa.select(MATCHES.c.pass_name, MATCHES.c.lender_payment_id))
        ).all()
    assert Counter(p for p, _ in links) == {"exact": 1, "tolerance": 1, "keyed": 1, "grouped": 2}
    found = kinds(await world.mismatches())
    assert found["amount_mismatch"] == 1  # A-SHORT: 9,000 reported, 8,000 received
    assert found["remittance_short"] == 1  # 40,000 gross - 6,000 commission = 34,000 expected
    assert found["payment_not_received"] == 1  # A-LOST
    assert found["payment_not_reported"] == 1  # R4, a direct pay; R6 is not on a placed case
    assert report.run.counts["matches"]["direct_pay_notices"] == 1

    async with world.db.connect() as conn:
        direct = (
            (await conn.execute(sa.select(OUTBOX).where(OUTBOX.c.packet_type == "payment.direct")))
            .mappings()
            .all()
        )
        leaves = (
            (await conn.execute(sa.select(LEAVES.c.ref).where(LEAVES.c.kind == "packet")))
            .scalars()
            .all()
        )
    assert [(d["agency_id"], d["placement_id"]) for d in direct] == [("AGB", b[2][0])]
    assert json.loads(direct[0]["payload"])["data"]["payment_id"] == "R4"
    assert f"outbox:{direct[0]['id']}" in leaves
    assert (
        report.run.inputs["payment_feeds"][0]["sha256"]
        == hashlib.sha256(feed.read_bytes()).hexdigest()
    )

    again = await world.engine().run(full=True)
    assert again.run.counts["matches"].get("exact", 0) == 0, "consumed records matched again"
    assert (
        await world.count(
            OUTBOX.select().where(OUTBOX.c.packet_type == "payment.direct").subquery()
        )
        == 1
    )


async def test_a_receipt_keyed_by_its_placement_is_matched_like_one_keyed_by_its_case(
    world: World, tmp_path: Path
) -> None:
    """The lender's receipt names the placement, not the case: its agency and case come from
    the placement, so the keyed pass finds the agency's report and a short receipt is an
    amount mismatch (it used to be neither matched nor flagged); a placement that does not
    exist, or is held by another agency, is refused naming the field."""
    exact, short = world.placement("AGA", 0), world.placement("AGA", 1)
    paid = at(1)
    await world.report(
        "AGA",
        [
            event(
                "payment.reported",
                placement_id=pid,
                payment_id=ref,
                amount=10_000,
                paid_at=paid.isoformat(),
                timestamp=paid,
            )
            for pid, ref in ((exact[0], "K-EXACT"), (short[0], "K-SHORT"))
        ],
    )
    received = at(2).isoformat()
    common = {"kind": "debtor", "currency": "CNY", "received_at": received}
    feed = feed_csv(
        tmp_path / "feed.csv",
        [
            {"payment_id": "P1", "amount_minor": 10_000, "placement_id": exact[0], **common},
            {
                "payment_id": "P2",
                "amount_minor": 9_870,  # 1.30 short
                "placement_id": short[0],
                "agency_payment_ref": "K-SHORT",
                **common,
            },
            {"payment_id": "P3", "amount_minor": 500, "placement_id": "PL-NOWHERE", **common},
            {
                "payment_id": "P4",
                "amount_minor": 500,
                "placement_id": exact[0],
                "agency_id": "AGB",
                **common,
            },
        ],
    )
    imported = await import_feed(feed, db=world.db, now=to_datetime(world.clock.now()))
    assert imported.imported == 2
    assert [(e.line, e.field) for e in imported.errors] == [(4, "placement_id"), (5, "agency_id")]
    assert "PL-NOWHERE" in imported.errors[0].message
    async with world.db.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(RECEIPTS.c.payment_id, RECEIPTS.c.case_id, RECEIPTS.c.agency_id).order_by(
                    RECEIPTS.c.payment_id
                )
            )
        ).all()
    assert [tuple(r) for r in stored] == [("P1", exact[1], "AGA"), ("P2", short[1], "AGA")]

    world.clock.advance(5 * 86_400)
    await world.engine().run()
    async with world.db.connect() as conn:
        links = (
            await conn.execute(sa.select(MATCHES.c.pass_name, MATCHES.c.lender_payment_id))
        ).all()
    assert Counter(p for p, _ in links) == {"tolerance": 1, "keyed": 1}
    found = kinds(await world.mismatches())
    assert found["amount_mismatch"] == 1
    assert found["payment_not_received"] == 0
    assert found["payment_not_reported"] == 0


async def test_statement_against_our_placements(world: World) -> None:
    b = world.by_agency["AGB"]
    a0 = world.placement("AGA", 0)
    items = [
        {
            "placement_id": b[0][0],
            "balance": {"amount_minor": b[0][3], "currency": "CNY"},
            "status": "active",
        },
        {
            "placement_id": b[1][0],
            "balance": {"amount_minor": b[1][3] + 5_000, "currency": "CNY"},
            "status": "active",
        },
        {
            "placement_id": b[2][0],
            "balance": {"amount_minor": b[2][3], "currency": "CNY"},
            "status": "disputed",
        },
        {
            "placement_id": "PL-GHOST-1",
            "balance": {"amount_minor": 1_000, "currency": "CNY"},
            "status": "active",
        },
        {
            "placement_id": a0[0],
            "balance": {"amount_minor": a0[3], "currency": "CNY"},
            "status": "active",
        },
    ]
    statement = event(
        "statement.submitted",
        statement_id="ST-2026-02",
        period_start="2026-02-01",
        period_end="2026-03-05",
        items=items,
        timestamp=at(4),
    )
    await world.report("AGB", [statement])
    world.clock.advance(6 * 86_400)
    report = await world.engine().run()
    rows = [m for m in await world.mismatches() if m["kind"].startswith("statement_")]
    found = kinds(rows)
    assert found == {
        "statement_phantom": 2,
        "statement_balance_drift": 1,
        "statement_status_disagreement": 1,
        "statement_orphan": len(b) - 3,
    }
    drift = next(r for r in rows if r["kind"] == "statement_balance_drift")
    assert (drift["placement_id"], drift["delta_minor"]) == (b[1][0], 5_000)
    assert report.run.inputs["statements"][0]["statement_id"] == "ST-2026-02"
    # The statement covers February, so AGB's statement for February is not missing.
    assert "missing_statement" not in kinds(await world.mismatches())
    again = await world.engine().run(full=True)
    assert again.run.counts.get("statements") is None, "a statement is reconciled once"


async def test_a_missing_statement_is_a_break(world: World) -> None:
    world.clock.advance(10 * 86_400)
    await world.engine().run()
    missing = [m for m in await world.mismatches() if m["kind"] == "missing_statement"]
    assert [(m["agency_id"], m["placement_id"]) for m in missing] == [("AGB", None)]
    assert "2026-02" in missing[0]["detail"]


def contact(pid: str, local: str, *, channel: str = "call", effective: bool = True) -> AgencyEvent:
    """A contact attempt at ``local`` time in Shanghai (UTC+8), reported an hour later."""
    when = datetime.fromisoformat(local + "+08:00").astimezone(UTC)
    return event(
        "contact.attempted",
        placement_id=pid,
        channel=channel,
        outcome="reached" if effective else "no_answer",
        effective=effective,
        attempted_at=when.isoformat(),
        timestamp=when + timedelta(hours=1),
    )


async def test_contact_rules(world: World) -> None:
    pid = world.placement("AGA", 0)[0]
    await world.report(
        "AGA",
        [
            contact(pid, "2026-03-03T23:30:00"),  # quiet hours
            contact(pid, "2026-03-03T07:59:00", channel="letter"),  # letters are not intrusive
            contact(pid, "2026-03-04T10:00:00"),
            contact(pid, "2026-03-04T11:00:00", effective=False),
            contact(pid, "2026-03-04T12:00:00"),
            contact(pid, "2026-03-04T13:00:00"),
            contact(pid, "2026-03-04T14:00:00"),  # the 4th effective call of 03-04, 6th call
        ],
    )
    settings = SETTINGS.model_copy(update={"max_calls_per_7_days": 5})
    world.clock.advance(3 * 86_400)
    await world.engine(settings).run()
    violations = [m for m in await world.mismatches() if m["kind"] == "contact_rule_violation"]
    found = sorted(
        (json.loads(m["ours"])["rule"], json.loads(m["theirs"])["attempted_at"]) for m in violations
    )
    assert found == [
        ("calls_per_7_days", "2026-03-04T06:00:00+00:00"),
        ("daily_effective_calls", "2026-03-04T06:00:00+00:00"),
        ("quiet_hours", "2026-03-03T15:30:00+00:00"),
    ]
    assert all(m["severity"] == "high" and m["placement_id"] == pid for m in violations)
    assert "CST" in violations[0]["detail"] or "+08" in violations[0]["detail"]


async def test_promises_are_met_by_instalments_and_broken_without_payment(world: World) -> None:
    a1, a2 = world.placement("AGA", 1), world.placement("AGA", 2)
    await world.report(
        "AGA",
        [
            event(
                "promise.made",
                placement_id=a1[0],
                promise_id="PR-A",
                amount=10_000,
                promised_date="2026-03-05",
                timestamp=at(1),
            ),
            event(
                "promise.made",
                placement_id=a2[0],
                promise_id="PR-B",
                amount=5_000,
                promised_date="2026-03-05",
                timestamp=at(1),
            ),
        ],
    )
    await world.report(
        "AGA",
        [
            event(
                "payment.reported",
                placement_id=a1[0],
                payment_id="I1",
                amount=6_000,
                paid_at=at(2).isoformat(),
                timestamp=at(2),
            ),
            event(
                "payment.reported",
                placement_id=a1[0],
                payment_id="I2",
                amount=4_000,
                paid_at=at(3).isoformat(),
                timestamp=at(3),
            ),
        ],
    )
    async with world.db.connect() as conn:
        bounds = (
            await conn.execute(
                sa.select(
                    EXPECTATIONS.c.ref,
                    EXPECTATIONS.c.state,
                    EXPECTATIONS.c.amount_lower_minor,
                    EXPECTATIONS.c.window_start,
                )
                .where(EXPECTATIONS.c.kind == "promise_payment")
                .order_by(EXPECTATIONS.c.ref)
            )
        ).all()
    assert [(r[0], r[1], r[2]) for r in bounds] == [
        ("PR-A", "open", 9_900),
        ("PR-B", "open", 4_950),
    ]
    assert bounds[0][3] == at(1)
    world.clock.advance(8 * 86_400)
    await world.engine().run()
    broken = [m for m in await world.mismatches() if m["kind"] == "broken_promise"]
    assert [m["placement_id"] for m in broken] == [a2[0]]
    async with world.db.connect() as conn:
        states: dict[str, str] = dict(
            (
                await conn.execute(
                    sa.select(EXPECTATIONS.c.ref, EXPECTATIONS.c.state).where(
                        EXPECTATIONS.c.kind == "promise_payment"
                    )
                )
            ).all()
        )
    assert states == {"PR-A": "met", "PR-B": "breached"}


async def seed_breaks(world: World, tmp_path: Path) -> None:
    b0 = world.placement("AGB", 0)
    await world.report(
        "AGA",
        [
            event("contact.attempted", placement_id="PL-NEVER-1", timestamp=at(1)),
            event("payment.reported", placement_id=b0[0], timestamp=at(1)),
        ],
        bulk=True,
    )
    a0 = world.placement("AGA", 0)
    await world.report(
        "AGA",
        [
            event(
                "payment.reported",
                placement_id=a0[0],
                payment_id="X1",
                amount=3_000,
                paid_at=at(1).isoformat(),
                timestamp=at(1),
            )
        ],
    )
    feed = feed_csv(
        tmp_path / "feed.csv",
        [
            {
                "payment_id": "R1",
                "kind": "debtor",
                "amount_minor": 3_000,
                "currency": "CNY",
                "received_at": at(1).isoformat(),
                "case_id": a0[1],
                "agency_payment_ref": "X1",
            },
            {
                "payment_id": "R2",
                "kind": "debtor",
                "amount_minor": 7_000,
                "currency": "CNY",
                "received_at": at(1).isoformat(),
                "case_id": b0[1],
            },
        ],
    )
    await import_feed(feed, db=world.db, now=to_datetime(world.clock.now()))
    world.clock.advance(10 * 86_400)


async def test_a_dry_run_counts_exactly_what_a_run_writes_and_writes_nothing(
    world: World, tmp_path: Path
) -> None:
    await seed_breaks(world, tmp_path)
    before = (await world.count(MISMATCHES), await world.count(MATCHES), await world.count(OUTBOX))
    dry = await world.engine().run(dry_run=True)
    assert (
        await world.count(MISMATCHES),
        await world.count(MATCHES),
        await world.count(OUTBOX),
    ) == before
    assert dry.run.dry_run and dry.run.state == "completed"
    assert sum(dry.run.counts["new"].values()) > 0
    stored = await load(world.db, dry.run.id)
    assert stored.dry_run and stored.counts["new"] == dry.run.counts["new"]

    real = await world.engine().run()
    assert real.run.after_event_id == 0, "a dry run does not move the next run's start"
    assert real.run.counts["new"] == dry.run.counts["new"]
    assert real.run.counts["matches"] == dry.run.counts["matches"]
    assert await world.count(MISMATCHES) == before[0] + sum(real.run.counts["new"].values())


class CrashingEngine(ReconEngine):
    """Fails once, in the pass named ``crash_in`` (a crash of the process, as far as the
    run record can tell)."""

    crash_in = "statements"
    crashed = False

    async def _statements(self, run: Run) -> None:
        if self.crash_in == "statements" and not self.crashed:
            CrashingEngine.crashed = True
            raise RuntimeError("power cut")
        await super()._statements(run)

    async def _commit(
        self,
        run: Run,
        breaks: Sequence[tuple[str, Break]],
        *,
        checkpoint: dict[str, Any],
        extra: Any = None,
    ) -> None:
        await super()._commit(run, breaks, checkpoint=checkpoint, extra=extra)
        if self.crash_in == "events" and not self.crashed and checkpoint["pass"] == "events":
            CrashingEngine.crashed = True
            raise RuntimeError("power cut")


async def test_a_failed_run_resumes_at_its_checkpoint(world: World, tmp_path: Path) -> None:
    await seed_breaks(world, tmp_path)
    CrashingEngine.crashed = False
    engine = CrashingEngine(
        db=world.db, agencies=world.agencies, settings=SETTINGS, clock=world.clock
    )
    with pytest.raises(RuntimeError):
        await engine.run()
    async with world.db.connect() as conn:
        (run_id, state, checkpoint, error) = (
            await conn.execute(sa.select(RUNS.c.id, RUNS.c.state, RUNS.c.checkpoint, RUNS.c.error))
        ).one()
    assert (state, json.loads(checkpoint)) == ("failed", {"pass": "statements"})
    assert "power cut" in error
    written = await world.count(MISMATCHES)
    resumed = await engine.resume(run_id)
    assert resumed.run.state == "completed" and resumed.run.resumes == 1
    assert "events" not in resumed.seconds and "payments" not in resumed.seconds
    assert await world.count(MATCHES) == 1, "the payments pass did not run twice"
    assert await world.count(MISMATCHES) >= written
    with pytest.raises(GatewayError, match="completed"):
        await engine.resume(run_id)


async def test_a_run_that_crashed_inside_the_events_pass_resumes_from_its_last_chunk(
    world: World,
) -> None:
    pids = [row[0] for rows in world.by_agency.values() for row in rows]
    events = [
        event(
            "contact.attempted",
            placement_id="PL-NEVER-1" if n % 10 == 0 else pids[n % len(pids)],
            timestamp=at(1),
        )
        for n in range(1, 2_501)
    ]
    for start in range(0, len(events), 500):
        await world.report("AGA", events[start : start + 500], bulk=True)
    expected_unknown = sum(1 for n in range(1, 2_501) if n % 10 == 0)
    wrong = sum(
        1 for n in range(1, 2_501) if n % 10 and world_agency(world, pids[n % len(pids)]) != "AGA"
    )
    settings = SETTINGS.model_copy(update={"batch_events": 1_000})
    CrashingEngine.crashed = False
    engine = CrashingEngine(
        db=world.db, agencies=world.agencies, settings=settings, clock=world.clock
    )
    engine.crash_in = "events"
    with pytest.raises(RuntimeError):
        await engine.run()
    async with world.db.connect() as conn:
        run_id, checkpoint = (await conn.execute(sa.select(RUNS.c.id, RUNS.c.checkpoint))).one()
    assert json.loads(checkpoint)["pass"] == "events"
    resumed = await engine.resume(run_id)
    found = kinds(await world.mismatches())
    assert found["unknown_placement"] == expected_unknown
    assert found["wrong_agency"] == wrong
    classified = resumed.run.counts["classified"]
    assert sum(classified.values()) == 2_500 + sum(len(r) for r in world.by_agency.values())


def world_agency(world: World, pid: str) -> str:
    return next(a for a, rows in world.by_agency.items() if any(r[0] == pid for r in rows))


async def test_the_next_run_reads_only_new_events(world: World) -> None:
    first = await world.engine().run()
    assert first.run.after_event_id == 0
    pid = world.placement("AGA", 0)[0]
    await world.report(
        "AGA",
        [
            event("contact.attempted", placement_id=pid, timestamp=at(1)),
            event("contact.attempted", placement_id="PL-NEVER-2", timestamp=at(1)),
        ],
        bulk=True,
    )
    second = await world.engine().run()
    assert second.run.after_event_id == first.run.upto_event_id
    assert sum(second.run.counts["classified"].values()) == 2
    assert second.run.counts["new"] == {"unknown_placement": 1}
    assert second.run.inputs["events"] == {
        "after_id": first.run.upto_event_id,
        "upto_id": second.run.upto_event_id,
    }
    async with world.db.connect() as conn:
        leaves = (
            (await conn.execute(sa.select(LEAVES.c.ref).where(LEAVES.c.kind == "recon_run")))
            .scalars()
            .all()
        )
    assert leaves == [f"run:{first.run.id}", f"run:{second.run.id}"]


# the lender's payment feed


async def test_feed_lines_with_errors_are_reported_and_skipped(
    db: Database, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.jsonl"
    good = {
        "payment_id": "R1",
        "kind": "debtor",
        "amount_minor": 100,
        "currency": "CNY",
        "received_at": "2026-03-02T10:00:00Z",
        "case_id": "AC1",
    }
    lines = [
        json.dumps(good),
        json.dumps({**good, "payment_id": "R2", "amount_minor": 0}),
        json.dumps({**good, "payment_id": "R3", "case_id": None}),
        "{not json",
        json.dumps({**good, "payment_id": "R1"}),
        json.dumps({**good, "payment_id": "R4", "kind": "remittance", "agency_id": "AGA"}),
        json.dumps({**good, "payment_id": "R5", "surprise": 1}),
        json.dumps({**good, "payment_id": "R6", "amount_minor": 10**20}),
        json.dumps({**good, "payment_id": "R7", "received_at": "9999-12-31T23:00:00-05:00"}),
    ]
    feed.write_text("\n".join(lines) + "\n")
    report = await import_feed(feed, db=db, now=NOW)
    assert report.imported == 1
    assert [str(e) for e in report.errors] == [
        f"{feed}:2: amount_minor: Input should be greater than 0",
        f"{feed}:3: -: a debtor receipt needs case_id or placement_id",
        f"{feed}:4: -: not valid JSON (Expecting property name enclosed in double quotes "
        "at column 2)",
        f"{feed}:5: payment_id: duplicate; first seen on line 1",
        f"{feed}:6: -: a remittance needs period_start and period_end",
        f"{feed}:7: surprise: unknown field; expected only: " + ", ".join(FeedLineFields()),
        f"{feed}:8: amount_minor: Input should be less than or equal to 999999999999999",
        f"{feed}:9: received_at: timestamp is outside the years 1 to 9999 once in UTC",
    ]


def FeedLineFields() -> list[str]:
    from gateway.reconciliation.payment_feed import FIELDS

    return list(FIELDS)


async def test_feed_import_is_idempotent(db: Database, tmp_path: Path) -> None:
    first = feed_csv(
        tmp_path / "a.csv",
        [
            {
                "payment_id": "R1",
                "kind": "debtor",
                "amount_minor": 100,
                "currency": "CNY",
                "received_at": "2026-03-02T10:00:00Z",
                "case_id": "AC1",
            }
        ],
    )
    report = await import_feed(first, db=db, now=NOW)
    assert (report.imported, report.already_imported) == (1, False)
    again = await import_feed(first, db=db, now=NOW)
    assert (again.imported, again.already_imported, again.feed_id) == (0, True, report.feed_id)
    second = feed_csv(
        tmp_path / "b.csv",
        [
            {
                "payment_id": "R1",
                "kind": "debtor",
                "amount_minor": 100,
                "currency": "CNY",
                "received_at": "2026-03-02T10:00:00Z",
                "case_id": "AC1",
            },
            {
                "payment_id": "R2",
                "kind": "debtor",
                "amount_minor": 200,
                "currency": "CNY",
                "received_at": "2026-03-02T10:00:00Z",
                "case_id": "AC1",
            },
        ],
    )
    overlap = await import_feed(second, db=db, now=NOW)
    assert (overlap.imported, overlap.duplicates) == (1, 1)
    changed = feed_csv(
        tmp_path / "c.csv",
        [
            {
                "payment_id": "R2",
                "kind": "debtor",
                "amount_minor": 999,
                "currency": "CNY",
                "received_at": "2026-03-02T10:00:00Z",
                "case_id": "AC1",
            }
        ],
    )
    conflict = await import_feed(changed, db=db, now=NOW)
    assert conflict.imported == 0
    assert "already imported with other content" in str(conflict.errors[0])
    async with db.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(RECEIPTS))).scalar_one()
    assert count == 2


async def debtor_of(world: World, case_id: str) -> str:
    async with world.db.connect() as conn:
        return str(
            (await conn.execute(sa.select(CASES.c.debtor_id).where(CASES.c.id == case_id))).scalar()
        )


async def test_a_payment_from_an_earlier_run_matches_a_receipt_imported_later(
    world: World, tmp_path: Path
) -> None:
    a0 = world.placement("AGA", 0)
    # Run 2's only new event is on another debtor, so run 2 does not load a0's history: the
    # payment comes from the store as an unmatched payment of an earlier run.
    mine = await debtor_of(world, a0[1])
    debtors = {r[1]: await debtor_of(world, r[1]) for r in world.by_agency["AGB"]}
    a1 = next(r for r in world.by_agency["AGB"] if debtors[r[1]] != mine)
    await world.report(
        "AGA",
        [
            event(
                "payment.reported",
                placement_id=a0[0],
                payment_id="OLD-1",
                amount=12_000,
                paid_at=at(1).isoformat(),
                timestamp=at(1),
            ),
            event(
                "payment.reversed",
                placement_id=a0[0],
                payment_id="OLD-1",
                amount=2_000,
                reason="partly refunded",
                timestamp=at(1, 2),
            ),
        ],
    )
    first = await world.engine().run()  # within the report window: nothing to say yet
    assert "payment_not_received" not in first.run.counts.get("found", {})
    feed = feed_csv(
        tmp_path / "late.csv",
        [
            {
                "payment_id": "R-LATE",
                "kind": "debtor",
                "amount_minor": 10_000,
                "currency": "CNY",
                "received_at": at(2).isoformat(),
                "case_id": a0[1],
                "agency_payment_ref": "OLD-1",
            }
        ],
    )
    await import_feed(feed, db=world.db, now=to_datetime(world.clock.now()))
    await world.report(a1[2], [event("contact.attempted", placement_id=a1[0], timestamp=at(2))])
    world.clock.advance(5 * 86_400)
    second = await world.engine().run()
    assert second.run.after_event_id == first.run.upto_event_id
    assert second.run.counts["matches"]["exact"] == 1, "net of the reversal, 10,000 = 10,000"
    assert "payment_not_received" not in second.run.counts.get("found", {})


async def test_a_run_resumed_at_the_payments_pass_rebuilds_what_the_events_pass_saw(
    world: World, tmp_path: Path
) -> None:
    await seed_breaks(world, tmp_path)

    class FailsInPayments(ReconEngine):
        failed = False

        async def _payments(self, run: Run) -> None:
            if not FailsInPayments.failed:
                FailsInPayments.failed = True
                raise RuntimeError("power cut")
            await super()._payments(run)

    engine = FailsInPayments(
        db=world.db, agencies=world.agencies, settings=SETTINGS, clock=world.clock
    )
    with pytest.raises(RuntimeError):
        await engine.run()
    async with world.db.connect() as conn:
        run_id = (await conn.execute(sa.select(RUNS.c.id))).scalar_one()
    fresh = FailsInPayments(
        db=world.db, agencies=world.agencies, settings=SETTINGS, clock=world.clock
    )
    resumed = await fresh.resume(run_id)
    assert list(resumed.seconds) == ["payments", "statements", "expectations"]
    assert resumed.run.counts["matches"]["exact"] == 1
    assert kinds(await world.mismatches())["payment_not_reported"] == 1


# the commands


def test_the_reconcile_and_payments_commands(
    make_config: Callable[..., tuple[Path, Any, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    config, _settings, _agencies = make_config(
        database_url="sqlite:///" + str(tmp_path / "cli.db"),
        agencies={"AGA": {"url": "http://127.0.0.1:9/unused"}},
    )
    monkeypatch.chdir(config.parent)  # relative paths in the config resolve from here
    runner = CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)
        return result

    feed = feed_csv(
        tmp_path / "feed.csv",
        [
            {"payment_id": "R1", "kind": "debtor", "amount_minor": 100, "currency": "CNY",
             "received_at": "2026-03-02T10:00:00Z", "case_id": "AC1"},
            {"payment_id": "R2", "kind": "debtor", "amount_minor": 0, "currency": "CNY",
             "received_at": "2026-03-02T10:00:00Z", "case_id": "AC1"},
        ],
    )  # fmt: skip
    imported = run("payments", "import", str(feed), "--json")
    assert imported.exit_code == 1, imported.output + imported.stderr
    report = json.loads(imported.output)
    assert (report["imported"], report["unplaced"]) == (1, 1)
    assert report["errors"] == [f"{feed}:3: amount_minor: Input should be greater than 0"]
    again = json.loads(run("payments", "import", str(feed), "--json").output)
    assert (again["already_imported"], again["imported"]) == (True, 0)

    listed = run("payments", "list", "--unmatched", "--json")
    assert [r["payment_id"] for r in json.loads(listed.output)] == ["R1"]

    dry = run("reconcile", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    dry_run = json.loads(dry.output)
    assert dry_run["dry_run"] is True and dry_run["state"] == "completed"
    real = json.loads(run("reconcile", "--json").output)
    assert real["run_id"] == dry_run["run_id"] + 1
    assert set(real["seconds"]) == {"events", "payments", "statements", "expectations"}
    assert real["inputs"]["evidence_checkpoint"]["tree_size"] >= 1  # the feed's leaf
    runs = json.loads(run("reconcile", "--list", "--json").output)
    assert [r["run_id"] for r in runs] == [real["run_id"], dry_run["run_id"]]
    table = run("reconcile")
    assert table.exit_code == 0
    assert f"run {real['run_id'] + 1} completed" in " ".join(table.output.split())
    refused = run("reconcile", "--resume", str(real["run_id"]))
    assert refused.exit_code == 1
    assert "nothing to resume" in " ".join((refused.output + refused.stderr).split())


async def test_a_run_interrupted_by_a_kill_must_be_resumed_before_another_starts(
    world: World,
) -> None:
    engine = world.engine()
    killed = await recon_runs.start(
        world.db, settings=engine.describe(), dry_run=False, full=False, now=NOW
    )  # a process killed right after starting leaves this behind
    with pytest.raises(GatewayError, match=f"--resume {killed.id}"):
        await engine.run()
    assert (await engine.run(dry_run=True)).run.state == "completed"
    assert (await engine.resume(killed.id)).run.state == "completed"
    assert (await engine.run()).run.after_event_id == killed.upto_event_id


@pytest.mark.slow
async def test_the_benchmark_classifies_every_event_and_writes_every_break() -> None:
    from gateway.bench.reconcile import run

    report = await run(rows=3_000)
    assert (report["placements"], report["events"]) == (3_000, 3_000)
    assert report["events_classified"] == 3_000
    assert report["breaks_written"] == sum(report["breaks_by_kind"].values())
    assert report["baseline_rows"] == 3_000
    # Both sides are rounded to milliseconds, and the baseline of so small a run is a few.
    assert report["ratio"] == pytest.approx(
        report["seconds"] / min(report["baseline_join_seconds"]), rel=0.2
    )
    injected = report["injected"]
    found = report["breaks_by_kind"]
    for kind in ("unknown_placement", "wrong_agency", "currency_mismatch"):
        assert found.get(kind, 0) == injected.get(kind, 0), kind
    assert report["matches"]["exact"] > 0 and report["matches"]["tolerance"] > 0
