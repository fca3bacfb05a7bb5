"""The report's documents, from its stored figures (``Report.figures``): an A4 PDF in Chinese
and one in English (reportlab, the built-in ``STSong-Light`` CID font as the statements use,
the vintage curve as an image drawn by the scorecards' ``curves_png``) and an XLSX workbook
with the figures (sheets ``Summary``, ``Strata``, ``Curve``, ``Violations``).

The PDFs are signed with the lender's letter key when ``[lender]`` signing is set up (as the
statements are: gateway.letters.signing, PAdES); ``render`` returns the three documents.
"""

import io
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from openpyxl import Workbook
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from gateway.evaluation.model import Reason
from gateway.letters.signing import LetterSigner
from gateway.reporting.charts import curves_png
from gateway.reporting.strata import Curve

FONT = "STSong-Light"
SIGNING_REASON = "机构年度评估报告 / annual agency evaluation"
KINDS: Final = ("pdf_zh", "pdf_en", "xlsx")

_L: Final[dict[str, tuple[str, str]]] = {
    "title": ("合作机构年度评估报告", "Annual agency evaluation"),
    "agency": ("机构", "Agency"),
    "period": ("评估期", "Period"),
    "register": ("一、名单与合同", "1. Register and contract"),
    "status": ("状态", "Status"),
    "legal_name": ("名称", "Legal name"),
    "registration_no": ("统一社会信用代码", "Registration number"),
    "contract": ("合同期", "Contract"),
    "share": ("分案系数(基点)", "Allocation share (bps)"),
    "standing": ("资质", "Standing"),
    "history": ("名单变更", "Register changes"),
    "compliance": ("二、合规", "2. Compliance"),
    "violations": ("违规（按类型）", "Violations by kind"),
    "high_violations": ("高严重度违规", "High-severity violations"),
    "complaints": (
        "投诉：收到 / 成立 / 逾期 / 未结",
        "Complaints: received / upheld / overdue / open",
    ),
    "upheld_per_10k": ("成立投诉每万笔", "Upheld complaints per 10,000 placements"),
    "deletions": ("数据删除确认：按时 / 逾期", "Deletion confirmations: on time / late"),
    "incidents": ("数据安全事件", "Data incidents"),
    "performance": ("三、业绩（同层对比）", "3. Performance against peers in the same strata"),
    "placements": ("委案笔数", "Placements"),
    "placed": ("委案金额", "Placed"),
    "recovered": ("回款（出借人实收并归属）", "Recovered (received by the lender, attributed)"),
    "recovery": ("回收率", "Recovery rate"),
    "expected": (
        "可比层回款 / 同业在同层的预期回款",
        "Recovered in the strata compared / peers' recovery on the same placements",
    ),
    "compared": ("可比层 / 全部层", "Strata compared / all strata"),
    "relative": ("相对同业", "Relative to peers"),
    "curve": ("回收曲线（按委案后月数累计）", "Vintage curve (cumulative, months since placement)"),
    "sla": ("四、服务时效", "4. SLA record"),
    "ack": ("接案确认：达标 / 超时", "Acknowledgement: met / breached"),
    "activity": ("首次作业：达标 / 超时", "First activity: met / breached"),
    "money": ("五、资金", "5. Money"),
    "attributed": ("归属回款", "Attributed recovery"),
    "commission": ("已确认结算单佣金", "Commission on confirmed statements"),
    "statements": ("已确认结算单", "Confirmed statements"),
    "recommendation": ("六、建议", "6. Recommendation"),
    "reasons": ("依据", "Reasons"),
    "none": ("无", "none"),
    "decision": ("评审决定", "Reviewer's decision"),
    "sha": ("报告摘要 SHA-256", "Report SHA-256"),
}
_DECISION: Final[dict[str, tuple[str, str]]] = {
    "renew": ("续约", "renew"),
    "reduce_share": ("降低分案比例", "reduce share"),
    "terminate": ("终止合作", "terminate"),
}


def label(key: str, lang: str) -> str:
    zh, en = _L[key]
    return zh if lang == "zh" else en


def decision_label(decision: str, lang: str) -> str:
    zh, en = _DECISION[decision]
    return zh if lang == "zh" else en


def major(minor: object) -> Decimal:
    return (Decimal(int(str(minor))) / 100).quantize(Decimal("0.01"))


def pct(bps: object) -> str:
    return "-" if bps is None else f"{int(str(bps)) / 100:.2f}%"


def reason_texts(figures: Mapping[str, Any], lang: str) -> list[str]:
    return [
        Reason(r["code"], r["recommends"], r["value"], r["threshold"]).text(lang)
        for r in figures["reasons"]
    ]


