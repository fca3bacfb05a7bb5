"""The fair scorecards' statistics (gateway.reporting.strata), pure: the variance from the
cell's moments against the residuals themselves, standardisation's invariances, the
champion/challenger contrast's symmetry, bands and vintage curves."""

import math

from hypothesis import given, strategies as st

from gateway.reporting.strata import (
    CHALLENGER,
    CHAMPION,
    Cell,
    Stratum,
    band_labels,
    band_of,
    compare,
    contrast,
    curves,
)

placements = st.lists(
    st.tuples(st.integers(1, 5_000_000), st.floats(0, 1)).map(lambda t: (t[0], round(t[0] * t[1]))),
    min_size=2,
    max_size=30,
)


def cell_of(rows: list[tuple[int, int]]) -> Cell:
    return Cell(
        len(rows),
        sum(x for x, _ in rows),
        sum(y for _, y in rows),
        float(sum(x * x for x, _ in rows)),
        float(sum(y * y for _, y in rows)),
        float(sum(x * y for x, y in rows)),
    )


@given(placements)
def test_the_rate_variance_from_moments_is_the_residuals_variance(
    rows: list[tuple[int, int]],
) -> None:
    cell = cell_of(rows)
    sx = sum(x for x, _ in rows)
    rate = sum(y for _, y in rows) / sx
    direct = len(rows) / (len(rows) - 1) * sum((y - rate * x) ** 2 for x, y in rows) / sx**2
    variance = cell.rate_variance()
    assert variance is not None
    # Moments lose precision to cancellation; the scale is that of Σy²/Σx².
    assert math.isclose(variance, direct, rel_tol=1e-6, abs_tol=1e-9 * (1 + cell.yy / sx**2))


S1 = Stratum("CNY", "M1", "<500000", "2026-01")
S2 = Stratum("CNY", "M3", "<500000", "2026-01")


@given(placements, placements, st.integers(1, 4))
def test_an_agency_recovering_k_times_its_peers_everywhere_has_ratio_k(
    a: list[tuple[int, int]], b: list[tuple[int, int]], k: int
) -> None:
    peers = {S1: a, S2: b}
    if any(sum(y for _, y in rows) == 0 for rows in peers.values()):
        return
    cells = {("PEER", s): cell_of(rows) for s, rows in peers.items()}
    # the agency: the same balances, k times the money
    cells |= {("AG", s): cell_of([(x, y * k) for x, y in rows]) for s, rows in peers.items()}
    found = {c.agency_id: c for c in compare(cells, min_n=2, confidence=0.95)}
    ratio = found["AG"].ratio
    assert ratio is not None and math.isclose(ratio, k, rel_tol=1e-12)
    assert found["AG"].too_small == 0


def test_strata_below_the_minimum_are_shown_and_left_out() -> None:
    rows = [(100_000, 10_000), (200_000, 30_000)]
    cells = {("AG", S1): cell_of(rows), ("PEER", S1): cell_of(rows * 3)}
    [ag, peer] = compare(cells, min_n=3, confidence=0.95)
    assert ag.agency_id == "AG" and ag.too_small == 1 and ag.ratio is None
    assert not ag.lines[0].comparable and ag.lines[0].expected is None
    assert peer.ratio is None  # its only peer is too small


@given(placements, placements)
def test_swapping_the_strategies_negates_the_difference(
    a: list[tuple[int, int]], b: list[tuple[int, int]]
) -> None:
    one = contrast(
        {(CHAMPION, S1): cell_of(a), (CHALLENGER, S1): cell_of(b)}, min_n=2, confidence=0.9
    )
    two = contrast(
        {(CHAMPION, S1): cell_of(b), (CHALLENGER, S1): cell_of(a)}, min_n=2, confidence=0.9
    )
    assert one[0].difference is not None and two[0].difference is not None
    assert math.isclose(one[0].difference, -two[0].difference, abs_tol=1e-12)
    assert one[0].p_value == two[0].p_value
    assert one[0].significant == two[0].significant


def test_bands_and_their_labels_agree() -> None:
    bands = [500_000, 2_000_000]
    assert band_labels(bands) == ["<500000", "500000-1999999", ">=2000000"]
    assert [band_of(v, bands) for v in (499_999, 500_000, 1_999_999, 2_000_000)] == [
        "<500000",
        "500000-1999999",
        "500000-1999999",
        ">=2000000",
    ]
    assert band_labels([]) == ["all"] and band_of(1, []) == "all"


def test_a_vintage_counts_at_a_month_only_once_it_has_reached_it() -> None:
    jan, feb, mar = 2026 * 12, 2026 * 12 + 1, 2026 * 12 + 2
    placed = [("AG", "CNY", jan, 1_000), ("AG", "CNY", feb, 3_000)]
    paid = [
        ("AG", "CNY", jan, jan, 100),
        ("AG", "CNY", jan, feb, 100),
        ("AG", "CNY", feb, feb, 300),
        ("AG", "CNY", feb, mar, 600),
        ("AG", "CNY", jan, mar, 50),
    ]
    [curve] = curves(placed, paid, last_month=mar)
    assert curve.points == (
        (0, 400 / 4_000, 4_000),  # both vintages at their first month
        (1, (200 + 900) / 4_000, 4_000),
        (2, 250 / 1_000, 1_000),  # only January has reached its third month
    )
