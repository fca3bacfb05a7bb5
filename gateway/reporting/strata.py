"""Fair comparison of agencies (pure): recovery within strata, with confidence intervals.

Theory of operation
-------------------
A placement *i* has a placed balance ``x`` and a recovery ``y`` (the lender-received money
attributed to it; see gateway.reporting.stratified). The store groups placements into
``Cell``s, one per (agency or strategy, ``Stratum``): a stratum is the currency, the bucket
at placement, the balance band and the vintage month (month of placement, UTC). A cell keeps
``n``, ``Σx``, ``Σy`` and the second moments ``Σx²``, ``Σy²``, ``Σxy``, which is all the
statistics below need, so the database does the set-based work in one grouped query.

* **Rate** of a cell: ``R = Σy / Σx`` (a ratio estimator). Its variance is the linearised
  (Taylor) one: ``V(R) = n/(n-1) · Σ(y - R·x)² / (Σx)²`` with
  ``Σ(y - R·x)² = Σy² - 2R·Σxy + R²·Σx²``; the interval is ``R ± z·√V`` (normal
  approximation, ``z`` from the confidence level), cut at zero below. Undefined for n < 2.
* **Agency against peers** (indirect standardisation): in each stratum where the agency and
  its peers (every other agency) each have at least ``min_n`` placements, the expected
  recovery is the agency's placed balance times the peers' rate there. ``actual`` and
  ``expected`` sum over those strata; the ratio ``actual / expected`` (1.0 = as the peers
  would have done with the same mix) has the delta-method variance
  ``(V(A) + ratio²·V(E)) / E²``, with ``V(A) = Σ n/(n-1)·Σ(y - R_a·x)²`` (the agency's
  residuals around its own stratum rates) and ``V(E) = Σ X_a² · V(R_peers)``. Strata below
  ``min_n`` on either side are listed, marked too small, and left out of the ratio.
* **Champion / challenger**: in each stratum where both strategies have ``min_n``
  placements, ``d = R_challenger - R_champion``; the difference is the average of ``d``
  weighted by the stratum's placed balance (both strategies), its variance
  ``Σ w² (V_ch + V_cn)``, its two-sided p-value from the normal distribution; significant
  when the p-value is below ``1 - confidence``.
* **Vintage curves**: recovered share of the placed balance by months on book (MOB, calendar
  months since the month of placement; MOB 0 is the placement month), cumulative; a vintage
  counts at MOB k only once it has reached it (the month ``as_of`` falls in is the last).
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import NormalDist
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True, slots=True, order=True)
class Stratum:
    currency: str
    bucket: str
    band: str
    vintage: str
    """``YYYY-MM``, the month of placement (UTC)."""

    def as_dict(self) -> dict[str, str]:
        return {
            "currency": self.currency,
            "bucket": self.bucket,
            "band": self.band,
            "vintage": self.vintage,
        }


@dataclass(frozen=True, slots=True)
class Cell:
    """Sums over a group of placements: count, placed (Σx), recovered (Σy), second moments."""

    n: int = 0
    placed: int = 0
    recovered: int = 0
    xx: float = 0.0
    yy: float = 0.0
    xy: float = 0.0

    def __add__(self, other: "Cell") -> "Cell":
        return Cell(
            self.n + other.n,
            self.placed + other.placed,
            self.recovered + other.recovered,
            self.xx + other.xx,
            self.yy + other.yy,
            self.xy + other.xy,
        )

    @property
    def rate(self) -> float | None:
        return None if self.placed <= 0 else self.recovered / self.placed

    def residual_ss(self) -> float:
        """Σ(y - R·x)² around the cell's own rate (never negative)."""
        r = self.rate
        if r is None:
            return 0.0
        return max(0.0, self.yy - 2 * r * self.xy + r * r * self.xx)

    def total_variance(self) -> float | None:
        """Variance of Σy given the placed balances: n/(n-1)·Σ(y - R·x)²."""
        if self.n < 2 or self.placed <= 0:
            return None
        return self.n / (self.n - 1) * self.residual_ss()

    def rate_variance(self) -> float | None:
        """The ratio estimator's linearised variance (module docstring)."""
        total = self.total_variance()
        return None if total is None else total / (self.placed * self.placed)


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_list(self) -> list[float]:
        return [self.low, self.high]


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of a confidence level (0.95 → 1.959…)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not between 0 and 1")
    return NormalDist().inv_cdf((1 + confidence) / 2)


def rate_interval(cell: Cell, z: float) -> Interval | None:
    r, v = cell.rate, cell.rate_variance()
    if r is None or v is None:
        return None
    half = z * math.sqrt(v)
    return Interval(max(0.0, r - half), r + half)


