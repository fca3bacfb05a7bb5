"""The pure parts of finding and working the queue: what a search resolves to, how refused
messages are counted by reason, and the ``back`` a mismatch page carries."""

from urllib.parse import parse_qs, urlsplit

from gateway.console.inbound_health import refusal_reason, tally
from gateway.console.navigation import queue_address, with_back
from gateway.console.search import Hit, agency_hits, grouped, outcome, variants
from gateway.errors import SchemaViolation
from gateway.inbound.problems import problem_body


def test_one_destination_is_followed_several_are_grouped_in_kind_order() -> None:
    case = Hit("case", "AC1", "/cases/AC1")
    placement = Hit("placement", "PL-AC1-1", "/cases/AC1", "AGY")
    mismatch = Hit("mismatch", "#7", "/mismatches/7", "AGY")
    assert outcome([case, placement, placement]) == "/cases/AC1"
    assert outcome([case, mismatch]) is None and outcome([]) is None
    assert grouped([placement, mismatch, case, placement]) == [
        ("mismatch", [mismatch]),
        ("case", [case]),
        ("placement", [placement]),
    ]


def test_ids_are_matched_in_either_case() -> None:
    assert variants("pl-ac1-1") == ["PL-AC1-1", "pl-ac1-1"]
    assert [h.href for h in agency_hits("agy_alpha", ["AGY_ALPHA", "AGY_BETA"])] == [
        "/agencies/AGY_ALPHA"
    ]


def test_refusals_are_counted_by_the_problem_they_were_answered_with() -> None:
    body = problem_body(SchemaViolation("data.amount: Field required"), instance="/x")
    code, title = refusal_reason(body[:200], "invalid", 422)
    assert code == "schema-violation" and "422" in title
    assert refusal_reason(b"not json", "refused", 409) == ("refused-409", "refused (HTTP 409)")
    counted = tally(
        [
            ("accepted", 200, None, 3, 10),
            ("invalid", 422, body[:200], 1, 2),
            ("invalid", 422, body[:200], 0, 4),  # the same reason, another prefix group
            ("refused", 409, b"", 0, 1),
        ]
    )
    assert counted["accepted"] == {"24h": 3, "7d": 10}
    assert counted["refused"] == {"24h": 1, "7d": 7}
    assert [(r["code"], r["24h"], r["7d"]) for r in counted["refused_by_reason"]] == [
        ("schema-violation", 1, 6),
        ("refused-409", 0, 1),
    ]


def test_back_rides_along_in_the_query() -> None:
    back = queue_address([("kind", "a"), ("kind", "b"), ("sort", "id")])
    assert back == "/mismatches?kind=a&kind=b&sort=id"
    address = with_back("/mismatches/5", back, done="comment")
    assert parse_qs(urlsplit(address).query) == {"done": ["comment"], "back": [back]}
    assert with_back("/mismatches/5", None, done="comment") == "/mismatches/5?done=comment"
