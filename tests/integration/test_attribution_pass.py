"""Attribution of lender receipts in a reconciliation run, on a real database (SQLite, and
PostgreSQL when GATEWAY_TEST_POSTGRES_URL is set): placements seeded through intake and
allocation, a recall and a new placement of the same case, the lender's feed imported from
a real file; then runs, checked by the ``attributions`` rows, the mismatches, the packets in
the outbox, the evidence leaves and the scorecards."""

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import ReconciliationSection
from gateway.reconciliation.engine import ReconEngine
from gateway.reconciliation.payment_feed import import_feed
from gateway.reconciliation.recorder import IncomingEvent, apply_events
from gateway.reporting.scorecards import scorecards
from gateway.settlement.attribution_pass import attributions_of, unaccounted_receipts
from gateway.store.database import Database
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import EvidenceLeaf, InboundMessage, Mismatch, OutboxItem, Placement
from schemas.events import AgencyEvent
from tests.conftest import PlacedRow, Seeder
from tests.factories import NOW, agency_config, event, money

ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
PAYMENT_PACKETS = OUTBOX.c.packet_type.like("payment.%")

SETTINGS = ReconciliationSection(timezone="UTC")


def agencies() -> dict[str, AgencyConfig]:
    return {
        "AGA": agency_config(
            id="AGA",
            settlement={"grace_days": 5, "grace_rule": "shared", "grace_share_bps": 4_000},
        ),
        "AGB": agency_config(id="AGB"),  # lender_collects, the default
        "AGR": agency_config(
            id="AGR", settlement={"money_model": "agency_remits", "report_days": 2}
        ),
    }


def at(days: float) -> datetime:
    return NOW + timedelta(days=days)


