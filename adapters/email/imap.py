"""Opening an IMAP connection that is encrypted before any credential is sent.

Theory of operation
-------------------
``email.imap.tls`` chooses how:

* ``implicit`` (port 993, RFC 8314's preference): TLS from the first byte (aioimaplib's
  ``IMAP4_SSL``).
* ``starttls`` (port 143): a plain connection upgraded with STARTTLS (RFC 3501 section
  6.2.1) before LOGIN, and never used without it. aioimaplib has no STARTTLS of its own, so
  the command is sent through its protocol object and the transport is wrapped with
  ``loop.start_tls``; the capabilities are read again over TLS (what the server said
  before may have been tampered with).

The upgrade refuses, naming the server: a greeting that is not ``OK`` before
authentication (a plaintext ``PREAUTH`` skips STARTTLS altogether), a server that does not
offer STARTTLS or answers it with anything but OK, and any byte the server sent after that
OK before the handshake (a response injected in plaintext, CVE-2011-0411 style).
Certificates are verified by the caller's ``ssl.SSLContext`` in both modes.
"""

import asyncio
import contextlib
import ssl

from aioimaplib import IMAP4, IMAP4_SSL, Command  # type: ignore[import-untyped]

from gateway.config.email import ImapSection
from gateway.errors import GatewayError


async def connect_imap(imap: ImapSection, tls: ssl.SSLContext) -> IMAP4:
    """A client of ``imap`` past the greeting, encrypted (see the module docstring); the
    caller logs in and logs out."""
    where = f"IMAP {imap.host}:{imap.port}"
    if imap.tls == "implicit":
        client = IMAP4_SSL(
            host=imap.host, port=imap.port, timeout=imap.timeout_seconds, ssl_context=tls
        )
        await client.wait_hello_from_server()
        return client
    client = IMAP4(host=imap.host, port=imap.port, timeout=imap.timeout_seconds)
    await client.wait_hello_from_server()
    protocol = client.protocol
    try:
        async with asyncio.timeout(imap.timeout_seconds):
            if protocol.state != "NONAUTH":
                raise GatewayError(
                    f"{where}: greeted {protocol.state} in plaintext; refusing a connection "
                    "that skips STARTTLS"
                )
            await protocol.capability()
            if "STARTTLS" not in protocol.capabilities:
                raise GatewayError(
                    f"{where}: the server does not offer STARTTLS; refusing to log in in "
                    'plaintext (email.imap.tls = "starttls")'
                )
            # Every byte the server sends from here to the handshake must be the one line
            # answering STARTTLS: anything more was meant to be read as if it came over TLS.
            heard = bytearray()
            deliver = protocol.data_received

            def tap(data: bytes) -> None:
                heard.extend(data)
                deliver(data)

            protocol.data_received = tap
            try:
                answer = await protocol.execute(
                    Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
                )
            finally:
                del protocol.data_received
            if answer.result != "OK":
                raise GatewayError(f"{where}: STARTTLS refused: {answer.result}")
            if heard.count(b"\n") != 1 or not heard.endswith(b"\n"):
                raise GatewayError(
                    f"{where}: the server sent data after STARTTLS before the TLS handshake"
                )
            loop = asyncio.get_running_loop()
            protocol.transport = await loop.start_tls(
                protocol.transport, protocol, tls, server_hostname=imap.host
            )
            await protocol.capability()
    except BaseException:
        await _close(client.protocol.transport)
        raise
    return client


LOGOUT_SECONDS = 5


async def close_imap(client: IMAP4) -> None:
    """Log out (best effort: a broken connection can fail in many ways, none matter) and
    close the connection; aioimaplib leaves that to the server's end of it."""
    try:
        async with asyncio.timeout(LOGOUT_SECONDS):
            await client.logout()
    except Exception:
        pass
    await _close(client.protocol.transport)


async def _close(transport: asyncio.BaseTransport | None) -> None:
    """Close ``transport`` and wait (briefly) until its socket is released: over TLS that
    takes a close_notify exchange, and a loop that stops first would leave the socket to
    the garbage collector."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() == -1:
        return
    # asyncio closes the socket right after the protocol hears of the loss.
    released = asyncio.Event()
    protocol = transport.get_protocol()
    lost = protocol.connection_lost

    def connection_lost(exc: Exception | None) -> None:
        released.set()
        lost(exc)

    protocol.connection_lost = connection_lost  # type: ignore[method-assign]
    if not transport.is_closing():
        transport.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LOGOUT_SECONDS):
            await released.wait()


__all__ = ["close_imap", "connect_imap"]
