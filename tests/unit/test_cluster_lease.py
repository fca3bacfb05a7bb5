"""The lease core: who holds a role after a claim, and the fencing token's growth."""

from datetime import UTC, datetime, timedelta

from hypothesis import given, strategies as st

from gateway.cluster.lease import Lease, claim, release

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_first_claim_takes_the_role_under_token_1() -> None:
    assert claim(None, "schedulers", "a", now=T0, seconds=10) == Lease(
        "schedulers", "a", 1, T0, at(10)
    )


def test_the_holder_renews_under_the_same_token() -> None:
    lease = Lease("schedulers", "a", 3, T0, at(10))
    assert claim(lease, "schedulers", "a", now=at(4), seconds=10) == Lease(
        "schedulers", "a", 3, T0, at(14)
    )


def test_another_process_is_refused_while_the_lease_runs() -> None:
    lease = Lease("schedulers", "a", 3, T0, at(10))
    assert claim(lease, "schedulers", "b", now=at(9.999), seconds=10) is None


def test_an_expired_lease_is_taken_over_with_a_new_token() -> None:
    lease = Lease("schedulers", "a", 3, T0, at(10))
    assert claim(lease, "schedulers", "b", now=at(10), seconds=10) == Lease(
        "schedulers", "b", 4, at(10), at(20)
    )
    # Its own holder coming back late is a new holding too: its old work was stopped.
    assert claim(lease, "schedulers", "a", now=at(11), seconds=10) == Lease(
        "schedulers", "a", 4, at(11), at(21)
    )


def test_release_ends_the_lease_for_its_holder_only() -> None:
    lease = Lease("schedulers", "a", 3, T0, at(10))
    assert release(lease, "a", now=at(2)) == Lease("schedulers", "a", 3, T0, at(2))
    assert release(lease, "b", now=at(2)) is None
    assert release(lease, "a", now=at(10)) is None
    ended = release(lease, "a", now=at(2))
    assert ended is not None
    assert claim(ended, "schedulers", "b", now=at(2), seconds=10) is not None


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(min_value=0, max_value=30)), max_size=40)
)
def test_one_holder_at_a_time_and_tokens_only_grow(asks: list[tuple[str, float]]) -> None:
    """Whatever order processes ask in, a running lease never changes holder, and every
    change of holder raises the token."""
    current: Lease | None = None
    now = 0.0
    for holder, wait in asks:
        now += wait
        nxt = claim(current, "r", holder, now=at(now), seconds=10)
        if nxt is None:
            assert current is not None and current.running(at(now))
            assert current.holder != holder
            continue
        if current is not None:
            if current.running(at(now)):
                assert nxt.holder == current.holder and nxt.token == current.token
            else:
                assert nxt.token == current.token + 1
        assert nxt.running(at(now))
        current = nxt
