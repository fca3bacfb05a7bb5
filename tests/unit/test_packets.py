"""Packet rendering: the field allowlist, canonical bytes, dedupe keys, readable Chinese."""

import hashlib
import json
from datetime import timedelta

import pytest
from hypothesis import given, strategies as st

from gateway.config.agencies import DEBTOR_FIELDS
from gateway.dispatch.packets import (
    canonical_json,
    dedupe_key,
    render_amended,
    render_direct_payment,
    render_recalled,
)
from schemas.packets import PlacementCreated
from tests.factories import NOW, PII, created_packet

PII_VALUES = {
    "debtor.name": PII["name"],
    "debtor.national_id": PII["national_id"],
    "debtor.phones": "13800138000",
    "debtor.address": PII["address"],
    "debtor.region": "CN-31",
}


def appears(value: object, payload: bytes) -> bool:
    return json.dumps(value, ensure_ascii=False).strip('"').encode() in payload


@pytest.mark.parametrize("field", sorted(DEBTOR_FIELDS))
def test_an_allowed_field_appears_and_no_other_does(field: str) -> None:
    payload = created_packet(allowed_fields=frozenset({field})).payload
    assert appears(PII_VALUES[field], payload)
    for other, value in PII_VALUES.items():
        if other != field:
            assert not appears(value, payload), f"{other} leaked with allowlist {{{field}}}"


def test_empty_allowlist_sends_only_the_debtor_id() -> None:
    payload = created_packet(allowed_fields=frozenset()).payload
    for value in PII_VALUES.values():
        assert not appears(value, payload)
    debtor = json.loads(payload)["data"]["debtor"]
    assert debtor == {"debtor_id": "CU0000000001"}


def test_disallowed_fields_are_absent_as_keys_not_null() -> None:
    payload = created_packet(allowed_fields=frozenset({"debtor.name"})).payload
    for key in (b'"national_id"', b'"phones"', b'"address"', b'"region"', b"null"):
        assert key not in payload


def test_full_allowlist_sends_every_personal_field() -> None:
    payload = created_packet(allowed_fields=DEBTOR_FIELDS).payload
    debtor = json.loads(payload)["data"]["debtor"]
    assert debtor["name"] == PII["name"]
    assert debtor["national_id"] == PII["national_id"]
    assert debtor["phones"] == PII["phones"]
    assert debtor["address"] == PII["address"]
    assert debtor["region"] == "CN-31"


def test_personal_fields_missing_from_the_record_are_simply_absent() -> None:
    payload = created_packet(pii={"name": "李四"}, allowed_fields=DEBTOR_FIELDS).payload
    debtor = json.loads(payload)["data"]["debtor"]
    assert debtor == {"debtor_id": "CU0000000001", "name": "李四", "region": "CN-31"}


def test_chinese_text_is_utf8_not_escaped() -> None:
    payload = created_packet(allowed_fields=frozenset({"debtor.name", "debtor.address"})).payload
    assert "张三".encode() in payload
    assert "上海市浦东新区".encode() in payload
    assert b"\\u" not in payload
    payload.decode("utf-8")


def test_rendering_twice_gives_identical_bytes() -> None:
    first, second = created_packet(), created_packet()
    assert first.payload == second.payload
    assert first.sha256 == second.sha256 == hashlib.sha256(first.payload).hexdigest()


def test_bytes_are_canonical_sorted_and_compact() -> None:
    payload = created_packet().payload
    assert payload == canonical_json(json.loads(payload))
    assert b": " not in payload and b", " not in payload
    assert (
        canonical_json({"b": 1, "a": {"d": 2, "c": "中"}})
        == '{"a":{"c":"中","d":2},"b":1}'.encode()
    )


def test_payload_is_a_valid_wire_packet_whose_id_is_the_dedupe_key() -> None:
    rendered = created_packet()
    packet = PlacementCreated.model_validate_json(rendered.payload)
    assert packet.data.packet_id == rendered.dedupe_key
    assert packet.data.balance.amount_minor == 250_000
    assert packet.data.balance.currency == "CNY"
    assert rendered.packet_type == "placement.created"


