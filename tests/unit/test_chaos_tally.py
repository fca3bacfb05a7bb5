"""The chaos benchmark's arithmetic (gateway.bench.chaos_tally): which copies a kill left
unrecorded, and whether every duplicate is one of them."""

from hypothesis import given, strategies as st

from gateway.bench.chaos_tally import Arrival, Kill, Lease, tally

LEASE = 10.0


def lease(key: str, claimed_at: float) -> Lease:
    return Lease(key, claimed_at, claimed_at + LEASE)


def test_a_run_without_kills_has_no_duplicates_and_counts_what_never_arrived() -> None:
    arrivals = {"a": [Arrival(1.0, 1.1)], "b": [Arrival(2.0, 2.1)]}

    result = tally(["a", "b", "c"], arrivals, [])

    assert (result.packets, result.received, result.distinct) == (3, 2, 2)
    assert (result.duplicates, result.lost, result.unexplained) == (0, 1, 0)


def test_a_kill_splits_what_it_held_into_in_flight_answered_and_unsent() -> None:
    arrivals = {
        # Sent under the dead worker's lease and answered before the kill at t=5, then sent
        # again under the next lease: answered, never recorded.
        "answered": [Arrival(4.0, 4.5), Arrival(16.0, 16.1)],
        # Arrived under the lease, the answer came after the kill: in flight.
        "in_flight": [Arrival(4.8, 5.2), Arrival(16.0, 16.1)],
        # Still unanswered when the worker died.
        "hanging": [Arrival(4.9), Arrival(16.2, 16.3)],
        # Its only copy before the lease came from an earlier worker (claimed before t=3):
        # the dead worker had not sent it yet.
        "unsent": [Arrival(2.0, 2.1)],
    }
    kill = Kill(
        "w1",
        at=5.0,
        progress=4,
        leases=(
            lease("answered", 3.0),
            lease("in_flight", 3.0),
            lease("hanging", 3.0),
            lease("unsent", 3.0),
        ),
    )

    result = tally(list(arrivals), arrivals, [kill])

    (k,) = result.kills
    assert (k.leased, k.in_flight, k.answered_not_recorded, k.unsent) == (4, 2, 1, 1)
    assert k.at_risk == 3
    assert (result.duplicates, result.explained, result.unexplained) == (3, 3, 0)


def test_a_copy_sent_twice_outside_any_killed_lease_is_unexplained() -> None:
    arrivals = {"a": [Arrival(1.0, 1.1), Arrival(30.0, 30.1)], "b": [Arrival(4.0, 4.1)]}
    kill = Kill("w1", at=5.0, progress=2, leases=(lease("b", 3.0),))

    result = tally(["a", "b"], arrivals, [kill])

    assert (result.duplicates, result.explained, result.unexplained) == (1, 0, 1)


def test_ids_that_arrived_with_other_bytes_are_counted() -> None:
    result = tally(["a"], {"a": [Arrival(1.0, 1.1)]}, [], changed={"a"})

    assert result.changed == 1


def test_a_packet_killed_twice_is_explained_by_both_kills() -> None:
    arrivals = {"a": [Arrival(1.0, 1.1), Arrival(12.0), Arrival(30.0, 30.1)]}
    kills = [
        Kill("w1", at=1.5, progress=1, leases=(lease("a", 0.5),)),
        Kill("w2", at=12.5, progress=1, leases=(lease("a", 11.0),)),
    ]

    result = tally(["a"], arrivals, kills)

    assert [(k.in_flight, k.answered_not_recorded) for k in result.kills] == [(0, 1), (1, 0)]
    assert (result.duplicates, result.explained, result.unexplained) == (2, 2, 0)


times = st.floats(min_value=0, max_value=100, allow_nan=False)


@given(
    copies=st.dictionaries(
        st.sampled_from("abcdef"), st.lists(times, min_size=1, max_size=4), min_size=1
    ),
    kills=st.lists(
        st.tuples(times, st.lists(st.tuples(st.sampled_from("abcdefg"), times), max_size=4)),
        max_size=4,
    ),
)
def test_every_duplicate_is_either_explained_or_unexplained(
    copies: dict[str, list[float]], kills: list[tuple[float, list[tuple[str, float]]]]
) -> None:
    arrivals = {key: [Arrival(t, t + 0.1) for t in sorted(ts)] for key, ts in copies.items()}
    plan = [
        Kill(f"w{n}", at, 0, tuple(lease(key, claimed) for key, claimed in held))
        for n, (at, held) in enumerate(kills)
    ]

    result = tally(list(arrivals), arrivals, plan)

    assert result.explained + result.unexplained == result.duplicates
    assert result.received == result.distinct + result.duplicates
    assert all(k.in_flight + k.answered_not_recorded + k.unsent >= k.leased for k in result.kills)
