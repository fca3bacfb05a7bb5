"""A case's evidence bundle, exported from a real store (SQLite, and PostgreSQL when
configured) and checked offline: it verifies as exported, and every kind of tampering (an
attached byte, a leaf body, the checkpoint, the key) is caught and named."""

import base64
import copy
import hashlib
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway.allocation.placements import PlacementService
from gateway.cli import main
from gateway.clock import ManualClock, to_datetime
from gateway.config.settings import AllocationSection
from gateway.errors import NotFound
from gateway.evidence.bundle import FORMAT, export_case, verify_bundle
from gateway.evidence.log import EvidenceLog, LeafInput, append_leaves
from gateway.evidence.signed_note import NoteSigner, NoteVerifier, generate_key
from gateway.privacy.deletion import request_deletions
from gateway.privacy.pii import PiiKeyRing
from gateway.reconciliation.recorder import IncomingEvent, apply_events
from gateway.store.database import Database
from tests.conftest import Seeder
from tests.factories import NOW, agency_config, event
from tests.integration.test_recon_engine import EVENTS, INBOUND, World

ORIGIN = "lender.example/evidence"


@pytest.fixture
async def world(db: Database, seed_placements: Seeder) -> World:
    clock = ManualClock(NOW.timestamp())
    agencies = {"AGA": agency_config(id="AGA"), "AGB": agency_config(id="AGB")}
    w = World(db, await seed_placements(db, agencies, 6, clock), clock)
    w.agencies = agencies
    return w


def keys(name: str = "lender.example") -> tuple[NoteSigner, NoteVerifier]:
    private, public = generate_key(name)
    return NoteSigner.from_text(private), NoteVerifier.from_text(public)


async def report_together(world: World, agency: str, events: list) -> None:
    """Store ``events`` as one inbound message (a result file would), then apply them."""
    now = to_datetime(world.clock.now())
    body = b"\n".join(e.model_dump_json().encode() for e in events)
    async with world.db.transaction() as conn:
        inbound_id = (
            await conn.execute(
                INBOUND.insert().returning(INBOUND.c.id),
                {
                    "agency_id": agency,
                    "channel": "sftp",
                    "external_id": "RESULT_0001.jsonl",
                    "body": body,
                    "body_sha256": hashlib.sha256(body).hexdigest(),
                    "signature_scheme": "none",
                    "event_type": None,
                    "status": "accepted",
                    "response_status": 200,
                    "response_body": b"{}",
                    "received_at": now,
                },
            )
        ).scalar_one()
        await apply_events(
            conn, [IncomingEvent(agency, inbound_id, e, now) for e in events], now=now
        )


async def attest_inbound(world: World) -> None:
    """Give every stored inbound message its evidence leaf, as the inbound path does."""
    async with world.db.transaction() as conn:
        rows = (await conn.execute(sa.select(INBOUND.c.id, INBOUND.c.body_sha256))).all()
        await append_leaves(
            conn,
            [
                LeafInput("inbound", f"inbound:{i}", {"inbound_id": i, "sha256": sha})
                for i, sha in rows
            ],
            now=to_datetime(world.clock.now()),
        )


