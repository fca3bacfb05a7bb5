"""The document pack's pure parts and the folder store: kinds guessed from names, the
statements' bytes, the download name, and the store refusing anything outside itself."""

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.dispatch.packets import render_amended, render_recalled
from gateway.documents.fetch import content_disposition
from gateway.documents.kinds import guess_kind
from gateway.documents.statements import (
    BOM,
    NOT_GIVEN,
    Breakdown,
    Repayment,
    balance_breakdown,
    repayment_history,
)
from gateway.documents.store import FolderStore, hash_file
from gateway.errors import DocumentError
from schemas.packets import Authorisation, DocumentDescriptor

AS_OF = date(2026, 3, 2)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("contract.pdf", "loan_contract"),
        ("Loan-Contract-2026.PDF", "loan_contract"),
        ("借款合同.pdf", "loan_contract"),
        ("notarisation-certificate.pdf", "notarisation"),
        ("公证书.pdf", "notarisation"),
        ("preservation-receipt.json", "preservation"),
        ("存证回执.pdf", "preservation"),
        ("id-card.jpg", "other"),
        ("subcontractor.pdf", "other"),
    ],
)
def test_the_kind_is_guessed_from_the_name(name: str, kind: str) -> None:
    assert guess_kind(name) == kind


def _rows(data: bytes) -> list[list[str]]:
    assert data.startswith(BOM.encode("utf-8")), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(data.decode("utf-8").removeprefix(BOM))))


def test_a_breakdown_the_lender_did_not_give_says_so_never_zero() -> None:
    rows = dict(
        (r[0], r[1:])
        for r in _rows(
            balance_breakdown(
                Breakdown(case_id="AC1", currency="CNY", balance_minor=123_456, principal_minor=1),
                as_of=AS_OF,
            )
        )
    )
    for item in ("应还本金 principal_due", "利息 interest", "罚息 penalty", "费用 fees"):
        assert rows[item] == [NOT_GIVEN, "CNY"]
    assert rows["应还总额 balance"] == ["1234.56", "CNY"]
    assert rows["合同编号 contract_no"][0] == NOT_GIVEN


def test_a_full_breakdown_shows_each_part_and_the_rate() -> None:
    data = balance_breakdown(
        Breakdown(
            case_id="AC1",
            currency="JPY",
            balance_minor=1000,
            principal_minor=900,
            principal_due_minor=700,
            interest_minor=200,
            penalty_minor=100,
            fees_minor=0,
            contract_no="HT-1",
            disbursed_on=date(2025, 1, 5),
            annual_rate_bp=1825,
        ),
        as_of=AS_OF,
    )
    rows = {r[0]: r[1] for r in _rows(data)}
    assert rows["应还本金 principal_due"] == "700"  # JPY has no minor unit
    assert rows["费用 fees"] == "0"
    assert rows["年化利率 annual_rate"] == "18.25%"
    assert rows["放款日 disbursed_on"] == "2025-01-05"
    assert data == balance_breakdown(
        Breakdown(
            case_id="AC1",
            currency="JPY",
            balance_minor=1000,
            principal_minor=900,
            principal_due_minor=700,
            interest_minor=200,
            penalty_minor=100,
            fees_minor=0,
            contract_no="HT-1",
            disbursed_on=date(2025, 1, 5),
            annual_rate_bp=1825,
        ),
        as_of=AS_OF,
    ), "the same inputs give the same bytes (and hash)"


def test_the_repayment_history_is_in_order_with_totals() -> None:
    at = datetime(2026, 2, 1, 8, tzinfo=UTC)
    rows = _rows(
        repayment_history(
            "AC1",
            [
                Repayment("P2", at.replace(day=9), 5_000, "CNY", "debtor"),
                Repayment("P1", at, 12_345, "CNY", "debtor"),
            ],
            as_of=AS_OF,
        )
    )
    payments = [r for r in rows if r and r[0].startswith("2026-")]
    assert [r[3] for r in payments] == ["P1", "P2"]
    assert ["合计 total", "173.45", "CNY", "", ""] in rows
    empty = _rows(repayment_history("AC1", [], as_of=AS_OF))
    assert any(r and r[0].startswith("无还款记录") for r in empty)


