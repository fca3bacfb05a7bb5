"""Fair scorecards on a real database (SQLite, and PostgreSQL when GATEWAY_TEST_POSTGRES_URL
is set), checked against an independent computation in plain Python over the raw rows.

The world is Simpson's paradox on purpose: AGA took mostly hard M3 accounts, AGB mostly easy
M1 ones. In every stratum AGA recovers more than AGB, yet AGB's crude rate is the higher:
the crude figure says AGB is better, the within-strata comparison says AGA. Besides them AGC
has a stratum too small to compare, AGR remits (its own collected figure is the measure),
and the lender_collects agencies report a collected figure that must be ignored."""

import asyncio
import io
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from statistics import NormalDist
from typing import Any
from xml.etree import ElementTree

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image
from pytest_aiohttp import AiohttpClient

from gateway.cli import main
from gateway.config.settings import ScorecardsSection
from gateway.console.accounts import add_user
from gateway.reporting.charts import curves_png, curves_svg
from gateway.reporting.scorecards import scorecards
from gateway.reporting.strata import Comparison
from gateway.reporting.stratified import StratifiedReport, stratified_scorecards, vintage_curves
from gateway.server import create_app
from gateway.store.case_tables import AllocationDecision, Escalation
from gateway.store.complaint_tables import Complaint
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.settlement_tables import Attribution
from gateway.store.statement_tables import SettlementFee, SettlementLine, SettlementStatement
from gateway.store.tables import Case, Placement
from tests.case_world import build_case_world
from tests.factories import agency_config
from tests.integration.test_console import Session

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
DECISIONS = AllocationDecision.__table__  # type: ignore[attr-defined]
ATTRIBUTIONS = Attribution.__table__  # type: ignore[attr-defined]
ESCALATIONS = Escalation.__table__  # type: ignore[attr-defined]
STATEMENTS = SettlementStatement.__table__  # type: ignore[attr-defined]
LINES = SettlementLine.__table__  # type: ignore[attr-defined]
FEES = SettlementFee.__table__  # type: ignore[attr-defined]
COMPLAINTS = Complaint.__table__  # type: ignore[attr-defined]

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)
AS_OF = date(2026, 6, 15)
SETTINGS = ScorecardsSection()  # bands cut at 500000, 2000000, 5000000; min 5; 95 %
PASSWORD = "correct horse battery staple"
BASE_RATE = {"M1": 0.40, "M3": 0.06}
AGENCY_FACTOR = {"AGA": 1.25, "AGB": 1.0, "AGC": 1.0, "AGR": 1.0}
AGENCIES = {
    a: agency_config(id=a, settlement={"money_model": "agency_remits"} if a == "AGR" else {})
    for a in ("AGA", "AGB", "AGC", "AGR")
}


