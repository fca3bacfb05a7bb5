"""IMAP with STARTTLS required: a real Dovecot on 143-style plain IMAP is upgraded before
login, and servers that would let credentials go in plaintext are refused: no STARTTLS on
offer, a plaintext PREAUTH, a response injected before the handshake."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.email.imap import close_imap, connect_imap
from adapters.email.mailbox import client_tls_context
from gateway.config.email import ImapSection
from gateway.errors import GatewayError
from gateway.keys import self_signed
from gateway.sandbox.dovecot import ThrowawayDovecot, unavailable_reason

USER, PASSWORD = "replies", uuid.uuid4().hex


def section(port: int, tls: str = "starttls", **more: object) -> ImapSection:
    return ImapSection.model_validate(
        {
            "host": "127.0.0.1",
            "port": port,
            "tls": tls,
            "username": USER,
            "password": {"env": "UNUSED"},
            "timeout_seconds": 10,
            **more,
        }
    )


@pytest.fixture(scope="module")
def dovecot() -> Iterator[tuple[ThrowawayDovecot, str]]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no Dovecot: {reason}")
    cert, key = self_signed("agency-gateway test", loopback=True)
    server = ThrowawayDovecot(users={USER: PASSWORD}, cert_pem=cert, key_pem=key, starttls=True)
    asyncio.run(server.start())
    yield server, cert
    asyncio.run(server.stop())


def tls(tmp_path: Path, cert: str):
    ca = tmp_path / "ca.pem"
    ca.write_text(cert)
    return client_tls_context(ca)


def test_starttls_means_port_143_unless_told() -> None:
    assert section(143).port == 143
    assert (
        ImapSection.model_validate(
            {"host": "h", "tls": "starttls", "username": "u", "password": {"env": "X"}}
        ).port
        == 143
    )
    assert section(993, tls="implicit").port == 993


async def test_a_starttls_mailbox_is_upgraded_before_login(
    dovecot: tuple[ThrowawayDovecot, str], tmp_path: Path
) -> None:
    server, cert = dovecot
    for imap in (section(server.starttls_port), section(server.port, tls="implicit")):
        client = await connect_imap(imap, tls(tmp_path, cert))
        try:
            assert (await client.login(USER, PASSWORD)).result == "OK"
            assert (await client.select("INBOX")).result == "OK"
            if imap.tls == "starttls":
                assert client.protocol.transport.get_extra_info("ssl_object") is not None
        finally:
            await close_imap(client)


async def test_a_starttls_mailbox_with_an_unknown_certificate_is_refused(
    dovecot: tuple[ThrowawayDovecot, str], tmp_path: Path
) -> None:
    server, _cert = dovecot
    other, _key = self_signed("someone else", loopback=True)
    with pytest.raises(Exception) as refused:
        await connect_imap(section(server.starttls_port), tls(tmp_path, other))
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)


@pytest.fixture
async def fake_imap() -> AsyncIterator[list[tuple[int, list[bytes]]]]:
    """Plain IMAP servers that misbehave, each in its own way: (port, what it heard)."""
    servers = []
    heard: list[tuple[int, list[bytes]]] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(greeting: bytes, capabilities: bytes, after_starttls: bytes) -> int:
        lines: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            writer.write(greeting)
            while line := await reader.readline():
                lines.append(line)
                tag, _, command = line.decode(errors="replace").strip().partition(" ")
                if command.upper() == "CAPABILITY":
                    writer.write(
                        b"* CAPABILITY " + capabilities + b"\r\n" + tag.encode() + b" OK\r\n"
                    )
                elif command.upper() == "STARTTLS":
                    writer.write(tag.encode() + b" OK begin TLS\r\n" + after_starttls)
                else:
                    writer.write(tag.encode() + b" BAD no\r\n")
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = int(server.sockets[0].getsockname()[1])
        heard.append((port, lines))
        return port

    plain = await start(b"* OK IMAP4rev1 ready\r\n", b"IMAP4rev1 AUTH=PLAIN", b"")
    preauth = await start(b"* PREAUTH IMAP4rev1 logged in\r\n", b"IMAP4rev1 STARTTLS", b"")
    injected = await start(
        b"* OK IMAP4rev1 ready\r\n", b"IMAP4rev1 STARTTLS", b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
    )
    assert [p for p, _ in heard] == [plain, preauth, injected]
    yield heard
    for server in servers:
        server.close()
        await server.wait_closed()
    # A connection the client dropped may not have been read to its end yet: close the
    # server's side here rather than leave the socket to the garbage collector.
    for writer in writers:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_servers_that_would_let_credentials_go_in_plaintext_are_refused(
    fake_imap: list[tuple[int, list[bytes]]], tmp_path: Path
) -> None:
    (plain, plain_heard), (preauth, _), (injected, _) = fake_imap
    context = client_tls_context(None)
    with pytest.raises(GatewayError, match="does not offer STARTTLS"):
        await connect_imap(section(plain), context)
    with pytest.raises(GatewayError, match="greeted AUTH in plaintext"):
        await connect_imap(section(preauth), context)
    with pytest.raises(GatewayError, match="sent data after STARTTLS"):
        await connect_imap(section(injected), context)
    assert not any(b"LOGIN" in line.upper() for line in plain_heard)
