"""Allocation through tiers on a real store (SQLite, and PostgreSQL when configured): a
returned case goes to the next tier after its cool-off and never back, a rejected one to
another agency of its tier; held, not overdue and zero-balance cases are never placed; a
debtor with M1 and LEGAL accounts is placed under both mixed-debtor rules; every group's
decision is recorded and linked from its placements; a preview writes nothing and predicts
the real run exactly."""

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import sqlalchemy as sa

from gateway.allocation.placements import PlacementService
from gateway.bootstrap import Gateway, build
from gateway.cases.history import CaseMove, move_cases
from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection
from gateway.demo.data import generate_accounts, write_csv
from gateway.intake.service import import_file
from gateway.store.case_tables import AllocationDecision, CaseHistory, CaseHold
from gateway.store.migrate import upgrade
from gateway.store.tables import Case, EvidenceLeaf, OutboxItem, Placement
from schemas.account import IntakeAccount
from tests.conftest import ConfigFactory

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
DECISIONS = AllocationDecision.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
C, P, D = CASES.c, PLACEMENTS.c, DECISIONS.c

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)
NOT_LEGAL = ["M1", "M2", "M3", "M4-6", "M6+"]
TIERS: dict[str, tuple[str, list[str]]] = {
    "AGP1": ("primary", NOT_LEGAL),
    "AGP2": ("primary", NOT_LEGAL),
    "AGS": ("secondary", NOT_LEGAL),
    "LAW": ("legal", ["LEGAL"]),
}
PRIMARY = {"AGP1", "AGP2"}


@dataclass
class World:
    gateway: Gateway
    service: PlacementService
    clock: ManualClock
    allocation: AllocationSection
    tmp_path: Path

    async def intake(self, accounts: list[IntakeAccount]) -> None:
        path = self.tmp_path / f"accounts-{uuid.uuid4().hex[:8]}.csv"
        write_csv(accounts, path)
        report = await import_file(
            path,
            db=self.gateway.db,
            pii=self.gateway.pii,
            placements=self.service,
            allocation=self.allocation,
            clock=self.clock,
            confirmation="off",
        )
        assert report.inserted == len(accounts), report.errors

    def at(self, when: datetime) -> None:
        self.clock.advance(when.timestamp() - self.clock.now())

    async def rows(self, query: Any) -> list[Any]:
        async with self.gateway.db.connect() as conn:
            return list((await conn.execute(query)).all())

    async def agency_outcome(self, case_id: str, state: str, event: str) -> str:
        """The agency returns or rejects the case's open placement, as the recorder would."""
        now = to_datetime(self.clock.now())
        async with self.gateway.db.transaction() as conn:
            pid, agency_id = (
                await conn.execute(
                    sa.select(P.id, P.agency_id).where(P.case_id == case_id, P.state == "placed")
                )
            ).one()
            await conn.execute(
                PLACEMENTS.update().where(P.id == pid).values(state=state, updated_at=now)
            )
            await move_cases(
                conn,
                [CaseMove(case_id, event, f"agency:{agency_id}", state, placement_id=pid)],
                now=now,
                strict=True,
            )
        return str(agency_id)


def tiered(agencies: dict[str, AgencyConfig]) -> dict[str, AgencyConfig]:
    return {
        agency_id: agency.model_copy(
            update={
                "tier": TIERS[agency_id][0],
                "eligibility": agency.eligibility.model_copy(
                    update={"buckets": tuple(TIERS[agency_id][1])}
                ),
            }
        )
        for agency_id, agency in agencies.items()
    }


@pytest.fixture
def mixed() -> Literal["worst", "split"]:
    return "worst"


@pytest.fixture
async def world(
    make_config: ConfigFactory, database_url: str, tmp_path: Path, mixed: Literal["worst", "split"]
) -> AsyncIterator[World]:
    _, settings, agencies = make_config(
        database_url=database_url,
        agencies={a: {"url": f"http://127.0.0.1:9/{a.lower()}"} for a in TIERS},
    )
    agencies = tiered(agencies)
    gateway = build(settings, agencies)
    allocation = AllocationSection(cool_off_days=7, mixed_debtors=mixed)
    clock = ManualClock(T0.timestamp())
    service = PlacementService(
        db=gateway.db, agencies=agencies, pii=gateway.pii, settings=allocation, clock=clock
    )
    try:
        await upgrade(gateway.db)
        yield World(gateway, service, clock, allocation, tmp_path)
    finally:
        await gateway.aclose()


