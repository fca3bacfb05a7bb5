"""PII at rest: AES-GCM round trip, Chinese text, key rotation, binding to the case id."""

import base64

import pytest

from gateway.errors import ConfigError, GatewayError
from gateway.privacy.pii import PiiKeyRing
from tests.factories import PII

OLD_LINE = PiiKeyRing.generate_line("k2025")
NEW_LINE = PiiKeyRing.generate_line("k2026")


def test_round_trip_keeps_every_field() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    blob = ring.encrypt(PII, bound_to="AC0000000001")
    assert ring.decrypt(blob, bound_to="AC0000000001") == PII


def test_chinese_text_survives_and_is_not_visible_in_the_blob() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    record = {"name": "欧阳娜娜", "address": "广东省深圳市南山区科技园"}
    blob = ring.encrypt(record, bound_to="AC1")
    assert ring.decrypt(blob, bound_to="AC1") == record
    for value in record.values():
        assert value.encode() not in blob
        assert value.encode("unicode_escape") not in blob


def test_same_record_encrypts_differently_each_time() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    assert ring.encrypt(PII, bound_to="AC1") != ring.encrypt(PII, bound_to="AC1")


def test_rotation_new_key_encrypts_old_blobs_still_decrypt() -> None:
    old_ring = PiiKeyRing.parse(OLD_LINE)
    old_blob = old_ring.encrypt(PII, bound_to="AC1")
    rotated = PiiKeyRing.parse(f"{NEW_LINE}\n{OLD_LINE}\n")
    assert rotated.current[0] == "k2026"
    assert rotated.decrypt(old_blob, bound_to="AC1") == PII
    new_blob = rotated.encrypt(PII, bound_to="AC1")
    assert b"k2026" in new_blob
    assert rotated.decrypt(new_blob, bound_to="AC1") == PII


def test_a_ring_without_the_new_key_cannot_read_new_blobs_and_says_why() -> None:
    rotated = PiiKeyRing.parse(f"{NEW_LINE}\n{OLD_LINE}")
    new_blob = rotated.encrypt(PII, bound_to="AC1")
    with pytest.raises(GatewayError, match=r"PII key 'k2026' is not in the key ring") as info:
        PiiKeyRing.parse(OLD_LINE).decrypt(new_blob, bound_to="AC1")
    assert "removed too early" in str(info.value)


def test_dropping_an_old_key_too_early_is_reported_by_key_id() -> None:
    old_blob = PiiKeyRing.parse(OLD_LINE).encrypt(PII, bound_to="AC1")
    with pytest.raises(GatewayError, match="'k2025'"):
        PiiKeyRing.parse(NEW_LINE).decrypt(old_blob, bound_to="AC1")


def test_blob_moved_to_another_case_does_not_decrypt() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    blob = ring.encrypt(PII, bound_to="AC0000000001")
    with pytest.raises(GatewayError, match="AC0000000002 failed authentication"):
        ring.decrypt(blob, bound_to="AC0000000002")


def test_a_flipped_ciphertext_byte_does_not_decrypt() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    blob = bytearray(ring.encrypt(PII, bound_to="AC1"))
    blob[-5] ^= 0x01
    with pytest.raises(GatewayError, match="failed authentication"):
        ring.decrypt(bytes(blob), bound_to="AC1")


def test_same_key_id_with_another_key_does_not_decrypt() -> None:
    blob = PiiKeyRing.parse(PiiKeyRing.generate_line("k1")).encrypt(PII, bound_to="AC1")
    with pytest.raises(GatewayError, match="failed authentication"):
        PiiKeyRing.parse(PiiKeyRing.generate_line("k1")).decrypt(blob, bound_to="AC1")


@pytest.mark.parametrize("blob", [b"", b"\x07garbage", b"\x02\x02k1" + bytes(40)])
def test_unknown_blob_format_is_an_error_not_a_crash(blob: bytes) -> None:
    with pytest.raises(GatewayError, match="unknown format"):
        PiiKeyRing.parse(NEW_LINE).decrypt(blob, bound_to="AC1")


def test_key_ring_ignores_comments_and_blank_lines() -> None:
    ring = PiiKeyRing.parse(f"# rotated 2026-01-01\n\n{NEW_LINE}\n  \n# old\n{OLD_LINE}\n")
    assert [kid for kid, _ in ring.keys] == ["k2026", "k2025"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("k1", "line 1: expected"),
        (":" + base64.b64encode(bytes(32)).decode(), "line 1: expected"),
        ("k1:not*base64", "line 1: key is not base64"),
        ("k1:" + base64.b64encode(bytes(16)).decode(), "line 1: key must be 32 bytes, got 16"),
        (f"{NEW_LINE}\nk2:" + base64.b64encode(bytes(31)).decode(), "line 2"),
    ],
)
def test_bad_key_ring_lines_are_config_errors_with_the_line(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        PiiKeyRing.parse(text)


def test_key_ring_repr_shows_ids_not_keys() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    key_b64 = NEW_LINE.split(":", 1)[1]
    assert "k2026" in repr(ring)
    assert key_b64 not in repr(ring)
    assert key_b64[:12] not in repr(ring)


def test_mac_is_keyed_stable_and_does_not_reveal_the_input() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    data = b"110101199003074514"
    assert ring.mac(data) == ring.mac(data)
    assert ring.mac(data) != ring.mac(b"110101199003074515")
    assert ring.mac(data) != PiiKeyRing.parse(OLD_LINE).mac(data)
    assert "110101199003074514" not in ring.mac(data)


def test_a_truncated_blob_is_a_gateway_error() -> None:
    ring = PiiKeyRing.parse(NEW_LINE)
    blob = ring.encrypt(PII, bound_to="AC1")
    with pytest.raises(GatewayError):
        ring.decrypt(blob[:10], bound_to="AC1")
