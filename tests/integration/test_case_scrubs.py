"""The lender's file drives the case lifecycle: holds follow the file, paid-off and cured
accounts are closed or recalled and never placed, overdue-again ones reopen (SQLite and
PostgreSQL, through intake, allocation and the composition root's services)."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.case_world import CaseWorld, account, build_case_world


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_case_world(make_config, tmp_path, database_url)
    yield w
    await w.gateway.aclose()


def events(history: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(h["event"], h["to_status"], h["actor"]) for h in history]


async def test_holds_paid_off_and_cured_rows_are_never_placed(world: CaseWorld) -> None:
    report = await world.intake(
        [
            account(0),
            account(1, holds="deceased; DISPUTE"),
            account(2, balance_minor=0),
            account(3, dpd=0),
            account(4, holds="LENDER_X1"),
        ]
    )
    assert (report.inserted, report.rejected, report.holds_added, report.closed) == (5, 0, 3, 2)
    assert await world.allocate() == 1
    statuses = await world.statuses()
    assert statuses == {
        "ACC-0000": "placed",
        "ACC-0001": "held",
        "ACC-0002": "closed",
        "ACC-0003": "closed",
        "ACC-0004": "held",
    }
    assert [(h["code"], h["source"], h["placed_by"]) for h in await world.holds("ACC-0001")] == [
        ("DECEASED", "intake", "intake"),
        ("DISPUTE", "intake", "intake"),
    ]
    [closed] = await world.history("ACC-0002")
    assert (closed["event"], closed["actor"], closed["reason"]) == (
        "close",
        "intake",
        "paid off at the lender",
    )
    [cured] = await world.history("ACC-0003")
    assert cured["reason"] == "cured: 0 days past due"
    assert [p["case_id"] for p in await world.placements()] == ["ACC-0000"]
    # A second round still places none of them.
    assert await world.allocate() == 0


async def test_a_file_without_the_holds_column_imports_as_before(world: CaseWorld) -> None:
    report = await world.intake([account(0), account(1)], holds=False)
    assert (report.inserted, report.rejected, report.holds_added) == (2, 0, 0)
    # The same rows with an empty holds column are the same data: nothing is updated.
    again = await world.intake([account(0), account(1)])
    assert (again.unchanged, again.updated) == (2, 0)


async def test_a_hold_in_a_later_file_recalls_the_placement_with_its_code(
    world: CaseWorld,
) -> None:
    await world.intake([account(0), account(1)])
    assert await world.allocate() == 2
    [placement] = await world.placements("ACC-0000")

    report = await world.intake([account(0, holds="BANKRUPT"), account(1)])
    assert (report.holds_added, report.recalled, report.unchanged) == (1, 1, 1)
    assert await world.status("ACC-0000") == "held"
    assert await world.status("ACC-0001") == "placed"
    [recalled] = await world.placements("ACC-0000")
    assert (recalled["state"], recalled["recall_reason"]) == ("recalled", "BANKRUPT")
    [packet] = await world.packets("placement.recalled")
    assert packet["data"]["placement_id"] == placement["id"]
    assert packet["data"]["reason_code"] == "BANKRUPT"
    assert events(await world.history("ACC-0000"))[-1] == ("hold", "held", "intake")
    # Held, it is not placed again.
    assert await world.allocate() == 0


async def test_holds_follow_the_file_and_leave_ops_holds_alone(world: CaseWorld) -> None:
    await world.intake([account(0, holds="DISPUTE;COMPLAINT")])
    assert await world.status("ACC-0000") == "held"

    # One code dropped: released by intake, the case stays held by the other.
    report = await world.intake([account(0, holds="DISPUTE", dpd=41)])
    assert (report.holds_added, report.holds_released) == (0, 1)
    assert [h["code"] for h in await world.holds("ACC-0000")] == ["DISPUTE"]
    [complaint] = [h for h in await world.holds("ACC-0000", standing=False) if h["released_at"]]
    assert (complaint["code"], complaint["released_by"]) == ("COMPLAINT", "intake")
    assert await world.status("ACC-0000") == "held"
    # The release moved nothing, so it has its own leaf.
    [leaf] = await world.leaves("hold", "case:ACC-0000")
    assert (leaf["action"], leaf["code"], leaf["actor"]) == ("release", "COMPLAINT", "intake")

    await world.gateway.cases.hold("ACC-0000", "LITIGATION_HOLD", actor="ops:olga")
    # The lender lists none any more: its DISPUTE goes, the ops hold stays.
    report = await world.intake([account(0, dpd=42)])
    assert report.holds_released == 1
    standing = await world.holds("ACC-0000")
    assert [(h["code"], h["source"]) for h in standing] == [("LITIGATION_HOLD", "ops")]
    assert await world.status("ACC-0000") == "held"

    await world.gateway.cases.release("ACC-0000", "LITIGATION_HOLD", actor="ops:olga")
    assert await world.status("ACC-0000") == "open"
    assert await world.allocate() == 1


async def test_the_last_intake_hold_released_opens_the_case(world: CaseWorld) -> None:
    await world.intake([account(0, holds="STUDENT")])
    report = await world.intake([account(0, dpd=41)])
    assert report.holds_released == 1
    assert await world.status("ACC-0000") == "open"
    assert events(await world.history("ACC-0000")) == [
        ("hold", "held", "intake"),
        ("release", "open", "intake"),
    ]
    assert await world.allocate() == 1


@pytest.mark.parametrize(
    ("change", "code"),
    [({"balance_minor": 0}, "PAID_OFF"), ({"dpd": 0}, "CURED")],
)
async def test_a_placed_case_paid_off_or_cured_is_recalled_and_closed(
    world: CaseWorld, change: dict[str, object], code: str
) -> None:
    await world.intake([account(0)])
    assert await world.allocate() == 1
    report = await world.intake([account(0, **change)])
    assert (report.closed, report.recalled, report.amended) == (1, 1, 0)
    assert await world.status("ACC-0000") == "closed"
    [placement] = await world.placements("ACC-0000")
    assert (placement["state"], placement["recall_reason"]) == ("recalled", code)
    [packet] = await world.packets("placement.recalled")
    assert packet["data"]["reason_code"] == code
    assert await world.packets("placement.amended") == []
    assert events(await world.history("ACC-0000"))[-1] == ("close", "closed", "intake")
    assert await world.allocate() == 0


async def test_a_closed_case_overdue_again_reopens(world: CaseWorld) -> None:
    await world.intake([account(0, dpd=0), account(1, balance_minor=0, holds="DECEASED")])
    assert await world.statuses() == {"ACC-0000": "closed", "ACC-0001": "closed"}
    report = await world.intake(
        [account(0, dpd=3), account(1, balance_minor=700, holds="DECEASED")]
    )
    assert report.reopened == 2
    # The first is open and placed; the second reopens into its standing hold.
    assert await world.statuses() == {"ACC-0000": "open", "ACC-0001": "held"}
    assert events(await world.history("ACC-0001")) == [
        ("close", "closed", "intake"),
        ("reopen", "open", "intake"),
        ("hold", "held", "intake"),
    ]
    assert await world.allocate() == 1


async def test_reimporting_the_same_file_changes_nothing(world: CaseWorld) -> None:
    rows = [account(0, holds="DISPUTE"), account(1, dpd=0), account(2)]
    await world.intake(rows)
    before = [await world.history(f"ACC-{n:04d}") for n in range(3)]
    report = await world.intake(rows)
    assert (report.unchanged, report.holds_added, report.holds_released, report.closed) == (
        3,
        0,
        0,
        0,
    )
    assert [await world.history(f"ACC-{n:04d}") for n in range(3)] == before
