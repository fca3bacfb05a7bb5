""" "Our record against theirs", field by field (pure: no I/O).

A mismatch stores our side and the agency's side as two JSON objects. ``compare`` lines them
up by field name (nested objects by dotted path, ``address.city``) and says which fields
differ: a field differs when both sides have it and the values are not equal. A field only one
side has is shown, not marked: there is nothing to compare it with. An amount is one field
whichever way a side wrote it: the agency's ``{"amount_minor": 123450, "currency": "CNY"}``
is compared as ``CNY 1,234.50``, the way our side records it. Where the two sides name the
same quantity differently (the agency's acknowledged ``amount`` is our ``balance``),
``SAME_QUANTITY`` lines them up per mismatch kind.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from schemas.base import Money

MISSING: Final = object()
SAME_QUANTITY: Final[dict[str, dict[str, str]]] = {
    "ack_balance_differs": {"amount": "balance"},
    "statement_balance_drift": {"balance_minor": "outstanding_minor"},
}
"""Per mismatch kind: the agency's field name → ours, for the same quantity."""


@dataclass(frozen=True, slots=True)
class FieldRow:
    """One field of the comparison; ``ours`` or ``theirs`` is None when that side lacks it."""

    field: str
    ours: Any
    theirs: Any
    in_ours: bool
    in_theirs: bool
    differs: bool
    their_field: str = ""
    """The agency's name for the field, when it is not ours."""


def _money_text(value: Mapping[str, Any]) -> str | None:
    if set(value) != {"amount_minor", "currency"}:
        return None
    try:
        return str(Money.model_validate(dict(value)))
    except ValidationError:
        return None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` → ``{"a.b": 1, "c": 2}``; anything not an object is one
    field named ``value``."""
    if not isinstance(data, Mapping):
        return {} if data is None else {prefix or "value": data}
    found: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        money = _money_text(value) if isinstance(value, Mapping) else None
        if money is not None:
            found[name] = money
        elif isinstance(value, Mapping) and value:
            found.update(flatten(value, name))
        else:
            found[name] = value
    return found


def compare(ours: Any, theirs: Any, kind: str = "") -> list[FieldRow]:
    """Both sides of a mismatch of ``kind`` field by field, in field-name order."""
    left, right = flatten(ours), flatten(theirs)
    renamed: dict[str, str] = {}
    for their_name, our_name in SAME_QUANTITY.get(kind, {}).items():
        if their_name in right and our_name in left and our_name not in right:
            right[our_name] = right.pop(their_name)
            renamed[our_name] = their_name
    rows = []
    for name in sorted(left.keys() | right.keys()):
        a, b = left.get(name, MISSING), right.get(name, MISSING)
        both = a is not MISSING and b is not MISSING
        rows.append(
            FieldRow(
                field=name,
                ours=None if a is MISSING else a,
                theirs=None if b is MISSING else b,
                in_ours=a is not MISSING,
                in_theirs=b is not MISSING,
                differs=both and a != b,
                their_field=renamed.get(name, ""),
            )
        )
    return rows


__all__ = ["FieldRow", "compare", "flatten"]
