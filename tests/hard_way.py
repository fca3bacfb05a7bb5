"""A hard-way HTTP client for the tests: raw sockets that send a request the way real clients
and networks do, not the way a test client does: the body split into segments with pauses,
chunked transfer encoding, a few bytes at a time. It shares no code with the gateway or aiohttp.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


def pieces(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` bytes (the last may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


async def send(
    host: str,
    port: int,
    path: str,
    headers: Mapping[str, str],
    body_pieces: Sequence[bytes],
    *,
    chunked: bool = False,
    pause: float = 0.0,
    content_length: int | None = None,
    limit_seconds: float = 30.0,
) -> RawAnswer:
    """POST ``body_pieces`` to ``path``, each piece in its own write with ``pause`` seconds
    between them; with ``chunked``, each piece is one chunk of a chunked body. Without
    ``chunked`` the Content-Length is the whole body's (or ``content_length``)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(limit_seconds):
            head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
            head += [f"{name}: {value}" for name, value in headers.items()]
            if chunked:
                head.append("Transfer-Encoding: chunked")
            else:
                length = sum(map(len, body_pieces)) if content_length is None else content_length
                head.append(f"Content-Length: {length}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "surrogateescape"))
            await writer.drain()
            for piece in body_pieces:
                if pause:
                    await asyncio.sleep(pause)
                if chunked:
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if piece else b"")
                else:
                    writer.write(piece)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            return _parse(await reader.read())
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def _parse(raw: bytes) -> RawAnswer:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        rest = bytes(body)
    elif "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    return RawAnswer(int(status_line.split()[1]), headers, rest)
