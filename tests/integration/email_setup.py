"""Shared setup of the email channel tests: a law firm's config with generated keys, a
capturing aiosmtpd server with STARTTLS and AUTH, seeded placements held by the firm, and
documents in the lender's store listed in their packets."""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.bootstrap import load_config
from gateway.config.agencies import BUCKETS, AgencyConfig, EmailAgency
from gateway.config.settings import GatewaySettings
from gateway.dispatch.outbox import open_stored
from gateway.keys import generate_missing
from gateway.store.database import Database, sealer_of
from gateway.store.document_tables import CaseDocument
from gateway.store.tables import OutboxItem, Placement

FIRM = "ZHENGYI"
TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates" / "email"
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
DOCUMENTS = CaseDocument.__table__  # type: ignore[attr-defined]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value).__name__)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _sections(prefix: str, table: Mapping[str, Any]) -> list[str]:
    plain = {k: v for k, v in table.items() if not isinstance(v, dict) or _is_ref(v)}
    nested = {k: v for k, v in table.items() if isinstance(v, dict) and not _is_ref(v)}
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{k} = {_toml(v)}" for k, v in plain.items()]
    for k, v in nested.items():
        lines += ["", *_sections(f"{prefix}.{k}" if prefix else k, v)]
    return lines


def _is_ref(value: Mapping[str, Any]) -> bool:
    return set(value) <= {"env", "file"}


