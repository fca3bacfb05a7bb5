"""A statement's documents: the XLSX workbook (a lines sheet and a summary sheet, amounts as
numbers) and the PDF (Chinese and English labels, reportlab's built-in ``STSong-Light`` CID
font, so no font file is needed), signed by the lender's key like the authorisation letters
(gateway.letters.signing: pyHanko, PAdES).

Both carry the SHA-256 of the statement's canonical JSON, which is what an agency confirms.
Amounts are written in major units (minor / 100) as exact decimals; the canonical JSON and
the packet carry minor units.
"""

import io
from collections.abc import Sequence
from decimal import Decimal

from openpyxl import Workbook
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from gateway.letters.signing import LetterSigner
from gateway.settlement.statements import Renderer
from gateway.settlement.views import StatementView

FONT = "STSong-Light"
SIGNING_REASON = "佣金结算单 / settlement statement"
LINE_COLUMNS = (
    ("line_no", "行号 Line"),
    ("paid_on", "回款日 Paid on"),
    ("receipt_id", "回款号 Receipt"),
    ("case_id", "案件 Case"),
    ("placement_id", "委案 Placement"),
    ("amount_minor", "回款金额 Amount"),
    ("attribution_rule", "归属 Attribution"),
    ("bucket", "账龄 Bucket"),
    ("dpd_at_placement", "委案DPD DPD"),
    ("age_days", "委案天数 Age"),
    ("rule", "费率规则 Rule"),
    ("rate_bps", "费率(基点) Rate bps"),
    ("commission_minor", "佣金 Commission"),
    ("withheld", "争议暂扣 Withheld"),
)
MONEY_COLUMNS = frozenset({"amount_minor", "commission_minor"})
SUMMARY = (
    ("recovered_minor", "回款合计 Recovered"),
    ("lines_minor", "逐笔佣金 Line commission"),
    ("floor_topup_minor", "保底补足 Minimum top-up"),
    ("ceiling_cut_minor", "封顶扣减 Maximum cut"),
    ("adjustments_minor", "调整 Adjustments"),
    ("fees_minor", "法律费用 Legal fees"),
    ("total_minor", "应付合计 Total payable"),
    ("withheld_minor", "争议暂扣 Withheld (disputed)"),
)


def major(minor: object) -> Decimal:
    """Minor units as an exact decimal of major units (two decimals)."""
    return (Decimal(int(str(minor))) / 100).quantize(Decimal("0.01"))


def file_stem(view: StatementView) -> str:
    st = view.statement
    return f"statement-{st['agency_id']}-{st['month']}-r{st['revision']}"


def statement_xlsx(view: StatementView, sha256: str) -> bytes:
    """The workbook: sheet ``Lines`` (one row per line) and sheet ``Summary``."""
    book = Workbook()
    lines = book.active
    assert lines is not None
    lines.title = "Lines"
    lines.append([label for _, label in LINE_COLUMNS])
    for line in view.lines:
        row: list[object] = []
        for key, _ in LINE_COLUMNS:
            value = line[key]
            if key in MONEY_COLUMNS and value is not None:
                value = major(value)
            row.append(value)
        lines.append(row)
    for cell in lines["F"][1:] + lines["M"][1:]:
        cell.number_format = "#,##0.00"
    summary = book.create_sheet("Summary")
    st = view.statement
    head: list[tuple[str, object]] = [
        ("结算单 Statement", st["id"]),
        ("机构 Agency", st["agency_id"]),
        ("月份 Month", st["month"]),
        ("版本 Revision", st["revision"]),
        ("状态 State", st["state"]),
        ("币种 Currency", st["currency"]),
        ("档位 Tier", st["tier"] or ""),
        ("SHA-256", sha256),
    ]
    for label, value in head:
        summary.append([label, value])
    for key, label in SUMMARY:
        summary.append([label, major(st[key])])
        summary.cell(row=summary.max_row, column=2).number_format = "#,##0.00"
    for adj in view.adjustments:
        summary.append([f"调整 Adjustment: {adj['reason']}", major(adj["amount_minor"])])
    for fee in view.fees:
        summary.append(
            [
                f"费用 Fee {fee['kind']} {fee['case_id']} ({fee['receipt_ref']})",
                major(fee["reimbursed_minor"]),
            ]
        )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def statement_pdf(view: StatementView, sha256: str) -> bytes:
    """The statement as an A4 PDF (unsigned)."""
    font = _font()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    height = A4[1]
    y = height - 56

    def text(line: str, size: float = 9, step: float = 14) -> None:
        nonlocal y
        if y < 56:
            canvas.showPage()
            y = height - 56
        canvas.setFont(font, size)
        canvas.drawString(48, y, line)
        y -= step

    st = view.statement
    text("佣金结算单 Settlement statement", 16, 26)
    text(
        f"机构 Agency: {st['agency_id']}    月份 Month: {st['month']}    版本 Revision: "
        f"{st['revision']}    币种 Currency: {st['currency']}"
    )
    text(f"合同期 Period: {st['rule_period']}    档位 Tier: {st['tier'] or '-'}")
    text(f"SHA-256: {sha256}", 7)
    y -= 6
    text("行 Line | 回款日 Paid | 委案 Placement | 回款 Amount | 规则 Rule | 费率 bps | 佣金")
    for line in view.lines:
        commission = "暂扣 withheld" if line["withheld"] else f"{major(line['commission_minor'])}"
        text(
            f"{line['line_no']} | {line['paid_on']} | {line['placement_id']} | "
            f"{major(line['amount_minor'])} | {line['rule'] or '-'} | {line['rate_bps'] or '-'} | "
            f"{commission}",
            8,
            12,
        )
    y -= 6
    for adj in view.adjustments:
        text(f"调整 Adjustment: {major(adj['amount_minor'])}  {adj['reason']}", 8, 12)
    for fee in view.fees:
        text(
            f"法律费用 Legal fee ({fee['kind']}) {fee['case_id']}: {major(fee['reimbursed_minor'])}"
            f"  票据 receipt {fee['receipt_ref']}",
            8,
            12,
        )
    y -= 6
    for key, label in SUMMARY:
        text(f"{label}: {major(st[key])} {st['currency']}", 10, 16)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def renderer(signer: LetterSigner | None) -> Renderer:
    """The statement service's renderer: XLSX and the PDF, signed when ``signer`` is given
    (the lender's letter signing key)."""

    def render(view: StatementView, sha256: str) -> Sequence[tuple[str, str, bytes]]:
        stem = file_stem(view)
        pdf = statement_pdf(view, sha256)
        if signer is not None:
            pdf = signer.sign(pdf, reason=SIGNING_REASON)
        return [
            ("xlsx", f"{stem}.xlsx", statement_xlsx(view, sha256)),
            ("pdf", f"{stem}.pdf", pdf),
        ]

    return render


__all__ = ["file_stem", "major", "renderer", "statement_pdf", "statement_xlsx"]
