"""Intake against a real SQLite file: insert, no-op re-import, changes, amendments, privacy."""

import csv
import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.allocation.placements import PlacementService
from gateway.clock import ManualClock
from gateway.config.agencies import parse_agency
from gateway.config.settings import AllocationSection
from gateway.demo import data as demo_data
from gateway.errors import IntakeError
from gateway.intake.reader import FIELDS
from gateway.intake.service import IntakeReport, import_file
from gateway.privacy.pii import PiiKeyRing
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import Case, EvidenceLeaf, OutboxItem, Placement

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]

START = datetime(2026, 1, 15, 8, 0, tzinfo=UTC).timestamp()
SECRET_NAME = "王秘密"
SECRET_ID = "110101199912319876"
SECRET_PHONE = "+8613812345678"
AGENCY = parse_agency(
    {
        "id": "AG_EAST",
        "name": "East Recovery",
        "channel": "webhook",
        "endpoint": {"url": "https://east.example/hooks"},
        "signing": {"keys": [{"env": "AG_EAST_SIGNING"}]},
        "inbound": {"keys": [{"env": "AG_EAST_INBOUND"}]},
        "eligibility": {"buckets": ["M1", "M2", "M3"]},
        "capacity": {"max_open_placements": 100},
    }
)


def account(n: int, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "account_id": f"ACC-{n:07d}",
        "debtor_id": f"DEB-{n // 2:07d}",
        "name": f"Debtor {n}",
        "national_id": f"11010119900101{n % 10_000:04d}",
        "phones": f"+86138{n % 100_000_000:08d};+86139{(n * 7) % 100_000_000:08d}",
        "address": f"{n} Example Road, Pudong",
        "region": "CN-31",
        "product": "cash-loan",
        "currency": "CNY",
        "principal_minor": 1_000_000 + n,
        "balance_minor": 500_000 + n,
        "dpd": 1 + n % 400,
        "credit_grade": "ABCDE"[n % 5],
        "due_date": (date(2025, 12, 1) - timedelta(days=n % 400)).isoformat(),
    }
    row.update(overrides)
    return row


def write_csv(path: Path, rows: Iterator[dict[str, object]] | list[dict[str, object]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        for row in rows:
            writer.writerow([row[f] for f in FIELDS])
    return path


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


@dataclass
class Env:
    db: Database
    db_path: Path
    pii: PiiKeyRing
    placements: PlacementService
    allocation: AllocationSection
    clock: ManualClock

    async def run(self, path: Path, **kwargs: object) -> IntakeReport:
        return await import_file(
            path,
            db=self.db,
            pii=self.pii,
            placements=self.placements,
            allocation=self.allocation,
            clock=self.clock,
            confirmation="off",
            **kwargs,  # type: ignore[arg-type]
        )

    async def scalar(self, stmt: sa.Select[Any]) -> int:
        async with self.db.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def count(self, table: sa.Table) -> int:
        return await self.scalar(sa.select(sa.func.count()).select_from(table))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    db_path = tmp_path / "g.db"
    db = Database("sqlite:///" + str(db_path))
    await upgrade(db)
    pii = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))
    allocation = AllocationSection()
    clock = ManualClock(START)
    placements = PlacementService(
        db=db, agencies={AGENCY.id: AGENCY}, pii=pii, settings=allocation, clock=clock
    )
    yield Env(db, db_path, pii, placements, allocation, clock)
    await db.dispose()


async def intake_leaves(env: Env) -> list[dict[str, object]]:
    async with env.db.connect() as conn:
        bodies = (
            await conn.execute(
                sa.select(LEAVES.c.body).where(LEAVES.c.kind == "intake").order_by(LEAVES.c.seq)
            )
        ).scalars()
        return [json.loads(b) for b in bodies]


