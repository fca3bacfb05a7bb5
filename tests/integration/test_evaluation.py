"""The annual evaluation on a year of demo history (gateway.demo.history), on SQLite and
PostgreSQL: the reports' figures against an independent count of the rows, the recommendation
per agency profile, both PDFs (text extracted with pdftotext, the signature checked with
pdfsig) and the XLSX read back, and the decision under four eyes changing the register."""

import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook

from gateway.config.settings import EvaluationSection, FourEyesSection
from gateway.demo.history import PREFIX, PROFILES, insert_history
from gateway.errors import EvaluationRefused, FourEyesRefused
from gateway.evaluation.service import EvaluationService
from gateway.keys import self_signed
from gateway.letters.signing import LetterSigner
from gateway.privacy.pii import PiiKeyRing
from gateway.register.store import create_entry, read_entry, read_history, update_details
from gateway.store.database import Database
from gateway.store.tables import EvidenceLeaf
from tests.letters_world import have_tools, pdfsig, pdftotext

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
END = date(2026, 12, 1)
BUCKETS = {
    "AGY_A": ("M1", "M2", "M3"),
    "AGY_B": ("M2", "M3"),
    "AGY_C": ("M1", "M2", "M3"),
}
PER_MONTH = 12


@dataclass(frozen=True)
class User:
    name: str
    role: str


MAKER, OPERATOR, ADMIN = User("mia", "operator"), User("olga", "operator"), User("ada", "admin")


async def world(db: Database, *, signer: LetterSigner | None = None) -> EvaluationService:
    async with db.transaction() as conn:
        for agency_id in BUCKETS:
            await create_entry(
                conn,
                agency_id,
                {
                    "legal_name": f"{agency_id} 催收服务有限公司",
                    "registration_number": "91310000MA1FL0000X",
                    "contract_start": date(2025, 1, 1),
                    "contract_end": date(2027, 6, 30),
                },
                reason="admitted for the test",
                actor="ops:test",
                now=NOW,
            )
    pii = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))
    await insert_history(db, pii, BUCKETS, today=TODAY, seed=11, per_month=PER_MONTH)
    return EvaluationService(
        db, rules=EvaluationSection(), four_eyes=FourEyesSection(), signer=signer
    )


