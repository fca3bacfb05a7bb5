"""Standard Webhooks signing: the published test vectors, rotation, tolerance, key layouts,
error classes, and properties over arbitrary messages."""

import base64

import pytest
from hypothesis import given, strategies as st

from gateway.errors import (
    ConfigError,
    InboundError,
    MissingHeaders,
    SignatureInvalid,
    TimestampOutOfTolerance,
)
from gateway.signing import (
    HmacKey,
    SigningKey,
    VerifyingKey,
    WebhookHeaders,
    generate_ed25519_pair,
    generate_hmac_secret,
    parse_ed25519_private,
    parse_ed25519_public,
    parse_hmac_secret,
    parse_signing_key,
    parse_verifying_key,
    public_key_text,
    read_headers,
    sign,
    verify,
)

# Test vectors from the Standard Webhooks reference (webhook-anchors.md section 1).
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
V1_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
WHSK_64 = (
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
)
WHPK = "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="
V1A_SIGNATURE = (
    "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
)
WHSK_32 = "whsk_" + base64.b64encode(base64.b64decode(WHSK_64.removeprefix("whsk_"))[:32]).decode()

# Keys for property tests are built once: hypothesis re-runs the test body many times.
HMAC_KEY = parse_hmac_secret(generate_hmac_secret())
_PRIVATE, _PUBLIC = generate_ed25519_pair()
ED_PRIVATE = parse_ed25519_private(_PRIVATE)
ED_PUBLIC = parse_ed25519_public(_PUBLIC)
KEY_PAIRS: list[tuple[SigningKey, VerifyingKey]] = [(HMAC_KEY, HMAC_KEY), (ED_PRIVATE, ED_PUBLIC)]


def headers_for(msg_id: str, timestamp: int, signature: str) -> WebhookHeaders:
    return read_headers(
        [
            ("webhook-id", msg_id),
            ("webhook-timestamp", str(timestamp)),
            ("webhook-signature", signature),
        ]
    )


def test_v1_vector_signs_to_the_published_signature() -> None:
    assert sign(MSG_ID, TIMESTAMP, BODY, [parse_hmac_secret(WHSEC)]) == V1_SIGNATURE


def test_v1_vector_verifies() -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    assert verify(headers, BODY, [parse_hmac_secret(WHSEC)], now=TIMESTAMP) == "v1"


@pytest.mark.parametrize("whsk", [WHSK_64, WHSK_32], ids=["seed+public", "seed-only"])
def test_v1a_vector_signs_to_the_published_signature(whsk: str) -> None:
    assert sign(MSG_ID, TIMESTAMP, BODY, [parse_ed25519_private(whsk)]) == V1A_SIGNATURE


def test_v1a_vector_verifies_with_the_public_key() -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1A_SIGNATURE)
    assert verify(headers, BODY, [parse_ed25519_public(WHPK)], now=TIMESTAMP) == "v1a"


@pytest.mark.parametrize("whsk", [WHSK_64, WHSK_32], ids=["seed+public", "seed-only"])
def test_whsk_layouts_derive_the_published_public_key(whsk: str) -> None:
    assert public_key_text(parse_ed25519_private(whsk)) == WHPK


def test_whsk_with_a_foreign_public_half_is_refused() -> None:
    raw = base64.b64decode(WHSK_64.removeprefix("whsk_"))
    other_public = base64.b64decode(_PUBLIC.removeprefix("whpk_"))
    forged = "whsk_" + base64.b64encode(raw[:32] + other_public).decode()
    with pytest.raises(ConfigError, match="does not match"):
        parse_ed25519_private(forged)


def test_a_v1_vector_does_not_verify_as_v1a_and_vice_versa() -> None:
    """An HMAC secret never checks an Ed25519 signature, nor a public key an HMAC."""
    with pytest.raises(SignatureInvalid):
        verify(
            headers_for(MSG_ID, TIMESTAMP, V1A_SIGNATURE),
            BODY,
            [parse_hmac_secret(WHSEC)],
            now=TIMESTAMP,
        )
    with pytest.raises(SignatureInvalid):
        verify(
            headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE),
            BODY,
            [parse_ed25519_public(WHPK)],
            now=TIMESTAMP,
        )


def test_rotation_header_carries_one_signature_per_key() -> None:
    old, new = parse_hmac_secret(WHSEC), HMAC_KEY
    header = sign(MSG_ID, TIMESTAMP, BODY, [old, new])
    entries = header.split(" ")
    assert len(entries) == 2
    assert entries[0] == V1_SIGNATURE
    assert all(entry.startswith("v1,") for entry in entries)


