"""The annual evaluation's report model (pure): what was gathered about one agency over one
year turned into the report's figures, its recommendation and the reasons for it.

Theory of operation
-------------------
``gather`` (gateway.evaluation.gather) reads the store into ``Inputs``; ``evaluate`` makes
the ``Report``. The recommendation is the strongest that any rule gives, each rule that fired
is a ``Reason`` (a code, the figure and the threshold from ``[evaluation]``), so a reviewer
can see exactly why:

=========================  =====================================================  ===========
rule                       fires when                                             recommends
=========================  =====================================================  ===========
``register_status``        the register says terminated or blacklisted            terminate
``high_violations``        high-severity conduct violations ≥ terminate_high...   terminate
``upheld_complaints``      upheld complaints per 10,000 placements ≥ terminate..  terminate
``data_incident``          a high-severity data incident in the year              terminate
``high_violations``        high-severity conduct violations ≥ reduce_high_...     reduce_share
``upheld_complaints``      upheld per 10,000 placements ≥ reduce_upheld_per_10k   reduce_share
``recovery_below_peers``   recovery / peers' in the same strata < reduce_relative  reduce_share
``sla``                    ack or first-activity on time < min_sla_bps             reduce_share
``overdue_complaints``     a complaint past its deadline                           reduce_share
=========================  =====================================================  ===========

Nothing fired: ``renew``. The reviewer decides (renew, reduce share, terminate) and may
depart from the recommendation with a reason; a second person approves
(gateway.evaluation.decisions).

Peers within strata (the scorecards' strata, gateway.reporting.stratified): a stratum is
(bucket at placement, balance band, vintage month). The agency's expected recovery is, per
comparable stratum, its placed balance times the peers' recovery rate in that stratum (peers:
every other agency placed in it); ``relative_bps`` is its recovered over that expectation.
Strata too small to compare are left out of both sides.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Final, Literal

from gateway.config.settings import EvaluationSection

Recommendation = Literal["renew", "reduce_share", "terminate"]
DECISIONS: Final[tuple[Recommendation, ...]] = ("renew", "reduce_share", "terminate")
_RANK: Final = {"renew": 0, "reduce_share": 1, "terminate": 2}


@dataclass(frozen=True, slots=True)
class RegisterFacts:
    """The agency's register entry as the evaluation saw it (None: no entry)."""

    status: str | None = None
    status_reason: str | None = None
    legal_name: str | None = None
    registration_no: str | None = None
    contract_start: date | None = None
    contract_end: date | None = None
    share_bps: int | None = None
    allowed: bool | None = None
    standing_reasons: tuple[str, ...] = ()
    next_lapse: date | None = None
    history: tuple[tuple[str, str, str], ...] = ()
    """(day, action, reason) of the register's changes in the period, oldest first"""


