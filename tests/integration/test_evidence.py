"""The evidence log on real databases: a SQLite file, and PostgreSQL when
GATEWAY_TEST_POSTGRES_URL names a server (a fresh database per test)."""

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.email import journal as mail_journal
from gateway.errors import EvidenceError, NotFound
from gateway.evidence.log import EvidenceLog, LeafInput, append_leaves
from gateway.evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from gateway.evidence.signed_note import (
    NoteSigner,
    NoteVerifier,
    generate_key,
    open_note,
    parse_checkpoint,
)
from gateway.store.database import Database
from gateway.store.mail_tables import MailMessage
from gateway.store.migrate import upgrade
from gateway.store.tables import DeliveryAttempt, EvidenceLeaf, InboundMessage, OutboxItem

NOW = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
ORIGIN = "lender.example/evidence"
MAILS = MailMessage.__table__  # type: ignore[attr-defined]
PG_URL = os.environ.get("GATEWAY_TEST_POSTGRES_URL")
PAYLOAD = b'{"placement_id":"pl-1","balance":{"minor":125000,"currency":"CNY"}}'
INBOUND_BODY = b'{"type":"payment.reported","data":{"amount_minor":5000}}'

Keys = tuple[NoteSigner, NoteVerifier]

LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]


async def _sqlite(tmp_path: Path) -> Database:
    db = Database("sqlite:///" + str(tmp_path / "g.db"))
    await upgrade(db)
    return db


async def _postgres_db() -> AsyncIterator[Database]:
    assert PG_URL is not None
    url = make_url(PG_URL)
    name = f"gw_evidence_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host,
        port=url.port or 5432,
        database="postgres",
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    db = Database(url.set(database=name).render_as_string(hide_password=False))
    try:
        await upgrade(db)
        yield db
    finally:
        await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await _sqlite(tmp_path)
    yield db
    await db.dispose()


@pytest.fixture
async def pg_db() -> AsyncIterator[Database]:
    if not PG_URL:
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    async for db in _postgres_db():
        yield db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        database = await _sqlite(tmp_path)
        yield database
        await database.dispose()
        return
    if not PG_URL:
        pytest.skip("GATEWAY_TEST_POSTGRES_URL is not set")
    async for database in _postgres_db():
        yield database


@pytest.fixture(scope="module")
def keys() -> Keys:
    private_text, verifier_text = generate_key(ORIGIN)
    return NoteSigner.from_text(private_text), NoteVerifier.from_text(verifier_text)


def action(ref: str, **fields: object) -> LeafInput:
    return LeafInput(kind="action", ref=ref, fields=fields)


async def insert_outbox(conn: AsyncConnection, payload: bytes, key: str = "k1") -> int:
    row = {
        "dedupe_key": key,
        "agency_id": "acme",
        "placement_id": f"pl-{key}",
        "packet_type": "placement",
        "packet_version": 1,
        "payload": payload,
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "state": "pending",
        "attempts": 0,
        "max_attempts": 8,
        "run_at": NOW,
        "lease_token": 0,
        "created_at": NOW,
    }
    return int((await conn.execute(OUTBOX.insert().returning(OUTBOX.c.id), [row])).scalar_one())


async def insert_inbound(conn: AsyncConnection, body: bytes) -> int:
    row = {
        "agency_id": "acme",
        "channel": "webhook",
        "external_id": "msg_1",
        "body": body,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "signature_scheme": "v1",
        "event_type": "payment.reported",
        "status": "accepted",
        "response_status": 202,
        "response_body": b"",
        "received_at": NOW,
    }
    return int((await conn.execute(INBOUND.insert().returning(INBOUND.c.id), [row])).scalar_one())