async def test_reports_on_a_year_of_history_match_the_rows_and_recommend_by_profile(
    db: Database, tmp_path: Path
) -> None:
    if (missing := have_tools()) is not None:
        pytest.skip(missing)
    cert, key = self_signed("Lender Test Bank")
    signer = LetterSigner.from_pem(cert, key, where="test")
    service = await world(db, signer=signer)
    ids = await service.generate(sorted(BUCKETS), end=END, actor="ops:test", now=NOW)
    reports = {r["agency_id"]: r for r in [await service.show(i) for i in ids]}
    async with db.connect() as conn:
        # Independently of gateway.evaluation: placements and attributed money per agency.
        counted = {
            a: (int(n), int(placed), int(rec or 0))
            for a, n, placed, rec in await conn.execute(
                sa.text(
                    "SELECT p.agency_id, count(*), sum(p.balance_minor), "
                    "sum((SELECT sum(a.amount_minor) FROM attributions a "
                    "WHERE a.placement_id = p.id)) FROM placements p GROUP BY p.agency_id"
                )
            )
        }
        statements = {
            a: int(n)
            for a, n in await conn.execute(
                sa.text(
                    "SELECT agency_id, count(*) FROM settlement_statements "
                    "WHERE state = 'confirmed' GROUP BY agency_id"
                )
            )
        }
        kinds = {
            (a, k): int(n)
            for a, k, n in await conn.execute(
                sa.text("SELECT agency_id, kind, count(*) FROM mismatches GROUP BY agency_id, kind")
            )
        }
        leaves = [
            json.loads(bytes(body))
            for (body,) in await conn.execute(
                sa.select(EvidenceLeaf.__table__.c.body).where(  # type: ignore[attr-defined]
                    EvidenceLeaf.__table__.c.kind == "evaluation"  # type: ignore[attr-defined]
                )
            )
        ]
    for index, agency_id in enumerate(sorted(BUCKETS)):
        f = reports[agency_id]["figures"]
        perf = f["performance"]
        assert (perf["placements"], perf["placed_minor"], perf["recovered_minor"]) == counted[
            agency_id
        ]
        assert perf["placements"] == 12 * PER_MONTH
        assert f["money"]["attributed_minor"] == counted[agency_id][2]
        assert f["money"]["statements_confirmed"] == statements[agency_id] >= 10
        profile = PROFILES[index]
        assert f["compliance"]["violations"] == {
            k: n for (a, k), n in kinds.items() if a == agency_id
        }
        assert f["compliance"]["complaints"]["upheld"] == profile.complaints_upheld
        assert sum(f["compliance"]["violations"].values()) == len(profile.violations)
        assert f["register"]["status"] == "admitted"
        assert perf["curve"] and perf["curve"][0][0] == 0
        assert {s["vintage"] for s in perf["strata"]} == {
            f"{y}-{m:02d}" for y, m in [(2025, 12)] + [(2026, m) for m in range(1, 12)]
        }
    assert reports["AGY_A"]["recommendation"] == "renew"
    # Four upheld complaints in 144 placements are 277 per 10,000: past the terminate line.
    assert reports["AGY_C"]["recommendation"] == "terminate"
    assert {(r["code"], r["value"]) for r in reports["AGY_C"]["reasons"]} >= {
        ("high_violations", 5),
        ("upheld_complaints", 4 * 10_000 // 144),
    }
    assert sorted(leaf["agency_id"] for leaf in leaves) == sorted(BUCKETS)
    assert {leaf["canonical_sha256"] for leaf in leaves} == {
        r["canonical_sha256"] for r in reports.values()
    }

    report_id = reports["AGY_C"]["id"]
    texts = {}
    for kind in ("pdf_zh", "pdf_en"):
        name, body = await service.document(report_id, kind)
        path = tmp_path / name
        path.write_bytes(body)
        texts[kind] = pdftotext(path)
        assert "Signature is Valid." in pdfsig(path)
    assert "合作机构年度评估报告" in texts["pdf_zh"] and "终止合作" in texts["pdf_zh"]
    assert "高严重度违规" in texts["pdf_zh"]
    assert "Annual agency evaluation" in texts["pdf_en"] and "terminate" in texts["pdf_en"]
    for text in texts.values():
        assert "AGY_C" in text and reports["AGY_C"]["canonical_sha256"] in text
    _, xlsx = await service.document(report_id, "xlsx")
    book = load_workbook(io.BytesIO(xlsx))
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True)}
    perf = reports["AGY_C"]["figures"]["performance"]
    assert Decimal(str(summary["回款 Recovered"])) == Decimal(perf["recovered_minor"]) / 100
    assert summary["委案笔数 Placements"] == perf["placements"]
    assert summary["建议 Recommendation"] == "terminate"
    strata_rows = list(book["Strata"].iter_rows(values_only=True))
    assert len(strata_rows) == 1 + len(perf["strata"])
    assert sum(int(str(r[3])) for r in strata_rows[1:]) == perf["placements"]
    assert [list(r) for r in book["Curve"].iter_rows(min_row=2, values_only=True)] == perf["curve"]
    # The history is marked as such and never touched by allocation (its cases are closed).
    async with db.connect() as conn:
        statuses = {
            s
            for (s,) in await conn.execute(
                sa.text(f"SELECT DISTINCT status FROM cases WHERE id LIKE '{PREFIX}%'")
            )
        }
    assert statuses == {"closed"}


