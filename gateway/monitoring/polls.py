"""Pollers counted as they run: a wrapper that reports each pickup or mailbox poll to the
metrics (gateway.metrics.Metrics.polled) and otherwise changes nothing."""

from collections.abc import Callable, Mapping
from typing import Protocol

from gateway.metrics import Metrics


class Poller(Protocol):
    """What is read of a poller (gateway.ports.InboundPoller, read-only)."""

    @property
    def name(self) -> str: ...

    @property
    def interval_seconds(self) -> float: ...

    async def poll_once(self) -> Mapping[str, int]: ...


class MeteredPoller:
    """``poller`` with its results counted under ``source`` and ``agency_id``
    (an ``InboundPoller`` itself: the scheduler runs it in the poller's place).

    Args:
        poller: the poller (SFTP result pickup, mailbox reader).
        metrics: where to count.
        source: ``sftp_pickup`` or ``mailbox`` (gateway.metrics.POLL_SOURCES).
        agency_id: the agency polled.
        clock: Unix time (the last-success gauge).
    """

    def __init__(
        self,
        poller: Poller,
        metrics: Metrics,
        *,
        source: str,
        agency_id: str,
        clock: Callable[[], float],
    ) -> None:
        self._poller = poller
        self._metrics = metrics
        self._source = source
        self._agency_id = agency_id
        self._clock = clock
        self.name = poller.name
        self.interval_seconds = poller.interval_seconds

    async def poll_once(self) -> Mapping[str, int]:
        try:
            results = await self._poller.poll_once()
        except Exception:
            self._metrics.polled(self._source, self._agency_id, None, at=self._clock())
            raise
        self._metrics.polled(self._source, self._agency_id, results, at=self._clock())
        return results


def metered(
    poller: Poller, metrics: Metrics, *, source: str, clock: Callable[[], float]
) -> MeteredPoller:
    """``poller`` counted by the agency it names (its ``agency_id``)."""
    agency_id = str(getattr(poller, "agency_id", "-"))
    return MeteredPoller(poller, metrics, source=source, agency_id=agency_id, clock=clock)


__all__ = ["MeteredPoller", "Poller", "metered"]