async def insert_attempt(conn: AsyncConnection, outbox_id: int) -> int:
    row = {
        "outbox_id": outbox_id,
        "agency_id": "acme",
        "attempt_no": 1,
        "lease_token": 1,
        "outcome": "delivered",
        "started_at": NOW,
        "duration_ms": 12,
        "request_timestamp": 1795858200,
        "http_status": 202,
        "response_sha256": "ab" * 32,
    }
    return int((await conn.execute(ATTEMPTS.insert().returning(ATTEMPTS.c.id), [row])).scalar_one())


async def seed_attested_rows(db: Database) -> dict[str, int]:
    """One packet, one inbound message and one receipt, each with its leaf."""
    payload, body = PAYLOAD, INBOUND_BODY
    async with db.transaction() as conn:
        outbox_id = await insert_outbox(conn, payload)
        inbound_id = await insert_inbound(conn, body)
        attempt_id = await insert_attempt(conn, outbox_id)
        seqs = await append_leaves(
            conn,
            [
                LeafInput(
                    "packet",
                    f"outbox:{outbox_id}",
                    {"outbox_id": outbox_id, "sha256": hashlib.sha256(payload).hexdigest()},
                ),
                LeafInput(
                    "inbound",
                    f"inbound:{inbound_id}",
                    {"inbound_id": inbound_id, "sha256": hashlib.sha256(body).hexdigest()},
                ),
                LeafInput(
                    "receipt",
                    f"attempt:{attempt_id}",
                    {
                        "attempt_id": attempt_id,
                        "outcome": "delivered",
                        "http_status": 202,
                        "response_sha256": "ab" * 32,
                        "request_timestamp": 1795858200,
                    },
                ),
                action("placement:pl-1", allocation="rule-7"),
            ],
            now=NOW,
        )
    return {"outbox": outbox_id, "inbound": inbound_id, "attempt": attempt_id, "seq": seqs[0]}


async def test_append_assigns_consecutive_seq_and_canonical_bodies(db: Database) -> None:
    async with db.transaction() as conn:
        first = await append_leaves(conn, [action("a:1", b=1, note="é"), action("a:2")], now=NOW)
    async with db.transaction() as conn:
        second = await append_leaves(conn, [action("a:3")], now=NOW)
        assert await append_leaves(conn, [], now=NOW) == []
    assert (first, second) == ([0, 1], [2])
    async with db.connect() as conn:
        rows = (await conn.execute(sa.select(LEAVES).order_by(LEAVES.c.seq))).all()
    assert [r.seq for r in rows] == [0, 1, 2]
    assert rows[0].body == '{"b":1,"kind":"action","note":"é","ref":"a:1"}'.encode()
    assert rows[0].leaf_hash == leaf_hash(rows[0].body)
    assert (rows[0].kind, rows[0].ref, rows[0].created_at) == ("action", "a:1", NOW)


async def test_fields_cannot_override_kind_or_ref(sqlite_db: Database) -> None:
    with pytest.raises(ValueError, match="override"):
        async with sqlite_db.transaction() as conn:
            await append_leaves(conn, [action("a:1", kind="packet")], now=NOW)


async def test_rollback_leaves_no_leaf(db: Database) -> None:
    with pytest.raises(RuntimeError, match="business rule failed"):
        async with db.transaction() as conn:
            await append_leaves(conn, [action("a:1"), action("a:2")], now=NOW)
            raise RuntimeError("business rule failed")
    async with db.transaction() as conn:
        assert await append_leaves(conn, [action("a:3")], now=NOW) == [0]
        count = (await conn.execute(sa.select(sa.func.count()).select_from(LEAVES))).scalar()
    assert count == 1


