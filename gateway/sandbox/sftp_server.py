"""The sandbox SFTP server: asyncssh on loopback, one chroot per user, key auth, faults.

``SandboxSftpServer`` serves one chroot per user (``<root>/<username>``) with key
authentication (each user has its own authorized keys) and the host key the gateway pins.
``SftpFaults`` injects the failures real servers have: a connection dropped in the middle
of an upload, ``posix-rename`` unsupported, uploads that stall until released (the crash
test kills the gateway while one stalls). The agency behind a login is
``gateway.sandbox.sftp_agency``.
"""

import asyncio
import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh


@dataclass(slots=True)
class SftpFaults:
    """Faults the server injects into writes to files whose name matches ``pattern``
    (fnmatch; by default temporary upload names such as ``.NAME.part``).

    drop_after_bytes: abort the connection once, when a write reaches this offset.
    hold_after_bytes: stall writes reaching this offset until ``release`` is set (``held``
        is set when the first one stalls; ``holding`` counts stalled writes).
    posix_rename_unsupported: answer ``posix-rename@openssh.com`` with OP_UNSUPPORTED.
    """

    pattern: str = ".*.part"
    drop_after_bytes: int | None = None
    hold_after_bytes: int | None = None
    posix_rename_unsupported: bool = False
    drops: int = 0
    holding: int = 0
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, path: bytes) -> bool:
        return fnmatch.fnmatchcase(os.path.basename(path).decode(errors="replace"), self.pattern)


@dataclass(frozen=True, slots=True)
class SftpUser:
    """A login: its chroot is ``root``; ``authorized_keys`` holds OpenSSH public key lines."""

    username: str
    root: Path
    authorized_keys: str


class SandboxSftpServer:
    """An asyncssh SFTP server on loopback (see module docstring).

    Args:
        host_key: the server's private host key (the gateway pins its public half).
        users: logins and their chroots.
        host, port: where to listen (port 0: any free port).
        faults: what to inject; mutable while running.
    """

    def __init__(
        self,
        *,
        host_key: asyncssh.SSHKey,
        users: Sequence[SftpUser],
        host: str = "127.0.0.1",
        port: int = 0,
        faults: SftpFaults | None = None,
    ) -> None:
        self.host_key = host_key
        self.users = {u.username: u for u in users}
        self.host = host
        self.faults = faults or SftpFaults()
        self._port = port
        self._server: asyncssh.SSHAcceptor | None = None
        self.connections = 0

    @property
    def port(self) -> int:
        return self._port

    def host_key_line(self) -> str:
        return str(self.host_key.export_public_key().decode().strip())

    async def start(self) -> int:
        for user in self.users.values():
            user.root.mkdir(parents=True, exist_ok=True)
        sandbox = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                self._conn = conn
                sandbox.connections += 1

            def begin_auth(self, username: str) -> bool:
                user = sandbox.users.get(username)
                self._conn.set_authorized_keys(
                    asyncssh.import_authorized_keys(user.authorized_keys) if user else ()
                )
                return True

            def public_key_auth_supported(self) -> bool:
                return True

        class Files(asyncssh.SFTPServer):
            def __init__(self, chan: "asyncssh.SSHServerChannel[bytes]") -> None:
                root = sandbox.users[chan.get_extra_info("username")].root
                super().__init__(chan, chroot=str(root).encode())
                self._watched: set[int] = set()

            def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
                handle = super().open(path, pflags, attrs)
                if sandbox.faults.matches(path):
                    self._watched.add(id(handle))
                return handle

            async def write(self, file_obj: object, offset: int, data: bytes) -> int:
                faults = sandbox.faults
                end = offset + len(data)
                if id(file_obj) in self._watched:
                    if faults.drop_after_bytes is not None and end >= faults.drop_after_bytes:
                        faults.drop_after_bytes = None
                        faults.drops += 1
                        self.connection.abort()
                        raise asyncssh.SFTPConnectionLost("sandbox fault: connection dropped")
                    if faults.hold_after_bytes is not None and end >= faults.hold_after_bytes:
                        faults.held.set()
                        faults.holding += 1
                        try:
                            await faults.release.wait()
                        finally:
                            faults.holding -= 1
                result = super().write(file_obj, offset, data)
                return int(result)  # type: ignore[arg-type]

            def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
                if sandbox.faults.posix_rename_unsupported:
                    raise asyncssh.SFTPOpUnsupported("sandbox fault: posix-rename unsupported")
                super().posix_rename(oldpath, newpath)

        self._server = await asyncssh.listen(
            self.host,
            self._port,
            server_host_keys=[self.host_key],
            server_factory=Server,
            sftp_factory=Files,
            allow_scp=False,
            keepalive_interval=15,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self._port

    async def aclose(self) -> None:
        self.faults.release.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


def load_host_key(text: str) -> asyncssh.SSHKey:
    """The sandbox server's private host key (as ``keys generate`` wrote it)."""
    return asyncssh.import_private_key(text)


__all__ = ["SandboxSftpServer", "SftpFaults", "SftpUser", "load_host_key"]