@dataclass
class World:
    cases: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    placements: list[dict[str, Any]] = field(default_factory=list)
    attributions: list[dict[str, Any]] = field(default_factory=list)

    def place(
        self,
        rng: random.Random,
        agency: str,
        bucket: str,
        balance: int,
        placed_at: datetime,
        *,
        strategy: str,
        rate: float,
        tier: str = "early",
        with_decision: bool = True,
    ) -> dict[str, Any]:
        n = len(self.placements)
        case_id = f"AC{n:05d}"
        decision_id = None
        if with_decision:
            decision_id = 100_000 + len(self.decisions)
            self.decisions.append(
                {
                    "id": decision_id,
                    "round_id": "R1",
                    "debtor_id": f"CU{n:05d}",
                    "case_ids": f'["{case_id}"]',
                    "bucket": bucket,
                    "tier": tier,
                    "rule": "single",
                    "strategy": strategy,
                    "seed": 1,
                    "candidates": "[]",
                    "chosen_agency": agency,
                    "decided_at": placed_at,
                }
            )
        self.cases.append(
            {
                "id": case_id,
                "debtor_id": f"CU{n:05d}",
                "pii": b"sealed",
                "content_mac": "0" * 64,
                "region": "CN-31",
                "product": "cash",
                "currency": "CNY",
                "principal_minor": balance,
                "balance_minor": balance,
                "dpd": 40,
                # The case has aged since: with a decision, its bucket at placement counts.
                "bucket": "M6" if with_decision else bucket,
                "credit_grade": "B",
                "due_date": (placed_at - timedelta(days=40)).date(),
                "status": "placed",
                "created_at": placed_at,
                "updated_at": placed_at,
            }
        )
        recovered = min(balance, round(balance * rate * rng.uniform(0.5, 1.5)))
        placement = {
            "id": f"P{n:05d}",
            "case_id": case_id,
            "agency_id": agency,
            "state": "active",
            "currency": "CNY",
            "balance_minor": balance,
            # The agency's own figure: the measure for AGR only.
            "collected_minor": recovered if agency == "AGR" else recovered * 2 + 17,
            "placed_at": placed_at,
            "return_by": (placed_at + timedelta(days=90)).date(),
            "strategy": strategy,
            "tier": tier,
            "decision_id": decision_id,
            "updated_at": placed_at,
        }
        self.placements.append(placement)
        if agency != "AGR" and recovered > 0:
            first = recovered // 3
            for k, (amount, months, rule, state) in enumerate(
                (
                    (first, rng.randint(0, 1), "held", "active"),
                    (
                        recovered - first,
                        rng.randint(1, 4),
                        rng.choice(("grace_old", "grace_shared")),
                        rng.choice(("settled", "disputed")),
                    ),
                )
            ):
                if amount == 0:
                    continue
                paid = _add_months(placed_at.date(), months)
                self.attributions.append(
                    {
                        "receipt_id": n * 10 + k,
                        "case_id": case_id,
                        "placement_id": placement["id"],
                        "agency_id": agency,
                        "amount_minor": amount,
                        "currency": "CNY",
                        "share_bps": 10_000,
                        "paid_on": min(paid, AS_OF + timedelta(days=20)),
                        "rule": rule,
                        "state": state,
                        "created_at": placed_at,
                    }
                )
        return placement


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, min(day.day, 28))


def build_world(seed: int = 20) -> World:
    rng = random.Random(seed)
    world = World()
    bands = ((100_000, 400_000), (600_000, 1_800_000))
    vintages = (datetime(2026, 1, 10, 9, tzinfo=UTC), datetime(2026, 2, 25, 23, 30, tzinfo=UTC))
    mix = {"AGA": {"M1": 6, "M3": 24}, "AGB": {"M1": 24, "M3": 6}}
    for placed_at in vintages:
        for lo, hi in bands:
            for agency, buckets in mix.items():
                for bucket, count in buckets.items():
                    for i in range(count):
                        strategy = "challenger" if i % 3 == 0 else "champion"
                        rate = BASE_RATE[bucket] * AGENCY_FACTOR[agency]
                        rate *= 1.6 if strategy == "challenger" else 1.0
                        world.place(
                            rng,
                            agency,
                            bucket,
                            rng.randint(lo, hi),
                            placed_at + timedelta(hours=i),
                            strategy=strategy,
                            rate=rate,
                            with_decision=i % 5 != 4,
                        )
    march = datetime(2026, 3, 31, 23, 59, tzinfo=UTC)
    for i in range(3):  # too small a stratum to compare
        world.place(rng, "AGC", "M1", 300_000 + i, march, strategy="champion", rate=0.5)
    for i in range(5):
        world.place(rng, "AGR", "M3", 700_000 + i, march, strategy="champion", rate=0.2)
    # Outside the period: neither its placement nor its money counts.
    world.place(
        rng, "AGA", "M1", 900_000, START - timedelta(seconds=1), strategy="champion", rate=0.9
    )
    world.place(rng, "AGB", "M1", 900_000, END, strategy="champion", rate=0.9)
    world.attributions.append(
        {
            "receipt_id": 999_999,
            "case_id": None,
            "placement_id": None,
            "agency_id": None,
            "amount_minor": 123_456,
            "currency": "CNY",
            "share_bps": 10_000,
            "paid_on": date(2026, 2, 1),
            "rule": "unattributable",
            "reason": "case unknown",
            "state": "active",
            "created_at": START,
        }
    )
    return world