def write_firm_config(
    base: Path, *, database_url: str, smtp_port: int = 2525, imap_port: int = 1993, **overrides: Any
) -> tuple[Path, GatewaySettings, dict[str, AgencyConfig]]:
    """Write gateway.toml and a law firm taking every bucket; generate every key it names."""
    (base / "agencies").mkdir(parents=True, exist_ok=True)
    gateway_toml = base / "gateway.toml"
    gateway_toml.write_text(
        "\n".join(
            [
                'agencies_dir = "agencies"',
                *_sections(
                    "",
                    {
                        "database": {"url": database_url},
                        "server": {"host": "127.0.0.1", "port": 0},
                        "secrets": {
                            "pii_keys": {"file": "keys/pii.keyring"},
                            "evidence_signing_key": {"file": "keys/evidence.key"},
                            "evidence_origin": "gateway.test/evidence",
                        },
                        # The firm needs no register entry (README "Agency register").
                        "register": {"enforce": False},
                    },
                ),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    keys = f"keys/{FIRM}"
    firm: dict[str, Any] = {
        "id": FIRM,
        "name": "正义律师事务所",
        "channel": "email",
        "fields": ["debtor.name", "debtor.phones", "debtor.region"],
        "email": {
            "from_address": "legal@lender.test",
            "from_name": "贷方法务部",
            "message_id_domain": "lender.test",
            "bounce_address": "bounces@lender.test",
            "to": ["intake@zhengyi.test"],
            "templates_dir": str(TEMPLATES),
            "language": "zh",
            "smtp": {
                "host": "127.0.0.1",
                "port": smtp_port,
                "tls": "starttls",
                "username": "gateway",
                "password": {"file": f"{keys}/smtp.password"},
                "ca_file": f"{keys}/sandbox-tls.pem",
                "timeout_seconds": 10,
                "connect_timeout_seconds": 5,
            },
            "smime": {
                "sign_cert": {"file": f"{keys}/lender.pem"},
                "sign_key": {"file": f"{keys}/lender.key"},
                "encrypt_cert": {"file": f"{keys}/firm.pem"},
            },
            "imap": {
                "host": "127.0.0.1",
                "port": imap_port,
                "username": "replies",
                "password": {"file": f"{keys}/imap.password"},
                "ca_file": f"{keys}/sandbox-tls.pem",
                "timeout_seconds": 10,
            },
            "replies": {"structured_attachment": True, "body_form": True},
        },
        "eligibility": {"buckets": list(BUCKETS), "currencies": ["CNY"]},
        "capacity": {"max_open_placements": 1000},
        "retry": {"max_attempts": 3, "base_seconds": 1, "cap_seconds": 2},
    }
    firm = _merge(firm, overrides)
    (base / "agencies" / "zhengyi.toml").write_text(
        "\n".join(_sections("", firm)) + "\n", encoding="utf-8"
    )
    settings, agencies = load_config(gateway_toml, base_dir=base)
    generate_missing(settings, agencies)
    return gateway_toml, settings, agencies


def firm_of(agencies: Mapping[str, AgencyConfig]) -> EmailAgency:
    agency = agencies[FIRM]
    assert isinstance(agency, EmailAgency)
    return agency


def with_ports(
    agency: EmailAgency, *, smtp: int | None = None, imap: int | None = None
) -> EmailAgency:
    email = agency.email
    update: dict[str, object] = {}
    if smtp is not None:
        update["smtp"] = email.smtp.model_copy(update={"port": smtp})
    if imap is not None and email.imap is not None:
        update["imap"] = email.imap.model_copy(update={"port": imap})
    return agency.model_copy(update={"email": email.model_copy(update=update)})


def write_mailbox_keys(base: Path, cert: str, key: str, imap_password: str) -> Path:
    """The files ``write_firm_config``'s ``[email.imap]`` names, for a throwaway Dovecot
    serving ``cert``/``key``: its TLS certificate (the CA, returned) and the IMAP password."""
    keys = base / "keys" / FIRM
    keys.mkdir(parents=True)
    (keys / "sandbox-tls.pem").write_text(cert)
    (keys / "sandbox-tls.pem.key").write_text(key)
    (keys / "imap.password").write_text(imap_password)
    return keys / "sandbox-tls.pem"


def secret(base: Path, name: str) -> str:
    return (base / "keys" / FIRM / name).read_text(encoding="utf-8").strip()


@dataclass
class Capture:
    """An SMTP handler that keeps every message; ``answers`` are served first, in order
    (e.g. ``["451 4.3.0 try later"]`` refuses the first DATA)."""

    answers: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    data_commands: int = 0

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        self.data_commands += 1
        if self.answers:
            answer = self.answers.pop(0)
            if not answer.startswith("250"):
                return answer
        content = envelope.original_content or b""
        self.messages.append(content)
        self.envelopes.append(envelope)
        return f"250 2.0.0 Ok: queued as T{len(self.messages)}"


def authenticator(password: str) -> Any:
    def check(
        _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == password
        return AuthResult(success=ok)

    return check


async def outbox_states(db: Any) -> dict[str, int]:
    async with db.connect() as conn:
        rows = await conn.execute(
            sa.select(OUTBOX.c.state, sa.func.count()).group_by(OUTBOX.c.state)
        )
        return {state: n for state, n in rows.all()}


async def list_store_documents(
    db: Database, store: Path, placement_ids: list[str], files: Mapping[str, bytes]
) -> dict[str, list[int]]:
    """Put ``files`` in each placement's case folder of the lender's store, record them as
    the case's documents, and list them in the placement's ``placement.created`` packet (as
    gateway.documents does at allocation). Placement → document ids."""
    listed: dict[str, list[int]] = {}
    async with db.transaction() as conn:
        for placement_id in placement_ids:
            case_id = (
                await conn.execute(
                    sa.select(PLACEMENTS.c.case_id).where(PLACEMENTS.c.id == placement_id)
                )
            ).scalar_one()
            descriptors = []
            for name, data in files.items():
                (store / case_id).mkdir(parents=True, exist_ok=True)
                (store / case_id / name).write_bytes(data)
                digest = hashlib.sha256(data).hexdigest()
                row = {
                    "case_id": case_id,
                    "placement_id": None,
                    "kind": "loan_contract",
                    "name": name,
                    "media_type": "application/pdf",
                    "size": len(data),
                    "sha256": digest,
                    "source": f"{case_id}/{name}",
                    "created_at": datetime.now(UTC),
                }
                doc_id = (
                    await conn.execute(DOCUMENTS.insert().returning(DOCUMENTS.c.id), row)
                ).scalar_one()
                listed.setdefault(placement_id, []).append(doc_id)
                descriptors.append(
                    {
                        "document_id": doc_id,
                        "kind": "loan_contract",
                        "name": name,
                        "media_type": "application/pdf",
                        "size": len(data),
                        "sha256": digest,
                    }
                )
            item = (
                await conn.execute(
                    sa.select(OUTBOX.c.id, OUTBOX.c.dedupe_key, OUTBOX.c.payload).where(
                        OUTBOX.c.placement_id == placement_id,
                        OUTBOX.c.packet_type == "placement.created",
                    )
                )
            ).one()
            sealer = sealer_of(conn)
            packet = json.loads(open_stored(sealer, item.dedupe_key, item.payload))
            packet["data"]["documents"] = descriptors
            payload = json.dumps(packet, ensure_ascii=False, sort_keys=True).encode()
            stored = payload
            if sealer is not None:
                stored = sealer.seal(payload, bound_to=f"outbox:{item.dedupe_key}")
            await conn.execute(
                OUTBOX.update()
                .where(OUTBOX.c.id == item.id)
                .values(payload=stored, payload_sha256=hashlib.sha256(payload).hexdigest())
            )
    return listed
