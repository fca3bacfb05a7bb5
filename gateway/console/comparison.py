""" "Our record against theirs", field by field (pure: no I/O).

A mismatch stores our side and the agency's side as two JSON objects. ``compare`` lines them
up by field name (nested objects by dotted path, ``address.city``) and says which fields
differ: a field differs when both sides have it and the values are not equal. A field only one
side has is shown, not marked: there is nothing to compare it with. An amount is one field
whichever way a side wrote it: the agency's ``{"amount_minor": 123450, "currency": "CNY"}``
is compared as ``CNY 1,234.50``, the way our side records it, and a list of payments or
receipts is also compared by its total (``agency_payments.total``).

Where the two sides name the field at issue differently, ``SAME_QUANTITY`` lines them up per
mismatch kind: the agency's acknowledged ``amount`` is our ``balance``, the payment they report
again is the ``amount_minor`` we recorded, the event they sent (``type``) or the reason they
gave stands against our placement's ``state``, and so on. A kind lists every spelling its
producers use (the live rules, gateway.reconciliation.event_rules, write money as text; their
batch re-derivation, gateway.reconciliation.event_audit, in minor units), tried in order; the
first one both sides have wins. An amount in minor units equals the same amount written as
money text (``123450`` against ``CNY 1,234.50``).

Kinds with nothing to line up are left out on purpose: those where one side has no record
(``unknown_placement``, ``statement_phantom``, ``statement_orphan``, the SLA kinds, whose
agency side is ``{"received": null}``, ``payment_not_received``, ``payment_not_reported``),
those about one message or packet (``dead_delivery`` and the reply kinds), and those that set
one record against a rule or a sum (``contact_rule_violation``, ``over_collection``,
``ambiguous_match``): their ``detail`` and ``delta`` say what is wrong. ``wrong_agency`` and the
kinds whose sides already share names (the batch ``currency_mismatch``, the inbound
``conflicting_duplicate``'s ``sha256``) need no entry.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from schemas.base import Money

MISSING: Final = object()
_TOTALS: Final = ("agency_payments.total", "lender_receipts.total")
SAME_QUANTITY: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "ack_balance_differs": (("amount", "balance"),),
    "currency_mismatch": (("amount", "balance"), _TOTALS),
    "activity_after_recall": (("occurred_s", "recalled_s"), ("type", "state")),
    "illegal_transition": (("type", "state"),),
    "conflicting_duplicate": (("amount", "amount_minor"),),
    "unmatched_reversal": (("amount", "payment_minor"), ("amount_minor", "payment_minor")),
    "date_out_of_window": (("paid_at", "placed_at"), ("paid_s", "placed_s")),
    "status_conflict": (("reason", "state"), ("type", "state")),
    "amount_mismatch": (_TOTALS,),
    "remittance_short": (_TOTALS,),
    "statement_balance_drift": (("balance_minor", "outstanding_minor"),),
    "statement_status_disagreement": (("status", "state"),),
}
"""Per mismatch kind: (the agency's field name, ours) for the field at issue, in order."""
_MONEY_TEXT: Final = re.compile(r"^[A-Z]{3} (-?[\d,]+)\.(\d{2})$")


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


def _total(items: list[Any]) -> str | None:
    """``CNY 1,234.50`` for a list of records with ``amount_minor`` and one ``currency``."""
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    currencies = {i.get("currency") for i in items}
    amounts = [i.get("amount_minor") for i in items]
    if len(currencies) != 1 or not all(type(a) is int for a in amounts):
        return None
    return _money_text({"amount_minor": sum(amounts), "currency": currencies.pop()})


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` → ``{"a.b": 1, "c": 2}``; anything not an object is one
    field named ``value``; a list of amounts also gives its ``<name>.total``."""
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
            total = _total(value) if isinstance(value, list) else None
            if total is not None:
                found[f"{name}.total"] = total
    return found


def _minor(value: Any) -> int | None:
    if type(value) is int:
        return value
    match = _MONEY_TEXT.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    sign = -1 if match.group(1).startswith("-") else 1
    whole = abs(int(match.group(1).replace(",", "")))
    return sign * (whole * 100 + int(match.group(2)))


def same(ours: Any, theirs: Any) -> bool:
    """Equal, or the same amount once in minor units and once as money text."""
    if ours == theirs:
        return True
    if (type(ours) is int) == (type(theirs) is int):
        return False
    a, b = _minor(ours), _minor(theirs)
    return a is not None and a == b


def compare(ours: Any, theirs: Any, kind: str = "") -> list[FieldRow]:
    """Both sides of a mismatch of ``kind`` field by field, in field-name order."""
    left, right = flatten(ours), flatten(theirs)
    renamed: dict[str, str] = {}
    for their_name, our_name in SAME_QUANTITY.get(kind, ()):
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
                differs=both and not same(a, b),
                their_field=renamed.get(name, ""),
            )
        )
    return rows


__all__ = ["SAME_QUANTITY", "FieldRow", "compare", "flatten", "same"]