@pytest.mark.parametrize("trusted", ["old", "new"])
def test_rotation_either_key_verifies_a_doubly_signed_message(trusted: str) -> None:
    old, new = parse_hmac_secret(WHSEC), HMAC_KEY
    headers = headers_for(MSG_ID, TIMESTAMP, sign(MSG_ID, TIMESTAMP, BODY, [old, new]))
    assert verify(headers, BODY, [old if trusted == "old" else new], now=TIMESTAMP) == "v1"


def test_rotation_a_retired_key_alone_no_longer_verifies() -> None:
    retired = parse_hmac_secret(generate_hmac_secret())
    headers = headers_for(MSG_ID, TIMESTAMP, sign(MSG_ID, TIMESTAMP, BODY, [HMAC_KEY]))
    with pytest.raises(SignatureInvalid):
        verify(headers, BODY, [retired], now=TIMESTAMP)


def test_mixed_versions_and_unknown_entries_are_skipped_not_fatal() -> None:
    signature = "v2,AAAA v1,not-base64!! " + V1A_SIGNATURE
    headers = headers_for(MSG_ID, TIMESTAMP, signature)
    assert verify(headers, BODY, [parse_ed25519_public(WHPK)], now=TIMESTAMP) == "v1a"


@pytest.mark.parametrize("skew", [-300, -1, 0, 1, 300])
def test_timestamp_inside_tolerance_is_accepted(skew: int) -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    assert verify(headers, BODY, [parse_hmac_secret(WHSEC)], now=TIMESTAMP + skew) == "v1"


@pytest.mark.parametrize("skew", [-301, 301, 86_400], ids=["future", "past", "a-day-old"])
def test_timestamp_outside_tolerance_is_refused(skew: int) -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(TimestampOutOfTolerance) as info:
        verify(headers, BODY, [parse_hmac_secret(WHSEC)], now=TIMESTAMP + skew)
    assert info.value.status == 401
    assert "±300 s" in str(info.value)
    # The refusal says how far off the sender's clock is, with the right sign.
    assert f"is {skew:+d} s from server time" in str(info.value)


def test_custom_tolerance_is_honoured() -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    key = parse_hmac_secret(WHSEC)
    assert verify(headers, BODY, [key], now=TIMESTAMP + 30, tolerance=30) == "v1"
    with pytest.raises(TimestampOutOfTolerance):
        verify(headers, BODY, [key], now=TIMESTAMP + 31, tolerance=30)


def test_a_stale_message_is_refused_even_when_the_signature_is_right() -> None:
    """Replay protection: the timestamp check does not depend on the signature."""
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(TimestampOutOfTolerance):
        verify(headers, BODY, [parse_hmac_secret(WHSEC)], now=TIMESTAMP + 3600)


def test_wrong_key_is_signature_invalid() -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(SignatureInvalid) as info:
        verify(headers, BODY, [HMAC_KEY], now=TIMESTAMP)
    assert info.value.status == 401


def test_flipped_body_byte_is_signature_invalid() -> None:
    tampered = BODY.replace(b"2432232314", b"2432232315")
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(SignatureInvalid):
        verify(headers, tampered, [parse_hmac_secret(WHSEC)], now=TIMESTAMP)


def test_reserialised_json_does_not_verify() -> None:
    """The signed bytes are the raw body: the same JSON without the space is another message."""
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(SignatureInvalid):
        verify(headers, b'{"test":2432232314}', [parse_hmac_secret(WHSEC)], now=TIMESTAMP)


