"""The process's heap and Python's cyclic garbage collector.

Two long-running jobs build millions of long-lived objects and make almost no reference
cycles: a reconciliation run (placements, the events' state) and a batch of a file channel
(every chunk's packets, records and rows). Every full collection walks all of them again,
a sixth to a quarter of such a run's CPU; ``collector_paused`` keeps the collector out for
the run (reference counting still frees everything as usual, so peak memory does not grow).
A serving process keeps what start-up built (modules, config, compiled statements, the app)
for its whole life; ``settle_heap`` takes those out of the collector's reach once.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; it is given back as the caller had it,
    however the block ends."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def settle_heap() -> None:
    """Move what start-up built out of the collector's reach: call once a long-running process
    is built, before it serves. Those objects live as long as the process, yet every full
    collection walked them again: a serving process spent some 10-15% of its CPU there
    (py-spy, ``bench webhook-out``). ``gc.freeze`` puts them in the permanent generation; the
    collector still runs for everything allocated afterwards (CPython's documented pattern:
    collect, then freeze)."""
    gc.collect()
    gc.freeze()


__all__ = ["collector_paused", "settle_heap"]