async def test_checkpoint_proofs_and_verify(db: Database, keys: Keys) -> None:
    signer, verifier = keys
    log = EvidenceLog(db, signer, ORIGIN)
    assert await log.checkpoint(now=NOW) is None  # an empty log has nothing to sign
    ids = await seed_attested_rows(db)

    first = await log.checkpoint(now=NOW)
    assert first is not None and first.tree_size == 4
    text, names = open_note(first.note, [verifier])
    assert names == [ORIGIN]
    assert parse_checkpoint(text) == (ORIGIN, 4, first.root_hash)
    assert await log.checkpoint(now=NOW) is None  # nothing new

    async with db.transaction() as conn:
        await append_leaves(conn, [action(f"a:{i}") for i in range(7)], now=NOW)
    second = await log.checkpoint(now=NOW)
    assert second is not None and second.tree_size == 11

    proof = await log.inclusion_proof(ids["seq"])
    assert (proof.tree_size, proof.note) == (11, second.note)
    assert proof.leaf_hash == leaf_hash(proof.body)
    assert b'"kind":"packet"' in proof.body
    assert verify_inclusion(proof.leaf_hash, proof.seq, 11, proof.path, second.root_hash)
    older = await log.inclusion_proof(2, tree_size=4)
    assert verify_inclusion(older.leaf_hash, 2, 4, older.path, first.root_hash)
    # Many proofs from one read are the same proofs.
    assert await log.inclusion_proofs([ids["seq"], 2, 10]) == [
        proof,
        await log.inclusion_proof(2),
        await log.inclusion_proof(10),
    ]
    assert await log.inclusion_proofs([]) == []

    consistency = await log.consistency_proof(4)
    assert (consistency.old_root, consistency.new_root) == (first.root_hash, second.root_hash)
    assert verify_consistency(4, 11, first.root_hash, second.root_hash, consistency.path)

    report = await log.verify([verifier])
    assert report.ok, report.problems
    assert (report.leaves_checked, report.checkpoints_checked, report.rows_checked) == (11, 2, 3)
    assert report.root == second.root_hash
    report.raise_for_problems()


async def test_proofs_for_missing_leaves_or_trees(sqlite_db: Database, keys: Keys) -> None:
    log = EvidenceLog(sqlite_db, keys[0], ORIGIN)
    with pytest.raises(NotFound, match="no checkpoint"):
        await log.inclusion_proof(0)
    async with sqlite_db.transaction() as conn:
        await append_leaves(conn, [action("a:1"), action("a:2")], now=NOW)
    await log.checkpoint(now=NOW)
    with pytest.raises(NotFound, match="not in the tree of size 2"):
        await log.inclusion_proof(2)
    with pytest.raises(NotFound, match="fewer than 5 leaves"):
        await log.inclusion_proof(0, tree_size=5)


async def test_incremental_checkpoints_match_a_fresh_recomputation(
    sqlite_db: Database, keys: Keys
) -> None:
    signer, verifier = keys
    log = EvidenceLog(sqlite_db, signer, ORIGIN)
    total = 0
    for batch in (1, 2, 5, 300, 1, 4097):
        async with sqlite_db.transaction() as conn:
            await append_leaves(conn, [action(f"a:{total + i}") for i in range(batch)], now=NOW)
        total += batch
        assert (await log.checkpoint(now=NOW)).tree_size == total  # type: ignore[union-attr]
    # A second process with no cached state recomputes from stored hashes and agrees.
    async with sqlite_db.transaction() as conn:
        await append_leaves(conn, [action("late")], now=NOW)
    fresh = await EvidenceLog(sqlite_db, signer, ORIGIN).checkpoint(now=NOW)
    assert fresh is not None and fresh.tree_size == total + 1
    report = await log.verify([verifier])
    assert report.ok, report.problems
    assert report.checkpoints_checked == 7


