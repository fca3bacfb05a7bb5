"""Canonical leaf bodies for many leaves of one shape, without encoding JSON per leaf.

The leaves of one delivered file batch differ only in a few integers and identifiers. A
``LeafTemplate`` encodes one leaf whose varying fields are sentinels with the canonical
encoder (``gateway.evidence.log.LeafInput.body``), splits the bytes at the sentinels, and then
builds each body by joining the constant parts with the slot values. The bodies are byte for
byte those of ``LeafInput.body`` (a property test holds the two paths together), so the
evidence log and its verification cannot tell them apart.

Slot values are ``int`` (rendered as JSON numbers) or plain text that JSON does not escape
(printable ASCII without quotes or backslashes: identifiers, keys, digits); anything else is
refused rather than mis-encoded.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.evidence.log import LeafInput


@dataclass(frozen=True, slots=True)
class Slot:
    """A field whose value changes from leaf to leaf; ``text`` renders it as a string."""

    name: str
    text: bool = False


def _sentinel(i: int) -> str:
    return f"\x00{i}\x00"


class LeafTemplate:
    """Bodies of leaves of ``kind`` whose ``ref`` and ``fields`` hold ``Slot``s.

    ``ref`` is a text slot or a constant; ``fields`` may nest mappings. ``body(values)``
    takes the slot values in ``slots`` order.
    """

    def __init__(self, kind: str, ref: Slot | str, fields: Mapping[str, object]) -> None:
        slots: list[Slot] = []

        def swap(value: object) -> object:
            if isinstance(value, Slot):
                slots.append(value)
                return _sentinel(len(slots) - 1)
            if isinstance(value, Mapping):
                return {k: swap(v) for k, v in value.items()}
            return value

        ref_value = swap(ref)
        assert isinstance(ref_value, str)
        encoded = LeafInput(kind, ref_value, {k: swap(v) for k, v in fields.items()})
        text = encoded.body().decode()
        order: list[int] = []
        parts: list[str] = []
        rest = text
        while True:
            positions = [
                (rest.find(f'"\\u0000{i}\\u0000"'), i)
                for i in range(len(slots))
                if f'"\\u0000{i}\\u0000"' in rest
            ]
            if not positions:
                break
            at, i = min(positions)
            token = f'"\\u0000{i}\\u0000"'
            parts.append(rest[:at] + ('"' if slots[i].text else ""))
            order.append(i)
            rest = rest[at + len(token) :]
            if slots[i].text:
                rest = '"' + rest
        parts.append(rest)
        if sorted(order) != list(range(len(slots))) or any("\\u0000" in p for p in parts):
            raise ValueError(f"{kind} leaf template: a constant field contains a NUL character")
        self.kind = kind
        self.slots: tuple[str, ...] = tuple(s.name for s in slots)
        self._order = tuple(order)
        self._text = tuple(slots[i].text for i in order)
        self._parts = tuple(parts)

    def body(self, values: Sequence[int | str]) -> bytes:
        """The canonical body with ``values`` (in ``slots`` order) in the slots."""
        out = [self._parts[0]]
        for n, i in enumerate(self._order):
            value = values[i]
            if self._text[n]:
                if not (
                    type(value) is str
                    and value.isascii()
                    and value.isprintable()
                    and '"' not in value
                    and "\\" not in value
                ):
                    raise ValueError(f"{self.kind} leaf: {self.slots[i]} needs JSON escaping")
                out.append(value)
            else:
                if type(value) is not int:
                    raise ValueError(f"{self.kind} leaf: {self.slots[i]} is not an integer")
                out.append(str(value))
            out.append(self._parts[n + 1])
        return "".join(out).encode()


__all__ = ["LeafTemplate", "Slot"]