TEMPLATE = next(iter(generate_accounts(1, seed=5, as_of=T0.date())))


def account(account_id: str, debtor_id: str, dpd: int, **overrides: Any) -> IntakeAccount:
    return TEMPLATE.model_copy(
        update={
            "account_id": account_id,
            "debtor_id": debtor_id,
            "dpd": dpd,
            "due_date": T0.date() - timedelta(days=dpd),
            "balance_minor": 300_000,
            **overrides,
        }
    )


async def test_a_returned_case_goes_to_the_next_tier_after_cool_off_and_never_back(
    world: World,
) -> None:
    await world.intake([account(f"AC{n:03d}", f"CU{n:03d}", 45) for n in range(12)])
    first = await world.service.allocate()
    assert first.placed == 12 and set(first.by_agency) <= PRIMARY
    stored = await world.rows(sa.select(P.case_id, P.agency_id, P.tier, P.decision_id))
    decisions = {r.id: r for r in await world.rows(sa.select(DECISIONS))}
    for case_id, agency_id, tier, decision_id in stored:
        assert tier == "primary"
        assert decisions[decision_id].chosen_agency == agency_id
        assert json.loads(decisions[decision_id].case_ids) == [case_id]

    world.at(T0 + DAY)
    had = {
        f"AC{n:03d}": await world.agency_outcome(f"AC{n:03d}", "returned", "return")
        for n in range(10)
    }
    rejected_by = await world.agency_outcome("AC010", "rejected", "reject")

    world.at(T0 + 3 * DAY)
    waiting = await world.service.allocate()
    # The rejected case goes to the other primary agency at once (no cool-off for a reject).
    assert waiting.placed == 1
    [(again,)] = await world.rows(
        sa.select(P.agency_id).where(P.case_id == "AC010", P.state == "placed")
    )
    assert again in PRIMARY - {rejected_by}
    assert waiting.reasons == Counter({"cooling_off": 10})
    until = (T0 + DAY + 7 * DAY).date().isoformat()
    reasons = dict(await world.rows(sa.select(C.id, C.unallocated_reason).where(C.id.in_(had))))
    assert set(reasons.values()) == {f"cooling off until {until}"}

    world.at(T0 + 9 * DAY)
    second = await world.service.allocate()
    assert second.placed == 10 and second.by_agency == Counter({"AGS": 10})
    rows = await world.rows(
        sa.select(P.id, P.case_id, P.agency_id, P.tier, P.state, P.decision_id).where(
            P.case_id.in_(had)
        )
    )
    by_case: dict[str, list[Any]] = {}
    for row in rows:
        by_case.setdefault(row.case_id, []).append(row)
    for case_id, placements in by_case.items():
        agencies = [p.agency_id for p in placements]
        assert len(agencies) == len(set(agencies)) == 2  # never back to the same agency
        [new] = [p for p in placements if p.state == "placed"]
        assert (new.agency_id, new.tier, new.id) == ("AGS", "secondary", f"PL-{case_id}-2")
        assert new.decision_id is not None and had[case_id] in agencies
    statuses = dict(await world.rows(sa.select(C.id, C.status).where(C.id.in_(had))))
    assert set(statuses.values()) == {"placed"}
    cleared = await world.rows(sa.select(C.unallocated_reason).where(C.id.in_(had)))
    assert {r for (r,) in cleared} == {None}
    # The placing decisions name the agencies that had the cases.
    [decision] = await world.rows(
        sa.select(DECISIONS).where(D.round_id == second.round_id, D.case_ids == '["AC000"]')
    )
    verdicts = {c["agency"]: c["verdict"] for c in json.loads(decision.candidates)}
    assert verdicts[had["AC000"]] == "had this case before"
    assert verdicts["LAW"] == "bucket M2 not in contract"
    assert decision.tier == "secondary" and decision.chosen_agency == "AGS"

    # Returned again from the secondary tier: the legal firm does not take M2, so no next tier.
    world.at(T0 + 10 * DAY)
    await world.agency_outcome("AC000", "returned", "return")
    world.at(T0 + 20 * DAY)
    third = await world.service.allocate()
    assert third.placed == 0 and third.reasons == Counter({"no_next_tier": 1})
    [(reason,)] = await world.rows(sa.select(C.unallocated_reason).where(C.id == "AC000"))
    assert reason == "no agency after tier secondary can take it"


