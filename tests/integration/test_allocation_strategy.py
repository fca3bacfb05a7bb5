"""Performance-weighted allocation with a challenger share, on a seeded store (SQLite, and
PostgreSQL when configured): factors come from what each agency recovered of its recent
placements, each new placement records the strategy that drew it, and scorecards split by it."""

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from gateway.allocation.placements import PlacementService
from gateway.bootstrap import build
from gateway.clock import ManualClock
from gateway.config.settings import AllocationSection
from gateway.demo.data import generate_accounts, write_csv
from gateway.intake.service import import_file
from gateway.reporting.scorecards import scorecards
from gateway.store.migrate import upgrade
from gateway.store.tables import Placement
from tests.conftest import ConfigFactory, Seeder

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
P = PLACEMENTS.c
FIRST = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LATER = FIRST + timedelta(days=20)


async def test_champions_follow_recovery_and_challengers_are_recorded(
    make_config: ConfigFactory, seed_placements: Seeder, database_url: str, tmp_path: Path
) -> None:
    _, settings, agencies = make_config(
        database_url=database_url,
        agencies={"AGA": {"url": "http://127.0.0.1:9/a"}, "AGB": {"url": "http://127.0.0.1:9/b"}},
    )
    gateway = build(settings, agencies)
    try:
        await upgrade(gateway.db)
        first = await seed_placements(gateway.db, agencies, 200, ManualClock(FIRST.timestamp()))
        assert {a for _, _, a, _ in first} == {"AGA", "AGB"}
        # AGA recovered 40 % of what it was placed, AGB 5 %.
        async with gateway.db.transaction() as conn:
            for agency, share in (("AGA", 40), ("AGB", 5)):
                await conn.execute(
                    PLACEMENTS.update()
                    .where(P.agency_id == agency)
                    .values(collected_minor=P.balance_minor * share / 100)
                )
        allocation = AllocationSection(
            performance_weighting=True,
            performance_min_placements=20,
            performance_days=30,
            challenger_share=0.3,
        )
        clock = ManualClock(LATER.timestamp())
        service = PlacementService(
            db=gateway.db, agencies=agencies, pii=gateway.pii, settings=allocation, clock=clock
        )
        accounts = tmp_path / f"later-{uuid.uuid4().hex[:6]}.csv"
        write_csv(generate_accounts(600, seed=99, as_of=date(2026, 3, 20)), accounts)
        imported = await import_file(
            accounts,
            db=gateway.db,
            pii=gateway.pii,
            placements=service,
            allocation=allocation,
            clock=clock,
            confirmation="off",
        )
        assert imported.inserted == 600
        report = await service.allocate()

        assert report.factors[("AGA", "CNY")] > 1 > report.factors[("AGB", "CNY")]
        assert report.by_strategy["champion"] + report.by_strategy["challenger"] == report.placed
        assert 0.15 * report.placed < report.by_strategy["challenger"] < 0.45 * report.placed
        async with gateway.db.connect() as conn:
            rows = (
                await conn.execute(sa.select(P.agency_id, P.strategy).where(P.placed_at >= LATER))
            ).all()
            earlier = set(
                (await conn.execute(sa.select(P.strategy).where(P.placed_at < LATER)))
                .scalars()
                .all()
            )
        assert earlier == {"champion"}  # the column's default for what came before
        stored = Counter(strategy for _, strategy in rows)
        assert stored == report.by_strategy
        champions = Counter(a for a, s in rows if s == "champion")
        challengers = Counter(a for a, s in rows if s == "challenger")
        # Champions lean on recovery; challengers are drawn by the contract weights (1 : 1).
        assert champions["AGA"] > 2 * champions["AGB"]
        assert champions["AGA"] / sum(champions.values()) > challengers["AGA"] / sum(
            challengers.values()
        )

        cards = {
            c.agency_id: c
            for c in await scorecards(
                gateway.db,
                agencies,
                start=LATER,
                end=LATER + timedelta(days=1),
                strategy="challenger",
            )
        }
        assert {a: c.placements for a, c in cards.items() if c.placements} == dict(challengers)
    finally:
        await gateway.aclose()
