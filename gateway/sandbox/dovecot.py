"""A throwaway Dovecot IMAP server on a loopback port (Debian ``dovecot-imapd``).

The sandbox law firm and the tests put replies into a real IMAP server, so the gateway's
mailbox reader is exercised against real UIDs, UIDVALIDITY and TLS. Each instance gets a
fresh directory under the system temp dir (Dovecot's service users must be able to enter
it, which pytest's private tmp dirs do not allow), its own config (IMAP over implicit TLS
only, the given users with plain passwords), and is stopped and removed on ``stop``.

Dovecot refuses to run its login process as root and needs its ``dovecot``/``dovenull``
users and a ``mail`` user that owns the maildirs, so it can only be started as root on a
system with the Debian package. ``unavailable_reason()`` says why not, in words, for the
demo to print and the tests to skip with.
"""

import asyncio
import os
import pwd
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import GatewayError

DOVECOT_USERS = ("dovecot", "dovenull", "mail")
_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = gateway-sandbox-{port}
ssl = required
ssl_cert = <{dir}/tls.pem
ssl_key = <{dir}/tls.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{dir}/mail/%u
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 8
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid=mail gid=mail home={dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {starttls_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
  }}
}}
log_path = {dir}/dovecot.log
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot",) if os.access(p, os.X_OK)), None
    )


def unavailable_reason() -> str | None:
    """Why a throwaway Dovecot cannot start here, or None when it can."""
    if dovecot_binary() is None:
        return "Dovecot is not installed (Debian: apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "starting Dovecot with a throwaway config needs root (its service users)"
    for user in DOVECOT_USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the system user {user!r} that Dovecot needs does not exist"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_gone(path: Path, timeout: float) -> None:
    """Dovecot removes its pid file when the master has exited."""
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class ThrowawayDovecot:
    """One Dovecot instance serving IMAPS (and, when asked, IMAP with STARTTLS) on 127.0.0.1.

    Args:
        users: login → password.
        cert_pem / key_pem: the server's TLS certificate and key.
        port: the IMAPS port; 0 picks a free one.
        starttls: also listen for plain IMAP that must STARTTLS before login, on
            ``starttls_port`` (a free port).
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str],
        cert_pem: str,
        key_pem: str,
        port: int = 0,
        starttls: bool = False,
    ) -> None:
        self._users = dict(users)
        self._cert = cert_pem
        self._key = key_pem
        self.port = port
        self.starttls_port = free_port() if starttls else 0
        self._dir: Path | None = None

    @property
    def config_path(self) -> Path:
        if self._dir is None:
            raise GatewayError("Dovecot is not started")
        return self._dir / "dovecot.conf"

    async def start(self, timeout: float = 15.0) -> int:  # noqa: ASYNC109 (startup budget)
        """Write the config, start Dovecot, wait until it accepts connections; its port."""
        reason = unavailable_reason()
        if reason is not None:
            raise GatewayError(f"cannot start Dovecot: {reason}")
        binary = dovecot_binary()
        assert binary is not None
        self.port = self.port or free_port()
        self._dir = await asyncio.to_thread(self._prepare)
        # The master daemonizes and keeps inherited pipes open: its output goes to a file.
        startup = self._dir / "startup.log"
        with startup.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                binary, "-c", str(self.config_path), stdout=output, stderr=output
            )
            await process.wait()
        if process.returncode != 0:
            said = startup.read_text(errors="replace").strip()
            log = self._log_tail()
            await self.stop()
            raise GatewayError(
                f"Dovecot did not start (exit {process.returncode}): {said} {log}".strip()
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                if time.monotonic() > deadline:
                    log = self._log_tail()
                    await self.stop()
                    raise GatewayError(
                        f"Dovecot did not listen on 127.0.0.1:{self.port}: {log}"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return self.port

    def _prepare(self) -> Path:
        root = Path(tempfile.mkdtemp(prefix="gateway-dovecot-"))
        root.chmod(0o755)  # Dovecot's service users must be able to enter it
        (root / "tls.pem").write_text(self._cert, encoding="utf-8")
        key = root / "tls.key"
        key.write_text(self._key, encoding="utf-8")
        key.chmod(0o600)
        (root / "users").write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self._users.items()),
            encoding="utf-8",
        )
        mail = root / "mail"
        mail.mkdir()
        mail_user = pwd.getpwnam("mail")
        os.chown(mail, mail_user.pw_uid, mail_user.pw_gid)
        (root / "dovecot.conf").write_text(
            _CONFIG.format(dir=root, port=self.port, starttls_port=self.starttls_port),
            encoding="utf-8",
        )
        return root

    def add_user(self, user: str, password: str) -> None:
        """Add a login to the running server (Dovecot re-reads a changed passwd-file)."""
        if self._dir is None:
            raise GatewayError("Dovecot is not started")
        self._users[user] = password
        with (self._dir / "users").open("a", encoding="utf-8") as fh:
            fh.write(f"{user}:{{PLAIN}}{password}\n")

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            return (self._dir / "dovecot.log").read_text(errors="replace")[-1000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        """Stop this instance (only the master process our config started) and remove it."""
        if self._dir is None:
            return
        binary = dovecot_binary()
        pid_file = self._dir / "run" / "master.pid"
        if binary is not None and pid_file.exists():
            process = await asyncio.create_subprocess_exec(
                binary,
                "-c",
                str(self.config_path),
                "stop",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await process.wait()
            await asyncio.to_thread(_wait_gone, pid_file, 10.0)
        await asyncio.to_thread(shutil.rmtree, self._dir, True)
        self._dir = None


__all__ = ["ThrowawayDovecot", "dovecot_binary", "free_port", "unavailable_reason"]