async def test_import_inserts_cases_with_encrypted_pii_and_bucket(env: Env, tmp_path: Path) -> None:
    rows = [
        account(1, name="张伟", dpd=15),
        account(2, dpd=75),
        account(3, dpd=400, balance_minor=100),
    ]
    path = write_csv(tmp_path / "accounts.csv", rows)
    report = await env.run(path)

    assert (report.rows, report.inserted, report.updated, report.unchanged) == (3, 3, 0, 0)
    assert (report.rejected, report.errors, report.amended) == (0, [], 0)
    async with env.db.connect() as conn:
        cases = {
            r["id"]: r
            for r in (await conn.execute(sa.select(CASES).order_by(CASES.c.id))).mappings()
        }
    first = cases["ACC-0000001"]
    assert (first["bucket"], first["status"], first["balance_minor"]) == ("M1", "open", 500_001)
    assert first["due_date"] == date.fromisoformat(str(rows[0]["due_date"]))
    assert first["created_at"] == datetime.fromtimestamp(START, UTC)
    assert cases["ACC-0000002"]["bucket"] == "M3"
    assert cases["ACC-0000003"]["bucket"] == "LEGAL"
    assert env.pii.decrypt(first["pii"], bound_to="ACC-0000001") == {
        "name": "张伟",
        "national_id": rows[0]["national_id"],
        "phones": str(rows[0]["phones"]).split(";"),
        "address": rows[0]["address"],
    }
    [leaf] = await intake_leaves(env)
    assert leaf["ref"] == f"intake:{report.sha256}"
    assert leaf["file"] == "accounts.csv"
    assert (leaf["rows"], leaf["inserted"], leaf["unchanged"], leaf["rejected"]) == (3, 3, 0, 0)


async def test_reimporting_the_same_file_changes_nothing(env: Env, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "accounts.jsonl", [account(n) for n in range(25)])
    first = await env.run(path, batch_size=10)
    env.clock.advance(3600)
    second = await env.run(path, batch_size=10)

    assert first.inserted == 25
    assert (second.inserted, second.updated, second.unchanged, second.amended) == (0, 0, 25, 0)
    assert second.sha256 == first.sha256
    stale = sa.select(sa.func.count()).where(
        CASES.c.updated_at != datetime.fromtimestamp(START, UTC)
    )
    assert await env.scalar(stale) == 0
    assert len(await intake_leaves(env)) == 2


async def test_changed_rows_are_updated_and_personal_data_reencrypted(
    env: Env, tmp_path: Path
) -> None:
    await env.run(write_csv(tmp_path / "day1.csv", [account(n) for n in range(5)]))
    env.clock.advance(86_400)
    changed = [account(n) for n in range(5)]
    changed[1] = account(1, name="李娜")
    changed[3] = account(3, dpd=200)
    report = await env.run(write_csv(tmp_path / "day2.csv", [*changed, account(9)]))

    assert (report.inserted, report.updated, report.unchanged) == (1, 2, 3)
    async with env.db.connect() as conn:
        row1 = (await conn.execute(sa.select(CASES).where(CASES.c.id == "ACC-0000001"))).one()
        row3 = (await conn.execute(sa.select(CASES).where(CASES.c.id == "ACC-0000003"))).one()
    assert env.pii.decrypt(row1.pii, bound_to="ACC-0000001")["name"] == "李娜"
    assert row1.updated_at == datetime.fromtimestamp(START + 86_400, UTC)
    assert row1.created_at == datetime.fromtimestamp(START, UTC)
    assert (row3.dpd, row3.bucket) == (200, "M6+")


async def test_bad_rows_are_reported_and_good_rows_imported(env: Env, tmp_path: Path) -> None:
    rows = [account(1), account(2, dpd="n/a"), account(3), account(4, currency="cny"), account(1)]
    report = await env.run(write_csv(tmp_path / "mixed.csv", rows))

    assert (report.rows, report.inserted, report.rejected) == (5, 2, 3)
    assert [(e.line, e.field) for e in report.errors] == [
        (3, "dpd"),
        (5, "currency"),
        (6, "account_id"),
    ]
    assert str(report.errors[0]).startswith(f"{tmp_path / 'mixed.csv'}:3: dpd: ")
    assert await env.count(CASES) == 2
    [leaf] = await intake_leaves(env)
    assert leaf["rejected"] == 3