async def test_held_not_overdue_and_zero_balance_cases_are_never_placed(world: World) -> None:
    await world.intake([account(f"AC{n}", f"CU{n}", 45) for n in ("HOLD", "DPD0", "ZERO", "FINE")])
    now = to_datetime(world.clock.now())
    # Whatever intake made of them, the allocation itself refuses them.
    async with world.gateway.db.transaction() as conn:
        await conn.execute(CASES.update().where(C.id == "ACDPD0").values(dpd=0))
        await conn.execute(CASES.update().where(C.id == "ACZERO").values(balance_minor=0))
        await conn.execute(
            HOLDS.insert().values(
                case_id="ACHOLD",
                code="DECEASED",
                source="ops",
                placed_by="ops:test",
                placed_at=now,
            )
        )
    report = await world.service.allocate()
    assert report.placed == 1
    assert report.reasons == Counter({"held": 1, "not_overdue": 1, "nothing_owed": 1})
    placed = await world.rows(sa.select(P.case_id))
    assert placed == [("ACFINE",)]
    reasons = dict(await world.rows(sa.select(C.id, C.unallocated_reason)))
    assert reasons == {
        "ACHOLD": "on hold: DECEASED",
        "ACDPD0": "not overdue (0 days past due)",
        "ACZERO": "nothing owed (balance 0.00)",
        "ACFINE": None,
    }
    # Released, the held case is placed by the next round.
    async with world.gateway.db.transaction() as conn:
        await conn.execute(HOLDS.update().values(released_at=now, released_by="ops:test"))
    again = await world.service.allocate()
    assert again.placed == 1 and again.assignments[0].case_id == "ACHOLD"


@pytest.mark.parametrize("mixed", ["worst", "split"])
async def test_a_debtor_with_m1_and_legal_accounts_is_placed(
    world: World, mixed: Literal["worst", "split"]
) -> None:
    await world.intake([account("ACM1", "CUMIX", 10), account("ACLG", "CUMIX", 400)])
    report = await world.service.allocate()
    assert report.placed == 2 and report.unallocated == 0
    rows = {
        r.case_id: r
        for r in await world.rows(
            sa.select(P.case_id, P.agency_id, P.tier, P.decision_id, C.status, C.bucket).join(
                CASES, C.id == P.case_id
            )
        )
    }
    assert (rows["ACM1"].bucket, rows["ACLG"].bucket) == ("M1", "LEGAL")
    assert (rows["ACLG"].agency_id, rows["ACLG"].status) == ("LAW", "legal")
    decisions = {r.id: r for r in await world.rows(sa.select(DECISIONS))}
    if mixed == "worst":
        assert (rows["ACM1"].agency_id, rows["ACM1"].status) == ("LAW", "legal")
        [decision] = decisions.values()
        assert (decision.rule, decision.bucket, decision.tier) == ("worst", "LEGAL", "legal")
        assert rows["ACM1"].decision_id == rows["ACLG"].decision_id == decision.id
        assert decision.reason == "mixed buckets M1, LEGAL: the worst, LEGAL, decides for all"
    else:
        assert rows["ACM1"].agency_id in PRIMARY and rows["ACM1"].status == "placed"
        assert len(decisions) == 2 and {d.rule for d in decisions.values()} == {"split"}
        m1 = decisions[rows["ACM1"].decision_id]
        assert (m1.bucket, m1.tier, json.loads(m1.case_ids)) == ("M1", "primary", ["ACM1"])
        assert m1.reason == "mixed buckets M1, LEGAL: split by bucket, M1 placed on its own"
        assert decisions[rows["ACLG"].decision_id].chosen_agency == "LAW"


async def test_unplaced_groups_are_explained_once_until_their_reason_changes(
    world: World,
) -> None:
    await world.intake(
        [account("ACUSD", "CUUSD", 45, currency="USD"), account("ACCNY", "CUCNY", 45)]
    )
    first = await world.service.allocate()
    assert first.placed == 1 and first.reasons == Counter({"no_eligible_agency": 1})
    [decision] = await world.rows(sa.select(DECISIONS).where(D.chosen_agency.is_(None)))
    assert decision.round_id == first.round_id and json.loads(decision.case_ids) == ["ACUSD"]
    candidates = json.loads(decision.candidates)
    assert {c["agency"] for c in candidates} == set(TIERS)
    assert {c["verdict"] for c in candidates} == {"currency USD not in contract"}
    assert decision.reason.startswith("no agency can take it (AGP1: currency USD not in contract")
    [(stored,)] = await world.rows(sa.select(C.unallocated_reason).where(C.id == "ACUSD"))
    assert stored == decision.reason
    before = await world.rows(sa.select(sa.func.count()).select_from(DECISIONS))
    second = await world.service.allocate()
    assert second.reasons == first.reasons and second.decisions == 0
    assert await world.rows(sa.select(sa.func.count()).select_from(DECISIONS)) == before


