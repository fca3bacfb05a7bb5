"""Configuration of an SFTP agency: the ``[sftp]`` section of its agency file.

Everything about the agency's server, file names and layouts is configuration, not code::

    [sftp]
    host = "sftp.agency.example"
    port = 22
    username = "lenderx"
    client_key = { file = "var/keys/AGY_GAMMA/sftp_client" }     # OpenSSH private key
    host_keys = ["ssh-ed25519 AAAA..."]                          # pinned; or host_keys_file

    [sftp.layout]          # CSV, JSON Lines or fixed-width; see gateway/config/layouts.py
    format = "csv"
    encoding = "gb18030"

Secrets (the client key, PGP keys) are references (``{ file = ... }`` or ``{ env = ... }``).
A pinned host key is required: an agency without one is refused by ``check-config``.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config.layouts import LayoutSection
from gateway.config.secrets import SecretRef
from gateway.errors import ConfigError

_FINGERPRINT = r"^[0-9A-F]{40}$"
_TOKEN = r"^[A-Z0-9][A-Z0-9_\-]{0,31}$"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NamingSection(_Section):
    """File names: ``pattern`` is a Python format string over ``sender``, ``receiver``,
    ``type`` (PLACEMENT, AMENDMENT, RECALL, PAYMENT, DELETION), ``date`` (UTC business date) and
    ``seq`` (never reused per agency, type and date)."""

    sender: str = Field(pattern=_TOKEN, description="our code in file names, e.g. LENDERX")
    receiver: str | None = Field(
        default=None, pattern=_TOKEN, description="the agency's code; its id by default"
    )
    pattern: str = "{sender}_{receiver}_{type}_{date:%Y%m%d}_{seq:04d}"
    max_seq: int = Field(default=9999, ge=1)
    temp_prefix: str = "."
    temp_suffix: str = Field(default=".part", min_length=1)
    done_suffix: str = ".done"
    checksum_sidecar: bool = Field(default=False, description="also upload NAME.sha256")
    result_glob: str = Field(default="*_RESULT_*", description="result files in results/")
    statement_glob: str = Field(default="*_STATEMENT_*", description="statement files")

    @model_validator(mode="after")
    def _pattern_renders(self) -> Self:
        if "{seq" not in self.pattern or "{date" not in self.pattern:
            raise ValueError("pattern must contain {date...} and {seq...}")
        from datetime import date

        try:
            sample = self.pattern.format(
                sender=self.sender, receiver="AGENCY", type="PLACEMENT", date=date.today(), seq=1
            )
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"pattern does not render: {exc}") from None
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9_\-]*", sample):
            raise ValueError(
                f"pattern renders {sample!r}; names must be ASCII upper case, digits, _ or -"
            )
        return self


class FoldersSection(_Section):
    """Remote folders, relative to the login directory (the agency's chroot)."""

    inbox: str = "inbox"
    results: str = "results"
    processing: str = "processing"
    archive: str = "archive"
    error: str = "error"


class PgpSection(_Section):
    """OpenPGP (gpg through python-gnupg). Keys are never fetched at runtime: the agency's
    public key comes from a file and must have the pinned fingerprint."""

    encrypt: bool = True
    recipient_fingerprint: str = Field(pattern=_FINGERPRINT)
    recipient_key: SecretRef = Field(description="the agency's armored public key")
    sign: bool = False
    secret_key: SecretRef | None = Field(
        default=None, description="our armored secret key: signs placements, decrypts results"
    )
    secret_fingerprint: str | None = Field(default=None, pattern=_FINGERPRINT)
    passphrase: SecretRef | None = None
    decrypt_results: bool = Field(default=False, description="result files arrive as *.pgp")
    require_result_signature: bool = False

    @model_validator(mode="after")
    def _keys(self) -> Self:
        needs_secret = self.sign or self.decrypt_results
        if needs_secret and (self.secret_key is None or self.secret_fingerprint is None):
            raise ValueError("sign or decrypt_results needs secret_key and secret_fingerprint")
        return self


class ReadinessSection(_Section):
    """When a result file without a marker or manifest may be taken (see result_pickup)."""

    poll_interval_seconds: float = Field(default=30, gt=0)
    min_age_seconds: float = Field(default=10, ge=0)
    stable_polls: int = Field(default=2, ge=1, le=10)
    require_marker: bool = Field(
        default=True,
        description="take only files with a done marker or manifest; when false, a file "
        "stable for stable_polls polls is taken too, and refused whole if it looks cut off",
    )
    max_files_per_poll: int = Field(default=50, ge=1, le=10_000)
    claim_ttl_seconds: float = Field(default=900, gt=0)


class TimeoutSection(_Section):
    connect_seconds: float = Field(default=10, gt=0, le=120)
    operation_seconds: float = Field(default=30, gt=0, le=600)
    min_transfer_kib_per_second: float = Field(
        default=256, gt=0, description="large transfers get size / this rate on top"
    )
    keepalive_interval_seconds: float = Field(default=15, gt=0)
    keepalive_count_max: int = Field(default=3, ge=1)
    reconnect_base_seconds: float = Field(default=1, gt=0)
    reconnect_cap_seconds: float = Field(default=300, gt=0)


class SftpSection(_Section):
    """Where and how files are exchanged with the agency."""

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=64)
    client_key: SecretRef = Field(description="our OpenSSH private key (key auth only)")
    client_key_passphrase: SecretRef | None = None
    host_keys: tuple[str, ...] = Field(
        default=(), description='pinned server keys, "ssh-ed25519 AAAA..." (OpenSSH format)'
    )
    host_keys_file: SecretRef | None = Field(
        default=None, description="a file of pinned keys, one OpenSSH public key per line"
    )
    folders: FoldersSection = FoldersSection()
    naming: NamingSection
    layout: LayoutSection = LayoutSection()
    pgp: PgpSection | None = None
    readiness: ReadinessSection = ReadinessSection()
    timeouts: TimeoutSection = TimeoutSection()
    max_cases_per_batch: int = Field(default=50_000, ge=1, le=1_000_000)
    batch_lease_seconds: float = Field(
        default=900, ge=5, description="how long a claimed batch is ours before it is reaped"
    )
    block_size: int = Field(
        default=262_144, ge=16_384, le=4_194_304, description="bytes per SFTP read/write"
    )
    max_requests: int = Field(
        default=16, ge=1, le=128, description="reads/writes in flight; x block_size = memory"
    )
    spool_dir: str = "var/spool/sftp"

    @model_validator(mode="after")
    def _pinned(self) -> Self:
        if not self.host_keys and self.host_keys_file is None:
            raise ValueError(
                "no pinned host key: set host_keys or host_keys_file "
                "(get the key from the agency out of band; never trust on first use)"
            )
        return self

    def pinned_key_lines(
        self, base_dir: Path, environ: Mapping[str, str] | None = None
    ) -> list[str]:
        """Every pinned host key line (inline ones first); raises ConfigError."""
        lines = list(self.host_keys)
        if self.host_keys_file is not None:
            text = self.host_keys_file.resolve(base_dir, environ)
            lines += [
                ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")
            ]
        if not lines:
            raise ConfigError("no pinned host key in host_keys or host_keys_file")
        return lines


__all__ = [
    "FoldersSection",
    "NamingSection",
    "PgpSection",
    "ReadinessSection",
    "SftpSection",
    "TimeoutSection",
]
