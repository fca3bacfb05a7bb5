"""The document pack on the SFTP channel, against a real asyncssh server on loopback: a batch
carries the documents its packets list in ``<base>.documents/<placement>/``, listed in the
manifest; uploads are atomic and resumable; the sandbox agency and OpenSSH's own ``sftp``
client both find exactly the bytes the manifest promises."""

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.bootstrap import Gateway
from gateway.dispatch import outbox
from gateway.dispatch.outbox import NewItem, open_stored
from gateway.dispatch.packets import RenderedPacket, render_amended
from gateway.documents.pack import sealed_binding
from gateway.sandbox.sftp_agency import SandboxSftpAgency
from gateway.sandbox.sftp_server import SftpUser
from gateway.store.document_tables import CaseDocument
from gateway.store.tables import OutboxItem, Placement
from gateway.store.transfer_tables import FileBatch, RemoteFile
from tests.integration.sftp_harness import AGENCY_ID, SftpWorld, seed, start_world

OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
DOCUMENTS = CaseDocument.__table__  # type: ignore[attr-defined]
BATCHES = FileBatch.__table__  # type: ignore[attr-defined]
FILES = RemoteFile.__table__  # type: ignore[attr-defined]


def today() -> str:
    return f"{datetime.now(UTC):%Y%m%d}"


def base(file_type: str = "PLACEMENT", seq: int = 1) -> str:
    return f"LENDERX_{AGENCY_ID}_{file_type}_{today()}_{seq:04d}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[SftpWorld]:
    w = await start_world(
        tmp_path,
        database_url,
        sections={"documents": {"store": "store", "letters": "off", "statements": False}},
    )
    yield w
    await w.aclose()


@dataclass(frozen=True)
class Doc:
    id: int
    placement_id: str
    name: str
    data: bytes


async def add_documents(world: SftpWorld, gateway: Gateway, how_many: int) -> list[Doc]:
    """For the first ``how_many`` placements: a generated letter (sealed in the database)
    and a loan contract in the lender's store (a Chinese name); their packets list both."""
    store = world.config_path.parent / "store"
    now = datetime.now(UTC)
    docs: list[Doc] = []
    async with gateway.db.transaction() as conn:
        placements = (
            await conn.execute(
                sa.select(PLACEMENTS.c.id, PLACEMENTS.c.case_id)
                .order_by(PLACEMENTS.c.id)
                .limit(how_many)
            )
        ).all()
        for placement_id, case_id in placements:
            letter = b"%PDF-1.7\n% letter " + placement_id.encode() + os.urandom(3000)
            contract = b"%PDF-1.4\n% contract " + case_id.encode() + os.urandom(70_000)
            (store / case_id).mkdir(parents=True)
            (store / case_id / "借款合同.pdf").write_bytes(contract)
            rows = [
                {
                    "case_id": case_id,
                    "placement_id": placement_id,
                    "kind": "authorisation_letter",
                    "name": f"授权委托书-{placement_id}.pdf",
                    "content": gateway.pii.seal(
                        letter, bound_to=sealed_binding(case_id, sha256(letter))
                    ),
                    "source": None,
                    "data": letter,
                },
                {
                    "case_id": case_id,
                    "placement_id": None,
                    "kind": "loan_contract",
                    "name": "借款合同.pdf",
                    "content": None,
                    "source": f"{case_id}/借款合同.pdf",
                    "data": contract,
                },
            ]
            descriptors = []
            for row in rows:
                data = row.pop("data")
                assert isinstance(data, bytes)
                doc_id = (
                    await conn.execute(
                        DOCUMENTS.insert().returning(DOCUMENTS.c.id),
                        {
                            **row,
                            "media_type": "application/pdf",
                            "size": len(data),
                            "sha256": sha256(data),
                            "created_at": now,
                        },
                    )
                ).scalar_one()
                docs.append(Doc(doc_id, placement_id, str(row["name"]), data))
                descriptors.append(
                    {
                        "document_id": doc_id,
                        "kind": row["kind"],
                        "name": row["name"],
                        "media_type": "application/pdf",
                        "size": len(data),
                        "sha256": sha256(data),
                    }
                )
            await _list_in_packet(gateway, conn, placement_id, descriptors)
    return docs