async def test_strict_mode_writes_nothing_when_any_row_is_bad(env: Env, tmp_path: Path) -> None:
    rows = [account(n) for n in range(30)]
    rows[17] = account(17, credit_grade="Q")
    path = write_csv(tmp_path / "strict.csv", rows)

    with pytest.raises(IntakeError) as caught:
        await env.run(path, strict=True, batch_size=5)

    message = str(caught.value)
    assert "1 invalid row;" in message
    assert f"{path}:19: credit_grade:" in message
    assert await env.count(CASES) == 0
    assert await env.count(LEAVES) == 0


async def test_strict_mode_lists_twenty_errors_and_the_total(env: Env, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", [account(n, dpd=-1) for n in range(45)])
    with pytest.raises(IntakeError) as caught:
        await env.run(path, strict=True)
    message = str(caught.value)
    assert "45 invalid rows" in message
    assert message.count(": dpd: ") == 20
    assert "and 25 more" in message


async def test_strict_mode_imports_a_clean_file(env: Env, tmp_path: Path) -> None:
    report = await env.run(
        write_csv(tmp_path / "ok.csv", [account(n) for n in range(12)]), strict=True
    )
    assert (report.inserted, report.rejected) == (12, 0)


async def test_a_wrong_header_raises_and_writes_nothing(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("account_id,debtor_id\nA1,D1\n", encoding="utf-8")
    with pytest.raises(IntakeError, match=r"short\.csv:1: name,national_id,.*missing required"):
        await env.run(path)
    assert await env.count(CASES) == 0
    assert await env.count(LEAVES) == 0


async def test_errors_kept_are_capped_but_all_are_counted(env: Env, tmp_path: Path) -> None:
    rows = [account(n, credit_grade="X") for n in range(1005)] + [account(2000)]
    report = await env.run(write_csv(tmp_path / "many.csv", rows), batch_size=400)
    assert (report.rows, report.rejected, report.inserted) == (1006, 1005, 1)
    assert len(report.errors) == 1000
    assert report.errors[-1].line == 1001


async def test_a_missing_file_is_an_intake_error(env: Env, tmp_path: Path) -> None:
    with pytest.raises(IntakeError, match="cannot read the file"):
        await env.run(tmp_path / "nowhere.csv")


async def test_unknown_extension_is_refused(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "accounts.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(IntakeError, match="extension"):
        await env.run(path)


async def test_progress_is_reported_after_each_batch(env: Env, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [account(n) for n in range(23)])
    calls: list[tuple[int, int]] = []
    await env.run(path, batch_size=10, progress=lambda done, total: calls.append((done, total)))
    size = path.stat().st_size
    assert len(calls) == 3
    assert [t for _, t in calls] == [size] * 3
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert calls[-1] == (size, size)


async def test_balance_change_of_a_placed_case_queues_one_amendment(
    env: Env, tmp_path: Path
) -> None:
    await env.run(write_csv(tmp_path / "d1.csv", [account(1), account(2)]))
    now = datetime.fromtimestamp(START, UTC)
    async with env.db.transaction() as conn:
        await conn.execute(
            PLACEMENTS.insert(),
            {
                "id": "PL-ACC-0000001-1",
                "case_id": "ACC-0000001",
                "agency_id": AGENCY.id,
                "state": "placed",
                "version": 1,
                "currency": "CNY",
                "balance_minor": 500_001,
                "collected_minor": 0,
                "placed_at": now,
                "return_by": date(2026, 7, 14),
                "updated_at": now,
            },
        )
    env.clock.advance(86_400)
    day2 = write_csv(
        tmp_path / "d2.csv",
        [account(1, balance_minor=420_000), account(2, balance_minor=1)],
    )
    report = await env.run(day2)

    # Both balances changed; only the placed case has an agency to tell.
    assert (report.updated, report.amended) == (2, 1)
    async with env.db.connect() as conn:
        items = (await conn.execute(sa.select(OUTBOX))).mappings().all()
        placement = (await conn.execute(sa.select(PLACEMENTS))).mappings().one()
    [item] = items
    assert (item["packet_type"], item["packet_version"]) == ("placement.amended", 2)
    assert item["placement_id"] == "PL-ACC-0000001-1"
    data = json.loads(item["payload"])["data"]
    assert data["balance"] == {"amount_minor": 420_000, "currency": "CNY"}
    assert data["previous_balance"]["amount_minor"] == 500_001
    assert (placement["version"], placement["balance_minor"]) == (2, 420_000)

    again = await env.run(day2)
    assert (again.updated, again.amended, again.unchanged) == (0, 0, 2)
    assert await env.count(OUTBOX) == 1


async def test_personal_data_never_reaches_the_database_file_in_clear(tmp_path: Path) -> None:
    db_path = tmp_path / "g.db"
    db = Database("sqlite:///" + str(db_path))
    await upgrade(db)
    pii = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))
    allocation = AllocationSection()
    clock = ManualClock(START)
    placements = PlacementService(db=db, agencies={}, pii=pii, settings=allocation, clock=clock)
    rows = [account(n) for n in range(20)]
    rows[7] = account(7, name=SECRET_NAME, national_id=SECRET_ID, phones=SECRET_PHONE)
    path = write_jsonl(tmp_path / "secret.jsonl", rows)
    try:
        report = await import_file(
            path,
            db=db,
            pii=pii,
            placements=placements,
            allocation=allocation,
            clock=clock,
            confirmation="off",
        )
        # A changed row is written a second time (an UPDATE): still encrypted.
        rows[7] = account(7, name=SECRET_NAME, national_id=SECRET_ID, phones=SECRET_PHONE, dpd=9)
        await import_file(
            write_jsonl(tmp_path / "secret2.jsonl", rows),
            db=db,
            pii=pii,
            placements=placements,
            allocation=allocation,
            clock=clock,
            confirmation="off",
        )
    finally:
        await db.dispose()
    assert report.inserted == 20

    stored = b"".join(p.read_bytes() for p in (db_path, tmp_path / "g.db-wal") if p.exists())
    assert b"ACC-0000007" in stored  # the scan does see plain column data
    for secret in (SECRET_NAME, SECRET_ID, SECRET_PHONE, "Example Road"):
        assert secret.encode("utf-8") not in stored
        assert secret.encode("utf-16-le") not in stored


async def test_demo_accounts_csv_then_same_accounts_as_jsonl_are_unchanged(
    env: Env, tmp_path: Path
) -> None:
    # Change detection hashes the validated row, not the file bytes, so the format is moot.
    accounts = list(demo_data.generate_accounts(1500, seed=11, as_of=date(2026, 1, 15)))
    demo_data.write_csv(accounts, tmp_path / "demo.csv")
    demo_data.write_jsonl(accounts, tmp_path / "demo.jsonl")

    first = await env.run(tmp_path / "demo.csv", batch_size=400)
    second = await env.run(tmp_path / "demo.jsonl", batch_size=400)

    assert (first.inserted, first.rejected) == (1500, 0)
    assert (second.unchanged, second.updated, second.inserted) == (1500, 0, 0)
    assert second.sha256 != first.sha256


def generated_rows(count: int, seed: int) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    for n in range(count):
        yield account(n, balance_minor=rng.randrange(10_000, 20_000_000), dpd=rng.randrange(1, 720))


@pytest.mark.slow
async def test_fifty_thousand_rows_import_in_batches(env: Env, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "big.csv", generated_rows(50_000, seed=7))
    report = await env.run(path)

    assert (report.rows, report.inserted, report.rejected) == (50_000, 50_000, 0)
    assert await env.count(CASES) == 50_000
    print(
        f"\nintake: 50,000 rows in {report.elapsed_seconds:.2f} s "
        f"= {50_000 / report.elapsed_seconds:,.0f} rows/s"
    )
    again = await env.run(path)
    assert (again.unchanged, again.updated, again.inserted) == (50_000, 0, 0)
    print(f"re-import (no changes): {50_000 / again.elapsed_seconds:,.0f} rows/s")
