"""The document pack on real databases (SQLite, and PostgreSQL when configured): the lender's
store hashed at intake, the statements and letter of each placement in its packet (checked by
an independent JSON Schema validator), and the agency-scoped fetch endpoint served for real on
loopback (signed like events, own open placements only, every request recorded).

The letter service is a stand-in that writes what gateway.letters writes (a sealed document
row, an ``authorisation_letters`` row): the pack is under test here, not the signature.
"""

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.allocation.placements import PlacementService
from gateway.cases.expiry import ExpiryService
from gateway.clock import ManualClock
from gateway.config.agencies import AgencyConfig
from gateway.config.settings import AllocationSection
from gateway.demo.data import generate_accounts, write_csv
from gateway.dispatch.outbox import open_payload
from gateway.documents.fetch import DocumentFetchService
from gateway.documents.pack import PackDocument, document_bytes, pack_of, sealed_binding
from gateway.documents.prepare import LettersUnavailable, PackPreparer, PackRequest
from gateway.documents.statements import BOM, NOT_GIVEN
from gateway.documents.store import FolderStore
from gateway.errors import DocumentChanged
from gateway.inbound.service import InboundService, InboundTrust
from gateway.intake.service import import_file
from gateway.metrics import Metrics
from gateway.privacy.pii import PiiKeyRing
from gateway.server import create_app
from gateway.signing import HmacKey, generate_hmac_secret, parse_hmac_secret, sign
from gateway.store.database import Database, sealer_of
from gateway.store.document_tables import AuthorisationLetter, CaseDocument, DocumentFetch
from gateway.store.migrate import upgrade
from gateway.store.tables import EvidenceLeaf, OutboxItem, Placement
from tests import hard_way
from tests.factories import agency_config

DOCS = CaseDocument.__table__  # type: ignore[attr-defined]
LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
FETCHES = DocumentFetch.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "json"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACCOUNTS = 6
AGENCIES = ("AGY_A", "AGY_B")
Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True)
class Issued:
    letter_no: str
    document_id: int
    sha256: str
    size: int
    name: str
    valid_until: date


class StandInLetters:
    """Writes what the letter service writes, without PDF or signature."""

    def __init__(self) -> None:
        self.issued = 0

    async def issue(
        self, conn: AsyncConnection, requests: Sequence[PackRequest], *, now: datetime
    ) -> Mapping[str, Issued]:
        sealer = sealer_of(conn)
        assert sealer is not None
        out: dict[str, Issued] = {}
        for r in requests:
            self.issued += 1
            letter_no = f"SQ2026-{self.issued:06d}-X"
            data = f"%PDF-1.7 letter {letter_no} for {r.agency_id}".encode()
            sha = hashlib.sha256(data).hexdigest()
            await conn.execute(
                LETTERS.update()
                .where(LETTERS.c.placement_id == r.placement_id, LETTERS.c.status == "active")
                .values(status="superseded")
            )
            doc_id = (
                await conn.execute(
                    DOCS.insert()
                    .values(
                        case_id=r.case_id,
                        placement_id=r.placement_id,
                        kind="authorisation_letter",
                        name=f"{letter_no}.pdf",
                        media_type="application/pdf",
                        size=len(data),
                        sha256=sha,
                        content=sealer.seal(data, bound_to=sealed_binding(r.case_id, sha)),
                        created_at=now,
                    )
                    .returning(DOCS.c.id)
                )
            ).scalar_one()
            await conn.execute(
                LETTERS.insert().values(
                    letter_no=letter_no,
                    placement_id=r.placement_id,
                    case_id=r.case_id,
                    agency_id=r.agency_id,
                    valid_from=r.valid_from,
                    valid_until=r.valid_until,
                    status="active",
                    document_id=doc_id,
                    issued_at=now,
                )
            )
            out[r.placement_id] = Issued(
                letter_no, doc_id, sha, len(data), f"{letter_no}.pdf", r.valid_until
            )
        return out

    async def revoke(
        self, conn: AsyncConnection, placement_ids: Sequence[str], *, reason: str, now: datetime
    ) -> list[str]:
        rows = await conn.execute(
            LETTERS.update()
            .where(LETTERS.c.placement_id.in_(placement_ids), LETTERS.c.status == "active")
            .values(status="revoked", revoked_at=now, revoke_reason=reason)
            .returning(LETTERS.c.letter_no)
        )
        return sorted(str(n) for (n,) in rows)