# ---- flows: cured, rolled, commission, fees --------------------------------------------------


def add_flows(world: World) -> dict[str, list[dict[str, Any]]]:
    aga = [p for p in world.placements if p["agency_id"] == "AGA" and p["placed_at"] >= START]
    agb = [p for p in world.placements if p["agency_id"] == "AGB" and START <= p["placed_at"] < END]
    cases = {c["id"]: c for c in world.cases}
    for p in aga[:3]:  # paid in full: placement and case closed
        p["state"] = "closed"
        cases[p["case_id"]]["status"] = "closed"
    aga[3]["state"] = "closed"  # closed but written off: not cured
    cases[aga[3]["case_id"]]["status"] = "written_off"
    escalations = [
        {
            "case_id": aga[5]["case_id"],
            "placement_id": aga[5]["id"],
            "agency_id": "AGA",
            "state": "approved",
            "reason": "past threshold",
            "proposed_at": END,
        },
        {
            "case_id": aga[6]["case_id"],
            "placement_id": aga[6]["id"],
            "agency_id": "AGA",
            "state": "rejected",
            "reason": "past threshold",
            "proposed_at": END,
        },
    ]
    later = []
    for n, (p, tier) in enumerate(((agb[0], "legal"), (agb[1], "early"))):
        later.append(
            {
                **p,
                "id": f"LATER{n}",
                "agency_id": "AGC",
                "tier": tier,
                "placed_at": datetime(2026, 5, 1, tzinfo=UTC),
                "decision_id": None,
            }
        )
    stamp = {"created_at": END, "updated_at": END}
    money = dict.fromkeys(
        (
            "recovered_minor",
            "lines_minor",
            "floor_topup_minor",
            "ceiling_cut_minor",
            "adjustments_minor",
            "fees_minor",
            "total_minor",
            "withheld_minor",
        ),
        0,
    )
    statements = [
        {
            "id": 90_001,
            "agency_id": "AGA",
            "month": "2026-02",
            "revision": 1,
            "state": "superseded",
        },
        {"id": 90_002, "agency_id": "AGA", "month": "2026-02", "revision": 2, "state": "confirmed"},
    ]
    statements = [
        {**s, **money, **stamp, "currency": "CNY", "rule_period": "2026", "created_by": "ops"}
        for s in statements
    ]
    lines = []
    for n, (statement, placement, commission) in enumerate(
        (
            (90_001, aga[0], 999),
            (90_002, aga[0], 1_000),
            (90_002, aga[1], 2_000),
            (90_002, aga[2], None),
        )
    ):
        lines.append(
            {
                "statement_id": statement,
                "line_no": n + 1,
                "attribution_id": n + 1,
                "receipt_id": n + 1,
                "case_id": placement["case_id"],
                "placement_id": placement["id"],
                "paid_on": date(2026, 2, 10),
                "amount_minor": 10_000,
                "currency": "CNY",
                "attribution_rule": "held",
                "bucket": "M1",
                "dpd_at_placement": 40,
                "age_days": 30,
                "legal": False,
                "commission_minor": commission,
            }
        )
    fee = {
        "kind": "court",
        "currency": "CNY",
        "receipt_ref": "r",
        "actor": "ops",
        "created_at": END,
    }
    fees = [
        {
            **fee,
            "agency_id": "AGA",
            "case_id": aga[0]["case_id"],
            "advanced_minor": 500,
            "incurred_on": date(2026, 2, 1),
        },
        # AGB never held this case: not its cost.
        {
            **fee,
            "agency_id": "AGB",
            "case_id": aga[0]["case_id"],
            "advanced_minor": 700,
            "incurred_on": date(2026, 2, 1),
        },
    ]
    complaint = {
        "source": "ops",
        "agency_id": "AGA",
        "channel": "phone",
        "category": "conduct",
        "state": "open",
        "deadline_at": END + timedelta(days=15),
        "created_at": END,
        "updated_at": END,
        "updated_by": "ops",
    }
    complaints = [
        {**complaint, "source_ref": f"C{n}", "case_id": aga[n]["case_id"], "received_at": at}
        # the third is received after the period: not counted
        for n, at in enumerate((START + timedelta(days=40), END - timedelta(seconds=1), END))
    ]
    return {
        "complaints": complaints,
        "escalations": escalations,
        "later": later,
        "statements": statements,
        "lines": lines,
        "fees": fees,
    }


