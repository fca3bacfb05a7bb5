"""The confirmation batch's life, as a transition table.

Theory of operation: an intake run opens its batch ``importing`` (cases written by the run
already point at it, so none of them can be allocated while the file is read); when the file
is done the batch is ``pending`` with its totals. A second person approves it (``approved``:
its cases may be allocated) or rejects it (``rejected``: they may not, until a later file
lists them again and its batch is approved). With ``[claims] confirmation = "off"`` the
``system`` approves it at once. A run that failed leaves its batch ``importing`` for good;
importing the file again re-points its cases at the new batch.
"""

from typing import Final

from gateway.errors import ActionRefused

BATCH_STATES: Final = ("importing", "pending", "approved", "rejected")

BATCH_TRANSITIONS: Final[dict[tuple[str, str], str]] = {
    ("importing", "imported"): "pending",
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
}
"""(state, event) → next state; anything else is refused."""

ALLOCATABLE_BATCH_STATES: Final = frozenset({"approved"})


def next_batch_state(state: str, event: str, *, batch_id: str) -> str:
    """The state after ``event``, or ActionRefused naming the batch and its state."""
    try:
        return BATCH_TRANSITIONS[(state, event)]
    except KeyError:
        raise ActionRefused(
            f"claim batch {batch_id} is {state}; it cannot be {event}d "
            f"(only a pending batch can be approved or rejected)"
        ) from None


__all__ = ["ALLOCATABLE_BATCH_STATES", "BATCH_STATES", "BATCH_TRANSITIONS", "next_batch_state"]
