"""Wall-clock time behind a tiny seam, so tests and the sandbox can move time."""

import time
from datetime import UTC, datetime


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


__all__ = ["ManualClock", "SystemClock", "to_datetime"]