async def seed(db: Database, world: World, extra: dict[str, list[dict[str, Any]]]) -> None:
    async with db.transaction() as conn:
        for table, rows in (
            (CASES, world.cases),
            (DECISIONS, world.decisions),
            (PLACEMENTS, world.placements + extra["later"]),
            (ATTRIBUTIONS, world.attributions),
            (ESCALATIONS, extra["escalations"]),
            (STATEMENTS, extra["statements"]),
            (LINES, extra["lines"]),
            (FEES, extra["fees"]),
            (COMPLAINTS, extra["complaints"]),
        ):
            keys = sorted({k for row in rows for k in row})
            await conn.execute(sa.insert(table), [{k: row.get(k) for k in keys} for row in rows])


# ---- the independent computation: plain Python over the raw rows ----------------------------


@dataclass(frozen=True)
class Raw:
    agency: str
    strategy: str
    key: tuple[str, str, str, str]
    x: int
    y: int


def raw_placements(rows: dict[str, list[dict[str, Any]]]) -> list[Raw]:
    bucket_of_decision = {d["id"]: d["bucket"] for d in rows["decisions"]}
    bucket_of_case = {c["id"]: c["bucket"] for c in rows["cases"]}
    money: dict[str, int] = defaultdict(int)
    for a in rows["attributions"]:
        if a["placement_id"] is not None and a["rule"] != "unattributable":
            money[a["placement_id"]] += a["amount_minor"]
    out = []
    for p in rows["placements"]:
        placed_at = _utc(p["placed_at"])
        if not START <= placed_at < END:
            continue
        bucket = bucket_of_decision.get(p["decision_id"]) or bucket_of_case[p["case_id"]]
        x = p["balance_minor"]
        band = (
            "<500000"
            if x < 500_000
            else "500000-1999999"
            if x < 2_000_000
            else "2000000-4999999"
            if x < 5_000_000
            else ">=5000000"
        )
        y = p["collected_minor"] if p["agency_id"] == "AGR" else money[p["id"]]
        key = (p["currency"], bucket, band, placed_at.strftime("%Y-%m"))
        out.append(Raw(p["agency_id"], p["strategy"], key, x, y))
    return out


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ratio_variance(group: list[Raw]) -> float | None:
    """The ratio estimator's linearised variance, from the residuals themselves."""
    if len(group) < 2:
        return None
    sx = sum(r.x for r in group)
    rate = sum(r.y for r in group) / sx
    ss = sum((r.y - rate * r.x) ** 2 for r in group)
    return len(group) / (len(group) - 1) * ss / sx**2


Z = NormalDist().inv_cdf(0.975)


