"""Monthly settlement statements over the store, on both databases: build from attribution
rows, recompute independently to the cent, adjust, fees, issue, confirm (locked, settled)
and dispute (a mismatch with the lines)."""

import hashlib
import json
from datetime import date

import pytest
import sqlalchemy as sa

from gateway.errors import FourEyesRefused, SettlementError
from gateway.settlement.month import settle_month
from gateway.settlement.views import canonical, canonical_bytes
from gateway.store.database import Database
from gateway.store.settlement_tables import Attribution
from gateway.store.tables import EvidenceLeaf, Mismatch
from tests.settlement_world import SCHEDULE, Seeded, agency, seed, service

MARCH = [
    # placement, bucket, due, placed, tier, paid_on, amount
    Seeded("P1", "M1", date(2026, 2, 1), date(2026, 3, 1), "primary", date(2026, 3, 5), 300_000),
    Seeded("P2", "M1", date(2026, 1, 1), date(2026, 1, 20), "primary", date(2026, 3, 9), 123_457),
    Seeded("P3", "M4-6", date(2025, 10, 1), date(2026, 2, 1), "primary", date(2026, 3, 11), 99_999),
    Seeded("P4", "LEGAL", date(2025, 6, 1), date(2026, 2, 1), "legal", date(2026, 3, 20), 250_001),
    Seeded(
        "P5",
        "M2",
        date(2026, 1, 1),
        date(2026, 2, 1),
        "primary",
        date(2026, 3, 21),
        5,
        legal_event_on=date(2026, 3, 15),
    ),
    Seeded(
        "P6",
        "M2",
        date(2026, 1, 1),
        date(2026, 2, 1),
        "primary",
        date(2026, 3, 25),
        70_000,
        state="disputed",
    ),
    Seeded("P7", "M2", date(2026, 1, 1), date(2026, 2, 1), "primary", date(2026, 4, 1), 80_000),
]


def recompute(rows: list[Seeded]) -> tuple[list[int], int]:
    """The statement's line commissions and commission total, from the schedule in
    tests/settlement_world.py and the seeded rows, without the product's commission code."""
    period = SCHEDULE["periods"][0]
    march = [r for r in rows if r.paid_on.month == 3 and r.state == "active"]
    recovered = sum(r.amount_minor for r in march)
    bonus = max(t["bonus_bps"] for t in period["tiers"] if recovered >= t["from_minor"])
    out = []
    for r in march:
        dpd = (r.placed - r.due).days
        age = (r.paid_on - r.placed).days
        legal = r.tier == "legal" or (
            r.legal_event_on is not None and r.legal_event_on <= r.paid_on
        )
        if legal:
            bps = 2500
        elif r.bucket == "M1" and age <= 30:
            bps = 1200
        elif dpd >= 91:
            bps = 1800
        else:
            bps = 1000
        exact = r.amount_minor * (bps + bonus)
        cents, rest = divmod(exact, 10_000)
        cents += 1 if rest * 2 >= 10_000 else 0
        out.append(min(cents, 40_000))
    return out, max(sum(out), 1_000)


async def _statement(db: Database, sid: int) -> dict[str, object]:
    async with db.snapshot() as conn:
        row = (
            await conn.execute(
                sa.text("SELECT * FROM settlement_statements WHERE id = :i"), {"i": sid}
            )
        ).first()
    assert row is not None
    return dict(row._mapping)


async def test_a_month_recomputed_independently_matches_to_the_cent(db: Database) -> None:
    firm = agency()
    await seed(db, firm.id, MARCH)
    statements = service(db, firm)
    sid = await statements.build(firm.id, "2026-03", actor="ops:ann")
    view = await statements.show(sid)
    lines, commission = recompute(MARCH)
    paid = [ln for ln in view.lines if not ln["withheld"]]
    assert [ln["commission_minor"] for ln in paid] == lines
    assert [ln["rule"] for ln in paid] == ["fresh M1", "base", "deep", "legal", "legal"]
    withheld = [ln for ln in view.lines if ln["withheld"]]
    assert [(ln["placement_id"], ln["commission_minor"]) for ln in withheld] == [("P6", None)]
    st = view.statement
    assert st["tier"] == "T1"
    assert st["lines_minor"] == sum(lines) and st["total_minor"] == commission
    assert st["withheld_minor"] == 70_000
    assert st["recovered_minor"] == sum(r.amount_minor for r in MARCH[:5])


async def test_adjustments_and_fees_enter_the_total_and_rebuild_keeps_them(db: Database) -> None:
    firm = agency()
    await seed(db, firm.id, MARCH[:2])
    statements = service(db, firm)
    sid = await statements.build(firm.id, "2026-03", actor="ops:ann")
    before = int(str((await _statement(db, sid))["total_minor"]))
    await statements.adjust(sid, -1_234, "duplicate receipt 1001 credited twice", actor="ops:ann")
    await statements.add_fee(
        firm.id,
        "C-P1",
        "court",
        250_000,
        receipt_ref="(2026)京0105民初123号",
        incurred_on=date(2026, 3, 2),
        actor="ops:ann",
    )
    await statements.add_fee(
        firm.id,
        "C-P1",
        "lawyer",
        30_000,
        receipt_ref="INV-9",
        incurred_on=date(2026, 3, 3),
        actor="ops:ann",
    )
    assert await statements.build(firm.id, "2026-03", actor="ops:ann") == sid
    st = await _statement(db, sid)
    assert (st["adjustments_minor"], st["fees_minor"]) == (-1_234, 200_000 + 30_000)
    assert st["total_minor"] == before - 1_234 + 230_000
    with pytest.raises(SettlementError, match="needs a reason"):
        await statements.adjust(sid, 5, " ", actor="ops:ann")
    with pytest.raises(SettlementError, match="not one of court, lawyer"):
        await statements.add_fee(
            firm.id,
            "C-P1",
            "bribe",
            1,
            receipt_ref="x",
            incurred_on=date(2026, 3, 3),
            actor="ops:ann",
        )