def test_another_message_id_is_signature_invalid() -> None:
    headers = headers_for("msg_other", TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(SignatureInvalid):
        verify(headers, BODY, [parse_hmac_secret(WHSEC)], now=TIMESTAMP)


def test_no_trusted_keys_is_signature_invalid() -> None:
    headers = headers_for(MSG_ID, TIMESTAMP, V1_SIGNATURE)
    with pytest.raises(SignatureInvalid):
        verify(headers, BODY, [], now=TIMESTAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(missing: str) -> None:
    all_headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": V1_SIGNATURE,
    }
    del all_headers[missing]
    with pytest.raises(MissingHeaders, match=missing) as info:
        read_headers(all_headers.items())
    assert info.value.status == 400


@pytest.mark.parametrize("bad", ["", "abc", "1614265330.5", "0x1234"])
def test_bad_timestamp_is_missing_headers(bad: str) -> None:
    with pytest.raises(MissingHeaders, match="webhook-timestamp"):
        read_headers(
            [
                ("webhook-id", MSG_ID),
                ("webhook-timestamp", bad),
                ("webhook-signature", V1_SIGNATURE),
            ]
        )


@pytest.mark.parametrize("bad_id", ["", "   ", "msg.with.dots", "x" * 256])
def test_bad_message_id_is_missing_headers(bad_id: str) -> None:
    with pytest.raises(MissingHeaders, match="webhook-id"):
        read_headers(
            [
                ("webhook-id", bad_id),
                ("webhook-timestamp", str(TIMESTAMP)),
                ("webhook-signature", V1_SIGNATURE),
            ]
        )


def test_header_names_are_case_insensitive() -> None:
    headers = read_headers(
        [
            ("Webhook-Id", MSG_ID),
            ("WEBHOOK-TIMESTAMP", str(TIMESTAMP)),
            ("Webhook-Signature", V1_SIGNATURE),
            ("Content-Type", "application/json"),
        ]
    )
    assert headers == WebhookHeaders(MSG_ID, TIMESTAMP, V1_SIGNATURE)


def test_every_verification_error_is_an_inbound_error() -> None:
    """The web layer maps InboundError to an HTTP problem; these must all be in that tree."""
    for cls in (MissingHeaders, SignatureInvalid, TimestampOutOfTolerance):
        assert issubclass(cls, InboundError)


def test_signing_refuses_a_message_id_with_a_dot() -> None:
    with pytest.raises(ValueError, match=r"'\.'"):
        sign("msg.1", TIMESTAMP, BODY, [HMAC_KEY])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "whsec_"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_" + base64.b64encode(b"x" * 16).decode(), "24-64 bytes"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "24-64 bytes"),
        ("whsec_not base64!", "base64"),
    ],
)
def test_bad_hmac_secrets_are_config_errors(text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_hmac_secret(text)


def test_hmac_secret_is_padded_when_pasted_without_padding() -> None:
    padded = generate_hmac_secret()
    assert padded.endswith("=")
    assert parse_hmac_secret(padded.rstrip("=")) == parse_hmac_secret(padded)


@pytest.mark.parametrize(
    ("text", "parse", "message"),
    [
        (WHPK, parse_ed25519_private, "a v1a signing key must start with whsk_"),
        (WHSK_64, parse_ed25519_public, "a v1a verifying key must start with whpk_"),
        (
            "whsk_" + base64.b64encode(b"x" * 48).decode(),
            parse_ed25519_private,
            "a whsk_ key must decode to 32 or 64 bytes, got 48",
        ),
        (
            "whpk_" + base64.b64encode(b"x" * 31).decode(),
            parse_ed25519_public,
            "a whpk_ key must decode to 32 bytes, got 31",
        ),
    ],
)
def test_bad_ed25519_keys_are_config_errors(text: str, parse: object, message: str) -> None:
    assert callable(parse)
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value) == message


def test_keys_never_print_their_secret() -> None:
    secret = parse_hmac_secret(WHSEC)
    assert isinstance(secret, HmacKey)
    assert "MfKQ" not in repr(secret)
    assert "redacted" in repr(parse_ed25519_private(WHSK_64))


message_ids = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="_-:"),
    min_size=1,
    max_size=64,
)
timestamps = st.integers(min_value=0, max_value=2**40)


@given(
    body=st.binary(max_size=2048),
    msg_id=message_ids,
    timestamp=timestamps,
    pair=st.sampled_from(KEY_PAIRS),
)
def test_property_sign_then_verify_holds(
    body: bytes, msg_id: str, timestamp: int, pair: tuple[SigningKey, VerifyingKey]
) -> None:
    signer, verifier = pair
    headers = headers_for(msg_id, timestamp, sign(msg_id, timestamp, body, [signer]))
    assert verify(headers, body, [verifier], now=timestamp) in ("v1", "v1a")


@given(
    data=st.data(),
    body=st.binary(min_size=1, max_size=2048),
    msg_id=message_ids,
    timestamp=timestamps,
    pair=st.sampled_from(KEY_PAIRS),
)
def test_property_any_single_byte_change_fails(
    data: st.DataObject,
    body: bytes,
    msg_id: str,
    timestamp: int,
    pair: tuple[SigningKey, VerifyingKey],
) -> None:
    signer, verifier = pair
    headers = headers_for(msg_id, timestamp, sign(msg_id, timestamp, body, [signer]))
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1), label="index")
    flip = data.draw(st.integers(min_value=1, max_value=255), label="xor")
    changed = bytearray(body)
    changed[index] ^= flip
    with pytest.raises(SignatureInvalid):
        verify(headers, bytes(changed), [verifier], now=timestamp)


