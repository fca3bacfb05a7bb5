"""The published contract as an independent oracle, and hypothesis strategies around it.

The oracle is what an agency reads: the checked-in JSON Schemas (``schemas/json``), checked
with ``jsonschema`` (not pydantic, which serves them), plus the rules that section 1 of
``docs/agency-protocol.md`` states and a JSON Schema cannot:

* an integer is a JSON integer literal: ``5000.0`` and ``5e3`` are numbers with a fraction
  part or an exponent, refused, although JSON Schema counts them as integers;
* timestamps are RFC 3339 with an offset and dates ``YYYY-MM-DD``, in the years 2000 to 2099
  (timestamps once in UTC);
* text holds no NUL, and an object repeats no key;
* a ``pattern`` is an ECMA-262 regular expression, where ``$`` is the end of the text
  (Python's ``re`` also lets it match before a final newline).

Strategies: ``valid_events`` draws whole events from the schemas with hypothesis-jsonschema
(dates and times drawn inside the documented years, so most of them are accepted), and
``mutations`` draws one change to a valid document: a wrong value (``true``, ``"5000"``,
``5000.0``...), a key removed or added, a key repeated, or the bytes in another encoding.
"""

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis_jsonschema import from_schema

import schemas
from schemas.events import EVENT_TYPES

SCHEMA_DIR = Path(schemas.__file__).parent / "json"
MIN_YEAR, MAX_YEAR = 2000, 2099
"""The years of section 1 of the protocol (read here from the document's words, not from
``schemas.base``, so the oracle shares nothing with the parser)."""


def published(name: str) -> dict[str, Any]:
    """The checked-in JSON Schema ``schemas/json/<name>.json``."""
    document: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text("utf-8"))
    return document


# -- the oracle -------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _timestamp_ok(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    *parts, _fraction, zone = match.groups()
    year, month, day, hour, minute, second = map(int, parts)
    if zone == "Z":
        offset = timedelta(0)
    else:
        sign = -1 if zone[0] == "-" else 1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return False
        offset = sign * timedelta(hours=hours, minutes=minutes)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
        utc = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return MIN_YEAR <= utc.year <= MAX_YEAR


def _date_ok(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if _DAY.fullmatch(value) is None:
        return False
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return False
    return MIN_YEAR <= day.year <= MAX_YEAR


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time")(_timestamp_ok)
FORMATS.checks("date")(_date_ok)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if not isinstance(instance, str):
        return
    # ECMA-262 without the m flag: ``$`` matches only at the very end.
    python = re.sub(r"(?<!\\)\$$", r"\\Z", pattern)
    if re.search(python, instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


class Malformed(ValueError):
    """Not JSON this API reads: invalid UTF-8, a byte-order mark, NaN, a lone surrogate or a
    repeated key (``key`` names it)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise Malformed(f"{key!r} twice", key)
        seen.add(key)
    return dict(pairs)


def _constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def _strings(value: object) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string (keys too) of a document, with the path of the value it is in."""

    def walk(
        node: object, path: tuple[str | int, ...]
    ) -> Iterator[tuple[tuple[str | int, ...], str]]:
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            for key, child in node.items():
                yield path, key
                yield from walk(child, (*path, key))
        elif isinstance(node, list):
            for n, child in enumerate(node):
                yield from walk(child, (*path, n))

    return walk(value, ())


def read_json(body: bytes) -> Any:
    """The document in ``body`` as the protocol reads it; floats stay ``Decimal`` so that
    ``5000.0`` is not an integer. Raises ``Malformed``."""
    try:
        text = body.decode("utf-8")
        document = json.loads(
            text, object_pairs_hook=_pairs, parse_float=Decimal, parse_constant=_constant
        )
    except Malformed:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(str(exc)) from None
    for _, text_value in _strings(document):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in text_value):
            raise Malformed("a lone surrogate")
    return document


@dataclass(frozen=True)
class Verdict:
    """What the contract says of a document: ``malformed`` (400), ``invalid`` (422, with the
    ``fields`` at fault as dotted paths, ``body`` for the whole) or ``valid``."""

    outcome: str
    fields: frozenset[str] = frozenset()
    key: str | None = None


def _dotted(path: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in path) or "body"


def _fields(errors: Iterable[jsonschema.ValidationError]) -> set[str]:
    fields: set[str] = set()
    for error in errors:
        path = tuple(error.absolute_path)
        fields.add(_dotted(path))
        instance = error.instance
        if error.validator == "required" and isinstance(instance, dict):
            fields.update(_dotted((*path, k)) for k in error.validator_value if k not in instance)
        elif error.validator == "additionalProperties" and isinstance(instance, dict):
            known = set(error.schema.get("properties", {}))
            fields.update(_dotted((*path, k)) for k in instance if k not in known)
        for sub in error.context or ():
            fields.add(_dotted((*path, *sub.relative_path)))
    return fields


def judge_document(document: Any, schema: Mapping[str, Any]) -> Verdict:
    """The verdict on an already read document against one schema (plus the NUL rule)."""
    errors = list(_Validator(schema, format_checker=FORMATS).iter_errors(document))
    fields = _fields(errors)
    for path, text in _strings(document):
        if "\x00" in text:
            fields.add(_dotted(path))
    return Verdict("invalid", frozenset(fields)) if fields else Verdict("valid")


def judge_event(body: bytes) -> Verdict:
    """The verdict on an inbound event body: its ``type`` picks the schema."""
    try:
        document = read_json(body)
    except Malformed as exc:
        return Verdict("malformed", key=exc.key)
    event_type = document.get("type") if isinstance(document, dict) else None
    if event_type not in EVENT_TYPES:
        return Verdict("invalid", frozenset({"type" if isinstance(document, dict) else "body"}))
    return judge_document(document, published(str(event_type)))


# -- generation -------------------------------------------------------------------------------

_ZONES = st.sampled_from([0, 8 * 60, -5 * 60, 5 * 60 + 30, 14 * 60, -12 * 60])


@st.composite
def _timestamps(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(MIN_YEAR, 1, 2), max_value=datetime(MAX_YEAR, 12, 30))
    )
    minutes = draw(_ZONES)
    if not minutes:
        return moment.replace(microsecond=0).isoformat() + "Z"
    zone = timezone(timedelta(minutes=minutes))
    return moment.replace(tzinfo=zone).isoformat()


