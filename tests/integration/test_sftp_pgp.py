"""OpenPGP on the SFTP channel, with keys generated in the test (gpg, temporary homes):
placement files encrypted to the agency's pinned key and signed by us, result files
encrypted to us and signed by the agency."""

import hashlib
import io
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import gnupg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa

from adapters.sftp.batches import Manifest, ManifestFile, done_marker, sha256_hex
from adapters.sftp.layouts import ParsedRecord, RecordWriter
from adapters.sftp.parsing import read_records
from gateway.config.commission import CommissionSection
from gateway.settlement.documents import renderer as statement_renderer
from gateway.settlement.packets import queue_statement
from gateway.settlement.statements import StatementService
from gateway.store.migrate import upgrade
from gateway.store.tables import InboundMessage
from gateway.store.transfer_tables import FilePickup, RemoteFile
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world
from tests.integration.test_settlement_statements import MARCH
from tests.settlement_world import SCHEDULE, seed as settlement_seed

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
PICKUPS = FilePickup.__table__  # type: ignore[attr-defined]
FILES = RemoteFile.__table__  # type: ignore[attr-defined]


@dataclass
class Party:
    gpg: Any
    home: Path
    fingerprint: str


def make_party(home: Path, email: str) -> Party:
    home.mkdir(mode=0o700, parents=True)
    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(
        gpg.gen_key_input(
            key_type="EDDSA",
            key_curve="ed25519",
            subkey_type="ECDH",
            subkey_curve="cv25519",
            name_real="agency-gateway test",
            name_email=email,
            expire_date=0,
            no_protection=True,
        )
    )
    assert key.fingerprint, key.stderr
    return Party(gpg, home, str(key.fingerprint))


