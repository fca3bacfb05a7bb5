"""A settlement statement sent and answered over SFTP, against a real asyncssh server on
loopback (the sandbox server): the statement goes out as a SETTLEMENT batch with its
documents; a result-file row ``settlement.confirmed`` (STATEMENT_ID, REVISION, SHA256)
locks the statement; ``settlement.disputed`` (LINE_NOS, REASON, CLAIMED) opens the mismatch;
a confirmation of another hash changes nothing."""

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sftp.layouts import ParsedRecord
from adapters.sftp.parsing import read_records
from gateway.bootstrap import Gateway
from gateway.config.commission import CommissionSection
from gateway.settlement.documents import renderer as statement_renderer
from gateway.settlement.packets import queue_statement
from gateway.settlement.statements import StatementService
from gateway.settlement.views import view_of
from gateway.store.migrate import upgrade
from gateway.store.tables import Mismatch
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, start_world
from tests.integration.test_settlement_statements import MARCH
from tests.integration.test_sftp_pickup import pickup_of, put, render
from tests.settlement_world import SCHEDULE, agency, seed, service


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(tmp_path, database_url)
    yield w
    await w.aclose()


@pytest.fixture
async def gateway(world: SftpWorld) -> AsyncIterator[Gateway]:
    gw = world.gateway()
    try:
        await upgrade(gw.db)
        await seed(gw.db, AGENCY_ID, MARCH)
        yield gw
    finally:
        await gw.aclose()


async def _answers(gateway: Gateway) -> list[str]:
    async with gateway.db.connect() as conn:
        return [
            str(t)
            for t in (
                await conn.execute(
                    sa.text(
                        "SELECT event_type FROM agency_events "
                        "WHERE event_type LIKE 'settlement.%' ORDER BY id"
                    )
                )
            ).scalars()
        ]


def _row(event_type: str, data: dict[str, object]) -> dict[str, object]:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": event_type, "timestamp": at, "data": data}


async def _state(gateway: Gateway, sid: int) -> str:
    async with gateway.db.connect() as conn:
        return str(
            (
                await conn.execute(
                    sa.text("SELECT state FROM settlement_statements WHERE id = :i"), {"i": sid}
                )
            ).scalar_one()
        )


async def test_a_confirmation_row_locks_the_statement(world: SftpWorld, gateway: Gateway) -> None:
    statements = service(gateway.db, agency(AGENCY_ID))
    sid = await statements.build(AGENCY_ID, "2026-03", actor="ops:ann")
    sha = await statements.issue(sid, actor="ops:bob")
    wrong = _row("settlement.confirmed", {"statement_id": sid, "revision": 1, "sha256": "1" * 64})
    body = render(world, "result", [wrong])
    assert b",STATEMENT_ID,REVISION,SHA256,LINE_NOS,CLAIMED" in body.split(b"\n")[0]
    name = f"{AGENCY_ID}_LENDERX_RESULT_20260403_0001.csv"
    put(world, name, body)
    # Stored, changes nothing, and reported as a refused row with its line and column.
    assert await (await pickup_of(gateway)).poll_once() == {"failed": 1}
    assert await _state(gateway, sid) == "issued"
    reason = (world.path("error") / f"{name}.reason.txt").read_text()
    assert (
        f"line 2: SHA256: settlement.confirmed: statement {sid} revision 1 has SHA-256 {sha}"
        in (reason)
    )
    assert await _answers(gateway) == ["settlement.confirmed"]
    right = _row("settlement.confirmed", {"statement_id": sid, "revision": 1, "sha256": sha})
    # The second confirmation in the same file meets a confirmed statement: refused.
    two = render(world, "result", [right, right])
    put(world, f"{AGENCY_ID}_LENDERX_RESULT_20260403_0002.csv", two)
    assert await (await pickup_of(gateway)).poll_once() == {"partial": 1}
    assert await _state(gateway, sid) == "confirmed"
    async with gateway.db.connect() as conn:
        errors = (
            await conn.execute(
                sa.text("SELECT errors, rows_ok, rows_failed FROM file_pickups ORDER BY id DESC")
            )
        ).first()
    assert errors is not None
    [error] = json.loads(errors[0])
    assert (error["line"], error["field"], errors[1], errors[2]) == (3, "STATEMENT_ID", 1, 1)
    assert "confirmed" in error["message"]


