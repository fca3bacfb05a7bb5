"""Retry backoff (growth, cap, jitter, Retry-After) and the per-agency circuit breaker."""

import pytest
from hypothesis import given, strategies as st

from gateway.clock import ManualClock
from gateway.config.agencies import RetrySection
from gateway.dispatch.circuit import CIRCUIT_TRANSITIONS, CircuitBreaker
from gateway.dispatch.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=8, base_seconds=5, cap_seconds=3600, max_retry_after_seconds=600)
SAMPLES = 200


def step(policy: RetryPolicy, attempt_no: int) -> float:
    """The full exponential step after failed attempt ``attempt_no``: base * 2^(n-1), capped."""
    full: float = policy.base_seconds * 2.0 ** (attempt_no - 1)
    return min(full, policy.cap_seconds)


@pytest.mark.parametrize("attempt_no", range(1, 16))
def test_delay_is_between_half_and_full_step(attempt_no: int) -> None:
    full = step(POLICY, attempt_no)
    for _ in range(SAMPLES):
        assert full / 2 <= POLICY.delay(attempt_no) <= full


def test_delays_are_jittered() -> None:
    assert len({POLICY.delay(4) for _ in range(SAMPLES)}) > SAMPLES // 2


def test_jitter_spreads_over_the_upper_half_of_the_step() -> None:
    delays = [POLICY.delay(6) for _ in range(SAMPLES)]
    full = step(POLICY, 6)
    assert min(delays) < full * 0.6
    assert max(delays) > full * 0.9


def test_delays_grow_until_the_cap() -> None:
    """Below the cap, the shortest next delay is at least the longest previous one."""
    attempt = 1
    while step(POLICY, attempt + 1) < POLICY.cap_seconds:
        longest = max(POLICY.delay(attempt) for _ in range(SAMPLES))
        shortest_next = min(POLICY.delay(attempt + 1) for _ in range(SAMPLES))
        assert shortest_next >= longest
        attempt += 1
    assert attempt >= 5


@given(
    attempt_no=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.01, max_value=600),
    cap=st.floats(min_value=0.02, max_value=86_400),
)
def test_property_delay_never_exceeds_the_cap(attempt_no: int, base: float, cap: float) -> None:
    policy = RetryPolicy(
        max_attempts=8, base_seconds=base, cap_seconds=cap, max_retry_after_seconds=cap
    )
    delay = policy.delay(attempt_no)
    assert 0 <= delay <= cap * (1 + 1e-9)


def test_retry_after_longer_than_the_backoff_is_honoured() -> None:
    assert POLICY.delay(1, retry_after=120) == 120


def test_retry_after_is_capped_at_the_maximum() -> None:
    assert POLICY.delay(1, retry_after=86_400) == POLICY.max_retry_after_seconds


def test_retry_after_may_exceed_our_own_cap_up_to_its_maximum() -> None:
    policy = RetryPolicy(
        max_attempts=8, base_seconds=1, cap_seconds=10, max_retry_after_seconds=600
    )
    assert policy.delay(1, retry_after=300) == 300


def test_retry_after_never_shortens_our_backoff() -> None:
    for _ in range(SAMPLES):
        assert POLICY.delay(8, retry_after=1) >= step(POLICY, 8) / 2


def test_attempts_run_out_at_max_attempts() -> None:
    assert not POLICY.exhausted(7)
    assert POLICY.exhausted(8)
    assert POLICY.exhausted(9)


def test_policy_from_agency_config() -> None:
    section = RetrySection(
        max_attempts=3, base_seconds=2, cap_seconds=60, max_retry_after_seconds=90
    )
    policy = RetryPolicy.from_config(section)
    assert policy == RetryPolicy(3, 2, 60, 90)
    assert policy.delay(1, retry_after=1_000) == 90


# Circuit breaker, with time from a manual clock.


def breaker(threshold: int = 3, reset: float = 30) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, reset_seconds=reset)


def test_circuit_trips_at_the_threshold() -> None:
    clock, circuit = ManualClock(1_000), breaker()
    for _ in range(2):
        circuit.record_failure(clock.now())
        assert circuit.allows(clock.now())
        assert circuit.state == "closed"
    circuit.record_failure(clock.now())
    assert circuit.state == "open"
    assert not circuit.allows(clock.now())


def test_a_success_resets_the_failure_count() -> None:
    clock, circuit = ManualClock(1_000), breaker()
    circuit.record_failure(clock.now())
    circuit.record_failure(clock.now())
    circuit.record_success()
    circuit.record_failure(clock.now())
    circuit.record_failure(clock.now())
    assert circuit.state == "closed"
    assert circuit.allows(clock.now())


def test_open_circuit_stays_shut_until_the_reset_time() -> None:
    clock, circuit = ManualClock(1_000), breaker(threshold=1, reset=30)
    circuit.record_failure(clock.now())
    clock.advance(29.9)
    assert not circuit.allows(clock.now())
    assert circuit.state == "open"


def test_half_open_after_the_reset_time() -> None:
    clock, circuit = ManualClock(1_000), breaker(threshold=1, reset=30)
    circuit.record_failure(clock.now())
    clock.advance(30)
    assert circuit.allows(clock.now())
    assert circuit.state == "half_open"


def test_half_open_success_closes_the_circuit() -> None:
    clock, circuit = ManualClock(1_000), breaker(threshold=2, reset=30)
    circuit.record_failure(clock.now())
    circuit.record_failure(clock.now())
    clock.advance(31)
    assert circuit.allows(clock.now())
    circuit.record_success()
    assert circuit.state == "closed"
    assert circuit.consecutive_failures == 0
    # Closed again means the full threshold applies again.
    circuit.record_failure(clock.now())
    assert circuit.allows(clock.now())


def test_half_open_failure_reopens_for_a_full_reset_period() -> None:
    clock, circuit = ManualClock(1_000), breaker(threshold=3, reset=30)
    for _ in range(3):
        circuit.record_failure(clock.now())
    clock.advance(30)
    assert circuit.allows(clock.now())
    circuit.record_failure(clock.now())  # one failure is enough in half-open
    assert circuit.state == "open"
    clock.advance(29)
    assert not circuit.allows(clock.now())
    clock.advance(1)
    assert circuit.allows(clock.now())
    assert circuit.state == "half_open"


def test_circuit_transition_table_is_closed() -> None:
    states = {"closed", "open", "half_open"}
    for (state, _event), target in CIRCUIT_TRANSITIONS.items():
        assert state in states
        assert target in states
    assert ("open", "timeout") in CIRCUIT_TRANSITIONS
