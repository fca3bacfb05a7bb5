"""A webhook agency's keys, checked by ``check-config`` and before the gateway starts: every
key we sign with and every key we verify the agency's events with is resolved and parsed, and
each problem is reported as ``file: key: reason``."""

from collections.abc import Mapping
from pathlib import Path

from gateway.config.agencies import InboundSection, SigningSection, WebhookAgency
from gateway.errors import ConfigError
from gateway.signing import parse_signing_key, parse_verifying_key


def check_webhook_agency(
    agency: WebhookAgency, base_dir: Path, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Every problem with the signing and verifying keys of a webhook agency."""
    problems: list[str] = []
    for section, parse in (("signing", parse_signing_key), ("inbound", parse_verifying_key)):
        sect: SigningSection | InboundSection = getattr(agency, section)
        for i, ref in enumerate(sect.keys):
            where = f"{agency.source}: {section}.keys[{i}] ({ref.describe()})"
            try:
                parse(sect.scheme, ref.resolve(base_dir, environ))
            except ConfigError as exc:
                problems.append(f"{where}: {exc}")
    return problems


__all__ = ["check_webhook_agency"]