async def _list_in_packet(
    gateway: Gateway,
    conn: AsyncConnection,
    placement_id: str,
    descriptors: list[dict[str, object]],
) -> None:
    row = (
        await conn.execute(
            sa.select(OUTBOX.c.id, OUTBOX.c.dedupe_key, OUTBOX.c.payload).where(
                OUTBOX.c.placement_id == placement_id,
                OUTBOX.c.packet_type == "placement.created",
            )
        )
    ).one()
    packet = json.loads(open_stored(gateway.pii, row.dedupe_key, row.payload))
    packet["data"]["documents"] = descriptors
    payload = json.dumps(packet, ensure_ascii=False, sort_keys=True).encode()
    await conn.execute(
        OUTBOX.update()
        .where(OUTBOX.c.id == row.id)
        .values(
            payload=gateway.pii.seal(payload, bound_to=f"outbox:{row.dedupe_key}"),
            payload_sha256=sha256(payload),
        )
    )


async def drain(gateway: Gateway) -> tuple[int, int]:
    stats = await (await gateway.dispatcher()).drain_once()
    return stats.delivered, stats.dead


def manifest_of(world: SftpWorld, name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        (world.path("inbox") / f"{name}.manifest.json").read_bytes()
    )
    return manifest


async def test_a_placement_batch_carries_its_documents_listed_in_the_manifest(
    world: SftpWorld,
) -> None:
    await seed(world, 4)
    gateway = world.gateway()
    try:
        docs = await add_documents(world, gateway, 2)
        assert await drain(gateway) == (4, 0)
        b = base()
        inbox = world.path("inbox")
        assert world.files("inbox") == sorted(
            [f"{b}.csv", f"{b}.documents", f"{b}.done", f"{b}.manifest.json"]
        )
        manifest = manifest_of(world, b)
        listed = manifest["documents"]
        assert manifest["control"]["document_count"] == len(listed) == len(docs) == 4
        by_id = {d.id: d for d in docs}
        for entry in listed:
            doc = by_id[entry["document_id"]]
            assert (entry["placement_id"], entry["name"]) == (doc.placement_id, doc.name)
            # Safe remote names: ASCII, one folder per placement, the original in the manifest.
            assert entry["path"].startswith(f"{b}.documents/{doc.placement_id}/")
            assert entry["path"].isascii() and entry["path"].endswith(".pdf")
            body = (inbox / entry["path"]).read_bytes()
            assert body == doc.data
            assert entry["bytes"] == entry["size"] == len(body)
            assert entry["sha256"] == entry["plaintext_sha256"] == sha256(body)
        # Numbered in the order the packet lists them: the letter first.
        letters = [e["path"] for e in listed if e["kind"] == "authorisation_letter"]
        assert all(p.rpartition("/")[2] == "01_authorisation_letter.pdf" for p in letters)
        # No temporary file is left anywhere in the folder.
        left = [p.name for p in (inbox / f"{b}.documents").rglob("*") if p.name.startswith(".")]
        assert left == []
        async with gateway.db.connect() as conn:
            files = (
                await conn.execute(
                    sa.select(FILES.c.role, FILES.c.remote_path, FILES.c.sha256, FILES.c.state)
                )
            ).all()
        uploaded = {f.remote_path: f for f in files if f.role.startswith("doc:")}
        assert set(uploaded) == {f"inbox/{e['path']}" for e in listed}
        assert {f.state for f in files} == {"uploaded"}
        # The agency's back office checks every document against the manifest.
        agency = world.agency_behind()
        await agency.process_once()
        assert agency.stats.batches_received == 1, agency.stats.rejections
        assert agency.stats.documents_verified == 4
    finally:
        await gateway.aclose()