_DATES = st.dates(min_value=date(MIN_YEAR, 1, 1), max_value=date(MAX_YEAR, 12, 31)).map(
    date.isoformat
)
CUSTOM_FORMATS = {"gw-date-time": _timestamps(), "gw-date": _DATES}


def _generation_schema(node: Any) -> Any:
    """The schema with its date formats renamed, so hypothesis-jsonschema draws them from
    ``CUSTOM_FORMATS`` (inside the documented years) instead of any year 1 to 9999."""
    if isinstance(node, dict):
        out = {k: _generation_schema(v) for k, v in node.items()}
        if out.get("format") in ("date-time", "date"):
            out["format"] = "gw-" + out["format"]
        return out
    if isinstance(node, list):
        return [_generation_schema(v) for v in node]
    return node


def documents(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Documents the schema accepts (text without NUL)."""
    return from_schema(
        _generation_schema(dict(schema)), custom_formats=CUSTOM_FORMATS, allow_x00=False
    )


class RawNumber:
    """A number written exactly as ``text`` (``5e3``, ``5000.00``, ``-0``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawNumber({self.text!r})"


WRONG_VALUES: tuple[object, ...] = (
    True,
    False,
    None,
    "5000",
    "5_000",
    5000.0,
    RawNumber("5e3"),
    RawNumber("5000.00"),
    RawNumber("1E400"),
    -1,
    0,
    10**15,
    2**63,
    10**30,
    "",
    " ",
    "\x00",
    "A\x00B",
    "x" * 1500,
    "中文 \U0001d518",
    [],
    {},
    [None],
    "cny",
    "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z",
    "2000-01-01T00:30:00+01:00",
    "2099-12-31T23:30:00-01:00",
    "2026-01-16T09:00:00",
    "2026-01-16 09:00:00Z",
    "2026-02-30T09:00:00Z",
    "2026-01-16",
    "1999-12-31",
    "2026-02-30",
    1772442000,
    "NaN",
    "PL-1\n",
)


@dataclass(frozen=True)
class Mutation:
    """One change to a document: ``kind`` is ``replace`` (``value`` at ``path``), ``delete``
    (the key at ``path``), ``extra`` (a key ``value`` added in the object at ``path``),
    ``duplicate`` (the key at ``path`` written twice), or ``encoding`` (``value`` names it)."""

    kind: str
    path: tuple[str | int, ...] = ()
    value: object = None


def paths(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key and list index of a JSON document, outermost first."""
    found: list[tuple[str | int, ...]] = []
    children: Iterable[tuple[str | int, object]] = ()
    if isinstance(value, dict):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def _objects(value: object) -> list[tuple[str | int, ...]]:
    """Paths of every object in a document (``()`` is the root)."""
    return [()] * isinstance(value, dict) + [
        p for p in paths(value) if isinstance(_at(value, p), dict)
    ]


def _at(document: object, path: tuple[str | int, ...]) -> Any:
    node: Any = document
    for key in path:
        node = node[key]
    return node


ENCODINGS = ("utf-16", "utf-8-bom", "gb18030", "lone-surrogate", "ascii-escapes")


@st.composite
def mutations(draw: st.DrawFn, document: Any) -> Mutation:
    """One change to ``document`` (see ``Mutation``)."""
    keyed = [p for p in paths(document) if isinstance(p[-1], str)]
    kinds = ["replace", "extra", "encoding"] + ["delete", "duplicate"] * bool(keyed)
    kind = draw(st.sampled_from(kinds))
    if kind == "replace":
        return Mutation(
            kind, draw(st.sampled_from(paths(document))), draw(st.sampled_from(WRONG_VALUES))
        )
    if kind in ("delete", "duplicate"):
        return Mutation(kind, draw(st.sampled_from(keyed)))
    if kind == "extra":
        name = draw(st.sampled_from(["unexpected", "Amount", "placement_id ", "data", "notes"]))
        return Mutation(kind, draw(st.sampled_from(_objects(document))), name)
    return Mutation(kind, (), draw(st.sampled_from(ENCODINGS)))


def _dump(
    node: object,
    *,
    ascii_only: bool,
    twice: tuple[str | int, ...] | None,
    path: tuple[str | int, ...] = (),
) -> str:
    if isinstance(node, RawNumber):
        return node.text
    if isinstance(node, dict):
        parts = []
        for key, child in node.items():
            here = (*path, key)
            item = (
                json.dumps(key, ensure_ascii=ascii_only)
                + ": "
                + _dump(child, ascii_only=ascii_only, twice=twice, path=here)
            )
            parts.append(item)
            if here == twice:
                parts.append(item)
        return "{" + ", ".join(parts) + "}"
    if isinstance(node, list):
        return (
            "["
            + ", ".join(
                _dump(c, ascii_only=ascii_only, twice=twice, path=(*path, n))
                for n, c in enumerate(node)
            )
            + "]"
        )
    return json.dumps(node, ensure_ascii=ascii_only)


def dumps(
    document: object, *, ascii_only: bool = False, twice: tuple[str | int, ...] | None = None
) -> bytes:
    """``document`` as JSON bytes (``RawNumber`` written as is; the key at ``twice``
    written twice)."""
    return _dump(document, ascii_only=ascii_only, twice=twice).encode("utf-8", "surrogatepass")


def apply(document: Any, mutation: Mutation) -> bytes:
    """The bytes of ``document`` changed by ``mutation``."""
    doc = json.loads(json.dumps(document))
    if mutation.kind == "replace":
        parent = _at(doc, mutation.path[:-1])
        parent[mutation.path[-1]] = mutation.value
    elif mutation.kind == "delete":
        del _at(doc, mutation.path[:-1])[mutation.path[-1]]
    elif mutation.kind == "extra":
        target = _at(doc, mutation.path)
        assert isinstance(mutation.value, str)
        target.setdefault(mutation.value, "x")
        if target[mutation.value] != "x":
            target[mutation.value + "_"] = "x"
    elif mutation.kind == "duplicate":
        return dumps(doc, twice=mutation.path)
    elif mutation.kind == "encoding":
        if mutation.value == "utf-16":
            return json.dumps(doc, ensure_ascii=False).encode("utf-16")
        if mutation.value == "utf-8-bom":
            return b"\xef\xbb\xbf" + dumps(doc)
        if mutation.value == "gb18030":
            return json.dumps(doc, ensure_ascii=False).encode("gb18030")
        if mutation.value == "lone-surrogate":
            strings = [p for p in paths(doc) if isinstance(_at(doc, p), str)]
            if strings:
                _at(doc, strings[-1][:-1])[strings[-1][-1]] = "A\ud800B"
            return dumps(doc, ascii_only=True)
        return dumps(doc, ascii_only=True)
    return dumps(doc)


def draw_all(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` examples of ``strategy``, the same on every run (derandomised, no example
    database), for tests that post them over a real socket from inside the event loop."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


@functools.cache
def drawn(
    event_type: str, valid: int, mutated: int
) -> tuple[list[Any], list[tuple[Any, Mutation]]]:
    """``valid`` documents of one event schema and ``mutated`` (document, mutation) pairs,
    drawn once per test run: the API and the file tests share them, and drawing is the slow
    part. Callers copy a document before changing it."""
    strategy = documents(published(event_type))
    pairs = strategy.flatmap(lambda d: st.tuples(st.just(d), mutations(d)))
    return draw_all(strategy, valid), draw_all(pairs, mutated)


__all__ = [
    "WRONG_VALUES",
    "Malformed",
    "Mutation",
    "RawNumber",
    "Verdict",
    "apply",
    "documents",
    "draw_all",
    "drawn",
    "dumps",
    "judge_document",
    "judge_event",
    "mutations",
    "published",
    "read_json",
]