@dataclass
class World:
    db: Database
    pii: PiiKeyRing
    clock: ManualClock
    store: FolderStore
    root: Path
    csv: Path
    agencies: dict[str, AgencyConfig]
    service: PlacementService
    keys: dict[str, HmacKey]
    documented: list[str]
    """Case ids with files in the store."""

    async def import_again(self) -> Any:
        return await import_file(
            self.csv,
            db=self.db,
            pii=self.pii,
            placements=self.service,
            allocation=AllocationSection(),
            clock=self.clock,
            confirmation="off",
            documents=self.store,
        )

    async def rows(self, table: sa.Table, *where: Any) -> list[Any]:
        async with self.db.connect() as conn:
            return list((await conn.execute(sa.select(table).where(*where))).mappings())

    async def packet(self, placement_id: str, packet_type: str) -> dict[str, Any]:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(OUTBOX.c.dedupe_key, OUTBOX.c.payload)
                    .where(
                        OUTBOX.c.placement_id == placement_id,
                        OUTBOX.c.packet_type == packet_type,
                    )
                    .order_by(OUTBOX.c.id.desc())
                )
            ).first()
            assert row is not None, f"no {packet_type} for {placement_id}"
            payload = open_payload(conn, row.dedupe_key, row.payload)
        assert payload is not None
        parsed: dict[str, Any] = json.loads(payload)
        return parsed

    async def placed(self) -> list[tuple[str, str, str]]:
        async with self.db.connect() as conn:
            rows = await conn.execute(
                sa.select(PLACEMENTS.c.id, PLACEMENTS.c.case_id, PLACEMENTS.c.agency_id).order_by(
                    PLACEMENTS.c.id
                )
            )
            return [(str(a), str(b), str(c)) for a, b, c in rows]