def test_money_is_integer_minor_units_in_the_bytes() -> None:
    payload = created_packet(balance_minor=123_456).payload
    assert b'"balance":{"amount_minor":123456,"currency":"CNY"}' in payload


def test_dedupe_key_is_stable_and_opaque() -> None:
    key = dedupe_key("AGY_A", "PL-1", "placement.created", "1")
    assert key == dedupe_key("AGY_A", "PL-1", "placement.created", "1")
    assert key.startswith("pkt_")
    assert len(key) == 44
    assert "." not in key  # a webhook-id must not contain '.'


@pytest.mark.parametrize(
    "changed",
    [
        ("AGY_B", "PL-1", "placement.created", "1"),
        ("AGY_A", "PL-2", "placement.created", "1"),
        ("AGY_A", "PL-1", "placement.amended", "1"),
        ("AGY_A", "PL-1", "placement.created", "2"),
    ],
    ids=["agency", "placement", "type", "discriminator"],
)
def test_dedupe_key_changes_with_each_component(changed: tuple[str, str, str, str]) -> None:
    assert dedupe_key(*changed) != dedupe_key("AGY_A", "PL-1", "placement.created", "1")


identifiers = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="_-.:"),
    min_size=1,
    max_size=24,
)
components = st.tuples(
    identifiers,
    identifiers,
    st.sampled_from(["placement.created", "placement.amended", "placement.recalled"]),
    identifiers,
)


@given(a=components, b=components)
def test_property_dedupe_keys_are_distinct_for_distinct_components(
    a: tuple[str, str, str, str], b: tuple[str, str, str, str]
) -> None:
    assert (dedupe_key(*a) == dedupe_key(*b)) == (a == b)


def test_dedupe_key_does_not_depend_on_content_or_time() -> None:
    """A re-render (e.g. after a restart) must reuse the webhook-id the agency already saw."""
    first = created_packet(balance_minor=1, placed_at=NOW)
    second = created_packet(balance_minor=2, placed_at=NOW + timedelta(hours=1))
    assert first.dedupe_key == second.dedupe_key
    assert first.payload != second.payload


def test_amendments_get_one_key_per_version() -> None:
    def amended(version: int) -> str:
        return render_amended(
            agency_id="AGY_A",
            placement_id="PL-1",
            case_id="AC1",
            version=version,
            balance_minor=90_000,
            previous_balance_minor=100_000,
            currency="CNY",
            reason="payment received by lender",
            at=NOW,
        ).dedupe_key

    assert amended(2) == amended(2)
    assert amended(2) != amended(3)


def test_recall_key_is_one_per_placement() -> None:
    def recalled(version: int, reason: str) -> str:
        return render_recalled(
            agency_id="AGY_A",
            placement_id="PL-1",
            case_id="AC1",
            version=version,
            reason_code=reason,
            at=NOW,
        ).dedupe_key

    assert recalled(1, "DECEASED") == recalled(3, "PAID_DIRECT")


def test_direct_payments_get_one_key_per_payment_id() -> None:
    def direct(payment_id: str) -> str:
        return render_direct_payment(
            agency_id="AGY_A",
            placement_id="PL-1",
            case_id="AC1",
            version=1,
            payment_id=payment_id,
            amount_minor=5_000,
            currency="CNY",
            paid_at=NOW,
            at=NOW,
        ).dedupe_key

    assert direct("P1") == direct("P1")
    assert direct("P1") != direct("P2")


def test_recall_packet_carries_the_reason_and_time() -> None:
    rendered = render_recalled(
        agency_id="AGY_A",
        placement_id="PL-1",
        case_id="AC1",
        version=1,
        reason_code="DECEASED",
        at=NOW,
    )
    data = json.loads(rendered.payload)["data"]
    assert data["reason_code"] == "DECEASED"
    assert data["recalled_at"] == "2026-03-02T09:30:00Z"
    assert json.loads(rendered.payload)["type"] == "placement.recalled"