@pytest.fixture
def parties(tmp_path: Path) -> Iterator[tuple[Party, Party]]:
    agency = make_party(tmp_path / "gpg-agency", "agency@agency.example")
    lender = make_party(tmp_path / "gpg-lender", "ops@lender.example")
    # Onboarding: each side holds the other's public key.
    agency.gpg.import_keys(lender.gpg.export_keys(lender.fingerprint))
    lender.gpg.import_keys(agency.gpg.export_keys(agency.fingerprint))
    yield agency, lender
    for party in (agency, lender):
        subprocess.run(
            ["gpgconf", "--homedir", str(party.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )


@pytest.fixture
async def world(
    tmp_path: Path, database_url: str, parties: tuple[Party, Party]
) -> AsyncIterator[SftpWorld]:
    agency, lender = parties
    keys = tmp_path / "config" / "keys"
    keys.mkdir(parents=True)
    (keys / "agency.asc").write_text(agency.gpg.export_keys(agency.fingerprint))
    (keys / "lender.asc").write_text(
        lender.gpg.export_keys(lender.fingerprint, secret=True, expect_passphrase=False)
    )
    w = await start_world(
        tmp_path,
        database_url,
        sftp={
            "pgp": {
                "recipient_fingerprint": agency.fingerprint,
                "recipient_key": {"file": "keys/agency.asc"},
                "sign": True,
                "secret_key": {"file": "keys/lender.asc"},
                "secret_fingerprint": lender.fingerprint,
                "decrypt_results": True,
                "require_result_signature": True,
            },
            "readiness": {"min_age_seconds": 0},
        },
    )
    yield w
    await w.aclose()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_placement_files_are_encrypted_to_the_pinned_key_and_signed_by_us(
    world: SftpWorld, parties: tuple[Party, Party]
) -> None:
    agency, lender = parties
    await seed(world, 12)
    gateway = world.gateway()
    try:
        assert (await (await gateway.dispatcher()).drain_once()).delivered == 12
        [data] = [n for n in world.files("inbox") if n.endswith(".csv.pgp")]
        base = data.split(".")[0]
        ciphertext = (world.path("inbox") / data).read_bytes()
        assert b"PLACEMENT_ID" not in ciphertext
        manifest = json.loads((world.path("inbox") / f"{base}.manifest.json").read_bytes())
        [entry] = manifest["files"]
        assert entry["sha256"] == sha256(ciphertext)
        assert (entry["encryption"], entry["recipient_fpr"]) == ("openpgp", agency.fingerprint)
        plain = agency.gpg.decrypt(ciphertext)
        assert plain.ok and plain.valid and plain.fingerprint == lender.fingerprint
        assert entry["plaintext_sha256"] == sha256(plain.data)
        rows = [
            r
            for r in read_records(
                io.BytesIO(plain.data), world.agency.sftp.layout, "placement.created"
            )
            if isinstance(r, ParsedRecord)
        ]
        assert len(rows) == 12

        # A crash after the upload: re-encryption gives other bytes, but the file already on
        # the server under its final name is the one recorded, so it counts as delivered.
        async with gateway.db.transaction() as conn:
            await conn.execute(sa.text("update file_batches set state = 'staged'"))
            await conn.execute(sa.text("update remote_files set state = 'staged'"))
            await conn.execute(sa.text("update outbox set state = 'pending'"))
        assert (await (await gateway.dispatcher()).drain_once()).delivered == 12
        assert (world.path("inbox") / data).read_bytes() == ciphertext
        async with gateway.db.connect() as conn:
            assert set((await conn.execute(sa.select(FILES.c.state))).scalars()) == {"present"}
    finally:
        await gateway.aclose()


def encrypted_result(
    world: SftpWorld, agency: Party, lender: Party, *, sign: bool, signer: str | None = None
) -> bytes:
    writer = RecordWriter(world.agency.sftp.layout, "result")
    chunk, _ = writer.write_records(
        [
            {
                "type": "placement.rejected",
                "timestamp": "2026-01-16T09:00:00Z",
                "data": {"placement_id": "PL-UNKNOWN-1", "reason": "duplicate case"},
            }
        ]
    )
    result = agency.gpg.encrypt(
        writer.start() + chunk,
        [lender.fingerprint],
        sign=(signer or agency.fingerprint) if sign else None,
        always_trust=True,
        armor=False,
    )
    assert result.ok, result.status
    return bytes(result.data)


def put(world: SftpWorld, name: str, body: bytes) -> None:
    base = name.split(".")[0]
    results = world.path("results")
    (results / name).write_bytes(body)
    manifest = Manifest(
        batch_id=base,
        sender=AGENCY_ID,
        receiver="LENDERX",
        file_type="RESULT",
        business_date=date(2026, 1, 16),
        seq=1,
        created_at=datetime(2026, 1, 16, tzinfo=UTC),
        files=(ManifestFile(name, len(body), sha256_hex(body), "", 1, "csv", "utf-8"),),
        case_count=1,
    ).render()
    (results / f"{base}.manifest.json").write_bytes(manifest)
    (results / f"{base}.done").write_bytes(done_marker(sha256_hex(manifest)))


async def test_result_files_encrypted_to_us_and_signed_by_the_agency_are_read(
    world: SftpWorld, parties: tuple[Party, Party]
) -> None:
    agency, lender = parties
    await seed(world, 1)
    gateway = world.gateway()
    try:
        pickup: Any = (await gateway.dispatcher()).adapters[AGENCY_ID].pickup  # type: ignore[attr-defined]
        signed = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0001.csv.pgp"
        put(world, signed, encrypted_result(world, agency, lender, sign=True))
        assert await pickup.poll_once() == {"done": 1}
        async with gateway.db.connect() as conn:
            inbound = (await conn.execute(sa.select(INBOUND))).one()
            assert inbound.signature_scheme == "openpgp"
            assert inbound.body == (next(world.path("archive").rglob(signed)).read_bytes()), (
                "the raw file is stored as received (ciphertext)"
            )
            events = (await conn.execute(sa.text("select event_type from agency_events"))).all()
            assert events == [("placement.rejected",)]

        unsigned = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0002.csv.pgp"
        put(world, unsigned, encrypted_result(world, agency, lender, sign=False))
        assert await pickup.poll_once() == {"failed": 1}
        reason = (world.path("error") / f"{unsigned}.reason.txt").read_text()
        assert agency.fingerprint in reason and "not signed" in reason
    finally:
        await gateway.aclose()


def add_signing_subkey(party: Party) -> str:
    """An Ed25519 signing subkey under the party's primary key; its fingerprint."""
    added = subprocess.run(
        [
            *("gpg", "--homedir", str(party.home), "--batch", "--pinentry-mode", "loopback"),
            *("--passphrase", "", "--quick-add-key", party.fingerprint, "ed25519", "sign", "0"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    [subkey] = [s[2] for s in party.gpg.list_keys()[0]["subkeys"] if "s" in s[1]]
    return str(subkey)


async def test_a_result_signed_by_a_signing_subkey_of_the_pinned_key_is_read(
    world: SftpWorld, parties: tuple[Party, Party]
) -> None:
    agency, lender = parties
    subkey = add_signing_subkey(agency)
    # The agency hands over its key again, now with the signing subkey; the pin is unchanged.
    (world.config_path.parent / "keys" / "agency.asc").write_text(
        agency.gpg.export_keys(agency.fingerprint)
    )
    await seed(world, 1)
    gateway = world.gateway()
    try:
        pickup: Any = (await gateway.dispatcher()).adapters[AGENCY_ID].pickup  # type: ignore[attr-defined]
        name = f"{AGENCY_ID}_LENDERX_RESULT_20260116_0001.csv.pgp"
        # "!" makes gpg sign with exactly this subkey, as an agency's signing host would.
        put(world, name, encrypted_result(world, agency, lender, sign=True, signer=subkey + "!"))
        assert await pickup.poll_once() == {"done": 1}
    finally:
        await gateway.aclose()


async def test_a_statement_batch_and_its_documents_are_encrypted_to_the_pinned_key(
    world: SftpWorld, parties: tuple[Party, Party]
) -> None:
    """A SETTLEMENT batch goes out like the others when the agency's files are encrypted:
    the data file and the statement's XLSX and PDF, each decrypting (signed by us) to the
    bytes the manifest and the statement name."""
    agency, lender = parties
    gateway = world.gateway()
    try:
        await upgrade(gateway.db)
        await settlement_seed(gateway.db, AGENCY_ID, MARCH)
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
        assert (await (await gateway.dispatcher()).drain_once()).delivered == 1
    finally:
        await gateway.aclose()
    [data] = [n for n in world.files("inbox") if "_SETTLEMENT_" in n and n.endswith(".pgp")]
    base = data.split(".")[0]
    manifest = json.loads((world.path("inbox") / f"{base}.manifest.json").read_bytes())
    plain = agency.gpg.decrypt((world.path("inbox") / data).read_bytes())
    assert plain.ok and plain.valid and plain.fingerprint == lender.fingerprint
    assert sha in plain.data.decode() and b"SUMMARY" in plain.data
    assert {d["kind"] for d in manifest["documents"]} == {"xlsx", "pdf"}
    for doc in manifest["documents"]:
        assert doc["path"].endswith(".pgp") and doc["encryption"] == "openpgp"
        opened = agency.gpg.decrypt((world.path("inbox") / doc["path"]).read_bytes())
        assert opened.ok and opened.valid
        assert sha256(opened.data) == doc["plaintext_sha256"]
