"""A statement's XLSX read back with openpyxl, and its signed PDF checked with poppler's
``pdfsig`` and ``pdftotext``."""

from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from gateway.letters.certificates import demo_signing_set
from gateway.letters.signing import LetterSigner
from gateway.settlement.documents import renderer
from gateway.settlement.views import StatementView
from tests.letters_world import have_tools, pdfsig, pdftotext

SHA = "ab" * 32


def view() -> StatementView:
    line = {
        "line_no": 1,
        "paid_on": "2026-03-05",
        "receipt_id": 1000,
        "case_id": "C1",
        "placement_id": "P1",
        "amount_minor": 123_457,
        "attribution_rule": "held",
        "bucket": "M1",
        "dpd_at_placement": 28,
        "age_days": 4,
        "rule": "fresh M1",
        "rate_bps": 1200,
        "commission_minor": 14_815,
        "withheld": False,
    }
    withheld = {
        **line,
        "line_no": 2,
        "placement_id": "P6",
        "amount_minor": 70_000,
        "rule": None,
        "rate_bps": None,
        "commission_minor": None,
        "withheld": True,
    }
    statement = {
        "id": 7,
        "agency_id": "FIRM",
        "month": "2026-03",
        "revision": 2,
        "state": "issued",
        "currency": "CNY",
        "rule_period": "2026-01-01..2026-12-31",
        "tier": "T1",
        "recovered_minor": 123_457,
        "lines_minor": 14_815,
        "floor_topup_minor": 0,
        "ceiling_cut_minor": 0,
        "adjustments_minor": -100,
        "fees_minor": 200_000,
        "total_minor": 214_715,
        "withheld_minor": 70_000,
    }
    return StatementView(
        statement,
        [line, withheld],
        [{"amount_minor": -100, "reason": "重复入账 duplicate"}],
        [
            {
                "case_id": "C1",
                "kind": "court",
                "advanced_minor": 250_000,
                "reimbursed_minor": 200_000,
                "receipt_ref": "(2026)京0105民初123号",
            }
        ],
    )


def test_the_workbook_has_lines_and_summary_with_numbers_as_numbers(tmp_path: Path) -> None:
    docs = {kind: (name, data) for kind, name, data in renderer(None)(view(), SHA)}
    name, data = docs["xlsx"]
    assert name == "statement-FIRM-2026-03-r2.xlsx"
    path = tmp_path / name
    path.write_bytes(data)
    book = load_workbook(path)
    assert book.sheetnames == ["Lines", "Summary"]
    rows = list(book["Lines"].iter_rows(values_only=True))
    assert rows[0][0] == "行号 Line" and len(rows) == 3
    assert Decimal(str(rows[1][5])) == Decimal("1234.57")
    assert Decimal(str(rows[1][12])) == Decimal("148.15")
    assert rows[2][12] is None and rows[2][13] is True
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True)}
    assert summary["SHA-256"] == SHA
    assert Decimal(str(summary["应付合计 Total payable"])) == Decimal("2147.15")
    assert isinstance(summary["法律费用 Legal fees"], int | float)


@pytest.mark.skipif(have_tools() is not None, reason=str(have_tools()))
def test_the_pdf_is_signed_by_the_lender_and_reads_in_chinese(tmp_path: Path) -> None:
    keys = demo_signing_set("示例消费金融有限公司")
    signer = LetterSigner.from_pem(keys.chain, keys.key, where="test")
    docs = {kind: data for kind, _, data in renderer(signer)(view(), SHA)}
    path = tmp_path / "s.pdf"
    path.write_bytes(docs["pdf"])
    report = pdfsig(path)
    assert "Signature is Valid." in report
    assert "Signature #1:" in report and "Signature #2:" not in report
    text = pdftotext(path)
    for expected in (
        "佣金结算单",
        "Settlement statement",
        SHA,
        "2147.15",
        "暂扣",
        "京0105民初123号",
    ):
        assert expected in text