def independent_comparison(raw: list[Raw], agency: str) -> dict[str, Any]:
    strata: dict[tuple[str, str, str, str], tuple[list[Raw], list[Raw]]] = defaultdict(
        lambda: ([], [])
    )
    for r in raw:
        strata[r.key][0 if r.agency == agency else 1].append(r)
    actual, expected = 0, Fraction(0)
    var_a, var_e = 0.0, 0.0
    comparable = {}
    for key, (own, peers) in strata.items():
        if not own:
            continue
        ok = len(own) >= 5 and len(peers) >= 5
        comparable[key] = ok
        if not ok:
            continue
        px = sum(r.x for r in own)
        peer_rate = Fraction(sum(r.y for r in peers), sum(r.x for r in peers))
        actual += sum(r.y for r in own)
        expected += px * peer_rate
        own_rate = sum(r.y for r in own) / px
        var_a += len(own) / (len(own) - 1) * sum((r.y - own_rate * r.x) ** 2 for r in own)
        var_e += px**2 * (ratio_variance(peers) or 0.0)
    mine = [r for r in raw if r.agency == agency]
    return {
        "placements": len(mine),
        "placed": sum(r.x for r in mine),
        "recovered": sum(r.y for r in mine),
        "actual": actual,
        "expected": expected,
        "ratio": None if expected == 0 else Fraction(actual) / expected,
        "half": None
        if expected == 0
        else Z
        * math.sqrt(var_a + float(Fraction(actual) / expected) ** 2 * var_e)
        / float(expected),
        "comparable": comparable,
    }


# ---- the tests ---------------------------------------------------------------------------


@pytest.fixture
async def seeded(db: Database) -> tuple[Database, dict[str, list[dict[str, Any]]]]:
    world = build_world()
    extra = add_flows(world)
    await seed(db, world, extra)
    async with db.snapshot() as conn:
        rows = {
            name: [dict(r._mapping) for r in await conn.execute(sa.select(table))]
            for name, table in (
                ("cases", CASES),
                ("decisions", DECISIONS),
                ("placements", PLACEMENTS),
                ("attributions", ATTRIBUTIONS),
            )
        }
    return db, rows


def by_agency(report: StratifiedReport) -> dict[str, Comparison]:
    return {c.agency_id: c for c in report.comparisons}


async def test_within_strata_comparison_matches_an_independent_computation(
    seeded: tuple[Database, dict[str, list[dict[str, Any]]]],
) -> None:
    db, rows = seeded
    report = await stratified_scorecards(
        db, start=START, end=END, agencies=AGENCIES, settings=SETTINGS
    )
    raw = raw_placements(rows)
    found = by_agency(report)
    assert set(found) == {"AGA", "AGB", "AGC", "AGR"}

    for agency, card in found.items():
        mine = independent_comparison(raw, agency)
        assert (card.crude.n, card.crude.placed, card.crude.recovered) == (
            mine["placements"],
            mine["placed"],
            mine["recovered"],
        ), agency
        assert card.actual == mine["actual"], agency
        assert card.expected == pytest.approx(float(mine["expected"]), rel=1e-12), agency
        assert {
            (
                line.stratum.currency,
                line.stratum.bucket,
                line.stratum.band,
                line.stratum.vintage,
            ): line.comparable
            for line in card.lines
        } == mine["comparable"], agency
        if mine["ratio"] is None:
            assert card.ratio is None and card.ratio_interval is None, agency
            continue
        assert card.ratio == pytest.approx(float(mine["ratio"]), rel=1e-12), agency
        assert card.ratio is not None and card.ratio_interval is not None
        assert card.ratio_interval.high - card.ratio == pytest.approx(mine["half"], rel=1e-9)
        for line in card.lines:  # every stratum's rate interval, from raw residuals
            own = [
                r
                for r in raw
                if r.agency == agency
                and r.key
                == (
                    line.stratum.currency,
                    line.stratum.bucket,
                    line.stratum.band,
                    line.stratum.vintage,
                )
            ]
            variance = ratio_variance(own)
            assert line.agency_interval is not None and variance is not None
            rate = sum(r.y for r in own) / sum(r.x for r in own)
            assert line.agency_interval.high == pytest.approx(
                rate + Z * math.sqrt(variance), rel=1e-9
            )

    aga, agb = found["AGA"], found["AGB"]
    # Simpson: the crude rates say AGB, every stratum and the standardised ratio say AGA.
    assert aga.crude.rate is not None and agb.crude.rate is not None
    assert aga.crude.rate < agb.crude.rate
    for line in aga.lines:
        assert line.comparable and line.agency.rate is not None and line.peers.rate is not None
        assert line.agency.rate > line.peers.rate, line.stratum
    assert aga.ratio is not None and agb.ratio is not None
    assert aga.ratio > 1 > agb.ratio
    assert aga.significant and agb.significant
    # The agency's own figure (twice the money, plus 17) is not what is measured...
    placed = [p for p in rows["placements"] if p["agency_id"] == "AGA"]
    assert aga.crude.recovered < sum(p["collected_minor"] for p in placed) // 2
    # ...except under agency_remits; AGC's lone stratum is too small, so it has no ratio.
    assert found["AGR"].crude.recovered == sum(
        p["collected_minor"] for p in rows["placements"] if p["agency_id"] == "AGR"
    )
    assert found["AGC"].too_small == 1 and found["AGC"].ratio is None
    # The plain scorecard's "collected" is the same money now.
    cards = {c.agency_id: c for c in await scorecards(db, AGENCIES, start=START, end=END)}
    for agency in ("AGA", "AGB", "AGR"):
        assert cards[agency].collected_minor == {"CNY": found[agency].crude.recovered}
    method = report.as_dict()["method"]
    assert method["balance_bands"] == ["<500000", "500000-1999999", "2000000-4999999", ">=5000000"]
    assert method["remitting_agencies"] == ["AGR"]


