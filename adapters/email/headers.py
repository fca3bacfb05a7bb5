"""The referral mail's own header block (pure): From, To, Cc, a Subject folded within RFC
2047's limits, Date, a Message-ID fixed by the dispatch's reference, and our tracking
headers. The body it heads is adapters.email.render's and adapters.email.smime's."""

import base64
from collections.abc import Sequence
from datetime import datetime
from email.message import Message
from email.utils import format_datetime, formataddr

from adapters.email.render import WIRE


def outer_headers(
    *,
    from_address: str,
    from_name: str,
    to: Sequence[str],
    cc: Sequence[str],
    subject: str,
    message_id: str,
    date: datetime,
    ref: str,
    possible_duplicate: bool,
) -> bytes:
    """The message's own header block (ends with CRLF, no blank line after it)."""
    headers = Message()
    headers["From"] = formataddr((from_name, from_address), charset="utf-8")
    headers["To"] = ", ".join(to)
    if cc:
        headers["Cc"] = ", ".join(cc)
    head = headers.as_bytes(policy=WIRE)
    tail = Message()
    tail["Date"] = format_datetime(date)
    tail["Message-ID"] = message_id
    tail["X-Gateway-Ref"] = ref
    if possible_duplicate:
        tail["X-Gateway-Possible-Duplicate"] = "yes"
    rest = tail.as_bytes(policy=WIRE)
    subject_line = b"Subject: " + subject_value(subject).encode("ascii") + b"\r\n"
    return head[: head.index(b"\r\n\r\n") + 2] + subject_line + rest[: rest.index(b"\r\n\r\n") + 2]


ENCODED_WORD_MAX = 75
"""RFC 2047: an encoded word is at most 75 characters, and a line holding one at most 76."""


def subject_value(subject: str) -> str:
    """The Subject's value as it goes on the wire: printable ASCII as it is when it fits one
    line; otherwise RFC 2047 ``B`` encoded words of UTF-8, each at most 75 characters and
    every line at most 76 (the first shares its line with ``Subject: ``), never splitting
    a character. Python's own folding can emit 76-character words and 85-character lines."""
    if subject.isascii() and subject.isprintable() and len("Subject: ") + len(subject) <= 76:
        return subject
    overhead = len("=?utf-8?b??=")
    room = 76 - len("Subject: ") - overhead
    words: list[bytes] = []
    chunk = b""
    for char in subject:
        encoded = char.encode("utf-8")
        if chunk and 4 * -(-(len(chunk) + len(encoded)) // 3) > room:
            words.append(chunk)
            chunk = b""
            room = ENCODED_WORD_MAX - overhead  # later lines start with one space
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words)


def message_id_for(ref: str, domain: str) -> str:
    """The Message-ID of a dispatch: fixed by its reference, so a resend keeps it."""
    return f"<{ref}@{domain}>"


__all__ = ["ENCODED_WORD_MAX", "message_id_for", "outer_headers", "subject_value"]
