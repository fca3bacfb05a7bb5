"""SFTP sessions (asyncssh): pinned host keys, key auth, timeouts, never-overwrite uploads.

* ``SftpRemote.session()`` connects with the agency's pinned host keys only (a server
  presenting any other key is refused before authentication: ``EndpointGone``, never
  retried blindly; a refused login likewise), our client key, keepalives and connect/login
  timeouts. Connections are short-lived, one per batch or poll. After a failed connect the
  next one waits an exponential, jittered backoff; asking earlier fails fast with
  ``retry_after``, so the dispatcher's retry policy stays the one place that decides when to
  try again.
* ``SftpSession`` implements ``gateway.ports.RemoteSession``: every operation has a timeout
  (transfers get size / ``min_transfer_kib_per_second`` on top) and asyncssh errors are
  translated into the gateway's error tree. Uploads write a temporary name, fsync when the
  server offers ``fsync@openssh.com``, check the size, then rename without ever replacing an
  existing final name (``posix-rename`` after checking, plain SFTPv3 rename otherwise, which
  refuses to overwrite). Transfers keep at most ``block_size x max_requests`` bytes in
  flight, so memory does not grow with file size.
"""

import asyncio
import hashlib
import logging
import random
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar, cast

import asyncssh

from gateway.config.sftp import SftpSection, TimeoutSection
from gateway.errors import (
    DeliveryError,
    EndpointGone,
    HostKeyChanged,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from gateway.ports import RemoteEntry

log = logging.getLogger(__name__)

T = TypeVar("T")
_READ_CHUNK = 256 * 1024


def _translate(agency_id: str, what: str, exc: BaseException) -> DeliveryError:
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return PermanentDeliveryError(
            f"{agency_id}: {what}: permission denied on the agency's server", agency_id=agency_id
        )
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError(f"{agency_id}: {what}: timed out", agency_id=agency_id)
    detail = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    return TransientDeliveryError(f"{agency_id}: {what}: {detail}", agency_id=agency_id)


class SftpSession:
    """One SFTP session (``gateway.ports.RemoteSession``)."""

    def __init__(
        self,
        sftp: asyncssh.SFTPClient,
        *,
        agency_id: str,
        timeouts: TimeoutSection,
        block_size: int,
        max_requests: int,
    ) -> None:
        self._sftp = sftp
        self._agency_id = agency_id
        self._timeouts = timeouts
        self._block_size = block_size
        self._max_requests = max_requests

    def _budget(self, size: int = 0) -> float:
        rate = self._timeouts.min_transfer_kib_per_second * 1024
        return self._timeouts.operation_seconds + size / rate

    async def _op(self, what: str, call: Awaitable[T], size: int = 0) -> T:
        try:
            async with asyncio.timeout(self._budget(size)):
                return await call
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            raise _translate(self._agency_id, what, exc) from exc

    async def list(self, folder: str) -> list[RemoteEntry]:
        async def scan() -> list[RemoteEntry]:
            found = []
            async for entry in self._sftp.scandir(folder):
                if entry.filename in (".", ".."):
                    continue
                attrs = entry.attrs
                regular = attrs.permissions is not None and stat.S_ISREG(attrs.permissions)
                name = entry.filename
                found.append(
                    RemoteEntry(
                        name if isinstance(name, str) else name.decode(),
                        attrs.size or 0,
                        int(attrs.mtime or 0),
                        regular,
                    )
                )
            return found

        return await self._op(f"list {folder}", scan())

    async def stat(self, path: str) -> RemoteEntry | None:
        try:
            attrs = await self._op(f"stat {path}", self._sftp.stat(path))
        except TransientDeliveryError as exc:
            if isinstance(exc.__cause__, asyncssh.SFTPNoSuchFile):
                return None
            raise
        regular = attrs.permissions is not None and stat.S_ISREG(attrs.permissions)
        return RemoteEntry(path.rpartition("/")[2], attrs.size or 0, int(attrs.mtime or 0), regular)

    async def sha256(self, path: str) -> str:
        async def digest() -> str:
            hasher = hashlib.sha256()
            async with self._sftp.open(path, "rb") as fh:
                while chunk := cast(bytes, await fh.read(_READ_CHUNK)):
                    hasher.update(chunk)
            return hasher.hexdigest()

        entry = await self.stat(path)
        return await self._op(f"hash {path}", digest(), entry.size if entry else 0)

    async def upload(self, local: Path, path: str, *, temp_path: str) -> bool:
        size = (await asyncio.to_thread(local.stat)).st_size
        if await self.stat(path) is not None:
            return False
        await self._op(
            f"upload {temp_path}",
            self._sftp.put(
                str(local),
                temp_path,
                block_size=self._block_size,
                max_requests=self._max_requests,
            ),
            size,
        )
        await self._fsync(temp_path)
        written = await self.stat(temp_path)
        if written is None or written.size != size:
            await self.remove(temp_path)
            raise TransientDeliveryError(
                f"{self._agency_id}: {temp_path} has {written.size if written else 'no'} bytes "
                f"after upload, expected {size}; it was removed and will be sent again",
                agency_id=self._agency_id,
            )
        if not await self._rename(temp_path, path):
            await self.remove(temp_path)
            return False
        return True

    async def _fsync(self, path: str) -> None:
        async def sync() -> None:
            async with self._sftp.open(path, "r+b") as fh:
                await fh.fsync()

        try:
            await self._op(f"fsync {path}", sync())
        except TransientDeliveryError as exc:
            # fsync@openssh.com is an extension; servers without it still get the size check.
            if not isinstance(exc.__cause__, asyncssh.SFTPOpUnsupported):
                raise

    async def _rename(self, source: str, target: str) -> bool:
        """Rename without overwriting; False when ``target`` exists (nothing renamed)."""
        if await self.stat(target) is not None:
            return False
        try:
            await self._op(f"rename {source}", self._sftp.posix_rename(source, target))
            return True
        except TransientDeliveryError as exc:
            if not isinstance(exc.__cause__, asyncssh.SFTPOpUnsupported):
                raise
        try:
            # SFTPv3 rename fails with FX_FAILURE when the target exists.
            await self._op(f"rename {source}", self._sftp.rename(source, target))
        except TransientDeliveryError as exc:
            if isinstance(exc.__cause__, asyncssh.SFTPFailure) and await self.stat(target):
                return False
            raise
        return True

    async def create_exclusive(self, path: str, data: bytes) -> bool:
        async def create() -> None:
            async with self._sftp.open(path, "xb") as fh:
                await fh.write(data)

        try:
            await self._op(f"create {path}", create())
        except TransientDeliveryError as exc:
            if isinstance(exc.__cause__, asyncssh.SFTPFailure) and await self.stat(path):
                return False
            raise
        return True

    async def read_bytes(self, path: str, *, limit: int) -> bytes:
        async def read() -> bytes:
            async with self._sftp.open(path, "rb") as fh:
                data: bytes = await fh.read(limit)
                return data

        return await self._op(f"read {path}", read(), limit)

    async def download(self, path: str, local: Path) -> str:
        entry = await self.stat(path)
        await self._op(
            f"download {path}",
            self._sftp.get(
                path, str(local), block_size=self._block_size, max_requests=self._max_requests
            ),
            entry.size if entry else 0,
        )

        def digest() -> str:
            hasher = hashlib.sha256()
            with local.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    hasher.update(chunk)
            return hasher.hexdigest()

        return await asyncio.to_thread(digest)

    async def rename(self, source: str, target: str) -> bool:
        if await self.stat(target) is not None:
            raise FileExistsError(target)
        if await self.stat(source) is None:
            return False
        try:
            return await self._rename(source, target)
        except TransientDeliveryError as exc:
            if isinstance(exc.__cause__, asyncssh.SFTPNoSuchFile):
                return False
            raise

    async def makedirs(self, path: str) -> None:
        await self._op(f"mkdir {path}", self._sftp.makedirs(path, exist_ok=True))

    async def remove(self, path: str) -> None:
        try:
            await self._op(f"remove {path}", self._sftp.remove(path))
        except TransientDeliveryError as exc:
            if not isinstance(exc.__cause__, asyncssh.SFTPNoSuchFile):
                raise


class SftpRemote:
    """Connects to one agency's server (``gateway.ports.RemoteFolder``).

    Args:
        agency_id: for messages.
        section: the agency's ``[sftp]`` settings.
        client_key: our private key.
        host_keys: the pinned server keys.
        clock: returns Unix time (backoff bookkeeping).
    """

    def __init__(
        self,
        *,
        agency_id: str,
        section: SftpSection,
        client_key: asyncssh.SSHKey,
        host_keys: Sequence[asyncssh.SSHKey],
        clock: Callable[[], float],
    ) -> None:
        self.agency_id = agency_id
        self.section = section
        self._client_key = client_key
        self._host_keys = list(host_keys)
        self._clock = clock
        self._failures = 0
        self._next_attempt = 0.0
        self._jitter = random.Random()

    @property
    def endpoint(self) -> str:
        return f"{self.section.host}:{self.section.port}"

    def _backoff(self) -> float:
        t = self.section.timeouts
        delay = min(t.reconnect_cap_seconds, t.reconnect_base_seconds * 2.0 ** (self._failures - 1))
        return float(delay * self._jitter.uniform(0.5, 1.0))

    async def _connect(self) -> asyncssh.SSHClientConnection:
        now = self._clock()
        if now < self._next_attempt:
            wait = self._next_attempt - now
            raise TransientDeliveryError(
                f"{self.agency_id}: {self.endpoint} is backing off after {self._failures} "
                f"failed connection(s); next attempt in {wait:.1f} s",
                agency_id=self.agency_id,
                retry_after=wait,
            )
        t = self.section.timeouts
        fingerprints = ", ".join(k.get_fingerprint() for k in self._host_keys)
        try:
            async with asyncio.timeout(t.connect_seconds * 2):
                conn = await asyncssh.connect(
                    self.section.host,
                    self.section.port,
                    username=self.section.username,
                    client_keys=[self._client_key],
                    known_hosts=(self._host_keys, [], []),
                    agent_path=None,
                    password=None,
                    kbdint_auth=False,
                    keepalive_interval=t.keepalive_interval_seconds,
                    keepalive_count_max=t.keepalive_count_max,
                    connect_timeout=t.connect_seconds,
                    login_timeout=t.connect_seconds,
                )
        except asyncssh.HostKeyNotVerifiable as exc:
            log.error(
                "%s: host key of %s is not the pinned one (%s); dispatch stopped",
                self.agency_id,
                self.endpoint,
                fingerprints,
            )
            raise HostKeyChanged(
                f"{self.agency_id}: the server at {self.endpoint} presented a host key that is "
                f"not pinned (pinned: {fingerprints}). Possible interception or an unannounced "
                "key change: confirm the new key with the agency out of band, update "
                "sftp.host_keys, then re-enable the agency (agency-gateway agencies enable)",
                agency_id=self.agency_id,
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise EndpointGone(
                f"{self.agency_id}: {self.endpoint} refused our key for user "
                f"{self.section.username!r}; check sftp.client_key with the agency, then "
                "re-enable the agency",
                agency_id=self.agency_id,
            ) from exc
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            self._failures += 1
            delay = self._backoff()
            self._next_attempt = self._clock() + delay
            raise TransientDeliveryError(
                f"{self.agency_id}: cannot connect to {self.endpoint}: "
                f"{getattr(exc, 'reason', None) or str(exc) or type(exc).__name__}",
                agency_id=self.agency_id,
                retry_after=delay,
            ) from exc
        self._failures = 0
        self._next_attempt = 0.0
        return conn

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SftpSession]:
        conn = await self._connect()
        try:
            try:
                async with asyncio.timeout(self.section.timeouts.operation_seconds):
                    sftp = await conn.start_sftp_client()
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                raise _translate(self.agency_id, "start SFTP", exc) from exc
            async with sftp:
                yield SftpSession(
                    sftp,
                    agency_id=self.agency_id,
                    timeouts=self.section.timeouts,
                    block_size=self.section.block_size,
                    max_requests=self.section.max_requests,
                )
        finally:
            conn.close()
            try:
                async with asyncio.timeout(5):
                    await conn.wait_closed()
            except (TimeoutError, OSError, asyncssh.Error):
                pass


__all__ = ["SftpRemote", "SftpSession"]