async def test_champion_challenger_contrast_matches_an_independent_computation(
    seeded: tuple[Database, dict[str, list[dict[str, Any]]]],
) -> None:
    db, rows = seeded
    report = await stratified_scorecards(db, start=START, end=END, agencies=AGENCIES)
    raw = raw_placements(rows)
    [cc] = report.contrasts
    strata: dict[tuple[str, str, str, str], dict[str, list[Raw]]] = defaultdict(
        lambda: {"champion": [], "challenger": []}
    )
    for r in raw:
        strata[r.key][r.strategy].append(r)
    usable = {k: v for k, v in strata.items() if min(len(v["champion"]), len(v["challenger"])) >= 5}
    weight = sum(r.x for v in usable.values() for side in v.values() for r in side)
    diff, var = 0.0, 0.0
    for v in usable.values():
        w = sum(r.x for side in v.values() for r in side) / weight
        rates = {s: sum(r.y for r in side) / sum(r.x for r in side) for s, side in v.items()}
        diff += w * (rates["challenger"] - rates["champion"])
        var += w**2 * sum(ratio_variance(side) or 0.0 for side in v.values())
    assert (cc.strata, cc.strata_too_small) == (len(usable), len(strata) - len(usable))
    assert cc.difference == pytest.approx(diff, rel=1e-9)
    assert cc.interval is not None
    assert cc.interval.low == pytest.approx(diff - Z * math.sqrt(var), rel=1e-9)
    p_value = 2 * (1 - NormalDist().cdf(abs(diff) / math.sqrt(var)))
    assert cc.p_value == pytest.approx(p_value, rel=1e-6, abs=1e-12)
    # The challenger was built to recover 1.6 times as much: a significant difference.
    assert diff > 0 and cc.significant
    # One strategy only: nothing to contrast.
    only = await stratified_scorecards(db, start=START, end=END, strategy="champion")
    assert all(c.difference is None for c in only.contrasts)


