"""Reading a mail from a law firm (pure): what the headers say, and headers that lie."""

from datetime import UTC, datetime

import pytest

from adapters.email.reply import read_message


def mail(date: str) -> bytes:
    return (
        "From: firm@zhengyi.example\r\nTo: replies@lender.example\r\n"
        f"Date: {date}\r\nMessage-ID: <r1@zhengyi.example>\r\n"
        "In-Reply-To: <d1@lender.example>\r\nSubject: Re: case\r\n\r\nreceived\r\n"
    ).encode()


def test_the_date_is_read_in_utc() -> None:
    message = read_message(mail("Tue, 03 Mar 2026 10:00:00 +0800"))
    assert message.date == datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
    assert (message.message_id, message.references) == (
        "<r1@zhengyi.example>",
        ("<d1@lender.example>",),
    )


@pytest.mark.parametrize(
    "date", ["Fri, 31 Dec 9999 23:00:00 -0500", "not a date", "Mon, 32 Jan 2026 00:00:00 +0000"]
)
def test_a_date_header_with_no_place_in_utc_is_no_date_and_the_mail_is_still_read(
    date: str,
) -> None:
    message = read_message(mail(date))
    assert message.date is None
    assert message.text.strip() == "received"