def test_the_download_name_keeps_chinese_and_an_ascii_fallback() -> None:
    header = content_disposition('借款合同 "v2".pdf')
    assert header.startswith('attachment; filename="')
    assert "filename*=UTF-8''%E5%80%9F%E6%AC%BE" in header
    fallback = header.split('filename="')[1].split('"')[0]
    assert fallback.isascii() and '"' not in fallback


def test_the_store_refuses_case_ids_that_leave_it(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    for bad in ("..", ".", "a/b", "", ".hidden"):
        with pytest.raises(DocumentError):
            store.case_files(bad)
    for bad_source in ("../etc/passwd", "AC1/../../x", "AC1/sub/file", "/etc/passwd"):
        with pytest.raises(DocumentError):
            store.open(bad_source)


def test_the_store_refuses_a_linked_case_folder_and_reads_no_manifest_as_a_document(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    (root / "AC1").mkdir(parents=True)
    (root / "AC1" / "contract.pdf").write_bytes(b"x" * 10)
    (root / "AC1" / "documents.json").write_text(
        json.dumps({"contract.pdf": {"kind": "loan_contract", "reference": "N-1"}})
    )
    (root / "AC1" / "sub").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "AC2").symlink_to(tmp_path / "elsewhere")
    store = FolderStore(root)
    assert store.case_ids() == {"AC1", "AC2"}
    files, refused = store.case_files("AC1")
    assert [(f.name, f.kind, f.reference, f.size) for f in files] == [
        ("contract.pdf", "loan_contract", "N-1", 10)
    ]
    assert refused == []
    assert hash_file(store, "AC1/contract.pdf")[0] == 10
    with pytest.raises(DocumentError, match="symbolic link"):
        store.case_files("AC2")


def test_a_wrong_manifest_names_the_file_and_the_key(tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "AC1").mkdir(parents=True)
    (root / "AC1" / "documents.json").write_text(json.dumps({"a.pdf": {"kind": "contract"}}))
    with pytest.raises(DocumentError, match=r"documents.json: a.pdf: kind 'contract'"):
        FolderStore(root).case_files("AC1")


def test_packets_without_a_pack_are_unchanged_and_with_one_carry_it() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    plain = render_recalled(
        agency_id="AGY", placement_id="PL-1", case_id="AC1", version=1, reason_code="X_Y", at=at
    )
    assert b"revoked_letters" not in plain.payload
    revoked = render_recalled(
        agency_id="AGY",
        placement_id="PL-1",
        case_id="AC1",
        version=1,
        reason_code="X_Y",
        at=at,
        revoked_letters=["SQ2026-000001-X"],
    )
    assert json.loads(revoked.payload)["data"]["revoked_letters"] == ["SQ2026-000001-X"]
    assert revoked.dedupe_key == plain.dedupe_key, "the same packet, whatever it carries"
    amended = render_amended(
        agency_id="AGY",
        placement_id="PL-1",
        case_id="AC1",
        version=2,
        balance_minor=1,
        previous_balance_minor=1,
        currency="CNY",
        reason="renewed until 2026-09-01",
        at=at,
        return_by=date(2026, 9, 1),
        authorisation=Authorisation(
            letter_no="SQ2026-000002-Y",
            valid_from=date(2026, 3, 2),
            valid_until=date(2026, 9, 1),
            verify_url="https://lender.test/verify",
        ),
        documents=[
            DocumentDescriptor(
                document_id=7,
                kind="authorisation_letter",
                name="a.pdf",
                media_type="application/pdf",
                size=3,
                sha256="0" * 64,
            )
        ],
    )
    data = json.loads(amended.payload)["data"]
    assert data["authorisation"]["letter_no"] == "SQ2026-000002-Y"
    assert [d["document_id"] for d in data["documents"]] == [7]
    assert "reference" not in data["documents"][0]
