"""The demo's year: a year of history for its agencies (gateway.demo.history) and the annual
evaluation of every demo agency (``run_annual``).

The agencies that take ordinary buckets (not only ``LEGAL``) get the history; then every
configured agency is evaluated over the twelve months before the current one, through the
product's own service (what ``evaluation report`` does), and its PDFs (Chinese, English) and
XLSX are written to ``var/demo/evaluations/``. ``AnnualAct.problems`` is what failed: a
report that did not render (a PDF that is not a PDF, an XLSX that is not a workbook) or
history that was not inserted; the demo exits 1 on any.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.bootstrap import Gateway
from gateway.clock import to_datetime
from gateway.demo.history import HistoryAct, insert_history
from gateway.evaluation.documents import KINDS

MAGIC = {"pdf_zh": b"%PDF-", "pdf_en": b"%PDF-", "xlsx": b"PK\x03\x04"}


@dataclass
class AnnualAct:
    history: HistoryAct = field(default_factory=HistoryAct)
    reports: dict[str, dict[str, object]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        out = list(self.failed)
        if not self.history.placements:
            out.append("no demo history was inserted")
        if not self.reports:
            out.append("no annual evaluation was generated")
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "history": self.history.as_json(),
            "reports": self.reports,
            "seconds": round(self.seconds, 1),
            "problems": self.problems(),
        }


async def run_annual(gateway: Gateway, demo_dir: Path, *, seed: int) -> AnnualAct:
    """Insert the history and evaluate every agency (module docstring)."""
    started = time.perf_counter()
    act = AnnualAct()
    today = to_datetime(gateway.clock.now()).date()
    buckets = {
        a.id: a.eligibility.buckets
        for a in gateway.agencies.values()
        if a.enabled and set(a.eligibility.buckets) - {"LEGAL"}
    }
    act.history = await insert_history(gateway.db, gateway.pii, buckets, today=today, seed=seed)
    service = gateway.evaluations()
    ids = await service.generate(
        sorted(gateway.agencies),
        end=today.replace(day=1),
        trigger="demo",
        actor="ops:demo",
        now=to_datetime(gateway.clock.now()),
    )
    folder = demo_dir / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    for report_id in ids:
        row = await service.show(report_id)
        agency_id = str(row["agency_id"])
        written: dict[str, str] = {}
        for kind in KINDS:
            name, body = await service.document(report_id, kind)
            if not body.startswith(MAGIC[kind]):
                act.failed.append(f"{agency_id}: the {kind} document did not render")
            (folder / name).write_bytes(body)
            written[kind] = str(folder / name)
        perf = row["figures"]["performance"]
        act.reports[agency_id] = {
            "id": report_id,
            "recommendation": row["recommendation"],
            "reasons": [r["code"] for r in row["reasons"]],
            "placements": perf["placements"],
            "relative_bps": perf["relative_bps"],
            "curve_months": len(perf["curve"]),
            "sha256": row["canonical_sha256"],
            "documents": written,
        }
    act.seconds = time.perf_counter() - started
    return act


__all__ = ["AnnualAct", "run_annual"]