async def test_changed_outbox_payload_is_reported(db: Database, keys: Keys) -> None:
    signer, verifier = keys
    log = EvidenceLog(db, signer, ORIGIN)
    ids = await seed_attested_rows(db)
    await log.checkpoint(now=NOW)
    async with db.transaction() as conn:
        payload = (
            await conn.execute(sa.select(OUTBOX.c.payload).where(OUTBOX.c.id == ids["outbox"]))
        ).scalar_one()
        tampered = payload.replace(b"125000", b"125001")
        await conn.execute(
            OUTBOX.update().where(OUTBOX.c.id == ids["outbox"]).values(payload=tampered)
        )
    report = await log.verify([verifier])
    assert not report.ok
    [problem] = report.problems
    assert (problem.code, problem.seq, problem.row) == (
        "row_mismatch",
        0,
        f"outbox {ids['outbox']}",
    )
    assert hashlib.sha256(tampered).hexdigest() in problem.detail
    with pytest.raises(EvidenceError, match=f"outbox {ids['outbox']}"):
        report.raise_for_problems()


async def test_changed_receipt_and_inbound_body_are_reported(
    sqlite_db: Database, keys: Keys
) -> None:
    signer, verifier = keys
    log = EvidenceLog(sqlite_db, signer, ORIGIN)
    ids = await seed_attested_rows(sqlite_db)
    async with sqlite_db.transaction() as conn:
        await conn.execute(
            ATTEMPTS.update()
            .where(ATTEMPTS.c.id == ids["attempt"])
            .values(outcome="permanent", http_status=410)
        )
        await conn.execute(
            INBOUND.update().where(INBOUND.c.id == ids["inbound"]).values(body=b"{}")
        )
    report = await log.verify([verifier])
    found = {(p.code, p.seq, p.row, p.detail) for p in report.problems}
    attempt, inbound = f"delivery_attempts {ids['attempt']}", f"inbound_messages {ids['inbound']}"
    empty_sha, body_sha = (
        hashlib.sha256(b"{}").hexdigest(),
        hashlib.sha256(INBOUND_BODY).hexdigest(),
    )
    assert found == {
        ("row_mismatch", 2, attempt, "outcome is 'permanent', the leaf attests 'delivered'"),
        ("row_mismatch", 2, attempt, "http_status is 410, the leaf attests 202"),
        ("row_mismatch", 1, inbound, f"body sha256 is {empty_sha}, the leaf attests {body_sha}"),
    }


async def test_deleted_attested_row_is_reported(sqlite_db: Database, keys: Keys) -> None:
    signer, verifier = keys
    ids = await seed_attested_rows(sqlite_db)
    async with sqlite_db.transaction() as conn:
        await conn.execute(ATTEMPTS.delete().where(ATTEMPTS.c.id == ids["attempt"]))
    report = await EvidenceLog(sqlite_db, signer, ORIGIN).verify([verifier])
    assert [(p.code, p.seq) for p in report.problems] == [("row_missing", 2)]


async def test_edited_leaf_body_is_caught(sqlite_db: Database, keys: Keys) -> None:
    signer, verifier = keys
    log = EvidenceLog(sqlite_db, signer, ORIGIN)
    await seed_attested_rows(sqlite_db)
    checkpoint = await log.checkpoint(now=NOW)
    assert checkpoint is not None
    async with sqlite_db.transaction() as conn:
        await conn.exec_driver_sql("DROP TRIGGER evidence_leaves_no_update")
        await conn.execute(
            LEAVES.update()
            .where(LEAVES.c.seq == 3)
            .values(body=b'{"allocation":"rule-8","kind":"action","ref":"placement:pl-1"}')
        )
    report = await log.verify([verifier])
    codes = {(p.code, p.seq, p.checkpoint_id) for p in report.problems}
    assert codes == {("leaf_hash", 3, None), ("root_mismatch", None, checkpoint.id)}


