"""Retry policy: capped exponential backoff with jitter, built from tenacity's wait strategies.

Retries are persisted (an outbox item goes back to ``pending`` with a later ``run_at``), so a
crash never loses a retry schedule. The wait is "equal jitter": half of the exponential step
is fixed and half is random, so a recovering agency is not hit by a synchronised herd.
"""

from dataclasses import dataclass

import tenacity

from gateway.config.agencies import RetrySection


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    cap_seconds: float
    max_retry_after_seconds: float

    @classmethod
    def from_config(cls, section: RetrySection) -> "RetryPolicy":
        return cls(
            section.max_attempts,
            section.base_seconds,
            section.cap_seconds,
            section.max_retry_after_seconds,
        )

    def _wait(self) -> tenacity.wait.wait_base:
        half_base, half_cap = self.base_seconds / 2, self.cap_seconds / 2
        return tenacity.wait_exponential(
            multiplier=half_base, max=half_cap
        ) + tenacity.wait_random_exponential(multiplier=half_base, max=half_cap)

    def delay(self, attempt_no: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt_no`` (1-based).

        A ``Retry-After`` from the agency is honoured, clamped to ``max_retry_after_seconds``,
        but never shortens our own backoff.
        """
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt_no)
        wait = float(self._wait()(state))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after_seconds))
        return wait

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


__all__ = ["RetryPolicy"]