async def test_openssh_sftp_fetches_the_documents_the_manifest_lists(
    world: SftpWorld, tmp_path: Path
) -> None:
    """An independent client (OpenSSH's ``sftp -b``) downloads the batch; the bytes match."""
    sftp = shutil.which("sftp")
    if sftp is None:
        pytest.skip("OpenSSH's sftp client is not installed")
    await seed(world, 2)
    gateway = world.gateway()
    try:
        await add_documents(world, gateway, 2)
        assert await drain(gateway) == (2, 0)
    finally:
        await gateway.aclose()
    b = base()
    key = asyncssh.generate_private_key("ssh-ed25519")
    key_file = tmp_path / "openssh_key"
    key_file.write_bytes(key.export_private_key("openssh"))
    key_file.chmod(0o600)
    world.server.users["reader"] = SftpUser("reader", world.root, key.export_public_key().decode())
    host = world.agency.sftp.host_keys[0]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{world.agency.sftp.port} {host}\n", encoding="utf-8")
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    script = tmp_path / "batch.sftp"
    script.write_text(
        f"lcd {fetched}\nget inbox/{b}.manifest.json\nget -r inbox/{b}.documents\n",
        encoding="utf-8",
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [
            sftp,
            "-b",
            str(script),
            "-i",
            str(key_file),
            "-P",
            str(world.agency.sftp.port),
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "reader@127.0.0.1",
        ],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    manifest = json.loads((fetched / f"{b}.manifest.json").read_bytes())
    assert len(manifest["documents"]) == 4
    for entry in manifest["documents"]:
        body = (fetched / entry["path"]).read_bytes()
        assert (len(body), sha256(body)) == (entry["bytes"], entry["sha256"])


async def test_a_store_document_changed_since_it_was_recorded_fails_the_batch(
    world: SftpWorld,
) -> None:
    await seed(world, 3)
    gateway = world.gateway()
    try:
        docs = await add_documents(world, gateway, 1)
        contract = next(d for d in docs if d.name == "借款合同.pdf")
        async with gateway.db.connect() as conn:
            case_id = (
                await conn.execute(
                    sa.select(PLACEMENTS.c.case_id).where(PLACEMENTS.c.id == contract.placement_id)
                )
            ).scalar_one()
        (world.config_path.parent / "store" / case_id / "借款合同.pdf").write_bytes(b"edited")
        delivered, dead = await drain(gateway)
        assert (delivered, dead) == (0, 3)
        assert world.files("inbox") == [], "nothing of the batch reached the server"
        async with gateway.db.connect() as conn:
            batch = (await conn.execute(sa.select(BATCHES.c.state, BATCHES.c.error))).one()
            errors = set((await conn.execute(sa.select(OUTBOX.c.last_error))).scalars())
        assert batch.state == "failed"
        assert f"case {case_id}" in batch.error and "借款合同.pdf" in batch.error
        assert all("changed since it was hashed" in (e or "") for e in errors)
    finally:
        await gateway.aclose()


async def test_a_crash_after_upload_resumes_without_uploading_a_document_again(
    world: SftpWorld,
) -> None:
    await seed(world, 3)
    gateway = world.gateway()
    try:
        await add_documents(world, gateway, 2)
        assert await drain(gateway) == (3, 0)
        inbox = world.path("inbox")
        before = {
            str(p.relative_to(inbox)): (p.stat().st_mtime_ns, sha256(p.read_bytes()))
            for p in inbox.rglob("*")
            if p.is_file()
        }
        # Lost the record of the upload: batch staged, files staged, packets pending.
        async with gateway.db.transaction() as conn:
            await conn.execute(BATCHES.update().values(state="staged", delivered_at=None))
            await conn.execute(FILES.update().values(state="staged", uploaded_at=None))
            await conn.execute(OUTBOX.update().values(state="pending", delivered_at=None))
        # ... and the done marker never made it: only the marker goes up again.
        (inbox / f"{base()}.done").unlink()
        assert await drain(gateway) == (3, 0)
        after = {
            str(p.relative_to(inbox)): (p.stat().st_mtime_ns, sha256(p.read_bytes()))
            for p in inbox.rglob("*")
            if p.is_file()
        }
        done = f"{base()}.done"
        assert {k: v for k, v in after.items() if k != done} == {
            k: v for k, v in before.items() if k != done
        }
        assert after[done][1] == before[done][1]
        async with gateway.db.connect() as conn:
            states: dict[str, str] = dict(
                (await conn.execute(sa.select(FILES.c.role, FILES.c.state))).all()
            )
        assert states.pop("done") == "uploaded"
        assert set(states.values()) == {"present"} and len(states) == 2 + 4
    finally:
        await gateway.aclose()


async def test_a_renewal_amendment_carries_the_new_letter(world: SftpWorld) -> None:
    await seed(world, 2)
    gateway = world.gateway()
    try:
        assert await drain(gateway) == (2, 0)
        async with gateway.db.transaction() as conn:
            placement_id, case_id = (
                await conn.execute(
                    sa.select(PLACEMENTS.c.id, PLACEMENTS.c.case_id)
                    .order_by(PLACEMENTS.c.id)
                    .limit(1)
                )
            ).one()
            letter = b"%PDF-1.7\n% renewed letter " + os.urandom(2000)
            doc_id = (
                await conn.execute(
                    DOCUMENTS.insert().returning(DOCUMENTS.c.id),
                    {
                        "case_id": case_id,
                        "placement_id": placement_id,
                        "kind": "authorisation_letter",
                        "name": "授权委托书-续期.pdf",
                        "media_type": "application/pdf",
                        "size": len(letter),
                        "sha256": sha256(letter),
                        "content": gateway.pii.seal(
                            letter, bound_to=sealed_binding(case_id, sha256(letter))
                        ),
                        "created_at": datetime.now(UTC),
                    },
                )
            ).scalar_one()
            rendered = render_amended(
                agency_id=AGENCY_ID,
                placement_id=placement_id,
                case_id=case_id,
                version=2,
                balance_minor=1000,
                previous_balance_minor=1000,
                currency="CNY",
                reason="renewal",
                at=datetime.now(UTC),
                return_by=datetime.now(UTC).date(),
            )
            packet = json.loads(rendered.payload)
            packet["data"]["documents"] = [
                {
                    "document_id": doc_id,
                    "kind": "authorisation_letter",
                    "name": "授权委托书-续期.pdf",
                    "media_type": "application/pdf",
                    "size": len(letter),
                    "sha256": sha256(letter),
                }
            ]
            payload = json.dumps(packet, ensure_ascii=False).encode()
            await outbox.enqueue(
                conn,
                [
                    NewItem(
                        AGENCY_ID,
                        placement_id,
                        RenderedPacket(rendered.dedupe_key, rendered.packet_type, 1, payload),
                        5,
                    )
                ],
                now=datetime.now(UTC),
            )
        assert await drain(gateway) == (1, 0)
        b = base("AMENDMENT")
        [entry] = manifest_of(world, b)["documents"]
        assert (entry["placement_id"], entry["document_id"]) == (placement_id, doc_id)
        assert (world.path("inbox") / entry["path"]).read_bytes() == letter
    finally:
        await gateway.aclose()


async def test_the_packs_prepared_at_allocation_travel_with_the_placements(
    tmp_path: Path, database_url: str
) -> None:
    """No packet edited by hand: the statements generated for each placement when it is
    created (gateway.documents) are what its batch carries."""
    world = await start_world(
        tmp_path, database_url, sections={"documents": {"letters": "off", "statements": True}}
    )
    gateway = world.gateway()
    try:
        await seed(world, 3)
        assert await drain(gateway) == (3, 0)
        listed = manifest_of(world, base())["documents"]
        async with gateway.db.connect() as conn:
            generated = (
                await conn.execute(
                    sa.select(DOCUMENTS.c.id, DOCUMENTS.c.placement_id, DOCUMENTS.c.sha256)
                )
            ).all()
        assert len(generated) == 6
        assert sorted((e["document_id"], e["placement_id"], e["sha256"]) for e in listed) == (
            sorted(tuple(row) for row in generated)
        )
        agency = world.agency_behind()
        await agency.process_once()
        assert (agency.stats.batches_received, agency.stats.documents_verified) == (1, 6)
    finally:
        await gateway.aclose()
        await world.aclose()


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")
async def test_documents_are_encrypted_like_the_data_file(
    tmp_path: Path, database_url: str
) -> None:
    from tests.integration.test_sftp_pgp import make_party

    agency = make_party(tmp_path / "gpg-agency", "agency@agency.example")
    keys = tmp_path / "config" / "keys"
    keys.mkdir(parents=True)
    (keys / "agency.asc").write_text(agency.gpg.export_keys(agency.fingerprint))
    world = await start_world(
        tmp_path,
        database_url,
        sections={"documents": {"store": "store", "letters": "off", "statements": False}},
        sftp={
            "pgp": {
                "recipient_fingerprint": agency.fingerprint,
                "recipient_key": {"file": "keys/agency.asc"},
            }
        },
    )
    gateway = world.gateway()
    try:
        await seed(world, 2)
        docs = await add_documents(world, gateway, 1)
        assert await drain(gateway) == (2, 0)
        listed = manifest_of(world, base())["documents"]
        assert len(listed) == len(docs) == 2
        by_id = {d.id: d for d in docs}
        for entry in listed:
            assert entry["path"].endswith(".pdf.pgp") and entry["encryption"] == "openpgp"
            sent = (world.path("inbox") / entry["path"]).read_bytes()
            assert (len(sent), sha256(sent)) == (entry["bytes"], entry["sha256"])
            plain = agency.gpg.decrypt(sent)
            assert plain.ok, plain.status
            assert plain.data == by_id[entry["document_id"]].data
            assert sha256(plain.data) == entry["plaintext_sha256"]

        def decrypt(source: Path, target: Path) -> None:
            result = agency.gpg.decrypt_file(str(source), output=str(target))
            assert result.ok, result.status

        back_office = SandboxSftpAgency(
            agency_id=AGENCY_ID,
            root=world.root,
            section=world.agency.sftp,
            seed=5,
            fault_rate=0.0,
            decrypt=decrypt,
        )
        await back_office.process_once()
        assert back_office.stats.documents_verified == 2, back_office.stats.rejections
    finally:
        await gateway.aclose()
        await world.aclose()
        await asyncio.to_thread(
            subprocess.run,
            ["gpgconf", "--homedir", str(agency.home), "--kill", "gpg-agent"],
            check=False,
            capture_output=True,
        )
