"""LeafTemplate bodies are byte for byte LeafInput bodies; unsafe slot values are refused."""

import pytest
from hypothesis import given, strategies as st

from gateway.evidence.leaf_template import LeafTemplate, Slot
from gateway.evidence.log import LeafInput

SAFE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\'),
    max_size=40,
)
CONSTANT = st.text(max_size=30).filter(lambda s: "\x00" not in s)


@given(
    attempt=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    line=SAFE_TEXT,
    key=SAFE_TEXT,
    path=CONSTANT,
    agency=CONSTANT,
    size=st.integers(min_value=0, max_value=2**40),
)
def test_a_template_body_equals_the_canonical_encoding(
    attempt: int, line: str, key: str, path: str, agency: str, size: int
) -> None:
    template = LeafTemplate(
        "receipt",
        Slot("ref", text=True),
        {
            "attempt_id": Slot("attempt_id"),
            "dedupe_key": Slot("key", text=True),
            "agency_id": agency,
            "http_status": None,
            "details": {"remote_path": path, "size": size, "line": Slot("line", text=True)},
        },
    )
    assert template.slots == ("ref", "attempt_id", "key", "line")
    ref = f"attempt:{attempt}"
    expected = LeafInput(
        "receipt",
        ref,
        {
            "attempt_id": attempt,
            "dedupe_key": key,
            "agency_id": agency,
            "http_status": None,
            "details": {"remote_path": path, "size": size, "line": line},
        },
    ).body()
    assert template.body((ref, attempt, key, line)) == expected


def test_values_that_json_would_escape_are_refused() -> None:
    template = LeafTemplate("k", "r", {"a": Slot("a", text=True), "n": Slot("n")})
    assert template.body(("x-1_y:z/2", 7)) == b'{"a":"x-1_y:z/2","kind":"k","n":7,"ref":"r"}'
    for bad in ('quo"te', "back\\slash", "t\u00e9l", "line\nbreak"):
        with pytest.raises(ValueError, match="a needs JSON escaping"):
            template.body((bad, 7))
    with pytest.raises(ValueError, match="n is not an integer"):
        template.body(("x", "7"))
    with pytest.raises(ValueError, match="n is not an integer"):
        template.body(("x", True))


def test_a_constant_with_a_nul_character_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        LeafTemplate("k", "r", {"a": Slot("a"), "b": "\x00"})