async def test_a_bundle_proves_what_was_sent_and_received_and_tampering_is_caught(
    world: World, tmp_path: Path
) -> None:
    signer, verifier = keys()
    log = EvidenceLog(world.db, signer, ORIGIN)
    pid, case_id, *_ = world.placement("AGA", 0)
    other = world.placement("AGA", 1)[0]
    service = PlacementService(
        db=world.db,
        agencies=world.agencies,
        pii=PiiKeyRing.parse(PiiKeyRing.generate_line("k1")),
        settings=AllocationSection(),
        clock=world.clock,
    )
    await world.report("AGA", [event("placement.acknowledged", placement_id=pid)])
    await service.recall(case_id, "CONTRACT_END")
    async with world.db.transaction() as conn:
        await request_deletions(conn, world.agencies, days=30, now=to_datetime(world.clock.now()))
    # One message reporting on two cases: its bytes must not travel in this case's bundle.
    await report_together(
        world,
        "AGA",
        [
            event("data.deleted", placement_id=pid),
            event("placement.acknowledged", placement_id=other),
        ],
    )
    await attest_inbound(world)

    bundle = await export_case(world.db, log, verifier, case_id, now=NOW)
    assert bundle["format"] == FORMAT and bundle["placements"] == [pid]
    kinds = sorted(e["kind"] for e in bundle["entries"])
    assert kinds == ["inbound", "inbound", "packet", "packet", "packet", "recall"]
    packets = [json.loads(e["body"]) for e in bundle["entries"] if e["kind"] == "packet"]
    assert {p["packet_type"] for p in packets} == {
        "placement.created",
        "placement.recalled",
        "data.deletion_requested",
    }
    withheld = [e for e in bundle["entries"] if "withheld" in (e.get("attested") or {})]
    assert len(withheld) == 1 and "1 other placement" in withheld[0]["attested"]["withheld"]
    async with world.db.connect() as conn:
        other_events = (
            await conn.execute(sa.select(sa.func.count()).where(EVENTS.c.placement_id == other))
        ).scalar_one()
    assert other_events == 1  # the other case's event is in the store, not in the bundle

    report = verify_bundle(bundle, [verifier])
    assert report.ok, report.problems
    assert (report.entries, report.bytes_checked, report.withheld) == (6, 4, 1)

    # Tampering, each caught and named.
    spoilt = copy.deepcopy(bundle)
    entry = next(e for e in spoilt["entries"] if e["kind"] == "packet")
    data = bytearray(base64.b64decode(entry["attested"]["bytes_base64"]))
    data[-2] ^= 1
    entry["attested"]["bytes_base64"] = base64.b64encode(bytes(data)).decode()
    assert any("attached bytes" in p for p in verify_bundle(spoilt, [verifier]).problems)

    spoilt = copy.deepcopy(bundle)
    recall = next(e for e in spoilt["entries"] if e["kind"] == "recall")
    recall["body"] = recall["body"].replace("CONTRACT_END", "CLIENT_REQ")
    assert any("not in the signed tree" in p for p in verify_bundle(spoilt, [verifier]).problems)

    spoilt = copy.deepcopy(bundle)
    spoilt["checkpoint"] = spoilt["checkpoint"].replace("\n", "\n\n", 1)
    assert not verify_bundle(spoilt, [verifier]).ok
    _, stranger = keys()
    problems = verify_bundle(bundle, [stranger]).problems
    assert problems == ["checkpoint: note has no signature from a trusted key"]

    # Offline, through the CLI: no configuration, no database.
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    runner = CliRunner()
    ok = runner.invoke(main, ["evidence", "check-bundle", str(path), "--key", verifier.to_text()])
    assert ok.exit_code == 0 and "bundle verifies" in ok.output, ok.output
    (tmp_path / "tampered.json").write_text(json.dumps(spoilt), encoding="utf-8")
    bad = runner.invoke(
        main,
        ["evidence", "check-bundle", str(tmp_path / "tampered.json"), "--key", stranger.to_text()],
    )
    assert bad.exit_code == 1

    with pytest.raises(NotFound, match="never placed"):
        await export_case(world.db, log, verifier, "AC-NOBODY", now=NOW)

    # The bundle as a whole: every proof stays valid, but the signed manifest disagrees.
    stripped = copy.deepcopy(bundle)
    del next(e for e in stripped["entries"] if "bytes_base64" in (e.get("attested") or {}))[
        "attested"
    ]
    relabelled = copy.deepcopy(bundle)
    relabelled["case_id"] = other_case = world.placement("AGA", 1)[1]
    dropped = copy.deepcopy(bundle)
    dropped["entries"].pop()
    unsigned = copy.deepcopy(bundle)
    del unsigned["manifest"]
    for name, spoilt, says in [
        ("stripped", stripped, "the signed manifest says: leaf"),
        ("relabelled", relabelled, f"the bundle has, unsigned: case {other_case}"),
        ("dropped", dropped, "the signed manifest says: leaf"),
        ("unsigned", unsigned, "no signed manifest"),
    ]:
        problems = verify_bundle(spoilt, [verifier]).problems
        assert any(says in p for p in problems), (name, problems)
        assert not any("not in the signed tree" in p for p in problems), name


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        "[1, 2, 3]",
        '{"format": "agency-gateway/evidence-bundle/1", "entries": null}',
        '{"format": "agency-gateway/evidence-bundle/1", "entries": [null, 7, "x"]}',
        '{"format": "agency-gateway/evidence-bundle/1", "checkpoint": 5, "entries": []}',
    ],
)
def test_check_bundle_names_malformed_input_and_exits_1(tmp_path: Path, text: str) -> None:
    _, verifier = keys()
    path = tmp_path / "bundle.json"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(
        main, ["evidence", "check-bundle", str(path), "--key", verifier.to_text()]
    )
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