@dataclass(frozen=True, slots=True)
class StratumLine:
    """One stratum of an agency's comparison."""

    stratum: Stratum
    agency: Cell
    peers: Cell
    comparable: bool
    """Both sides have at least ``min_n`` placements; otherwise shown as too small."""
    agency_interval: Interval | None
    expected: float | None
    """The agency's placed balance at the peers' rate (comparable strata only)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.stratum.as_dict(),
            "placements": self.agency.n,
            "placed_minor": self.agency.placed,
            "recovered_minor": self.agency.recovered,
            "rate": self.agency.rate,
            "rate_interval": None
            if self.agency_interval is None
            else self.agency_interval.as_list(),
            "peer_placements": self.peers.n,
            "peer_rate": self.peers.rate,
            "expected_minor": self.expected,
            "comparable": self.comparable,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """An agency's recovery in one currency against its peers' in the same strata."""

    agency_id: str
    currency: str
    crude: Cell
    crude_interval: Interval | None
    lines: tuple[StratumLine, ...]
    actual: int
    """Recovered in the comparable strata."""
    expected: float
    ratio: float | None
    """actual / expected: 1.0 is the peers' performance on the same mix."""
    ratio_interval: Interval | None

    @property
    def too_small(self) -> int:
        return sum(1 for line in self.lines if not line.comparable)

    @property
    def significant(self) -> bool:
        """The ratio's interval leaves out 1 (better or worse than the peers)."""
        return self.ratio_interval is not None and not self.ratio_interval.covers(1.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency_id": self.agency_id,
            "currency": self.currency,
            "placements": self.crude.n,
            "placed_minor": self.crude.placed,
            "recovered_minor": self.crude.recovered,
            "rate": self.crude.rate,
            "rate_interval": None if self.crude_interval is None else self.crude_interval.as_list(),
            "actual_minor": self.actual,
            "expected_minor": self.expected,
            "ratio": self.ratio,
            "ratio_interval": None
            if self.ratio_interval is None
            else self.ratio_interval.as_list(),
            "significant": self.significant,
            "strata_too_small": self.too_small,
            "strata": [line.as_dict() for line in self.lines],
        }


def compare(
    cells: Mapping[tuple[str, Stratum], Cell], *, min_n: int, confidence: float
) -> list[Comparison]:
    """Each agency (and currency) against its peers within strata (module docstring)."""
    z = z_value(confidence)
    totals: dict[Stratum, Cell] = {}
    for (_agency, stratum), cell in cells.items():
        totals[stratum] = totals.get(stratum, Cell()) + cell
    by_agency: dict[tuple[str, str], list[tuple[Stratum, Cell]]] = {}
    for (agency, stratum), cell in sorted(cells.items()):
        by_agency.setdefault((agency, stratum.currency), []).append((stratum, cell))
    out = []
    for (agency, currency), own in sorted(by_agency.items()):
        lines = []
        actual, expected, var_a, var_e = 0, 0.0, 0.0, 0.0
        crude = Cell()
        for stratum, cell in own:
            crude = crude + cell
            peers = _minus(totals[stratum], cell)
            comparable = cell.n >= min_n and peers.n >= min_n and peers.rate is not None
            exp: float | None = None
            if comparable:
                peer_rate = peers.rate
                assert peer_rate is not None
                exp = cell.placed * peer_rate
                actual += cell.recovered
                expected += exp
                var_a += cell.total_variance() or 0.0
                var_e += cell.placed * cell.placed * (peers.rate_variance() or 0.0)
            lines.append(StratumLine(stratum, cell, peers, comparable, rate_interval(cell, z), exp))
        ratio = actual / expected if expected > 0 else None
        interval = None
        if ratio is not None:
            half = z * math.sqrt((var_a + ratio * ratio * var_e) / (expected * expected))
            interval = Interval(max(0.0, ratio - half), ratio + half)
        out.append(
            Comparison(
                agency,
                currency,
                crude,
                rate_interval(crude, z),
                tuple(lines),
                actual,
                expected,
                ratio,
                interval,
            )
        )
    return out


def _minus(total: Cell, part: Cell) -> Cell:
    return Cell(
        total.n - part.n,
        total.placed - part.placed,
        total.recovered - part.recovered,
        total.xx - part.xx,
        total.yy - part.yy,
        total.xy - part.xy,
    )


@dataclass(frozen=True, slots=True)
class Contrast:
    """Challenger minus champion recovery rate in one currency, within strata."""

    currency: str
    champion: Cell
    challenger: Cell
    strata: int
    """Strata where both strategies have ``min_n`` placements (the others are left out)."""
    strata_too_small: int
    difference: float | None
    interval: Interval | None
    p_value: float | None
    confidence: float

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 1 - self.confidence

    def as_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "champion": {"placements": self.champion.n, "rate": self.champion.rate},
            "challenger": {"placements": self.challenger.n, "rate": self.challenger.rate},
            "strata": self.strata,
            "strata_too_small": self.strata_too_small,
            "difference": self.difference,
            "interval": None if self.interval is None else self.interval.as_list(),
            "p_value": self.p_value,
            "confidence": self.confidence,
            "significant": self.significant,
        }