async def test_edited_body_and_hash_are_caught_by_the_checkpoint_root(
    sqlite_db: Database, keys: Keys
) -> None:
    signer, verifier = keys
    log = EvidenceLog(sqlite_db, signer, ORIGIN)
    await seed_attested_rows(sqlite_db)
    checkpoint = await log.checkpoint(now=NOW)
    assert checkpoint is not None
    forged = b'{"allocation":"rule-8","kind":"action","ref":"placement:pl-1"}'
    async with sqlite_db.transaction() as conn:
        await conn.exec_driver_sql("DROP TRIGGER evidence_leaves_no_update")
        await conn.execute(
            LEAVES.update()
            .where(LEAVES.c.seq == 3)
            .values(body=forged, leaf_hash=leaf_hash(forged))
        )
    report = await log.verify([verifier])
    [problem] = report.problems
    assert (problem.code, problem.checkpoint_id) == ("root_mismatch", checkpoint.id)
    assert checkpoint.root_hash.hex() in problem.detail
    # A process that did not sign the old checkpoint refuses to extend the forged tree.
    async with sqlite_db.transaction() as conn:
        await append_leaves(conn, [action("after")], now=NOW)
    with pytest.raises(EvidenceError, match="refusing to sign"):
        await EvidenceLog(sqlite_db, signer, ORIGIN).checkpoint(now=NOW)


async def test_relabelled_leaf_columns_are_caught(sqlite_db: Database, keys: Keys) -> None:
    # kind/ref are lookup columns outside the hash; relabelling would hide a leaf from a
    # case's evidence bundle, so verify compares them with the signed body, and it picks
    # the attested row from the body, so relabelling a packet does not skip its check.
    signer, verifier = keys
    ids = await seed_attested_rows(sqlite_db)
    async with sqlite_db.transaction() as conn:
        await conn.exec_driver_sql("DROP TRIGGER evidence_leaves_no_update")
        await conn.execute(LEAVES.update().where(LEAVES.c.seq == 3).values(ref="placement:pl-2"))
        await conn.execute(LEAVES.update().where(LEAVES.c.seq == 0).values(kind="action"))
        await conn.execute(
            OUTBOX.update().where(OUTBOX.c.id == ids["outbox"]).values(payload=b"{}")
        )
    report = await EvidenceLog(sqlite_db, signer, ORIGIN).verify([verifier])
    found = sorted((p.seq, p.code) for p in report.problems)
    assert found == [(0, "body"), (0, "row_mismatch"), (3, "body")]
    relabelled = next(p for p in report.problems if p.seq == 3)
    assert "placement:pl-2" in relabelled.detail and "placement:pl-1" in relabelled.detail


async def test_deleted_leaf_is_caught(sqlite_db: Database, keys: Keys) -> None:
    signer, verifier = keys
    log = EvidenceLog(sqlite_db, signer, ORIGIN)
    async with sqlite_db.transaction() as conn:
        await append_leaves(conn, [action(f"a:{i}") for i in range(5)], now=NOW)
    checkpoint = await log.checkpoint(now=NOW)
    assert checkpoint is not None
    async with sqlite_db.transaction() as conn:
        await conn.exec_driver_sql("DROP TRIGGER evidence_leaves_no_delete")
        await conn.execute(LEAVES.delete().where(LEAVES.c.seq.in_([2, 4])))
    report = await log.verify([verifier])
    assert {(p.code, p.seq, p.checkpoint_id) for p in report.problems} == {
        ("seq_gap", 3, None),
        ("truncated", None, checkpoint.id),
    }


async def test_untrusted_or_forged_checkpoint_signature_is_reported(
    sqlite_db: Database, keys: Keys
) -> None:
    signer, verifier = keys
    log = EvidenceLog(sqlite_db, signer, ORIGIN)
    async with sqlite_db.transaction() as conn:
        await append_leaves(conn, [action("a:1")], now=NOW)
    checkpoint = await log.checkpoint(now=NOW)
    assert checkpoint is not None
    _, stranger = generate_key(ORIGIN)
    report = await log.verify([NoteVerifier.from_text(stranger)])
    assert [(p.code, p.checkpoint_id) for p in report.problems] == [("signature", checkpoint.id)]
    async with sqlite_db.transaction() as conn:
        await conn.execute(sa.text("UPDATE checkpoints SET note = replace(note, '\n1\n', '\n2\n')"))
    report = await log.verify([verifier])
    assert "invalid signature" in report.problems[0].detail


