"""Per-agency circuit breaker (pure state machine over an injected clock reading).

``closed``: requests flow; consecutive failures are counted. At the threshold the circuit
``open``s: no claims for that agency until ``reset_seconds`` pass. Then ``half_open``: one
batch is let through; a success closes the circuit, a failure opens it again.
"""

from dataclasses import dataclass

CIRCUIT_TRANSITIONS: dict[tuple[str, str], str] = {
    ("closed", "success"): "closed",
    ("closed", "trip"): "open",
    ("open", "timeout"): "half_open",
    ("half_open", "success"): "closed",
    ("half_open", "failure"): "open",
    ("half_open", "trip"): "open",
}


@dataclass
class CircuitBreaker:
    failure_threshold: int
    reset_seconds: float
    state: str = "closed"
    consecutive_failures: int = 0
    opened_at: float = 0.0

    def allows(self, now: float) -> bool:
        if self.state == "open" and now - self.opened_at >= self.reset_seconds:
            self.state = CIRCUIT_TRANSITIONS[("open", "timeout")]
        return self.state != "open"

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.state = CIRCUIT_TRANSITIONS.get((self.state, "success"), self.state)

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        if self.state == "half_open" or self.consecutive_failures >= self.failure_threshold:
            self.state = CIRCUIT_TRANSITIONS.get((self.state, "trip"), self.state)
            self.opened_at = now


__all__ = ["CIRCUIT_TRANSITIONS", "CircuitBreaker"]