@dataclass(frozen=True, slots=True)
class Stratum:
    """One (bucket, band, vintage month) cell: the agency's and its peers' figures."""

    bucket: str
    band: str
    vintage: str
    placements: int
    placed_minor: int
    recovered_minor: int
    peer_placements: int
    peer_placed_minor: int
    peer_recovered_minor: int
    comparable: bool = True
    """Both sides have enough placements to compare (``[scorecards]`` min_stratum_...)"""


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything ``evaluate`` needs, read by ``gather``."""

    agency_id: str
    period_start: date
    period_end: date
    currency: str
    register: RegisterFacts = RegisterFacts()
    violations: Mapping[str, int] = field(default_factory=dict)
    """conduct kind → count in the period"""
    high_kinds: frozenset[str] = frozenset()
    """which of those kinds are high severity"""
    complaints_received: int = 0
    complaints_upheld: int = 0
    complaints_overdue: int = 0
    complaints_open: int = 0
    deletions_met: int = 0
    deletions_breached: int = 0
    incidents: Mapping[str, int] = field(default_factory=dict)
    """severity → count"""
    strata: Sequence[Stratum] = ()
    ratio_interval_bps: tuple[int, int] | None = None
    """the interval of recovered / expected (the scorecards' confidence), in bps"""
    curve: Sequence[tuple[int, int]] = ()
    """(months since placement, cumulative recovered share in bps) of the period's vintages"""
    ack_met: int = 0
    ack_breached: int = 0
    activity_met: int = 0
    activity_breached: int = 0
    attributed_minor: int = 0
    commission_paid_minor: int = 0
    statements_confirmed: int = 0
    sources: Mapping[str, str] = field(default_factory=dict)
    """section → where its figures came from (the part's API, or the fallback used)"""


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    recommends: Recommendation
    value: int
    threshold: int

    def text(self, lang: str) -> str:
        """The reason in Chinese (``zh``) or English."""
        zh, en = _REASON_TEXT[self.code]
        return (zh if lang == "zh" else en).format(v=self.value, t=self.threshold)


_REASON_TEXT: Final[dict[str, tuple[str, str]]] = {
    "register_status": ("名单状态为终止或黑名单", "the register says terminated or blacklisted"),
    "high_violations": (
        "高严重度违规 {v} 次（阈值 {t}）",
        "{v} high-severity conduct violations (threshold {t})",
    ),
    "upheld_complaints": (
        "成立投诉每万笔 {v}（阈值 {t}）",
        "{v} upheld complaints per 10,000 placements (threshold {t})",
    ),
    "data_incident": ("高严重度数据安全事件 {v} 起", "{v} high-severity data incident(s)"),
    "recovery_below_peers": (
        "同层回收率为同业的 {v} 基点（阈值 {t}）",
        "recovery at {v} bps of its peers' in the same strata (threshold {t})",
    ),
    "sla": ("时效达标率 {v} 基点（阈值 {t}）", "SLA on time {v} bps (threshold {t})"),
    "overdue_complaints": ("逾期未结投诉 {v} 件", "{v} complaint(s) past their deadline"),
}


@dataclass(frozen=True, slots=True)
class Report:
    inputs: Inputs
    placements: int
    placed_minor: int
    recovered_minor: int
    recovery_bps: int | None
    expected_minor: int | None
    """what its peers would have recovered on its placements, stratum by stratum"""
    compared_recovered_minor: int | None
    """what it recovered in the strata compared (the side ``expected_minor`` is set against)"""
    strata_compared: int
    """how many of its strata had enough placements on both sides to compare"""
    relative_bps: int | None
    """recovered / expected, in bps (10,000 = as good as its peers)"""
    high_violations: int
    upheld_per_10k: int | None
    ack_bps: int | None
    activity_bps: int | None
    deletion_bps: int | None
    recommendation: Recommendation
    reasons: tuple[Reason, ...]

    def figures(self) -> dict[str, Any]:
        """The report as JSON-ready data (what is stored, hashed and rendered)."""
        i = self.inputs
        return {
            "agency_id": i.agency_id,
            "period": {"from": i.period_start.isoformat(), "to": i.period_end.isoformat()},
            "currency": i.currency,
            "register": _jsonable(asdict(i.register)),
            "compliance": {
                "violations": dict(sorted(i.violations.items())),
                "high_violations": self.high_violations,
                "complaints": {
                    "received": i.complaints_received,
                    "upheld": i.complaints_upheld,
                    "overdue": i.complaints_overdue,
                    "open": i.complaints_open,
                    "upheld_per_10k": self.upheld_per_10k,
                },
                "deletions": {
                    "met": i.deletions_met,
                    "breached": i.deletions_breached,
                    "on_time_bps": self.deletion_bps,
                },
                "incidents": dict(sorted(i.incidents.items())),
            },
            "performance": {
                "placements": self.placements,
                "placed_minor": self.placed_minor,
                "recovered_minor": self.recovered_minor,
                "recovery_bps": self.recovery_bps,
                "expected_minor": self.expected_minor,
                "compared_recovered_minor": self.compared_recovered_minor,
                "strata_compared": self.strata_compared,
                "strata_total": len(i.strata),
                "relative_bps": self.relative_bps,
                "relative_interval_bps": None
                if i.ratio_interval_bps is None
                else list(i.ratio_interval_bps),
                "strata": [asdict(s) for s in i.strata],
                "curve": [list(p) for p in i.curve],
            },
            "sla": {
                "ack": {"met": i.ack_met, "breached": i.ack_breached, "on_time_bps": self.ack_bps},
                "first_activity": {
                    "met": i.activity_met,
                    "breached": i.activity_breached,
                    "on_time_bps": self.activity_bps,
                },
            },
            "money": {
                "attributed_minor": i.attributed_minor,
                "commission_paid_minor": i.commission_paid_minor,
                "statements_confirmed": i.statements_confirmed,
            },
            "recommendation": self.recommendation,
            "reasons": [
                {
                    "code": r.code,
                    "recommends": r.recommends,
                    "value": r.value,
                    "threshold": r.threshold,
                }
                for r in self.reasons
            ],
            "sources": dict(sorted(i.sources.items())),
        }


def canonical(figures: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, UTF-8 as is: what the report's SHA-256 is taken of."""
    return json.dumps(figures, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat()
        if isinstance(v, date)
        else [list(x) if isinstance(x, tuple) else x for x in v]
        if isinstance(v, tuple)
        else v
        for k, v in value.items()
    }


def _rate(met: int, breached: int) -> int | None:
    decided = met + breached
    return None if decided == 0 else met * 10_000 // decided


def _compared(s: Stratum) -> bool:
    return s.comparable and s.peer_placed_minor > 0 and s.placed_minor > 0


def peers_expected(strata: Iterable[Stratum]) -> tuple[int, int] | None:
    """(recovered, expected) over the strata peers share: expected is the agency's placed
    balance in each stratum times its peers' recovery rate there. None when no stratum has
    peers."""
    recovered = expected = 0
    shared = False
    for s in strata:
        if not _compared(s):
            continue
        shared = True
        recovered += s.recovered_minor
        expected += s.placed_minor * s.peer_recovered_minor // s.peer_placed_minor
    return (recovered, expected) if shared else None


def evaluate(inputs: Inputs, rules: EvaluationSection) -> Report:
    """The report of ``inputs`` with its recommendation under ``rules`` (see the module)."""
    placements = sum(s.placements for s in inputs.strata)
    placed = sum(s.placed_minor for s in inputs.strata)
    recovered = sum(s.recovered_minor for s in inputs.strata)
    vs_peers = peers_expected(inputs.strata)
    expected = relative = None
    if vs_peers is not None:
        expected = vs_peers[1]
        relative = 10_000 if expected == 0 else vs_peers[0] * 10_000 // expected
    high = sum(n for kind, n in inputs.violations.items() if kind in inputs.high_kinds)
    upheld_10k = None if placements == 0 else inputs.complaints_upheld * 10_000 // placements
    ack = _rate(inputs.ack_met, inputs.ack_breached)
    activity = _rate(inputs.activity_met, inputs.activity_breached)
    reasons: list[Reason] = []
    if inputs.register.status in ("terminated", "blacklisted"):
        reasons.append(Reason("register_status", "terminate", 1, 1))
    if high >= rules.terminate_high_violations:
        reasons.append(
            Reason("high_violations", "terminate", high, rules.terminate_high_violations)
        )
    elif high >= rules.reduce_high_violations:
        reasons.append(
            Reason("high_violations", "reduce_share", high, rules.reduce_high_violations)
        )
    if upheld_10k is not None and inputs.complaints_upheld > 0:
        if upheld_10k >= rules.terminate_upheld_per_10k:
            reasons.append(
                Reason("upheld_complaints", "terminate", upheld_10k, rules.terminate_upheld_per_10k)
            )
        elif upheld_10k >= rules.reduce_upheld_per_10k:
            reasons.append(
                Reason("upheld_complaints", "reduce_share", upheld_10k, rules.reduce_upheld_per_10k)
            )
    high_incidents = inputs.incidents.get("high", 0)
    if high_incidents:
        reasons.append(Reason("data_incident", "terminate", high_incidents, 1))
    if relative is not None and relative < rules.reduce_relative_bps:
        reasons.append(
            Reason("recovery_below_peers", "reduce_share", relative, rules.reduce_relative_bps)
        )
    on_time = [r for r in (ack, activity) if r is not None]
    if on_time and min(on_time) < rules.min_sla_bps:
        reasons.append(Reason("sla", "reduce_share", min(on_time), rules.min_sla_bps))
    if inputs.complaints_overdue:
        reasons.append(Reason("overdue_complaints", "reduce_share", inputs.complaints_overdue, 1))
    recommendation: Recommendation = "renew"
    for reason in reasons:
        if _RANK[reason.recommends] > _RANK[recommendation]:
            recommendation = reason.recommends
    return Report(
        inputs=inputs,
        placements=placements,
        placed_minor=placed,
        recovered_minor=recovered,
        recovery_bps=None if placed == 0 else recovered * 10_000 // placed,
        expected_minor=expected,
        compared_recovered_minor=None if vs_peers is None else vs_peers[0],
        strata_compared=sum(1 for s in inputs.strata if _compared(s)),
        relative_bps=relative,
        high_violations=high,
        upheld_per_10k=upheld_10k,
        ack_bps=ack,
        activity_bps=activity,
        deletion_bps=_rate(inputs.deletions_met, inputs.deletions_breached),
        recommendation=recommendation,
        reasons=tuple(reasons),
    )


__all__ = [
    "DECISIONS",
    "Inputs",
    "Reason",
    "Recommendation",
    "RegisterFacts",
    "Report",
    "Stratum",
    "canonical",
    "evaluate",
    "peers_expected",
]
