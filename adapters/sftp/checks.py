"""An SFTP agency's files, checked by ``check-config`` and before the gateway starts: our
client key, the pinned host keys and the OpenPGP keys are resolved and parsed, and each
problem is reported as ``file: key: reason``."""

from collections.abc import Mapping
from pathlib import Path

import asyncssh

from gateway.config.agencies import SftpAgency
from gateway.config.secrets import SecretRef
from gateway.config.sftp import SftpSection
from gateway.errors import ConfigError


def check_sftp_agency(
    agency: SftpAgency, base_dir: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem with the keys an SFTP agency's channel needs."""
    return check_sftp_secrets(agency.sftp, agency.source or agency.id, base_dir, environ)


def check_sftp_secrets(
    section: SftpSection, source: str, base_dir: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Resolve and parse every key of an SFTP agency; return ``file: key: reason`` lines."""
    problems: list[str] = []

    def check(key: str, ref: SecretRef) -> str | None:
        try:
            return ref.resolve(base_dir, environ)
        except ConfigError as exc:
            problems.append(f"{source}: sftp.{key} ({ref.describe()}): {exc}")
            return None

    key_text = check("client_key", section.client_key)
    passphrase = (
        check("client_key_passphrase", section.client_key_passphrase)
        if section.client_key_passphrase
        else None
    )
    if key_text is not None:
        try:
            asyncssh.import_private_key(key_text, passphrase)
        except (asyncssh.KeyImportError, ValueError) as exc:
            problems.append(f"{source}: sftp.client_key: not an OpenSSH private key ({exc})")
    try:
        for n, line in enumerate(section.pinned_key_lines(base_dir, environ)):
            try:
                asyncssh.import_public_key(line)
            except (asyncssh.KeyImportError, ValueError) as exc:
                problems.append(f"{source}: sftp.host_keys[{n}]: not an OpenSSH public key ({exc})")
    except ConfigError as exc:
        where = section.host_keys_file.describe() if section.host_keys_file else "host_keys"
        problems.append(f"{source}: sftp.host_keys_file ({where}): {exc}")
    pgp = section.pgp
    if pgp is not None:
        check("pgp.recipient_key", pgp.recipient_key)
        for key in ("secret_key", "passphrase"):
            ref = getattr(pgp, key)
            if ref is not None:
                check(f"pgp.{key}", ref)
    return problems


__all__ = ["check_sftp_agency", "check_sftp_secrets"]
