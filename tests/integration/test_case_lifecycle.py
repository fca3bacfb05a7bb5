"""Every step of the case lifecycle table on a real store (SQLite, and PostgreSQL when
configured): each allowed (status, event) moves the case to the table's status and writes
one ``case_history`` row (and a ``case`` evidence leaf when no packet attests the step); each
step the table does not allow is refused and writes nothing, or raises in strict mode."""

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from gateway.cases.history import ATTESTED_BY_PACKETS, CaseMove, move_cases
from gateway.errors import GatewayError, NotFound
from gateway.lifecycle import CASE_STATES, CASE_TRANSITIONS
from gateway.store.case_tables import CaseHistory
from gateway.store.database import Database
from gateway.store.tables import Case, EvidenceLeaf

CASES = Case.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

EVENTS = sorted({event for moves in CASE_TRANSITIONS.values() for event in moves})
ALLOWED = [
    (status, event, after)
    for status, moves in CASE_TRANSITIONS.items()
    for event, after in moves.items()
]
REFUSED = [
    (status, event)
    for status in CASE_STATES
    for event in EVENTS
    if event not in CASE_TRANSITIONS[status]
]


def case_row(case_id: str, status: str) -> dict[str, object]:
    return {
        "id": case_id,
        "debtor_id": f"D-{case_id}",
        "pii": b"\x00",
        "content_mac": "-",
        "region": "CN-31",
        "product": "CASH_LOAN",
        "currency": "CNY",
        "principal_minor": 100_000,
        "balance_minor": 50_000,
        "dpd": 40,
        "credit_grade": "B",
        "due_date": date(2026, 1, 20),
        "bucket": "M2",
        "status": status,
        "created_at": NOW,
        "updated_at": NOW,
    }


def test_the_table_covers_every_status() -> None:
    assert set(CASE_TRANSITIONS) == set(CASE_STATES)
    for moves in CASE_TRANSITIONS.values():
        assert set(moves.values()) <= set(CASE_STATES)
    assert len(ALLOWED) + len(REFUSED) == len(CASE_STATES) * len(EVENTS)


async def test_every_allowed_step_moves_the_case_and_is_recorded(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            CASES.insert(), [case_row(f"C{n:03d}", s) for n, (s, _e, _a) in enumerate(ALLOWED)]
        )
    async with db.transaction() as conn:
        result = await move_cases(
            conn,
            [
                CaseMove(f"C{n:03d}", event, "ops:test", f"{status} {event}", placement_id=None)
                for n, (status, event, _after) in enumerate(ALLOWED)
            ],
            now=NOW,
            strict=True,
        )
    assert result.refused == [] and result.missing == []
    async with db.connect() as conn:
        statuses: dict[str, str] = {
            str(i): str(st)
            for i, st in (await conn.execute(sa.select(CASES.c.id, CASES.c.status))).all()
        }
        history = {r.case_id: r for r in (await conn.execute(sa.select(HISTORY))).all()}
        leaves = [
            r.ref
            for r in (await conn.execute(sa.select(LEAVES.c.ref).where(LEAVES.c.kind == "case")))
        ]
    for n, (status, event, after) in enumerate(ALLOWED):
        case_id = f"C{n:03d}"
        assert statuses[case_id] == after, (status, event)
        row = history[case_id]
        assert (row.from_status, row.to_status, row.event, row.actor) == (
            status,
            after,
            event,
            "ops:test",
        )
    attested = [
        f"case:C{n:03d}" for n, (_s, e, _a) in enumerate(ALLOWED) if e not in ATTESTED_BY_PACKETS
    ]
    assert sorted(leaves) == sorted(attested)


async def test_every_refused_step_writes_nothing(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            CASES.insert(), [case_row(f"R{n:03d}", s) for n, (s, _e) in enumerate(REFUSED)]
        )
    async with db.transaction() as conn:
        result = await move_cases(
            conn,
            [CaseMove(f"R{n:03d}", event, "ops:test") for n, (_s, event) in enumerate(REFUSED)],
            now=NOW,
        )
    assert result.moved == {}
    assert [(m.case_id, status) for m, status in result.refused] == [
        (f"R{n:03d}", status) for n, (status, _e) in enumerate(REFUSED)
    ]
    async with db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(HISTORY))).scalar() == 0
        unchanged: dict[str, str] = {
            str(i): str(st)
            for i, st in (await conn.execute(sa.select(CASES.c.id, CASES.c.status))).all()
        }
    assert unchanged == {f"R{n:03d}": s for n, (s, _e) in enumerate(REFUSED)}


async def test_strict_mode_names_the_case_its_status_and_the_event(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(CASES.insert(), [case_row("W1", "written_off")])
    with pytest.raises(
        GatewayError, match="case W1 is written_off: it cannot take the event 'place'"
    ):
        async with db.transaction() as conn:
            await move_cases(conn, [CaseMove("W1", "place", "allocation")], now=NOW, strict=True)
    with pytest.raises(NotFound, match="case NOPE does not exist"):
        async with db.transaction() as conn:
            await move_cases(conn, [CaseMove("NOPE", "hold", "ops:test")], now=NOW, strict=True)


async def test_several_steps_of_one_case_apply_in_order(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(CASES.insert(), [case_row("S1", "open")])
        result = await move_cases(
            conn,
            [
                CaseMove("S1", "place", "allocation"),
                CaseMove("S1", "return", "agency:AGY"),
                CaseMove("S1", "hold", "intake", "DECEASED"),
                CaseMove("S1", "release", "ops:test"),
            ],
            now=NOW,
            strict=True,
        )
    assert result.moved == {"S1": "open"}
    async with db.connect() as conn:
        steps = (
            await conn.execute(
                sa.select(HISTORY.c.from_status, HISTORY.c.to_status).order_by(HISTORY.c.id)
            )
        ).all()
    assert [tuple(s) for s in steps] == [
        ("open", "placed"),
        ("placed", "returned"),
        ("returned", "held"),
        ("held", "open"),
    ]