def _store_files(root: Path, case_ids: Sequence[str]) -> None:
    first, second = case_ids[0], case_ids[1]
    (root / first).mkdir(parents=True)
    (root / first / "contract.pdf").write_bytes(b"%PDF-1.4 loan contract " + first.encode())
    (root / first / "notary.pdf").write_bytes(b"%PDF-1.4 notarisation")
    (root / first / "repayment-plan.xlsx").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (root / first / "documents.json").write_text(
        json.dumps(
            {
                "notary.pdf": {"kind": "notarisation", "reference": "(2026)京长安内经证字第123号"},
                "repayment-plan.xlsx": {
                    "kind": "preservation",
                    "platform": "BaoQuan",
                    "reference": "BQ-77",
                },
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    (root / second).mkdir()
    (root / second / "借款合同.pdf").write_bytes(b"%PDF-1.4 contract two")


@pytest.fixture
async def world(database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    pii = PiiKeyRing.parse(PiiKeyRing.generate_line("k1"))
    db = Database(database_url, sealer=pii)
    await upgrade(db)
    clock = ManualClock(START.timestamp())
    accounts = list(generate_accounts(ACCOUNTS, seed=11, as_of=START.date(), breakdown=True))
    csv = tmp_path / "accounts.csv"
    write_csv(accounts, csv, breakdown=True)
    root = tmp_path / "store"
    documented = [accounts[0].account_id, accounts[1].account_id]
    _store_files(root, documented)
    agencies = {a: agency_config(id=a) for a in AGENCIES}
    service = PlacementService(
        db=db,
        agencies=agencies,
        pii=pii,
        settings=AllocationSection(),
        clock=clock,
        packs=PackPreparer(
            letters=StandInLetters(), require_letters=True, verify_url="https://lender.test/verify"
        ),
    )
    keys = {a: parse_hmac_secret(generate_hmac_secret()) for a in AGENCIES}
    w = World(db, pii, clock, FolderStore(root), root, csv, agencies, service, keys, documented)
    report = await w.import_again()
    assert report.inserted == ACCOUNTS, report.errors
    yield w
    await db.dispose()


async def test_store_documents_are_hashed_at_intake_once(world: World) -> None:
    docs = await world.rows(DOCS, DOCS.c.placement_id.is_(None))
    by_source = {d["source"]: d for d in docs}
    first, second = world.documented
    assert set(by_source) == {
        f"{first}/contract.pdf",
        f"{first}/notary.pdf",
        f"{first}/repayment-plan.xlsx",
        f"{second}/借款合同.pdf",
    }
    for source, doc in by_source.items():
        data = (world.root / source).read_bytes()
        assert (doc["size"], doc["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert by_source[f"{first}/contract.pdf"]["kind"] == "loan_contract"
    assert by_source[f"{second}/借款合同.pdf"]["kind"] == "loan_contract"
    notary = by_source[f"{first}/notary.pdf"]
    assert (notary["kind"], notary["reference"]) == ("notarisation", "(2026)京长安内经证字第123号")
    assert by_source[f"{first}/repayment-plan.xlsx"]["reference"] == "BaoQuan:BQ-77"
    leaves = await world.rows(LEAVES, LEAVES.c.kind == "document")
    assert {leaf["ref"] for leaf in leaves} == {
        f"document:{d['case_id']}:{d['sha256']}" for d in docs
    }

    again = await world.import_again()
    assert again.documents_recorded == 0
    assert len(await world.rows(DOCS)) == len(docs)
    assert len(await world.rows(LEAVES, LEAVES.c.kind == "document")) == len(leaves)


async def test_a_changed_store_file_is_refused_then_recorded_as_a_new_version(
    world: World,
) -> None:
    await world.service.allocate()
    first = world.documented[0]
    placement = next(p for p, c, _ in await world.placed() if c == first)
    async with world.db.connect() as conn:
        [contract] = [
            d for d in (await pack_of(conn, [placement]))[placement] if d.name == "contract.pdf"
        ]
    (world.root / first / "contract.pdf").write_bytes(b"%PDF-1.4 someone edited this")
    async with world.db.connect() as conn:
        with pytest.raises(DocumentChanged) as refused:
            await document_bytes(conn, contract, store=world.store)
    assert f"case {first}" in str(refused.value) and "contract.pdf" in str(refused.value)

    report = await world.import_again()
    assert (report.documents_recorded, report.documents_changed) == (1, 1)
    versions = await world.rows(DOCS, DOCS.c.source == f"{first}/contract.pdf")
    assert len(versions) == 2  # the old one is kept for the record
    async with world.db.connect() as conn:
        [newest] = [
            d for d in (await pack_of(conn, [placement]))[placement] if d.name == "contract.pdf"
        ]
        assert newest.id != contract.id
        assert await document_bytes(conn, newest, store=world.store) == (
            b"%PDF-1.4 someone edited this"
        )


async def test_a_symbolic_link_in_the_store_is_refused(world: World, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not the lender's document")
    (world.root / world.documented[1] / "link.pdf").symlink_to(outside)
    report = await world.import_again()
    assert report.documents_refused == 1
    assert not await world.rows(DOCS, DOCS.c.name == "link.pdf")


async def test_packets_list_the_pack_and_its_hashes_match_the_bytes(world: World) -> None:
    report = await world.service.allocate()
    assert report.placed == ACCOUNTS
    schema = json.loads((SCHEMAS / "placement.created.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    async with world.db.connect() as conn:
        for placement_id, case_id, agency_id in await world.placed():
            packet = await world.packet(placement_id, "placement.created")
            validator.validate(packet)
            data = packet["data"]
            letter = data["authorisation"]
            assert letter["verify_url"] == "https://lender.test/verify"
            assert letter["valid_until"] == data["return_by"]
            kinds = [d["kind"] for d in data["documents"]]
            assert kinds[:3] == ["authorisation_letter", "balance_breakdown", "repayment_history"]
            if case_id == world.documented[0]:
                assert sorted(kinds[3:]) == ["loan_contract", "notarisation", "preservation"]
            pack = {d.id: d for d in (await pack_of(conn, [placement_id]))[placement_id]}
            for listed in data["documents"]:
                body = await document_bytes(conn, pack[listed["document_id"]], store=world.store)
                assert len(body) == listed["size"]
                assert hashlib.sha256(body).hexdigest() == listed["sha256"]
            breakdown = await document_bytes(
                conn,
                next(d for d in pack.values() if d.kind == "balance_breakdown"),
                store=world.store,
            )
            text = breakdown.decode("utf-8")
            assert text.startswith(BOM) and case_id in text and "罚息 penalty" in text
            assert "费用 fees,0.00,CNY" in text and NOT_GIVEN not in text
            letters = await world.rows(LETTERS, LETTERS.c.placement_id == placement_id)
            assert [(r["letter_no"], r["agency_id"]) for r in letters] == [
                (letter["letter_no"], agency_id)
            ]
    generated = await world.rows(
        LEAVES, LEAVES.c.kind == "document", LEAVES.c.ref.like("document:%")
    )
    assert len(generated) >= ACCOUNTS * 2 + 4


async def test_no_letter_service_with_letters_required_places_nothing(world: World) -> None:
    world.service.packs = PackPreparer(
        letters=None, require_letters=True, verify_url="https://lender.test/verify"
    )
    with pytest.raises(LettersUnavailable):
        await world.service.allocate()
    assert await world.placed() == []


async def test_a_renewal_carries_the_new_letter_and_pack(world: World) -> None:
    await world.service.allocate()
    placement_id, _, _ = (await world.placed())[0]
    created = (await world.packet(placement_id, "placement.created"))["data"]
    expiry = ExpiryService(
        db=world.db,
        agencies=world.agencies,
        placements=world.service,
        settings=AllocationSection(),
        clock=world.clock,
    )
    world.clock.advance(86_400)
    renewal = await expiry.renew(placement_id, 30, actor="ops")
    amended = await world.packet(placement_id, "placement.amended")
    jsonschema.Draft202012Validator(
        json.loads((SCHEMAS / "placement.amended.json").read_text(encoding="utf-8"))
    ).validate(amended)
    data = amended["data"]
    assert data["return_by"] == renewal.return_by.isoformat()
    assert data["authorisation"]["letter_no"] != created["authorisation"]["letter_no"]
    assert data["authorisation"]["valid_until"] == data["return_by"]
    letters = {
        r["letter_no"]: r["status"]
        for r in await world.rows(LETTERS, LETTERS.c.placement_id == placement_id)
    }
    assert letters == {
        created["authorisation"]["letter_no"]: "superseded",
        data["authorisation"]["letter_no"]: "active",
    }
    [letter] = [d for d in data["documents"] if d["kind"] == "authorisation_letter"]
    assert letter["name"] == f"{data['authorisation']['letter_no']}.pdf"
    assert len([d for d in data["documents"] if d["kind"] == "balance_breakdown"]) == 1


# The fetch endpoint, served on loopback.


@dataclass
class Served:
    world: World
    client: Client

    def signed(self, agency_id: str, body: bytes, msg_id: str) -> dict[str, str]:
        stamp = int(self.world.clock.now())
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(msg_id, stamp, body, [self.world.keys[agency_id]]),
            "Content-Type": "application/json",
        }

    async def fetch(
        self, agency_id: str, placement_id: str, document_id: int, msg_id: str = "req_1"
    ) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"placement_id": placement_id, "document_id": document_id}).encode()
        async with self.client.post(
            f"/v1/agencies/{agency_id}/documents",
            data=body,
            headers=self.signed(agency_id, body, msg_id),
        ) as response:
            return response.status, dict(response.headers), await response.read()


@pytest.fixture
async def served(world: World, aiohttp_client: AiohttpClient) -> Served:
    await world.service.allocate()
    trust = {
        a: InboundTrust(agency_id=a, keys=(world.keys[a],), tolerance_seconds=300) for a in AGENCIES
    }
    metrics = Metrics()
    inbound = InboundService(
        db=world.db, trust=trust, clock=world.clock, metrics=metrics, max_body_bytes=4096
    )
    app = create_app(
        inbound=inbound,
        db=world.db,
        metrics_=metrics,
        documents=DocumentFetchService(
            db=world.db, trust=trust, store=world.store, clock=world.clock
        ),
    )
    return Served(world, await aiohttp_client(app))


async def _pack(world: World, placement_id: str) -> list[PackDocument]:
    async with world.db.connect() as conn:
        return (await pack_of(conn, [placement_id]))[placement_id]


async def _documented_placement(world: World) -> tuple[str, str]:
    return next((p, a) for p, c, a in await world.placed() if c == world.documented[0])


async def test_the_owner_fetches_the_exact_bytes(served: Served) -> None:
    world = served.world
    placement_id, agency_id = await _documented_placement(world)
    pack = await _pack(world, placement_id)
    for doc in pack:
        status, headers, body = await served.fetch(agency_id, placement_id, doc.id, f"r{doc.id}")
        assert status == 200, body
        assert hashlib.sha256(body).hexdigest() == doc.sha256 and len(body) == doc.size
        digest = headers["Repr-Digest"].removeprefix("sha-256=:").removesuffix(":")
        assert base64.b64decode(digest).hex() == doc.sha256
        assert headers["Content-Type"].startswith(doc.media_type.split(";")[0])
        assert "attachment" in headers["Content-Disposition"]
    big = next(d for d in pack if d.name == "repayment-plan.xlsx")
    assert big.size > 3 * 1024 * 1024
    fetches = await world.rows(FETCHES, FETCHES.c.outcome == "served")
    assert sorted((f["document_id"], f["size"]) for f in fetches) == sorted(
        (d.id, d.size) for d in pack
    )
    assert len({f["request_id"] for f in fetches}) == len(pack)


async def test_another_agencys_placement_is_404_like_a_missing_one(served: Served) -> None:
    world = served.world
    placement_id, owner = await _documented_placement(world)
    other = next(a for a in AGENCIES if a != owner)
    doc = (await _pack(world, placement_id))[0]
    status, _, body = await served.fetch(other, placement_id, doc.id)
    missing_status, _, missing_body = await served.fetch(other, "PL-NOPE-1", doc.id, "req_2")
    assert (status, missing_status) == (404, 404)
    assert json.loads(body)["type"] == json.loads(missing_body)["type"]
    assert "document-not-found" in json.loads(body)["type"]
    logged = await world.rows(FETCHES, FETCHES.c.agency_id == other)
    assert {r["outcome"] for r in logged} == {"not_found"}


async def test_after_recall_documents_are_gone(served: Served) -> None:
    world = served.world
    placement_id, agency_id = await _documented_placement(world)
    doc = (await _pack(world, placement_id))[0]
    case_id = world.documented[0]
    await world.service.recall(case_id, "OPS_RECALL")
    status, headers, body = await served.fetch(agency_id, placement_id, doc.id)
    assert status == 410
    assert headers["Content-Type"].startswith("application/problem+json")
    assert "was recalled" in json.loads(body)["detail"]
    recalled = (await world.packet(placement_id, "placement.recalled"))["data"]
    letters = await world.rows(LETTERS, LETTERS.c.placement_id == placement_id)
    assert recalled["revoked_letters"] == [letters[0]["letter_no"]]
    assert letters[0]["status"] == "revoked"
    [logged] = await world.rows(FETCHES, FETCHES.c.placement_id == placement_id)
    assert (logged["outcome"], logged["status"]) == ("gone", 410)


async def test_a_wrong_signature_is_401_before_the_body_is_read(served: Served) -> None:
    world = served.world
    _, agency_id = await _documented_placement(world)
    body = b"{not json at all"
    headers = served.signed(agency_id, b"other bytes", "req_bad")
    async with served.client.post(
        f"/v1/agencies/{agency_id}/documents", data=body, headers=headers
    ) as response:
        assert response.status == 401
        assert "signature" in (await response.json(content_type=None))["type"]
    [logged] = await world.rows(FETCHES, FETCHES.c.outcome == "unauthorised")
    assert logged["placement_id"] is None


async def test_an_unknown_agency_and_an_oversized_request_are_refused(served: Served) -> None:
    status, _, _ = await served.fetch("AGY_A", "x" * 5000, 1)
    assert status == 413
    async with served.client.post("/v1/agencies/AGY_NONE/documents", data=b"{}") as response:
        assert response.status == 404


async def test_a_request_sent_in_chunks_still_verifies(served: Served) -> None:
    world = served.world
    placement_id, agency_id = await _documented_placement(world)
    doc = next(d for d in await _pack(world, placement_id) if d.kind == "loan_contract")
    body = json.dumps({"placement_id": placement_id, "document_id": doc.id}).encode()
    server = served.client.server
    answer = await hard_way.send(
        str(server.host),
        int(server.port or 0),
        f"/v1/agencies/{agency_id}/documents",
        served.signed(agency_id, body, "req_chunked"),
        hard_way.pieces(body, 5),
        chunked=True,
        pause=0.01,
    )
    assert answer.status == 200, answer.body
    assert hashlib.sha256(answer.body).hexdigest() == doc.sha256
