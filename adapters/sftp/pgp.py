"""OpenPGP for file channels: gpg through python-gnupg, off the event loop.

Each agency gets its own GnuPG home holding only the keys its config names: the agency's
public key, whose fingerprint must equal the pinned ``recipient_fingerprint``, and optionally
our secret key (signing placements, decrypting results). Keys are imported from the config's
files at start-up and never fetched from a key server, so the home is a cache: a private
temporary directory (mode 0700, short enough for gpg-agent's socket path) removed on close.
Encryption trusts exactly the pinned fingerprint (``always_trust`` with an explicit
recipient), so an unrelated key in the home can never be used.

gpg is a subprocess: every call runs in ``asyncio.to_thread``. ``aclose`` stops the home's
gpg-agent.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gnupg  # type: ignore[import-untyped]

from gateway.errors import ConfigError, PgpError


@dataclass(frozen=True, slots=True)
class Decrypted:
    """What ``decrypt_file`` found: the signer's fingerprint if the data was signed and the
    signature verified, else None."""

    signer_fingerprint: str | None


class Pgp:
    """One agency's OpenPGP keys. Build with ``Pgp.open`` (imports and checks the keys).

    Args:
        home: the GnuPG home directory (created 0700); a fresh temporary one when None.
        recipient_fingerprint: the agency's pinned key.
        secret_fingerprint: our key, when we sign or decrypt.
        passphrase: of our secret key, if it has one.
    """

    def __init__(
        self,
        *,
        home: Path | None,
        recipient_fingerprint: str,
        secret_fingerprint: str | None = None,
        passphrase: str | None = None,
    ) -> None:
        self._owned = home is None
        self.home = home if home is not None else Path(tempfile.mkdtemp(prefix="agw-gpg-"))
        self.recipient_fingerprint = recipient_fingerprint
        self.secret_fingerprint = secret_fingerprint
        self._passphrase = passphrase
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o700)
        self._gpg = gnupg.GPG(gnupghome=str(self.home))

    @classmethod
    async def open(
        cls,
        *,
        home: Path | None = None,
        recipient_fingerprint: str,
        recipient_key: str,
        secret_fingerprint: str | None = None,
        secret_key: str | None = None,
        passphrase: str | None = None,
    ) -> "Pgp":
        """Import the configured keys and check their fingerprints (ConfigError if not)."""
        pgp = cls(
            home=home,
            recipient_fingerprint=recipient_fingerprint,
            secret_fingerprint=secret_fingerprint,
            passphrase=passphrase,
        )
        await pgp._import(recipient_key, recipient_fingerprint, "the agency's public key")
        if secret_key is not None and secret_fingerprint is not None:
            await pgp._import(secret_key, secret_fingerprint, "our secret key")
        return pgp

    async def _import(self, armored: str, fingerprint: str, what: str) -> None:
        result = await asyncio.to_thread(
            self._gpg.import_keys, armored, passphrase=self._passphrase
        )
        found = {str(f).upper() for f in result.fingerprints}
        if fingerprint.upper() not in found:
            raise ConfigError(
                f"{what} has fingerprint(s) {sorted(found) or 'none'}, "
                f"but the config pins {fingerprint}; ask the agency for the right key"
            )

    async def encrypt_file(
        self, source: Path, target: Path, *, filename: str, sign: bool = False
    ) -> None:
        """Encrypt ``source`` to the pinned recipient (binary OpenPGP), signed with our key
        when ``sign``; ``filename`` goes into the literal data packet."""
        if sign and self.secret_fingerprint is None:
            raise PgpError("signing needs our secret key (sftp.pgp.secret_key)")
        signer = self.secret_fingerprint if sign else None

        def run() -> object:
            return self._gpg.encrypt_file(
                str(source),
                recipients=[self.recipient_fingerprint],
                sign=signer,
                passphrase=self._passphrase if signer else None,
                always_trust=True,
                armor=False,
                output=str(target),
                extra_args=["--set-filename", filename, "--pinentry-mode", "loopback"],
            )

        result = await asyncio.to_thread(run)
        if not getattr(result, "ok", False):
            raise PgpError(
                f"gpg could not encrypt to {self.recipient_fingerprint}: {_status(result)}"
            )

    async def decrypt_file(
        self, source: Path, target: Path, *, require_signer: str | None = None
    ) -> Decrypted:
        """Decrypt with our secret key; when ``require_signer`` is set, the data must carry
        a valid signature by that fingerprint."""

        def run() -> object:
            return self._gpg.decrypt_file(
                str(source),
                passphrase=self._passphrase,
                always_trust=True,
                output=str(target),
                extra_args=["--pinentry-mode", "loopback"],
            )

        result = await asyncio.to_thread(run)
        if not getattr(result, "ok", False):
            raise PgpError(f"gpg could not decrypt: {_status(result)}")
        # The primary key's fingerprint (VALIDSIG's last field): a signing subkey of the pinned
        # key signs for it, as gpg itself reports.
        signer = (
            getattr(result, "pubkey_fingerprint", None) or getattr(result, "fingerprint", None)
            if getattr(result, "valid", False)
            else None
        )
        if require_signer is not None and (signer or "").upper() != require_signer.upper():
            raise PgpError(
                f"the file is not signed by the agency's pinned key {require_signer} "
                f"(signature: {signer or 'none or invalid'})"
            )
        return Decrypted(str(signer).upper() if signer else None)

    async def aclose(self) -> None:
        """Stop this home's gpg-agent, if one was started, and remove a temporary home."""
        gpgconf = shutil.which("gpgconf")

        def run() -> None:
            if gpgconf is not None:
                subprocess.run(
                    [gpgconf, "--homedir", str(self.home), "--kill", "gpg-agent"],
                    check=False,
                    capture_output=True,
                    timeout=10,
                )
            if self._owned:
                shutil.rmtree(self.home, ignore_errors=True)

        await asyncio.to_thread(run)


def _status(result: object) -> str:
    status = getattr(result, "status", None) or "no status"
    stderr = str(getattr(result, "stderr", "") or "")
    # gpg's own words, minus key material and file names.
    reasons = [ln for ln in stderr.splitlines() if ln.startswith("[GNUPG:] ") and "ERROR" in ln]
    return f"{status}" + (f" ({reasons[-1][9:]})" if reasons else "")


__all__ = ["Decrypted", "Pgp", "PgpError"]