def contrast(
    cells: Mapping[tuple[str, Stratum], Cell], *, min_n: int, confidence: float
) -> list[Contrast]:
    """Champion against challenger per currency (module docstring); ``cells`` are keyed by
    strategy. A difference with no stratum to compare in is ``None``."""
    z = z_value(confidence)
    currencies = sorted({s.currency for _k, s in cells})
    out = []
    for currency in currencies:
        strata = sorted({s for _k, s in cells if s.currency == currency})
        champion, challenger = Cell(), Cell()
        usable: list[tuple[Cell, Cell]] = []
        small = 0
        for s in strata:
            cn = cells.get((CHAMPION, s), Cell())
            ch = cells.get((CHALLENGER, s), Cell())
            champion, challenger = champion + cn, challenger + ch
            if cn.n >= min_n and ch.n >= min_n and cn.placed > 0 and ch.placed > 0:
                usable.append((cn, ch))
            else:
                small += 1
        difference = interval = p_value = None
        weight = sum(cn.placed + ch.placed for cn, ch in usable)
        if usable and weight > 0:
            difference, variance = 0.0, 0.0
            for cn, ch in usable:
                w = (cn.placed + ch.placed) / weight
                difference += w * ((ch.rate or 0.0) - (cn.rate or 0.0))
                variance += w * w * ((cn.rate_variance() or 0.0) + (ch.rate_variance() or 0.0))
            se = math.sqrt(variance)
            interval = Interval(difference - z * se, difference + z * se)
            if se > 0:
                p_value = 2 * (1 - NormalDist().cdf(abs(difference) / se))
            else:
                p_value = 1.0 if difference == 0 else 0.0
        out.append(
            Contrast(
                currency,
                champion,
                challenger,
                len(usable),
                small,
                difference,
                interval,
                p_value,
                confidence,
            )
        )
    return out


def band_labels(bands: Sequence[int]) -> list[str]:
    """Labels of the balance bands cut at ``bands`` (minor units, ascending):
    ``<500000``, ``500000-1999999``, …, ``>=5000000``."""
    if not bands:
        return ["all"]
    labels = [f"<{bands[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in pairwise(bands)]
    labels.append(f">={bands[-1]}")
    return labels


def band_of(balance_minor: int, bands: Sequence[int]) -> str:
    """The band label of a placed balance (the same cut the store's query makes)."""
    labels = band_labels(bands)
    for cut, label in zip(bands, labels, strict=False):
        if balance_minor < cut:
            return label
    return labels[-1]


def month_label(index: int) -> str:
    """``YYYY-MM`` of a month index (year·12 + month - 1)."""
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(frozen=True, slots=True)
class Curve:
    """An agency's cumulative recovered share by months on book, in one currency."""

    agency_id: str
    currency: str
    points: tuple[tuple[int, float, int], ...] = field(default_factory=tuple)
    """(months on book, recovered share of placed, placed balance of the vintages counted)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "agency_id": self.agency_id,
            "currency": self.currency,
            "points": [{"mob": m, "share": s, "placed_minor": p} for m, s, p in self.points],
        }


def curves(
    placed: Iterable[tuple[str, str, int, int]],
    recovered: Iterable[tuple[str, str, int, int, int]],
    *,
    last_month: int,
) -> list[Curve]:
    """Vintage curves (module docstring) from placed (agency, currency, vintage month index,
    placed minor) and recovered (agency, currency, vintage month index, paid month index,
    amount minor); ``last_month`` is the index of the month ``as_of`` falls in. Money paid
    before the month of placement (never, in a consistent store) counts at MOB 0."""
    vintages: dict[tuple[str, str], dict[int, int]] = {}
    for agency, currency, vintage, amount in placed:
        v = vintages.setdefault((agency, currency), {})
        v[vintage] = v.get(vintage, 0) + amount
    paid: dict[tuple[str, str, int], dict[int, int]] = {}
    for agency, currency, vintage, month, amount in recovered:
        by_mob = paid.setdefault((agency, currency, vintage), {})
        mob = max(0, month - vintage)
        by_mob[mob] = by_mob.get(mob, 0) + amount
    out = []
    for (agency, currency), placed_by_vintage in sorted(vintages.items()):
        oldest = min(placed_by_vintage)
        points = []
        for mob in range(0, last_month - oldest + 1):
            seen = [v for v in placed_by_vintage if v + mob <= last_month]
            base = sum(placed_by_vintage[v] for v in seen)
            if base <= 0:
                continue
            got = sum(
                amount
                for v in seen
                for m, amount in paid.get((agency, currency, v), {}).items()
                if m <= mob
            )
            points.append((mob, got / base, base))
        out.append(Curve(agency, currency, tuple(points)))
    return out


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Cell",
    "Comparison",
    "Contrast",
    "Curve",
    "Interval",
    "Stratum",
    "StratumLine",
    "band_labels",
    "band_of",
    "compare",
    "contrast",
    "curves",
    "month_label",
    "rate_interval",
    "z_value",
]