async def table_counts(world: World) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for table in (PLACEMENTS, DECISIONS, HISTORY, OUTBOX, LEAVES):
        [(n,)] = await world.rows(sa.select(sa.func.count()).select_from(table))
        counts[table.name] = n
    counts["cases"] = sorted(
        await world.rows(sa.select(C.id, C.status, C.unallocated_reason, C.updated_at))
    )
    return counts


async def test_preview_writes_nothing_and_predicts_the_real_round(world: World) -> None:
    await world.intake(list(generate_accounts(80, seed=21, as_of=T0.date())))
    await world.service.allocate()
    world.at(T0 + DAY)
    placed = [r.case_id for r in await world.rows(sa.select(P.case_id).order_by(P.case_id))]
    for case_id in placed[:15]:
        await world.agency_outcome(case_id, "returned", "return")
    for case_id in placed[15:18]:
        await world.agency_outcome(case_id, "rejected", "reject")
    world.at(T0 + 9 * DAY)
    await world.intake(list(generate_accounts(40, seed=22, as_of=(T0 + 9 * DAY).date())))

    before = await table_counts(world)
    preview = await world.service.preview()
    assert await table_counts(world) == before
    assert preview.round_id is None and preview.placed > 15

    real = await world.service.allocate()
    assert real.assignments == preview.assignments
    assert real.by_agency_bucket == preview.by_agency_bucket
    assert real.reasons == preview.reasons and real.unallocated == preview.unallocated
    stored = {
        (r.case_id, r.agency_id, r.strategy, r.tier)
        for r in await world.rows(
            sa.select(P.case_id, P.agency_id, P.strategy, P.tier).where(P.placed_at == T0 + 9 * DAY)
        )
    }
    assert stored == {(a.case_id, a.agency_id, a.strategy, a.tier) for a in preview.assignments}


async def test_a_case_held_between_the_plan_and_the_write_is_left_for_the_next_round(
    world: World,
) -> None:
    """The round reads, then writes: a hold (or close, or amendment) committed in between
    must win, so the write re-checks each case and drops the groups that changed."""
    await world.intake([account(f"AC{n:03d}", f"CU{n:03d}", 45) for n in range(4)])
    now = to_datetime(world.clock.now())
    found, result, report = await world.service.plan(now)
    assert report.placed == 4
    world.at(T0 + timedelta(seconds=1))
    async with world.gateway.db.transaction() as conn:
        await move_cases(
            conn,
            [CaseMove("AC002", "hold", "ops:test", "DECEASED")],
            now=to_datetime(world.clock.now()),
            strict=True,
        )
    written = await world.service.commit(found, result, report, now=now)
    assert written.placed == 3 and written.changed == 1
    assert sum(written.by_agency.values()) == 3 and 0 not in written.by_agency.values()
    placed = {r.case_id for r in await world.rows(sa.select(P.case_id))}
    assert placed == {"AC000", "AC001", "AC003"}
    [(status,)] = await world.rows(sa.select(C.status).where(C.id == "AC002"))
    assert status == "held"


async def test_an_agency_contract_term_sets_return_by(world: World) -> None:
    short = {
        agency_id: agency.model_copy(update={"placement_days": 30})
        if agency_id == "AGP1"
        else agency
        for agency_id, agency in world.gateway.agencies.items()
    }
    service = PlacementService(
        db=world.gateway.db,
        agencies=short,
        pii=world.gateway.pii,
        settings=world.allocation,
        clock=world.clock,
    )
    await world.intake([account(f"AC{n:03d}", f"CU{n:03d}", 45) for n in range(12)])
    await service.allocate()
    terms = {
        agency_id: return_by
        for agency_id, return_by in await world.rows(sa.select(P.agency_id, P.return_by))
    }
    assert set(terms) == PRIMARY
    assert terms["AGP1"] == (T0 + 30 * DAY).date()
    assert terms["AGP2"] == (T0 + world.allocation.placement_days * DAY).date()