async def test_a_dispute_row_opens_the_mismatch(world: SftpWorld, gateway: Gateway) -> None:
    statements = service(gateway.db, agency(AGENCY_ID))
    sid = await statements.build(AGENCY_ID, "2026-03", actor="ops:ann")
    await statements.issue(sid, actor="ops:bob")
    row = _row(
        "settlement.disputed",
        {
            "statement_id": sid,
            "revision": 1,
            "line_nos": [1, 3],
            "reason": "both at the deep rate",
            "claimed": {"amount_minor": 60_000, "currency": "CNY"},
        },
    )
    put(world, f"{AGENCY_ID}_LENDERX_RESULT_20260403_0001.csv", render(world, "result", [row]))
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    assert await _state(gateway, sid) == "disputed"
    async with gateway.db.connect() as conn:
        M = Mismatch.__table__.c  # type: ignore[attr-defined]
        [theirs] = (
            await conn.execute(sa.select(M.theirs).where(M.kind == "settlement_disputed"))
        ).scalars()
    assert json.loads(theirs) == {
        "line_nos": [1, 3],
        "reason": "both at the deep rate",
        "claimed_minor": 60_000,
    }


async def test_the_statement_goes_out_as_a_settlement_batch_with_its_documents(
    world: SftpWorld, gateway: Gateway
) -> None:
    """Issuing queues the statement for the SFTP agency; the dispatcher drops a SETTLEMENT
    batch on the real server: one LINE row per line and a SUMMARY row in the agency's
    layout, the XLSX and the PDF beside it (listed in the manifest with their SHA-256); the
    sandbox agency takes the batch, and a confirmation built from what it read locks the
    statement."""
    sftp = world.agency.model_copy(
        update={"commission": CommissionSection.model_validate(SCHEDULE)}
    )
    statements = StatementService(
        gateway.db,
        {AGENCY_ID: sftp},
        gateway.clock,
        renderer=statement_renderer(None),
        sender=queue_statement,
    )
    sid = await statements.build(AGENCY_ID, "2026-03", actor="ops:ann")
    sha = await statements.issue(sid, actor="ops:bob")
    stats = await (await gateway.dispatcher()).drain_once()
    assert (stats.delivered, stats.dead) == (1, 0)
    inbox = world.files("inbox")
    [data] = [n for n in inbox if "_SETTLEMENT_" in n and n.endswith(".csv")]
    base = data.removesuffix(".csv")
    assert f"{base}.done" in inbox and f"{base}.manifest.json" in inbox
    with (world.path("inbox") / data).open("rb") as stream:
        rows = [
            r.record
            for r in read_records(stream, world.agency.sftp.layout, "settlement.statement")
            if isinstance(r, ParsedRecord)
        ]
    async with gateway.db.connect() as conn:
        view = await view_of(conn, sid, {AGENCY_ID: sftp})
    assert [r["row"] for r in rows] == ["LINE"] * len(view.lines) + ["SUMMARY"]
    assert all(
        (r["data"]["statement_id"], r["data"]["revision"], r["data"]["sha256"]) == (sid, 1, sha)
        for r in rows
    )
    assert [
        (r["data"]["line_no"], r["data"]["placement_id"], r["data"]["amount"]["amount_minor"])
        for r in rows[:-1]
    ] == [(x["line_no"], x["placement_id"], int(str(x["amount_minor"]))) for x in view.lines]
    withheld = [r["data"]["line_no"] for r in rows[:-1] if r["data"]["withheld"]]
    assert withheld == [x["line_no"] for x in view.lines if x["withheld"]] != []
    summary = rows[-1]["data"]
    assert summary["line_count"] == len(view.lines)
    assert summary["total"]["amount_minor"] == int(str(view.statement["total_minor"]))
    assert summary["recovered"]["amount_minor"] == int(str(view.statement["recovered_minor"]))
    manifest = json.loads((world.path("inbox") / f"{base}.manifest.json").read_bytes())
    assert manifest["file_type"] == "SETTLEMENT"
    assert manifest["files"][0]["record_count"] == len(rows)
    assert manifest["control"]["total_outstanding_minor"] == [
        {"currency": "CNY", "amount_minor": sum(int(str(x["amount_minor"])) for x in view.lines)}
    ]
    documents = {d["kind"]: d for d in manifest["documents"]}
    assert documents.keys() == {"xlsx", "pdf"}
    for doc in view.documents:
        listed = documents[str(doc["kind"])]
        assert listed["placement_id"] == f"statement:{sid}"
        assert listed["path"].startswith(f"{base}.documents/statement-{sid}/")
        body = (world.path("inbox") / listed["path"]).read_bytes()
        assert hashlib.sha256(body).hexdigest() == doc["sha256"] == listed["sha256"]
    agency = world.agency_behind()
    await agency.process_once()
    assert agency.stats.rejections == []
    assert agency.statements == {sid: (1, sha)}
    assert agency.stats.documents_verified == 2
    # The agency answers with what it read: the statement is locked.
    revision, agreed = agency.statements[sid]
    row = _row(
        "settlement.confirmed", {"statement_id": sid, "revision": revision, "sha256": agreed}
    )
    put(world, f"{AGENCY_ID}_LENDERX_RESULT_20260403_0001.csv", render(world, "result", [row]))
    assert await (await pickup_of(gateway)).poll_once() == {"done": 1}
    assert await _state(gateway, sid) == "confirmed"
