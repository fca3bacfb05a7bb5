"""C2SP signed notes and checkpoints, byte-compatible with golang.org/x/mod/sumdb/note.

The fixed keys, text and signature lines are the published vectors of Go's note_test.go.
"""

import base64

import pytest

from gateway.errors import ConfigError, EvidenceError
from gateway.evidence.signed_note import (
    NoteSigner,
    NoteVerifier,
    checkpoint_text,
    generate_key,
    key_hash,
    open_note,
    parse_checkpoint,
    sign_note,
)

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
    "qdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)


def test_sign_matches_go_byte_for_byte():
    signer = NoteSigner.from_text(PETER_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_hash == 0xC74F20A3
    assert sign_note(TEXT, signer) == TEXT + "\n" + PETER_SIG


def test_signer_derives_the_published_verifier_key():
    signer = NoteSigner.from_text(PETER_SKEY)
    assert signer.verifier().to_text() == PETER_VKEY
    assert NoteVerifier.from_text(PETER_VKEY) == signer.verifier()


def test_open_go_note_with_two_signatures_and_one_known_key():
    peter = NoteVerifier.from_text(PETER_VKEY)
    text, names = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter])
    assert text == TEXT
    assert names == ["PeterNeumann"]


def test_open_go_note_with_both_keys_known():
    verifiers = [NoteVerifier.from_text(PETER_VKEY), NoteVerifier.from_text(ENOCH_VKEY)]
    _, names = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, verifiers)
    assert names == ["PeterNeumann", "EnochRoot"]


def test_note_without_a_trusted_signature_is_rejected():
    enoch = NoteVerifier.from_text(ENOCH_VKEY)
    with pytest.raises(EvidenceError, match="no signature from a trusted key"):
        open_note(TEXT + "\n" + PETER_SIG, [enoch])


def test_bad_signature_from_a_known_key_rejects_the_note():
    peter = NoteVerifier.from_text(PETER_VKEY)
    corrupt = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(EvidenceError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
        open_note(TEXT + "\n" + corrupt, [peter])


def test_tampered_text_fails():
    peter = NoteVerifier.from_text(PETER_VKEY)
    tampered = TEXT.replace("answer", "answers")
    with pytest.raises(EvidenceError, match="invalid signature"):
        open_note(tampered + "\n" + PETER_SIG, [peter])


def test_wrong_key_with_same_name_and_hash_fails():
    peter = NoteVerifier.from_text(PETER_VKEY)
    impostor_private, _ = generate_key("PeterNeumann")
    impostor = NoteSigner.from_text(impostor_private)
    forged = sign_note(TEXT, impostor)
    # Its key hash differs, so the real key does not recognise the signature at all.
    with pytest.raises(EvidenceError, match="no signature from a trusted key"):
        open_note(forged, [peter])
    # Claiming Peter's key hash gets the signature checked, and it fails.
    raw = base64.b64decode(forged.rsplit(" ", 1)[1])
    claimed = base64.b64encode(bytes.fromhex("c74f20a3") + raw[4:]).decode()
    with pytest.raises(EvidenceError, match="invalid signature"):
        open_note(forged.rsplit(" ", 1)[0] + " " + claimed + "\n", [peter])


@pytest.mark.parametrize(
    "message",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FF"
        "YC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_rejected(message):
    with pytest.raises(EvidenceError, match="malformed note"):
        open_note(message, [NoteVerifier.from_text(PETER_VKEY)])


def test_generated_keys_round_trip():
    private_text, verifier_text = generate_key("example.com/evidence")
    signer = NoteSigner.from_text(private_text)
    verifier = NoteVerifier.from_text(verifier_text)
    assert verifier == signer.verifier()
    assert private_text.startswith(f"PRIVATE+KEY+example.com/evidence+{signer.key_hash:08x}+")
    note = sign_note("hello\n", signer)
    assert open_note(note, [verifier]) == ("hello\n", ["example.com/evidence"])
    # The key is the base64 after "PRIVATE+KEY+<name>+<hash>+"; base64 has "+" of its own.
    secret = private_text.split("+", 4)[4]
    assert "PRIVATE" not in repr(signer) and secret not in repr(signer)


def test_key_hash_is_the_first_four_bytes_of_the_named_key_digest():
    public = base64.b64decode(PETER_VKEY.rsplit("+", 1)[1])[1:]
    assert key_hash("PeterNeumann", public) == 0xC74F20A3


def test_mangled_verifier_keys_raise_config_error():
    # As Go's TestNewVerifier: every proper substring and every single-byte change fails.
    raw = PETER_VKEY.encode()
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(ConfigError):
                    NoteVerifier.from_text(raw[i:j].decode())
    for i in range(len(raw)):
        mangled = bytearray(raw)
        mangled[i] += 1
        with pytest.raises(ConfigError):
            NoteVerifier.from_text(mangled.decode())
    with pytest.raises(ConfigError):  # wrong length key with an adjusted hash
        NoteVerifier.from_text(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(ConfigError):  # unknown algorithm with an adjusted hash
        NoteVerifier.from_text("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_mangled_signer_keys_raise_config_error():
    raw = PETER_SKEY.encode()
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(ConfigError):
                    NoteSigner.from_text(raw[i:j].decode())
    for i in range(len(raw)):
        mangled = bytearray(raw)
        mangled[i] += 1
        with pytest.raises(ConfigError):
            NoteSigner.from_text(mangled.decode())


def test_signer_key_error_names_the_problem_without_the_secret():
    wrong_hash = PETER_SKEY.replace("c74f20a3", "c74f20a4")
    with pytest.raises(ConfigError, match="key hash does not match") as info:
        NoteSigner.from_text(wrong_hash)
    assert "AYEKFALV" not in str(info.value)


def test_checkpoint_text_round_trip_and_sign():
    root_hash = bytes(range(32))
    text = checkpoint_text("example.com/behind-the-sofa", 20852163, root_hash)
    assert text == (
        "example.com/behind-the-sofa\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    )
    assert parse_checkpoint(text) == ("example.com/behind-the-sofa", 20852163, root_hash)
    assert parse_checkpoint(text + "extension line\n")[1] == 20852163
    private_text, verifier_text = generate_key("example.com/behind-the-sofa")
    note = sign_note(text, NoteSigner.from_text(private_text))
    opened, _ = open_note(note, [NoteVerifier.from_text(verifier_text)])
    assert parse_checkpoint(opened) == ("example.com/behind-the-sofa", 20852163, root_hash)


def test_c2sp_example_checkpoint_parses():
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    origin, size, root_hash = parse_checkpoint(text)
    assert (origin, size, len(root_hash)) == ("example.com/behind-the-sofa", 20852163, 32)


@pytest.mark.parametrize(
    "text",
    [
        "origin\n12\n",
        "origin\n012\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "origin\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==\n",
        "origin\n12\nnot base64!\n",
        "origin\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "origin\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "\n12\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    ],
)
def test_malformed_checkpoints_are_rejected(text):
    with pytest.raises(EvidenceError, match="malformed checkpoint"):
        parse_checkpoint(text)


def test_sign_refuses_text_without_final_newline():
    signer = NoteSigner.from_text(PETER_SKEY)
    with pytest.raises(EvidenceError, match="end with a newline"):
        sign_note("abc", signer)
