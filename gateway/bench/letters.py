"""Benchmark ``letters``: signed authorisation letters made per second, against a plain PDF
of the same layout in the same run.

Ours is what ``LetterService`` runs per letter (gateway.letters.maker): the Chinese letter
and its English page rendered with reportlab, the CJK font subset embedded, the QR code
drawn, then signed PAdES B-B with pyHanko (RSA-2048, demo chain embedded). It is measured in
this process (render and sign apart) and across a process pool of ``workers`` processes, as
``[lender] letter_workers`` runs big allocation batches. The baseline draws the letter's
English text with reportlab's built-in Helvetica: no font embedded, no QR code, no
signature; the cheapest PDF of the same page in the same library.

The target is well under 50 ms per letter (an allocation round may place 10,000 cases).
Wall times move with the machine's load (reported); CPU times much less.
"""

import io
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from typing import Any

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from gateway.bench.report import load_average
from gateway.config.lender import Registration, RepaymentAccount
from gateway.letters.certificates import demo_signing_set
from gateway.letters.content import LetterContent, Money, english_blocks, verify_link
from gateway.letters.maker import LetterMaker, MakerSpec, init_worker, make_in_worker
from gateway.letters.numbers import format_number
from gateway.letters.render import find_font

TARGET_MS = 50.0
_LENDER = Registration(
    legal_name="示例消费金融有限公司",
    legal_name_en="Example Consumer Finance Co., Ltd.",
    credit_code="91110000MA01ABCD2X",
    address="北京市朝阳区建国路1号",
    phone="400-000-0000",
)
_AGENCY = Registration(
    legal_name="北京示例资产管理有限公司",
    legal_name_en="Beijing Example Asset Management Co., Ltd.",
    credit_code="91110105MA02XYW12K",
    address="北京市海淀区中关村大街2号",
    phone="010-12345678",
)
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"


def content(n: int) -> LetterContent:
    """The ``n``-th letter: a different debtor name each time (so a different glyph subset)."""
    letter_no = format_number("SQ", 2026, n + 1)
    name = _SURNAMES[n % len(_SURNAMES)] + _GIVEN[n % 29 % len(_GIVEN)] + _GIVEN[n % 23]
    return LetterContent(
        letter_no=letter_no,
        issued_on=date(2026, 3, 2),
        valid_from=date(2026, 3, 2),
        valid_until=date(2026, 5, 31),
        lender=_LENDER,
        agency=_AGENCY,
        account=RepaymentAccount(
            bank="招商银行北京分行", account_name=_LENDER.legal_name, account_no="1109000012345678"
        ),
        case_id=f"AC{n:010d}",
        placement_id=f"PL-AC{n:010d}-1",
        debtor_name=name,
        debtor_id_masked="110101********1234",
        contract_no=f"HT-2025-{n:06d}",
        balance=Money(1_234_567 + n, "CNY"),
        principal_due=Money(1_000_000, "CNY"),
        interest=Money(200_000, "CNY"),
        penalty=Money(30_000, "CNY"),
        fees=Money(4_567 + n, "CNY"),
        verify_link=verify_link("https://verify.lender.example/verify", letter_no),
        english=True,
    )


def baseline_pdf(c: LetterContent) -> bytes:
    """The letter's English text in Helvetica, one line per block, no font, QR or signature."""
    buf = io.BytesIO()
    canvas = Canvas(buf, pagesize=A4, invariant=True, pageCompression=1)
    for _ in range(2):
        canvas.setFont("Helvetica", 10)
        y = A4[1] - 56
        for block in english_blocks(c):
            for start in range(0, len(block.text), 95):
                y -= 14
                canvas.drawString(56, y, block.text[start : start + 95])
        canvas.showPage()
    canvas.save()
    return buf.getvalue()


def _timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run(*, letters: int = 200, workers: int | None = None) -> dict[str, Any]:
    """Measure ``letters`` letters each way; the JSON report."""
    load_at_start = load_average()
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    made = demo_signing_set(_LENDER.legal_name)
    spec = MakerSpec(
        font=str(find_font(None)), chain_pem=made.chain, key_pem=made.key, where="bench"
    )
    maker = LetterMaker.build(spec)
    maker.make(content(0))  # font registered, caches warm: as in a running gateway
    baseline_pdf(content(0))
    items = [content(n) for n in range(1, letters + 1)]
    render_wall, render_cpu, sign_wall, sign_cpu = [], [], [], []
    sizes = []
    for c in items:
        pdf, w, p = _timed(maker.renderer.render, c)
        render_wall.append(w)
        render_cpu.append(p)
        signed, w, p = _timed(maker.signer.sign, pdf)
        sign_wall.append(w)
        sign_cpu.append(p)
        sizes.append(len(signed))
    base_wall, base_cpu = [], []
    for c in items:
        _pdf, w, p = _timed(baseline_pdf, c)
        base_wall.append(w)
        base_cpu.append(p)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(spec,),
    ) as pool:
        list(pool.map(make_in_worker, [[content(0)]] * workers))  # workers started and warm
        size = -(-letters // workers)
        start = time.perf_counter()
        parts = [items[i : i + size] for i in range(0, letters, size)]
        done = sum(len(part) for part in pool.map(make_in_worker, parts))
        pool_seconds = time.perf_counter() - start

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000, 2)

    ours_wall = [r + s for r, s in zip(render_wall, sign_wall, strict=True)]
    ours_cpu = [r + s for r, s in zip(render_cpu, sign_cpu, strict=True)]
    pool_ms = round(pool_seconds * 1000 / done, 2)
    return {
        "benchmark": "letters",
        "letters": letters,
        "ours": {
            "per_letter_ms": ms(ours_wall),
            "per_letter_cpu_ms": ms(ours_cpu),
            "render_ms": ms(render_wall),
            "sign_ms": ms(sign_wall),
            "median_bytes": int(statistics.median(sizes)),
        },
        "pool": {"workers": workers, "per_letter_ms": pool_ms},
        "baseline": {
            "what": "the English text in Helvetica: no CJK font, QR code or signature",
            "per_letter_ms": ms(base_wall),
            "per_letter_cpu_ms": ms(base_cpu),
        },
        "ratio": round(statistics.median(base_cpu) / statistics.median(ours_cpu), 3),
        "target_ms": TARGET_MS,
        "meets_target": min(ms(ours_wall), pool_ms) < TARGET_MS,
        "load_average": {"start": load_at_start, "end": load_average()},
    }


__all__ = ["TARGET_MS", "baseline_pdf", "content", "run"]