async def test_flows_roll_cure_and_cost_of_collection(
    seeded: tuple[Database, dict[str, list[dict[str, Any]]]],
) -> None:
    db, rows = seeded
    report = await stratified_scorecards(db, start=START, end=END, agencies=AGENCIES)
    flows = {f.agency_id: f for f in report.flows}
    cases = {c["id"]: c for c in rows["cases"]}
    money: dict[str, int] = defaultdict(int)
    for a in rows["attributions"]:
        if a["placement_id"]:
            money[a["placement_id"]] += a["amount_minor"]
    aga_placements = [
        p
        for p in rows["placements"]
        if p["agency_id"] == "AGA" and START <= _utc(p["placed_at"]) < END
    ]
    cured = [
        p["id"]
        for p in aga_placements
        if (p["state"] == "closed" and cases[p["case_id"]]["status"] == "closed")
        or money[p["id"]] >= p["balance_minor"]
    ]
    aga = flows["AGA"]
    assert (aga.placements, aga.cured) == (len(aga_placements), len(cured))
    assert aga.cured >= 3  # the three closed and paid (the written-off one is not cured)
    assert aga.recovered_minor == sum(money[p["id"]] for p in aga_placements)
    assert aga.rolled == 1  # the approved escalation (the rejected one does not count)
    assert flows["AGB"].rolled == 1  # a later placement on the legal tier, not the same tier
    assert (aga.commission_minor, aga.fees_minor) == (3_000, 500)
    assert aga.cost_bps == 3_500 * 10_000 // aga.recovered_minor
    assert (flows["AGB"].commission_minor, flows["AGB"].fees_minor) == (0, 0)
    assert set(flows) == {"AGA", "AGB", "AGC", "AGR"}
    # Complaints received in the period per 10,000 placements (gateway.complaints).
    assert aga.complaints == 2
    assert aga.complaints_per_10k == pytest.approx(2 * 10_000 / len(aga_placements))
    assert (flows["AGB"].complaints, flows["AGB"].complaints_per_10k) == (0, 0.0)


async def test_vintage_curves_and_their_charts(
    seeded: tuple[Database, dict[str, list[dict[str, Any]]]],
) -> None:
    db, rows = seeded
    found = {c.agency_id: c for c in await vintage_curves(db, start=START, end=END, as_of=AS_OF)}
    placements = {p["id"]: p for p in rows["placements"] if START <= _utc(p["placed_at"]) < END}

    def month(d: date | datetime) -> int:
        return d.year * 12 + d.month - 1

    last = month(AS_OF)
    for agency in ("AGA", "AGB"):
        mine = [p for p in placements.values() if p["agency_id"] == agency]
        expected = []
        for mob in range(0, last - min(month(_utc(p["placed_at"])) for p in mine) + 1):
            seen = {p["id"] for p in mine if month(_utc(p["placed_at"])) + mob <= last}
            base = sum(placements[i]["balance_minor"] for i in seen)
            got = sum(
                a["amount_minor"]
                for a in rows["attributions"]
                if a["placement_id"] in seen
                and a["paid_on"] <= AS_OF
                and month(a["paid_on"]) - month(_utc(placements[a["placement_id"]]["placed_at"]))
                <= mob
            )
            expected.append((mob, Fraction(got, base), base))
        points = found[agency].points
        assert [(m, b) for m, _s, b in points] == [(m, b) for m, _s, b in expected]
        assert [s for _m, s, _b in points] == pytest.approx(
            [float(s) for _m, s, _b in expected], rel=1e-12
        )
        shares = [s for _m, s, _b in points]
        assert shares[-1] > 0

    curves = [found["AGA"], found["AGB"]]
    png = curves_png(curves, lang="zh_CN")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.size == (750, 420)
    svg = curves_svg(curves, lang="en")
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # Inline and self-contained: no reference out of the document.
    hrefs = [v for el in root.iter() for k, v in el.attrib.items() if k.endswith("href")]
    assert hrefs and all(h.startswith("#") for h in hrefs)
    assert len(list(_lines(root))) >= 2  # one line per agency


def _lines(root: ElementTree.Element) -> Iterator[ElementTree.Element]:
    for el in root.iter("{http://www.w3.org/2000/svg}g"):
        if el.attrib.get("id", "").startswith("line2d"):
            yield el