def curve_png(figures: Mapping[str, Any], lang: str) -> bytes:
    """The agency's vintage curve as a PNG, drawn by the scorecards' renderer
    (gateway.reporting.charts, matplotlib with a CJK font for the Chinese labels)."""
    points = tuple((int(m), bps / 10_000, 0) for m, bps in figures["performance"]["curve"])
    curve = Curve(str(figures["agency_id"]), str(figures["currency"]), points)
    return curves_png([curve], lang="zh_CN" if lang == "zh" else "en")


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def report_pdf(figures: Mapping[str, Any], sha256: str, lang: str, chart: bytes | None) -> bytes:
    """The report as an A4 PDF in ``lang`` (``zh`` or ``en``), unsigned."""
    font = _font()
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, invariant=True)
    width, height = A4
    y = height - 56

    def text(line: str, size: float = 10, step: float = 15, indent: float = 0) -> None:
        nonlocal y
        if y < 56:
            canvas.showPage()
            y = height - 56
        canvas.setFont(font, size)
        canvas.drawString(48 + indent, y, line)
        y -= step

    def head(key: str) -> None:
        nonlocal y
        y -= 6
        text(label(key, lang), 12, 18)

    def row(key: str, value: object) -> None:
        text(f"{label(key, lang)}: {value}", indent=12)

    f = figures
    cur = f["currency"]
    text(label("title", lang), 18, 28)
    text(
        f"{label('agency', lang)}: {f['agency_id']}    {label('period', lang)}: "
        f"{f['period']['from']} to {f['period']['to']}"
    )
    text(f"{label('sha', lang)}: {sha256}", 7, 12)
    reg = f["register"]
    head("register")
    row("status", reg["status"] or "-")
    row("legal_name", reg["legal_name"] or "-")
    row("registration_no", reg["registration_no"] or "-")
    row("contract", f"{reg['contract_start'] or '-'} to {reg['contract_end'] or '-'}")
    row("share", reg["share_bps"] if reg["share_bps"] is not None else "-")
    standing = "; ".join(reg["standing_reasons"]) or ("OK" if reg["allowed"] else "-")
    row("standing", standing)
    changes = reg.get("history") or []
    row("history", "" if changes else label("none", lang))
    for day, action, why in changes:
        text(f"{day}  {action}  {why}"[:110], 8, 12, indent=24)
    comp = f["compliance"]
    head("compliance")
    kinds = ", ".join(f"{k} {n}" for k, n in comp["violations"].items())
    row("violations", kinds or label("none", lang))
    row("high_violations", comp["high_violations"])
    c = comp["complaints"]
    row("complaints", f"{c['received']} / {c['upheld']} / {c['overdue']} / {c['open']}")
    row("upheld_per_10k", "-" if c["upheld_per_10k"] is None else c["upheld_per_10k"])
    d = comp["deletions"]
    row("deletions", f"{d['met']} / {d['breached']} ({pct(d['on_time_bps'])})")
    incidents = ", ".join(f"{k} {n}" for k, n in comp["incidents"].items())
    row("incidents", incidents or label("none", lang))
    perf = f["performance"]
    head("performance")
    row("placements", perf["placements"])
    row("placed", f"{major(perf['placed_minor'])} {cur}")
    row("recovered", f"{major(perf['recovered_minor'])} {cur}")
    row("recovery", pct(perf["recovery_bps"]))
    expected, compared = perf["expected_minor"], perf["compared_recovered_minor"]
    row(
        "expected",
        "-"
        if expected is None or compared is None
        else f"{major(compared)} / {major(expected)} {cur}",
    )
    row("compared", f"{perf['strata_compared']} / {perf['strata_total']}")
    interval = perf["relative_interval_bps"]
    row(
        "relative",
        pct(perf["relative_bps"])
        + ("" if interval is None else f" ({pct(interval[0])} - {pct(interval[1])})"),
    )
    text(label("curve", lang), indent=12)
    if chart is not None and perf["curve"]:
        if y < 260:
            canvas.showPage()
            y = height - 56
        canvas.drawImage(ImageReader(io.BytesIO(chart)), 60, y - 210, width=width - 150, height=200)
        y -= 220
    sla = f["sla"]
    head("sla")
    a = sla["ack"]
    row("ack", f"{a['met']} / {a['breached']} ({pct(a['on_time_bps'])})")
    a = sla["first_activity"]
    row("activity", f"{a['met']} / {a['breached']} ({pct(a['on_time_bps'])})")
    money = f["money"]
    head("money")
    row("attributed", f"{major(money['attributed_minor'])} {cur}")
    row("commission", f"{major(money['commission_paid_minor'])} {cur}")
    row("statements", money["statements_confirmed"])
    head("recommendation")
    text(decision_label(f["recommendation"], lang), 12, 18, indent=12)
    text(f"{label('reasons', lang)}:", indent=12)
    for reason in reason_texts(f, lang) or [label("none", lang)]:
        text(f"- {reason}", 9, 13, indent=24)
    decision = f.get("decision")
    if decision:
        text(
            f"{label('decision', lang)}: {decision_label(decision['decision'], lang)} — "
            f"{decision['reason']} ({decision['by']}, {decision['checked_by']})",
            indent=12,
        )
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def report_xlsx(figures: Mapping[str, Any], sha256: str) -> bytes:
    """The figures as a workbook: ``Summary`` (label, value), ``Strata``, ``Curve``,
    ``Violations``; amounts in major units as numbers."""
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = "Summary"
    f = figures
    perf, comp, sla, money = f["performance"], f["compliance"], f["sla"], f["money"]
    c, d = comp["complaints"], comp["deletions"]
    rows: list[tuple[str, object]] = [
        ("机构 Agency", f["agency_id"]),
        ("评估期 From", f["period"]["from"]),
        ("评估期 To", f["period"]["to"]),
        ("币种 Currency", f["currency"]),
        ("名单状态 Register status", f["register"]["status"] or ""),
        ("合同到期 Contract end", f["register"]["contract_end"] or ""),
        ("委案笔数 Placements", perf["placements"]),
        ("委案金额 Placed", major(perf["placed_minor"])),
        ("回款 Recovered", major(perf["recovered_minor"])),
        ("回收率(基点) Recovery bps", perf["recovery_bps"]),
        (
            "可比层回款 Recovered in strata compared",
            None
            if perf["compared_recovered_minor"] is None
            else major(perf["compared_recovered_minor"]),
        ),
        (
            "同业预期 Peers' expected",
            None if perf["expected_minor"] is None else major(perf["expected_minor"]),
        ),
        ("可比层数 Strata compared", perf["strata_compared"]),
        ("全部层数 Strata", perf["strata_total"]),
        ("相对同业(基点) Relative bps", perf["relative_bps"]),
        ("高严重度违规 High violations", comp["high_violations"]),
        ("投诉收到 Complaints received", c["received"]),
        ("投诉成立 Complaints upheld", c["upheld"]),
        ("投诉逾期 Complaints overdue", c["overdue"]),
        ("投诉未结 Complaints open", c["open"]),
        ("成立每万笔 Upheld per 10k", c["upheld_per_10k"]),
        ("删除按时 Deletions on time", d["met"]),
        ("删除逾期 Deletions late", d["breached"]),
        ("数据事件 Data incidents", sum(comp["incidents"].values())),
        ("接案达标 Ack met", sla["ack"]["met"]),
        ("接案超时 Ack breached", sla["ack"]["breached"]),
        ("首次作业达标 First activity met", sla["first_activity"]["met"]),
        ("首次作业超时 First activity breached", sla["first_activity"]["breached"]),
        ("归属回款 Attributed", major(money["attributed_minor"])),
        ("佣金 Commission paid", major(money["commission_paid_minor"])),
        ("已确认结算单 Statements confirmed", money["statements_confirmed"]),
        ("建议 Recommendation", f["recommendation"]),
        ("SHA-256", sha256),
    ]
    for name, value in rows:
        summary.append([name, value])
        if isinstance(value, Decimal):
            summary.cell(row=summary.max_row, column=2).number_format = "#,##0.00"
    for reason in reason_texts(f, "en"):
        summary.append(["依据 Reason", reason])
    strata = book.create_sheet("Strata")
    columns = (
        "bucket",
        "band",
        "vintage",
        "placements",
        "placed_minor",
        "recovered_minor",
        "peer_placements",
        "peer_placed_minor",
        "peer_recovered_minor",
    )
    strata.append(list(columns))
    for s in perf["strata"]:
        strata.append([major(s[k]) if k.endswith("_minor") else s[k] for k in columns])
    curve = book.create_sheet("Curve")
    curve.append(["months_since_placement", "recovered_bps"])
    for month, share in perf["curve"]:
        curve.append([month, share])
    violations = book.create_sheet("Violations")
    violations.append(["kind", "count"])
    for kind, count in comp["violations"].items():
        violations.append([kind, count])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render(
    figures: Mapping[str, Any], sha256: str, signer: LetterSigner | None
) -> list[tuple[str, str, bytes]]:
    """(kind, file name, bytes) of the three documents: ``pdf_zh``, ``pdf_en``, ``xlsx``."""
    stem = f"evaluation-{figures['agency_id']}-{figures['period']['to']}"
    out: list[tuple[str, str, bytes]] = []
    for lang in ("zh", "en"):
        chart = curve_png(figures, lang) if figures["performance"]["curve"] else None
        pdf = report_pdf(figures, sha256, lang, chart)
        if signer is not None:
            pdf = signer.sign(pdf, reason=SIGNING_REASON)
        out.append((f"pdf_{lang}", f"{stem}-{lang}.pdf", pdf))
    out.append(("xlsx", f"{stem}.xlsx", report_xlsx(figures, sha256)))
    return out


__all__ = [
    "KINDS",
    "curve_png",
    "decision_label",
    "label",
    "render",
    "report_pdf",
    "report_xlsx",
]