def _documents(view: object, sha: str) -> list[tuple[str, str, bytes]]:
    return [("xlsx", "s.xlsx", b"xlsx:" + sha.encode()), ("pdf", "s.pdf", b"pdf:" + sha.encode())]


async def test_issue_then_confirm_locks_settles_and_evidences(db: Database) -> None:
    firm = agency()
    ids = await seed(db, firm.id, MARCH)
    statements = service(db, firm, renderer=_documents)
    sid = await statements.build(firm.id, "2026-03", actor="ops:ann")
    sha = await statements.issue(sid, actor="ops:bob")
    view = await statements.show(sid)
    assert hashlib.sha256(canonical_bytes(canonical(view))).hexdigest() == sha
    assert {d["kind"]: d["sha256"] for d in view.documents} == {
        "pdf": hashlib.sha256(b"pdf:" + sha.encode()).hexdigest(),
        "xlsx": hashlib.sha256(b"xlsx:" + sha.encode()).hexdigest(),
    }
    with pytest.raises(SettlementError, match="revision 1, not 2"):
        await statements.confirm(firm.id, sid, 2, sha)
    with pytest.raises(SettlementError, match="confirmation names"):
        await statements.confirm(firm.id, sid, 1, "0" * 64)
    await statements.confirm(firm.id, sid, 1, sha)
    with pytest.raises(SettlementError, match="confirmed: cannot adjust"):
        await statements.adjust(sid, 1, "late", actor="ops:ann")
    with pytest.raises(SettlementError, match="confirmed: cannot build"):
        await statements.build(firm.id, "2026-03", actor="ops:ann")
    with pytest.raises(SettlementError, match="no longer be added"):
        await statements.add_fee(
            firm.id,
            "C-P1",
            "court",
            1,
            receipt_ref="r",
            incurred_on=date(2026, 3, 9),
            actor="ops:ann",
        )
    async with db.snapshot() as conn:
        A = Attribution.__table__.c  # type: ignore[attr-defined]
        states: dict[int, str] = dict(
            (await conn.execute(sa.select(A.id, A.state).where(A.statement_id == sid))).all()
        )
        leaves = (
            (
                await conn.execute(
                    sa.select(EvidenceLeaf.__table__.c.body).where(  # type: ignore[attr-defined]
                        EvidenceLeaf.__table__.c.ref == f"settlement:{sid}"  # type: ignore[attr-defined]
                    )
                )
            )
            .scalars()
            .all()
        )
    assert states == {i: "settled" for i in ids[:5]}  # not the disputed one, not April's
    actions = [json.loads(bytes(b))["action"] for b in leaves]
    assert actions == ["issued", "confirmed"]
    assert all(sha in bytes(b).decode() for b in leaves)


async def test_dispute_opens_a_mismatch_and_a_new_revision_follows(db: Database) -> None:
    firm = agency()
    await seed(db, firm.id, MARCH)
    statements = service(db, firm)
    sid = await statements.build(firm.id, "2026-03", actor="ops:ann")
    await statements.adjust(sid, 500, "agreed bonus", actor="ops:ann")
    await statements.issue(sid, actor="ops:bob")
    with pytest.raises(SettlementError, match="no line"):
        await statements.dispute(firm.id, sid, 1, [99], reason="?", claimed_minor=0)
    await statements.dispute(
        firm.id, sid, 1, [2], reason="paid before recall", claimed_minor=20_000
    )
    async with db.snapshot() as conn:
        M = Mismatch.__table__.c  # type: ignore[attr-defined]
        row = (await conn.execute(sa.select(M.kind, M.severity, M.placement_id, M.theirs))).one()
    assert (row.kind, row.severity, row.placement_id) == ("settlement_disputed", "medium", "P2")
    assert json.loads(row.theirs) == {
        "line_nos": [2],
        "reason": "paid before recall",
        "claimed_minor": 20_000,
    }
    with pytest.raises(SettlementError, match="disputed: cannot confirm"):
        await statements.confirm(firm.id, sid, 1, "x")
    new = await statements.build(firm.id, "2026-03", actor="ops:ann")
    assert new != sid
    assert (await _statement(db, sid))["state"] == "superseded"
    assert (await _statement(db, new))["revision"] == 2
    assert (await _statement(db, new))["adjustments_minor"] == 500  # carried over


async def test_four_eyes_above_the_limit(db: Database) -> None:
    firm = agency(commission={**SCHEDULE, "four_eyes_above_minor": 100})
    await seed(db, firm.id, MARCH[:1])
    statements = service(db, firm)
    sid = await statements.build(firm.id, "2026-03", actor="ops:ann")
    with pytest.raises(FourEyesRefused, match="another person must issue"):
        await statements.issue(sid, actor="ops:ann")
    await statements.issue(sid, actor="ops:bob")


async def test_the_demo_settles_one_month_confirmed_and_one_disputed(db: Database) -> None:
    firm = agency()
    await seed(db, firm.id, MARCH)
    statements = service(db, firm)
    march = await settle_month(statements, firm.id, "2026-03")
    assert (march.state, march.lines) == ("confirmed", 6)
    april = await settle_month(statements, firm.id, "2026-04", dispute=[1], claimed_minor=9_999)
    assert april.state == "disputed" and april.disputed_lines == (1,)