async def test_a_decision_needs_a_second_person_and_then_changes_the_register(
    db: Database,
) -> None:
    service = await world(db)
    a, b, c = await service.generate(sorted(BUCKETS), end=END, actor="ops:test", now=NOW)

    approval = await service.propose(
        c, "reduce_share", reason="violations and upheld complaints", maker=MAKER, now=NOW
    )
    assert approval.action == "evaluation_decision" and approval.status == "pending"
    with pytest.raises(EvaluationRefused, match="proposed"):
        await service.propose(c, "renew", reason="again", maker=MAKER, now=NOW)
    with pytest.raises(FourEyesRefused, match="cannot also approve"):
        await service.check(c, approve=True, checker=User("mia", "admin"), now=NOW)
    with pytest.raises(FourEyesRefused, match="admin"):
        await service.check(c, approve=True, checker=OPERATOR, now=NOW)
    async with db.connect() as conn:
        assert (await read_entry(conn, "AGY_C")).share_bps == 10_000  # nothing changed yet
    decided = await service.check(c, approve=True, checker=ADMIN, now=NOW, note="agreed")
    assert decided["state"] == "decided" and decided["decided_by"] == "ada"
    assert decided["decision"] == "reduce_share" and decided["decision_share_bps"] == 5_000
    async with db.connect() as conn:
        entry = await read_entry(conn, "AGY_C")
        history = await read_history(conn, "AGY_C")
    assert entry.share_bps == 5_000
    assert history[0].action == "share" and f"annual evaluation #{c}" in (history[0].reason or "")
    with pytest.raises(EvaluationRefused, match="decided"):
        await service.check(c, approve=True, checker=ADMIN, now=NOW)

    # Rejected: back to generated, the register untouched; a new proposal may follow.
    await service.propose(b, "terminate", reason="below peers", maker=MAKER, now=NOW)
    rejected = await service.check(b, approve=False, checker=ADMIN, now=NOW, note="no")
    assert rejected["state"] == "generated" and rejected["decision"] is None
    await service.propose(b, "terminate", reason="below peers, again", maker=MAKER, now=NOW)
    await service.check(b, approve=True, checker=ADMIN, now=NOW)
    async with db.connect() as conn:
        assert (await read_entry(conn, "AGY_B")).status == "terminated"

    # Renew with a new contract end extends the contract in the register.
    with pytest.raises(EvaluationRefused, match="extend-to"):
        await service.propose(
            a, "terminate", reason="x", maker=MAKER, now=NOW, extend_to=date(2028, 1, 31)
        )
    await service.propose(
        a, "renew", reason="good year", maker=MAKER, now=NOW, extend_to=date(2028, 1, 31)
    )
    await service.check(a, approve=True, checker=ADMIN, now=NOW)
    async with db.connect() as conn:
        renewed = await read_entry(conn, "AGY_A")
        leaves = [
            json.loads(bytes(body))
            for (body,) in await conn.execute(
                sa.text("SELECT body FROM evidence_leaves WHERE kind = 'evaluation' ORDER BY seq")
            )
        ]
    assert renewed.contract_end == date(2028, 1, 31) and renewed.status == "admitted"
    events = [(leaf["ref"], leaf["event"]) for leaf in leaves]
    assert events.count((f"evaluation:{c}", "approve")) == 1
    assert (f"evaluation:{b}", "reject") in events
    shown = await service.show(c)
    assert shown["approval_id"] == approval.id


async def test_agencies_whose_contract_ends_soon_are_due_once(db: Database) -> None:
    service = await world(db)
    async with db.transaction() as conn:
        await update_details(
            conn,
            "AGY_B",
            {"contract_end": date(2027, 1, 15)},  # 39 days after TODAY: inside the 60
            reason="shortened",
            actor="ops:test",
            now=NOW,
        )
    assert await service.due(sorted(BUCKETS), today=TODAY) == ["AGY_B"]
    assert await service.due(sorted(BUCKETS), today=date(2026, 11, 15)) == []  # 61 days before
    (made,) = await service.generate(
        ["AGY_B"], end=TODAY, trigger="contract_end", actor="schedule", now=NOW
    )
    assert (await service.show(made))["trigger"] == "contract_end"
    assert await service.due(sorted(BUCKETS), today=TODAY) == []