def feed_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = ["payment_id", "kind", "amount_minor", "currency", "received_at", "case_id",
               "placement_id", "agency_id", "period_start", "period_end"]  # fmt: skip
    lines = [",".join(columns)]
    lines += [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def debtor(pid: str, amount: int, day: float, case_id: str) -> dict[str, object]:
    return {"payment_id": pid, "kind": "debtor", "amount_minor": amount, "currency": "CNY",
            "received_at": at(day).isoformat(), "case_id": case_id}  # fmt: skip


class World:
    def __init__(self, db: Database, placed: list[PlacedRow], clock: ManualClock) -> None:
        self.db, self.clock, self.agencies = db, clock, agencies()
        self._n = 0
        self.by_agency: dict[str, list[PlacedRow]] = {}
        for row in placed:
            self.by_agency.setdefault(row[2], []).append(row)

    def engine(self) -> ReconEngine:
        return ReconEngine(db=self.db, agencies=self.agencies, settings=SETTINGS, clock=self.clock)

    async def rows(self, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            query = sa.select(table).where(*where).order_by(*table.primary_key.columns)
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def report(self, agency: str, e: AgencyEvent) -> None:
        """An event received from ``agency`` through the incremental path."""
        self._n += 1
        now = to_datetime(self.clock.now())
        body = e.model_dump_json().encode()
        async with self.db.transaction() as conn:
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
            await apply_events(conn, [IncomingEvent(agency, inbound_id, e, now)], now=now)

    async def hand_over(self, row: PlacedRow, to: str, *, recalled: float, placed: float) -> str:
        """Recall ``row`` at day ``recalled`` and place its case with ``to`` at ``placed``."""
        pid = row[0]
        new_id = f"{pid}-2"
        async with self.db.transaction() as conn:
            await conn.execute(
                PLACEMENTS.update()
                .where(PLACEMENTS.c.id == pid)
                .values(state="recalled", recalled_at=at(recalled), recall_reason="OPS")
            )
            old = (
                (await conn.execute(sa.select(PLACEMENTS).where(PLACEMENTS.c.id == pid)))
                .mappings()
                .one()
            )
            await conn.execute(
                PLACEMENTS.insert(),
                {**{k: v for k, v in old.items()}, "id": new_id, "agency_id": to,
                 "state": "acknowledged", "placed_at": at(placed), "recalled_at": None,
                 "recall_reason": None, "version": 1},
            )  # fmt: skip
        return new_id


@pytest.fixture
async def world(db: Database, seed_placements: Seeder) -> World:
    clock = ManualClock(NOW.timestamp())
    placed = await seed_placements(db, agencies(), 18, clock)
    # allocation may leave the remitting agency out: hand it the last placement
    last = placed[-1]
    async with db.transaction() as conn:
        await conn.execute(
            PLACEMENTS.update().where(PLACEMENTS.c.id == last[0]).values(agency_id="AGR")
        )
    w = World(db, [*placed[:-1], (last[0], last[1], "AGR", last[3])], clock)
    assert all(len(w.by_agency.get(a, [])) >= 1 for a in w.agencies), w.by_agency.keys()
    assert len(w.by_agency["AGA"]) >= 2
    return w


async def test_receipts_are_attributed_once_and_direct_pay_is_no_break(
    world: World, tmp_path: Path
) -> None:
    a0, a1 = world.by_agency["AGA"][:2]
    r0 = world.by_agency["AGR"][0]
    handed = await world.hand_over(a1, "AGB", recalled=1, placed=2)
    world.clock.advance(4 * 86_400)
    feed = feed_csv(
        tmp_path / "feed.csv",
        [
            debtor("R1", 10_000, 3, a0[1]),  # held by AGA
            debtor("R2", 1_001, 3, a1[1]),  # AGA's grace, now held by AGB: shared
            debtor("R3", 500, 3, "AC-NEVER"),  # a case we do not know
            {
                "payment_id": "R4",
                "kind": "remittance",
                "amount_minor": 900,
                "currency": "CNY",
                "received_at": at(3).isoformat(),
                "agency_id": "AGR",
                "period_start": "2026-03-01",
                "period_end": "2026-03-07",
            },
            debtor("R5", 2_000, 3, r0[1]),  # held by AGR, which remits
        ],
    )
    imported = await import_feed(feed, db=world.db, now=to_datetime(world.clock.now()))
    assert imported.errors == []
    report = await world.engine().run()

    rows = await world.rows(ATTRIBUTIONS)
    by_receipt: dict[str, list[tuple[Any, ...]]] = {}
    async with world.db.connect() as conn:
        ids = dict(
            (await conn.execute(sa.text("SELECT id, payment_id FROM lender_payments"))).all()
        )
    for r in rows:
        by_receipt.setdefault(ids[r["receipt_id"]], []).append(
            (r["agency_id"], r["placement_id"], r["rule"], r["share_bps"], r["amount_minor"])
        )
    assert by_receipt == {
        "R1": [("AGA", a0[0], "held", 10_000, 10_000)],
        "R2": [
            ("AGA", a1[0], "grace_shared", 4_000, 400),
            ("AGB", handed, "grace_shared", 6_000, 601),
        ],
        "R3": [(None, None, "unattributable", 10_000, 500)],
        "R4": [(None, None, "unattributable", 10_000, 900)],
        "R5": [("AGR", r0[0], "held", 10_000, 2_000)],
    }
    reasons = {ids[r["receipt_id"]]: r["reason"] for r in rows if r["reason"]}
    assert reasons["R3"] == "case AC-NEVER is unknown"
    assert reasons["R4"].startswith("remittance:")
    assert all(r["state"] == "active" and r["run_id"] == report.run.id for r in rows)
    assert report.run.counts["attributions"]["receipts"] == 5
    async with world.db.connect() as conn:
        assert await unaccounted_receipts(conn) == {}

    # the direct-pay notices of lender_collects agencies go out in this very run
    packets = await world.rows(OUTBOX, PAYMENT_PACKETS)
    sent = {(p["agency_id"], p["packet_type"]): json.loads(p["payload"])["data"] for p in packets}
    assert set(sent) == {
        ("AGA", "payment.direct"),
        ("AGA", "payment.attributed"),
        ("AGB", "payment.direct"),
    }
    assert sent[("AGA", "payment.direct")]["attribution"] == {
        "rule": "held",
        "share_bps": 10_000,
        "amount": {"amount_minor": 10_000, "currency": "CNY"},
    }
    attributed = sent[("AGA", "payment.attributed")]
    assert (attributed["placement_id"], attributed["payment_id"]) == (a1[0], "R2")
    assert attributed["attribution"]["amount"]["amount_minor"] == 400
    assert sent[("AGB", "payment.direct")]["attribution"]["share_bps"] == 6_000
    leaves = await world.rows(LEAVES, LEAVES.c.kind.in_(["attribution", "packet"]))
    assert [leaf["kind"] for leaf in leaves].count("attribution") == 1
    assert {f"outbox:{p['id']}" for p in packets} <= {leaf["ref"] for leaf in leaves}

    # later runs: nothing attributed or sent twice; the remitting agency's direct pay and
    # the unreported remittance are breaks, nothing is blamed on a lender_collects agency
    await world.report("AGA", event("placement.acknowledged", placement_id=a0[0],
                       balance=money(a0[3]), timestamp=at(3)))  # fmt: skip
    paid = at(3.1)
    await world.report("AGA", event("payment.reported", placement_id=a0[0],
                       payment_id="P-NOT-AT-LENDER", amount=7_000, paid_at=paid.isoformat(),
                       timestamp=paid))  # fmt: skip
    world.clock.advance(5 * 86_400)
    again = await world.engine().run()
    assert again.run.counts.get("attributions", {}).get("receipts", 0) == 0
    assert len(await world.rows(ATTRIBUTIONS)) == len(rows)
    assert len(await world.rows(OUTBOX, PAYMENT_PACKETS, OUTBOX.c.agency_id != "AGR")) == 3
    breaks = Counter((m["kind"], m["agency_id"]) for m in await world.rows(MISMATCHES))
    assert breaks[("payment_not_reported", "AGR")] == 2  # R5 and the remittance R4
    assert not [k for k in breaks if k[1] in ("AGA", "AGB") and k[0].startswith("payment_not")]
    assert again.run.counts["matches"]["activity_reports"] == 1
    assert [
        p["agency_id"]
        for p in await world.rows(OUTBOX, PAYMENT_PACKETS, OUTBOX.c.agency_id == "AGR")
    ] == ["AGR"]  # today's payment.direct for the remitting agency, after its report window

    cards = await scorecards(world.db, ["AGA", "AGB", "AGR"], start=at(-30), end=at(30))
    by_id = {c.agency_id: c for c in cards}
    assert (by_id["AGA"].reporting_breaks, by_id["AGB"].reporting_breaks) == (0, 0), breaks
    assert by_id["AGR"].reporting_breaks == 1  # R5 on its placement (R4 names none)

    async with world.db.connect() as conn:
        listed = await attributions_of(conn, agency_id="AGA", month=NOW.date())
    assert {r["payment_id"] for r in listed} == {"R1", "R2"}


def test_the_attributions_commands(
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
    monkeypatch.chdir(config.parent)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)

    feed = feed_csv(tmp_path / "feed.csv", [debtor("R1", 100, 1, "AC-NOWHERE")])
    assert run("payments", "import", str(feed)).exit_code == 0
    assert "not attributed yet" in run("attributions", "show", "R1").output
    assert run("reconcile", "--json").exit_code == 0
    listed = json.loads(
        run("attributions", "list", "--month", NOW.strftime("%Y-%m"), "--json").output
    )
    assert [(r["payment_id"], r["rule"], r["reason"]) for r in listed] == [
        ("R1", "unattributable", "case AC-NOWHERE is unknown")
    ]
    assert json.loads(run("attributions", "list", "--agency", "AGA", "--json").output) == []
    shown = run("attributions", "show", "R1")
    assert shown.exit_code == 0 and "unattributable" in shown.output
    missing = run("attributions", "show", "R-NONE")
    assert missing.exit_code == 1 and "no lender receipt 'R-NONE'" in missing.output
    bad = run("attributions", "list", "--month", "March")
    assert bad.exit_code == 2 and "use YYYY-MM" in bad.output
