"""A small money world for statement tests: an agency with a commission schedule, cases and
placements, and ``attributions`` rows written directly (MONEY's pass writes them for real)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from gateway.clock import ManualClock
from gateway.config.agencies import AgencyConfig
from gateway.settlement.statements import StatementService
from gateway.store.database import Database
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import AgencyEventRow, Case, InboundMessage, Placement
from tests.factories import agency_config

NOW = datetime(2026, 4, 3, 9, 0, tzinfo=UTC)

SCHEDULE: dict[str, Any] = {
    "periods": [
        {
            "from": date(2026, 1, 1),
            "to": date(2026, 12, 31),
            "currency": "CNY",
            "rules": [
                {"name": "legal", "legal": True, "rate_bps": 2500},
                {"name": "fresh M1", "buckets": ["M1"], "age_max_days": 30, "rate_bps": 1200},
                {"name": "deep", "dpd_min": 91, "rate_bps": 1800},
                {"name": "base", "rate_bps": 1000},
            ],
            "tiers": [
                {"from_minor": 0, "bonus_bps": 0, "name": "T0"},
                {"from_minor": 500_000, "bonus_bps": 150, "name": "T1"},
            ],
            "line_cap_minor": 40_000,
            "monthly_minimum_minor": 1_000,
        }
    ],
    "legal_fees": {"mode": "capped", "court_cap_minor": 200_000},
}


def agency(agency_id: str = "FIRM", commission: Mapping[str, Any] | None = None) -> AgencyConfig:
    return agency_config(id=agency_id, commission=SCHEDULE if commission is None else commission)


@dataclass(frozen=True)
class Seeded:
    """One placement with one attributed payment."""

    placement_id: str
    bucket: str
    due: date
    placed: date
    tier: str
    paid_on: date
    amount_minor: int
    state: str = "active"
    legal_event_on: date | None = None


async def seed(db: Database, agency_id: str, rows: list[Seeded]) -> list[int]:
    """Cases, placements and attributions (ids returned) for ``rows``."""
    ids = []
    async with db.transaction() as conn:
        for n, r in enumerate(rows):
            case_id = f"C-{r.placement_id}"
            await conn.execute(
                sa.insert(Case.__table__).values(  # type: ignore[attr-defined]
                    id=case_id,
                    debtor_id=f"D{n}",
                    pii=b"x",
                    content_mac="m",
                    region="CN-11",
                    product="loan",
                    currency="CNY",
                    principal_minor=10**7,
                    balance_minor=10**7,
                    dpd=(r.placed - r.due).days,
                    credit_grade="C",
                    due_date=r.due,
                    bucket=r.bucket,
                    status="placed",
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            await conn.execute(
                sa.insert(Placement.__table__).values(  # type: ignore[attr-defined]
                    id=r.placement_id,
                    case_id=case_id,
                    agency_id=agency_id,
                    state="acked",
                    currency="CNY",
                    balance_minor=10**7,
                    collected_minor=0,
                    placed_at=datetime(r.placed.year, r.placed.month, r.placed.day, tzinfo=UTC),
                    return_by=date(2027, 1, 1),
                    tier=r.tier,
                    updated_at=NOW,
                )
            )
            if r.legal_event_on is not None:
                inbound = await conn.execute(
                    sa.insert(InboundMessage.__table__)  # type: ignore[attr-defined]
                    .values(
                        agency_id=agency_id,
                        channel="email",
                        external_id=f"m{n}",
                        body_sha256="0" * 64,
                        body=b"{}",
                        signature_scheme="v1",
                        status="accepted",
                        response_status=200,
                        response_body=b"",
                        received_at=NOW,
                    )
                    .returning(sa.text("id"))
                )
                at = datetime(
                    r.legal_event_on.year,
                    r.legal_event_on.month,
                    r.legal_event_on.day,
                    tzinfo=UTC,
                )
                await conn.execute(
                    sa.insert(AgencyEventRow.__table__).values(  # type: ignore[attr-defined]
                        inbound_id=inbound.scalar_one(),
                        agency_id=agency_id,
                        placement_id=r.placement_id,
                        event_type="legal.action",
                        occurred_at=at,
                        data="{}",
                        applied=True,
                        received_at=NOW,
                    )
                )
            result = await conn.execute(
                sa.insert(Attribution.__table__)  # type: ignore[attr-defined]
                .values(
                    receipt_id=1000 + n,
                    case_id=case_id,
                    placement_id=r.placement_id,
                    agency_id=agency_id,
                    amount_minor=r.amount_minor,
                    currency="CNY",
                    share_bps=10_000,
                    paid_on=r.paid_on,
                    rule="held",
                    state=r.state,
                    created_at=NOW,
                )
                .returning(sa.text("id"))
            )
            ids.append(int(result.scalar_one()))
    return ids


def service(db: Database, *agencies: AgencyConfig, **kwargs: Any) -> StatementService:
    return StatementService(
        db,
        {a.id: a for a in agencies},
        ManualClock(NOW.timestamp()),
        **kwargs,
    )