# -- found by mutation testing (docs/mutation.md) ---------------------------------------------


def test_rotation_v1a_every_trusted_key_is_tried_not_only_the_first() -> None:
    """Two trusted Ed25519 keys during a rotation: a message signed with the second verifies."""
    other = parse_ed25519_public(generate_ed25519_pair()[1])
    headers = headers_for(MSG_ID, TIMESTAMP, V1A_SIGNATURE)
    assert verify(headers, BODY, [other, parse_ed25519_public(WHPK)], now=TIMESTAMP) == "v1a"


@pytest.mark.parametrize("signature", [V1_SIGNATURE, V1A_SIGNATURE])
def test_a_signature_with_characters_outside_base64_is_refused(signature: str) -> None:
    """A lenient decoder would drop the stray character and accept a signature nobody sent."""
    version, _, b64 = signature.partition(",")
    headers = headers_for(MSG_ID, TIMESTAMP, f"{version},{b64[:10]}!{b64[10:]}")
    keys: list[VerifyingKey] = [parse_hmac_secret(WHSEC), parse_ed25519_public(WHPK)]
    with pytest.raises(SignatureInvalid):
        verify(headers, BODY, keys, now=TIMESTAMP)


def test_a_webhook_id_of_exactly_255_characters_is_accepted() -> None:
    assert headers_for("m" * 255, TIMESTAMP, V1_SIGNATURE).msg_id == "m" * 255


def test_a_webhook_id_that_was_not_utf8_is_refused() -> None:
    """aiohttp keeps bytes that were not UTF-8 as lone surrogates; they cannot be signed."""
    with pytest.raises(MissingHeaders, match="webhook-id"):
        headers_for("evt_\udcff", TIMESTAMP, V1_SIGNATURE)


@pytest.mark.parametrize("prefix", ["whsec_", "whsk_", "whpk_"])
def test_a_key_with_characters_outside_base64_is_refused(prefix: str) -> None:
    text = {"whsec_": WHSEC, "whsk_": WHSK_64, "whpk_": WHPK}[prefix]
    body = text.removeprefix(prefix)
    parse = {
        "whsec_": parse_hmac_secret,
        "whsk_": parse_ed25519_private,
        "whpk_": parse_ed25519_public,
    }[prefix]
    with pytest.raises(ConfigError, match=f"{prefix}.* is not valid base64"):
        parse(f"{prefix}{body[:8]}!{body[8:]}")


def test_a_v1_secret_of_64_bytes_is_the_longest_accepted() -> None:
    longest = "whsec_" + base64.b64encode(b"k" * 64).decode()
    assert parse_hmac_secret(longest) == HmacKey(b"k" * 64)


def test_keys_are_parsed_by_their_agencys_scheme() -> None:
    assert (
        parse_signing_key("v1", WHSEC)
        == parse_verifying_key("v1", WHSEC)
        == HmacKey(base64.b64decode(WHSEC.removeprefix("whsec_")))
    )
    signing = parse_signing_key("v1a", WHSK_64)
    verifying = parse_verifying_key("v1a", WHPK)
    headers = headers_for(MSG_ID, TIMESTAMP, sign(MSG_ID, TIMESTAMP, BODY, [signing]))
    assert verify(headers, BODY, [verifying], now=TIMESTAMP) == "v1a"


def test_a_generated_ed25519_pair_is_the_svix_layout_and_signs_verifiably() -> None:
    whsk, whpk = generate_ed25519_pair()
    assert whsk.startswith("whsk_") and whpk.startswith("whpk_")
    raw = base64.b64decode(whsk.removeprefix("whsk_"))
    assert len(raw) == 64 and raw[32:] == base64.b64decode(whpk.removeprefix("whpk_"))
    private = parse_ed25519_private(whsk)
    assert public_key_text(private) == whpk
    headers = headers_for(MSG_ID, TIMESTAMP, sign(MSG_ID, TIMESTAMP, BODY, [private]))
    assert verify(headers, BODY, [parse_ed25519_public(whpk)], now=TIMESTAMP) == "v1a"
    assert generate_ed25519_pair() != (whsk, whpk)