async def test_leaf_table_refuses_update_and_delete(db: Database) -> None:
    async with db.transaction() as conn:
        await append_leaves(conn, [action("a:1")], now=NOW)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with db.transaction() as conn:
            await conn.execute(LEAVES.update().values(body=b"{}"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        async with db.transaction() as conn:
            await conn.execute(LEAVES.delete())
    async with db.connect() as conn:
        body = (await conn.execute(sa.select(LEAVES.c.body))).scalar_one()
    assert body == b'{"kind":"action","ref":"a:1"}'


async def _append_in_own_transaction(db: Database, leaves: list[LeafInput]) -> list[int]:
    async with db.transaction() as conn:
        return await append_leaves(conn, leaves, now=NOW)


async def test_concurrent_appends_never_duplicate_or_skip_seq(db: Database) -> None:
    writers = [
        [action(f"w{w}:{i}") for i in range(size)]
        for w, size in enumerate([3, 1, 7, 2, 5, 4, 6, 1, 2, 9])
    ]
    results = await asyncio.gather(*(_append_in_own_transaction(db, w) for w in writers))
    total = sum(len(w) for w in writers)
    assert sorted(seq for seqs in results for seq in seqs) == list(range(total))
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(LEAVES.c.seq, LEAVES.c.ref))
        stored: dict[int, str] = {seq: ref for seq, ref in rows}
    for leaves, seqs in zip(writers, results, strict=True):
        assert seqs == list(range(seqs[0], seqs[0] + len(leaves)))
        assert [stored[s] for s in seqs] == [leaf.ref for leaf in leaves]


@pytest.mark.postgres
async def test_postgres_second_writer_waits_and_follows_the_first_commit(pg_db: Database) -> None:
    async with pg_db.transaction() as first:
        assert await append_leaves(first, [action("first:0"), action("first:1")], now=NOW) == [0, 1]
        second = asyncio.create_task(_append_in_own_transaction(pg_db, [action("second:0")]))
        await _wait_for_advisory_lock_waiter(pg_db)
        assert not second.done()
    # Without the advisory lock the second writer would also pick seq 0 and fail on the key.
    assert await second == [2]


async def _wait_for_advisory_lock_waiter(db: Database) -> None:
    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    for _ in range(500):
        async with db.connect() as conn:
            if (await conn.execute(query)).scalar():
                return
        await asyncio.sleep(0.01)
    pytest.fail("the second writer never queued on the evidence advisory lock")


async def test_a_changed_sent_mail_is_reported(db: Database, keys: Keys) -> None:
    signer, verifier = keys
    log = EvidenceLog(db, signer, ORIGIN)
    raw = b"Subject: referral\r\n\r\nbody\r\n"
    async with db.transaction() as conn:
        outbox_id = await insert_outbox(conn, PAYLOAD)
        mail_id = await mail_journal.record_attempt(
            conn,
            agency_id="acme",
            message_id="<pkt_1@lender.example>",
            ref="pkt_1",
            attempt_no=1,
            envelope_from="bounces@lender.example",
            recipients=["firm@example.cn"],
            body=raw,
            possible_duplicate=False,
            dsn=False,
            items=[mail_journal.CarriedItem(outbox_id, "k1", "pl-k1")],
            now=NOW,
        )
    await log.checkpoint(now=NOW)
    report = await log.verify([verifier])
    assert report.ok and report.rows_checked == 1, report.problems
    async with db.transaction() as conn:
        await conn.execute(
            MAILS.update().where(MAILS.c.id == mail_id).values(body=raw.replace(b"body", b"bodY"))
        )
    [problem] = (await log.verify([verifier])).problems
    assert (problem.code, problem.row) == ("row_mismatch", f"mail_messages {mail_id}")
    assert problem.detail.startswith("body sha256 is ")