async def test_the_console_page_and_the_chart_downloads(
    make_config: Any, tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    w = await build_case_world(make_config, tmp_path, "sqlite:///" + str(tmp_path / "gw.db"))
    try:
        await add_user(w.db, "vi", "viewer", PASSWORD, now=END)
        app = create_app(
            inbound=w.gateway.inbound,
            db=w.db,
            metrics_=w.gateway.metrics,
            console=w.gateway.console_services(),
        )
        vi = Session(await aiohttp_client(app))
        assert (await vi.login("vi", PASSWORD)).status == 303
        query = "from=2026-01-01&to=2026-04-01"
        empty = await vi.client.get(f"/scorecards?{query}&lang=en")
        assert empty.status == 200 and "No placement in this period." in await empty.text()
        world = build_world()
        await seed(w.db, world, add_flows(world))
        page = await vi.client.get(f"/scorecards?{query}&lang=en")
        text = await page.text()
        assert page.status == 200, text
        assert "Against peers in the same strata" in text and "Strata of AGA (CNY)" in text
        assert "too small to compare" in text  # AGC's lone stratum
        assert "significant" in text  # the champion/challenger verdict
        svg = text[text.index("<svg") : text.index("</svg>") + len("</svg>")]
        ElementTree.fromstring(svg)  # the chart is inline, well-formed SVG
        assert f'href="/scorecards/curves.png?{query.replace("&", "&amp;")}"' in text
        zh = await (await vi.client.get(f"/scorecards?{query}&lang=zh-CN")).text()
        assert "与同一分层内的同业比较" in zh and "账龄回收曲线" in zh

        png = await vi.client.get(f"/scorecards/curves.png?{query}")
        assert png.status == 200 and png.content_type == "image/png"
        with Image.open(io.BytesIO(await png.read())) as image:
            assert image.format == "PNG"
        svg_file = await vi.client.get(f"/scorecards/curves.svg?{query}")
        assert svg_file.content_type == "image/svg+xml"
        ElementTree.fromstring(await svg_file.text())
        bad = await vi.client.get("/scorecards?from=yesterday&lang=en")
        assert bad.status == 400 and "is not a day" in await bad.text()
    finally:
        await w.gateway.aclose()


def test_the_scorecards_commands(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "sqlite:///" + str(tmp_path / "cli.db")
    config, _settings, _agencies = make_config(
        database_url=url,
        agencies={
            "AGA": {"url": "http://127.0.0.1:9/a"},
            "AGR": {"url": "http://127.0.0.1:9/r", "settlement": {"money_model": "agency_remits"}},
        },
    )
    monkeypatch.chdir(config.parent)

    async def prepare() -> None:
        db = Database(url)
        await upgrade(db)
        world = build_world()
        await seed(db, world, add_flows(world))
        await db.dispose()

    asyncio.run(prepare())
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config), *args], catch_exceptions=False)

    period = ("--from", "2026-01-01", "--to", "2026-04-01")
    out = run("scorecards", "fair", *period, "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    ratios = {c["agency_id"]: c["ratio"] for c in data["comparisons"]}
    assert ratios["AGA"] > 1 > ratios["AGB"]
    assert data["method"]["remitting_agencies"] == ["AGR"]
    [cc] = data["champion_challenger"]
    assert cc["significant"] is True
    table = run("scorecards", "fair", *period, "--strata", "--agency", "AGA")
    assert table.exit_code == 0 and "AGA" in table.output and "AGB" not in table.output

    png, svg = tmp_path / "curves.png", tmp_path / "curves.svg"
    assert (
        run(
            "scorecards",
            "curves",
            *period,
            "--as-of",
            "2026-06-15",
            "--format",
            "png",
            "-o",
            str(png),
        ).exit_code
        == 0
    )
    with Image.open(png) as image:
        assert image.format == "PNG"
    assert run("scorecards", "curves", *period, "--format", "svg", "-o", str(svg)).exit_code == 0
    ElementTree.parse(svg)
    points = json.loads(
        run("scorecards", "curves", *period, "--as-of", "2026-06-15", "--json").output
    )
    assert {c["agency_id"] for c in points} == {"AGA", "AGB", "AGC"}  # AGR remits: no curve
    assert run("scorecards", "curves", *period, "--format", "png").exit_code == 2
