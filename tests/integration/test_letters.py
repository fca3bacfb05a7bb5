"""Authorisation letters end to end on both databases: issued in the caller's transaction
with their document row, letter row and evidence leaf; verified by tools that share no code
with the gateway (poppler's pdfsig and pdftotext, openssl cms); revoked on recall,
superseded on renewal; numbered without collisions under concurrency; refused with a clear
error when the configuration lacks what a letter prints."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.clock import to_datetime
from gateway.errors import ConfigError
from gateway.letters import LetterRequest, letter_pdf, letters_of_case, parse_number
from gateway.letters.service import document_binding
from gateway.store.document_tables import AuthorisationLetter, CaseDocument
from tests.case_world import AGENCY, START, CaseWorld, account
from tests.letters_world import (
    AGENCY_NAME,
    LENDER_NAME,
    build_letter_world,
    have_tools,
    lender_ca,
    openssl_verify,
    openssl_verify_certificate,
    pdfsig,
    pdftotext,
)

LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
DOCUMENTS = CaseDocument.__table__  # type: ignore[attr-defined]
UNTIL = START.date() + timedelta(days=90)


@pytest.fixture
async def world(make_config: Any, tmp_path: Path, database_url: str) -> AsyncIterator[CaseWorld]:
    w = await build_letter_world(make_config, tmp_path, database_url)
    yield w
    await w.gateway.aclose()


def request(n: int, *, until: date = UNTIL) -> LetterRequest:
    return LetterRequest(f"ACC-{n:04d}-P1", f"ACC-{n:04d}", AGENCY, START.date(), until)


async def issue(world: CaseWorld, *requests: LetterRequest) -> dict[str, Any]:
    letters = world.gateway.letters
    assert letters is not None
    async with world.db.transaction() as conn:
        return await letters.issue_letters(conn, requests, now=to_datetime(world.clock.now()))


async def pdf_of(world: CaseWorld, case_id: str, letter_no: str) -> bytes:
    async with world.db.connect() as conn:
        _name, pdf = await letter_pdf(conn, world.gateway.pii, case_id, letter_no)
    return pdf


async def test_issue_writes_the_document_the_letter_and_a_leaf(world: CaseWorld) -> None:
    await world.intake([account(1), account(2), account(3)])
    issued = await issue(world, request(1), request(2), request(3))

    numbers = [issued[f"ACC-{n:04d}-P1"].letter_no for n in (1, 2, 3)]
    assert numbers == ["SQ2026-0000001-" + numbers[0][-1], *numbers[1:]]
    assert [parse_number(n).sequence for n in numbers] == [1, 2, 3]  # type: ignore[union-attr]
    letters = await world.rows(sa.select(LETTERS).order_by(LETTERS.c.letter_no))
    assert [(r["letter_no"], r["status"], r["valid_until"]) for r in letters] == [
        (n, "active", UNTIL) for n in numbers
    ]
    letter = issued["ACC-0002-P1"]
    [doc] = await world.rows(sa.select(DOCUMENTS).where(DOCUMENTS.c.id == letter.document_id))
    assert (doc["kind"], doc["placement_id"], doc["reference"]) == (
        "authorisation_letter",
        "ACC-0002-P1",
        letter.letter_no,
    )
    pdf = world.gateway.pii.unseal(
        doc["content"], bound_to=document_binding("ACC-0002", doc["sha256"])
    )
    assert hashlib.sha256(pdf).hexdigest() == doc["sha256"] == letter.sha256
    assert len(pdf) == doc["size"] == letter.size
    assert b"Debtor 2" not in doc["content"]  # sealed at rest
    [leaf] = await world.leaves("letter", f"letter:{letter.letter_no}")
    assert leaf["event"] == "issued"
    assert (leaf["placement_id"], leaf["agency_id"], leaf["sha256"]) == (
        "ACC-0002-P1",
        AGENCY,
        letter.sha256,
    )
    assert (leaf["valid_from"], leaf["valid_until"]) == (
        START.date().isoformat(),
        UNTIL.isoformat(),
    )


async def test_issuing_again_returns_the_same_letter_and_renewal_supersedes_it(
    world: CaseWorld,
) -> None:
    await world.intake([account(1)])
    first = (await issue(world, request(1)))["ACC-0001-P1"]
    again = (await issue(world, request(1)))["ACC-0001-P1"]
    assert again == first
    renewed = (await issue(world, request(1, until=UNTIL + timedelta(days=30))))["ACC-0001-P1"]
    assert renewed.letter_no != first.letter_no
    assert renewed.valid_until == UNTIL + timedelta(days=30)
    async with world.db.connect() as conn:
        rows = await letters_of_case(conn, "ACC-0001")
    assert {(r.letter_no, r.status, r.revoke_reason) for r in rows} == {
        (first.letter_no, "superseded", "RENEWED"),
        (renewed.letter_no, "active", None),
    }
    assert [
        leaf["event"] for leaf in await world.leaves("letter", f"letter:{first.letter_no}")
    ] == [
        "issued",
        "superseded",
    ]


async def test_recall_revokes_the_placements_letter(world: CaseWorld) -> None:
    await world.intake([account(1), account(2)])
    assert await world.allocate() == 2
    placements = {p["case_id"]: p["id"] for p in await world.placements()}
    issued = await issue(
        world,
        *(
            LetterRequest(pid, case_id, AGENCY, START.date(), UNTIL)
            for case_id, pid in sorted(placements.items())
        ),
    )
    await world.gateway.placements.recall("ACC-0001", "PAID_DIRECT")

    rows = {r["placement_id"]: r for r in await world.rows(sa.select(LETTERS))}
    recalled = rows[placements["ACC-0001"]]
    assert recalled["status"] == "revoked" and recalled["revoked_at"] is not None
    assert rows[placements["ACC-0002"]]["status"] == "active"
    letter_no = issued[placements["ACC-0001"]].letter_no
    leaves = await world.leaves("letter", f"letter:{letter_no}")
    assert [leaf["event"] for leaf in leaves] == ["issued", "revoked"]
    assert leaves[1]["reason"] == recalled["revoke_reason"]


async def test_concurrent_issues_never_share_a_number(world: CaseWorld) -> None:
    await world.intake([account(n) for n in range(1, 9)])

    async def one(n: int) -> str:
        return str((await issue(world, request(n)))[f"ACC-{n:04d}-P1"].letter_no)

    numbers = await asyncio.gather(*(one(n) for n in range(1, 9)))
    assert sorted(parse_number(n).sequence for n in numbers) == list(range(1, 9))  # type: ignore[union-attr]


@pytest.mark.skipif(have_tools() is not None, reason=have_tools() or "")
async def test_independent_tools_verify_the_letter_and_catch_a_tampered_one(
    world: CaseWorld, tmp_path: Path
) -> None:
    await world.intake(
        [account(5), account(6), account(7, name="张三丰", national_id="110101199001011234")]
    )
    # Three letters from one signer: the first two are built by pyHanko in full, the third
    # reuses their signature container (gateway.letters.signing): all must verify.
    issued = await issue(world, request(5), request(6), request(7))
    for n in (5, 6, 7):
        each = issued[f"ACC-{n:04d}-P1"]
        pdf = await pdf_of(world, f"ACC-{n:04d}", each.letter_no)
        path = tmp_path / each.name
        path.write_bytes(pdf)
        report = pdfsig(path)
        assert "Signature is Valid" in report, report
        assert "Total document signed" in report, report
        assert "ETSI.CAdES.detached" in report, report
        checked = openssl_verify(pdf, lender_ca(world), tmp_path)
        assert checked.returncode == 0, checked.stderr
    letter = issued["ACC-0007-P1"]
    text = pdftotext(path)
    for printed in (
        "授权委托书",
        letter.letter_no,
        "张三丰",
        "110101********1234",
        LENDER_NAME,
        AGENCY_NAME,
        "不得将本委托事项转委托他人",
        "不得以任何名义收取现金",
        "1109 0000 1234 5678",
        f"https://verify.lender.test/verify?letter={letter.letter_no}",
    ):
        assert printed in text.replace("\n", ""), printed
    assert "110101199001011234" not in text

    # One changed byte inside the signed content: both verifiers refuse.
    at = pdf.index(b"/Producer")
    tampered = pdf[:at] + b"/Producex" + pdf[at + len(b"/Producer") :]
    bad = tmp_path / "tampered.pdf"
    bad.write_bytes(tampered)
    assert "Signature is Valid" not in pdfsig(bad)
    assert openssl_verify(tampered, lender_ca(world), tmp_path).returncode != 0
    # A certificate authority the lender never used is not a trust anchor.
    other = tmp_path / "other-ca.pem"
    from gateway.letters.certificates import demo_signing_set

    other.write_text(demo_signing_set("Someone Else").ca, encoding="utf-8")
    assert openssl_verify(pdf, other, tmp_path).returncode != 0


async def test_missing_registration_is_refused_naming_the_file(
    make_config: Any, tmp_path: Path, database_url: str
) -> None:
    world = await build_letter_world(make_config, tmp_path, database_url, agency_registration=False)
    try:
        await world.intake([account(1)])
        with pytest.raises(ConfigError) as refused:
            await issue(world, request(1))
        source = world.gateway.agencies[AGENCY].source
        assert f"{source}: registration: missing" in str(refused.value)
        assert await world.rows(sa.select(LETTERS)) == []
        assert await world.rows(sa.select(DOCUMENTS)) == []
    finally:
        await world.gateway.aclose()


async def test_no_lender_registration_means_no_letter_service(
    make_config: Any, tmp_path: Path, database_url: str
) -> None:
    world = await build_letter_world(make_config, tmp_path, database_url, lender=False)
    try:
        assert world.gateway.letters is None
    finally:
        await world.gateway.aclose()


async def test_missing_signing_certificate_names_the_config_key(world: CaseWorld) -> None:
    await world.intake([account(1)])
    ref = world.gateway.settings.lender.signing_certificate
    assert ref.file is not None
    (world.gateway.settings.base_dir / ref.file).unlink()
    letters = world.gateway.letters
    assert letters is not None
    letters._spec = None  # as a fresh process would find it
    with pytest.raises(ConfigError, match=r"\[lender\] signing_certificate \(file "):
        await issue(world, request(1))


@pytest.mark.skipif(have_tools() is not None, reason=have_tools() or "")
async def test_keys_generate_makes_a_signing_certificate_its_ca_verifies(
    world: CaseWorld, tmp_path: Path
) -> None:
    from gateway.keys import generate_lender_signing

    settings = world.gateway.settings
    assert settings.lender.signing_certificate.file is not None
    assert settings.lender.signing_key.file is not None
    cert = settings.base_dir / settings.lender.signing_certificate.file
    key = settings.base_dir / settings.lender.signing_key.file
    verdict, subject = openssl_verify_certificate(cert, lender_ca(world), tmp_path)
    assert verdict == "OK"
    assert LENDER_NAME in subject
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    [again] = generate_lender_signing(settings)
    assert again.done == "exists"
    key.unlink()
    with pytest.raises(ConfigError, match="only one of"):
        generate_lender_signing(settings)


async def test_every_placement_gets_a_letter_that_its_recall_revokes(
    make_config: Any, tmp_path: Path, database_url: str
) -> None:
    world = await build_letter_world(make_config, tmp_path, database_url, required=True)
    try:
        await world.intake([account(n) for n in range(1, 5)])
        assert await world.allocate() == 4
        placements = {p["id"]: p for p in await world.placements()}
        letters = {r["placement_id"]: r for r in await world.rows(sa.select(LETTERS))}
        assert set(letters) == set(placements)
        for pid, letter in letters.items():
            assert letter["status"] == "active"
            assert letter["valid_until"] == placements[pid]["return_by"]
        created = {
            p["data"]["placement_id"]: p["data"] for p in await world.packets("placement.created")
        }
        for pid, data in created.items():
            assert data["authorisation"]["letter_no"] == letters[pid]["letter_no"]

        recalled_id = await world.gateway.placements.recall("ACC-0002", "PAID_DIRECT")
        [recalled] = await world.packets("placement.recalled")
        assert recalled["data"]["revoked_letters"] == [letters[recalled_id]["letter_no"]]
        [row] = await world.rows(sa.select(LETTERS).where(LETTERS.c.placement_id == recalled_id))
        assert row["status"] == "revoked"
    finally:
        await world.gateway.aclose()


async def test_problems_name_what_stops_letters(world: CaseWorld) -> None:
    letters = world.gateway.letters
    assert letters is not None
    assert letters.problems([AGENCY]) == []
    assert letters.problems(["NOBODY"]) == [
        "agency NOBODY is not configured; it cannot get a letter"
    ]
    ref = world.gateway.settings.lender.signing_key
    assert ref.file is not None
    (world.gateway.settings.base_dir / ref.file).write_text("not a key\n", encoding="utf-8")
    letters._spec = letters._maker = None  # as a fresh process would find it
    [problem] = letters.problems()
    assert "[lender] signing_certificate/signing_key: the private key does not parse" in problem


async def test_an_agency_ending_the_placement_revokes_its_letter(
    make_config: Any, tmp_path: Path, database_url: str
) -> None:
    world = await build_letter_world(make_config, tmp_path, database_url, required=True)
    try:
        await world.intake([account(n) for n in range(1, 5)])
        assert await world.allocate() == 4
        placed = {p["case_id"]: p for p in await world.placements()}
        pid = {case_id: p["id"] for case_id, p in placed.items()}
        for case_id in ("ACC-0002", "ACC-0003"):  # an agency returns or closes what it took
            acknowledged = {
                "placement_id": pid[case_id],
                "agency_case_ref": f"EXT-{case_id}",
                "balance": {"amount_minor": placed[case_id]["balance_minor"], "currency": "CNY"},
            }
            assert await world.post("placement.acknowledged", acknowledged) == 200
        balance = {"amount_minor": 1_000, "currency": "CNY"}
        for event, data in (
            ("placement.rejected", {"placement_id": pid["ACC-0001"], "reason": "not ours"}),
            (
                "case.returned",
                {"placement_id": pid["ACC-0002"], "reason": "uncollectable", "balance": balance},
            ),
            ("case.closed", {"placement_id": pid["ACC-0003"], "reason": "paid_in_full"}),
        ):
            assert await world.post(event, data) == 200
        letters = {r["placement_id"]: r for r in await world.rows(sa.select(LETTERS))}
        assert [
            (letters[pid[c]]["status"], letters[pid[c]]["revoke_reason"])
            for c in ("ACC-0001", "ACC-0002", "ACC-0003", "ACC-0004")
        ] == [
            ("revoked", "rejected"),
            ("revoked", "returned"),
            ("revoked", "closed"),
            ("active", None),
        ]
        leaves = await world.leaves("letter", f"letter:{letters[pid['ACC-0002']]['letter_no']}")
        assert [(leaf["event"], leaf.get("reason")) for leaf in leaves] == [
            ("issued", None),
            ("revoked", "returned"),
        ]
    finally:
        await world.gateway.aclose()


async def test_a_renewal_supersedes_the_letter_with_one_to_the_new_date(
    make_config: Any, tmp_path: Path, database_url: str
) -> None:
    world = await build_letter_world(make_config, tmp_path, database_url, required=True)
    try:
        await world.intake([account(1)])
        assert await world.allocate() == 1
        [placement] = await world.placements()
        [first] = await world.rows(sa.select(LETTERS))
        renewal = await world.gateway.expiry.renew(placement["id"], 30, actor="ops:test")
        rows = {r["letter_no"]: r for r in await world.rows(sa.select(LETTERS))}
        assert rows[first["letter_no"]]["status"] == "superseded"
        [new] = [r for r in rows.values() if r["status"] == "active"]
        assert new["valid_until"] == renewal.return_by != first["valid_until"]
        [amended] = await world.packets("placement.amended")
        assert amended["data"]["authorisation"]["letter_no"] == new["letter_no"]
    finally:
        await world.gateway.aclose()
