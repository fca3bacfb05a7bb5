"""A case's evidence bundle: everything the log attests about one case, with the proofs a
third party needs to check it offline, trusting only the lender's published note key.

Theory of operation
-------------------
``export_case`` (I/O) signs a checkpoint if the log grew, then gathers the leaves that
concern the case: its packets (``outbox:``), their delivery receipts (``attempt:``), the mail
and remote files that carried them (``mail:``, ``remote_file:``), the inbound messages whose
events name its placements (``inbound:``), its recalls (``placement:``), every ops action on
its mismatches (``mismatch:``) and every reveal of its personal data (``case:``). Each leaf
comes with its RFC 9162 inclusion proof in the checkpoint's tree and, where the leaf attests
bytes (a packet, an inbound message, a mail), the bytes themselves, so their SHA-256 can be
compared with the leaf. Bytes that also carry other cases (a result file, a statement, a
batch mail) are withheld, with the reason: the bundle must not disclose other debtors.

The bundle as a whole is bound by a *manifest*: a note signed with the lender's key that
lists the case, its placements, the checkpoint, every entry (seq, kind, ref, leaf hash) and
what is attached to it (the bytes' SHA-256, or why they are withheld). Stripping attached
bytes, relabelling the case or dropping an entry leaves every inclusion proof valid, but no
longer matches the signed manifest.

``verify_bundle`` (pure) checks a bundle without any database: the checkpoint's signature by
a trusted key, each leaf's hash and inclusion proof against the checkpoint's root, that the
leaf body names the kind and ref it is listed under, each attached byte string against
the leaf's ``sha256`` (packet bytes purged after their retention are named with the time of
the purge; the leaf still proves their hash), and the manifest's signature and every line of it
against the bundle. Malformed input (not an object, null entries, wrong types) is a problem in the
report, never an exception. ``agency-gateway evidence export CASE`` and ``evidence check-bundle
FILE --key KEY`` are the two ends.

The proofs come from one streamed read of the log's leaf hashes, the subtree roots they
share computed once (gateway.evidence.merkle.SubtreeRoots): a case's export costs one pass over the
log and O(log n) hashes of memory, whatever its number of leaves.
"""

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.dispatch.outbox import open_payload
from gateway.errors import EvidenceError, NotFound
from gateway.evidence.log import EvidenceLog
from gateway.evidence.merkle import leaf_hash, root_from_inclusion_proof
from gateway.evidence.signed_note import NoteVerifier, open_note, parse_checkpoint
from gateway.store.database import Database
from gateway.store.mail_tables import MailDispatch, MailMessage
from gateway.store.tables import (
    AgencyEventRow,
    Checkpoint,
    DeliveryAttempt,
    EvidenceLeaf,
    InboundMessage,
    Mismatch,
    OutboxItem,
    Placement,
)
from gateway.store.transfer_tables import FileBatchItem, RemoteFile

FORMAT: Final = "agency-gateway/evidence-bundle/1"
MANIFEST_FORMAT: Final = "agency-gateway/evidence-bundle-manifest/1"
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]
CHECKPOINTS = Checkpoint.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
MAILS = MailMessage.__table__  # type: ignore[attr-defined]
DISPATCHES = MailDispatch.__table__  # type: ignore[attr-defined]
BATCH_ITEMS = FileBatchItem.__table__  # type: ignore[attr-defined]
REMOTE_FILES = RemoteFile.__table__  # type: ignore[attr-defined]


class Purged(str):
    """When attested bytes were purged after their retention (their hash is still proved)."""


Attested = dict[str, bytes | str]
"""Leaf ref → the attested bytes, why they are withheld, or when they were ``Purged``."""


async def export_case(
    db: Database, log: EvidenceLog, verifier: NoteVerifier, case_id: str, *, now: datetime
) -> dict[str, Any]:
    """The evidence bundle of ``case_id`` (see the module docstring); NotFound when the
    case was never placed."""
    await log.checkpoint(now=now)
    async with db.snapshot() as conn:
        placements = [
            str(p)
            for p in (
                await conn.execute(
                    sa.select(PLACEMENTS.c.id).where(PLACEMENTS.c.case_id == case_id)
                )
            ).scalars()
        ]
        if not placements:
            raise NotFound(f"case {case_id} was never placed")
        refs, attested = await _case_refs(conn, case_id, placements)
        size = (
            await conn.execute(sa.select(sa.func.max(CHECKPOINTS.c.tree_size)))
        ).scalar_one_or_none() or 0
        leaves = (
            (
                await conn.execute(
                    sa.select(LEAVES.c.seq)
                    .where(LEAVES.c.ref.in_(sorted(refs)), LEAVES.c.seq < size)
                    .order_by(LEAVES.c.seq)
                )
            )
            .scalars()
            .all()
        )
    entries = []
    note = None
    for proof in await log.inclusion_proofs([int(s) for s in leaves], int(size)):
        note = proof.note
        body = json.loads(proof.body)
        entry: dict[str, Any] = {
            "seq": proof.seq,
            "kind": body["kind"],
            "ref": body["ref"],
            "body": proof.body.decode(),
            "path": [h.hex() for h in proof.path],
        }
        evidence = attested.get(body["ref"])
        if isinstance(evidence, bytes):
            entry["attested"] = {"bytes_base64": base64.b64encode(evidence).decode()}
        elif isinstance(evidence, Purged):
            entry["attested"] = {"purged_at": str(evidence)}
        elif isinstance(evidence, str):
            entry["attested"] = {"withheld": evidence}
        entries.append(entry)
    bundle = {
        "format": FORMAT,
        "case_id": case_id,
        "placements": placements,
        "exported_at": now.isoformat(),
        "checkpoint": note,
        "verifier_key": verifier.to_text(),
        "entries": entries,
    }
    bundle["manifest"] = log.sign(manifest_text(bundle))
    return bundle


def manifest_text(bundle: Mapping[str, Any]) -> str:
    """What the lender signs for a bundle: one fact a line, in the bundle's order. Raises
    KeyError, TypeError or ValueError for a malformed bundle."""
    lines = [
        MANIFEST_FORMAT,
        f"case {_word(bundle['case_id'])}",
        "placements " + " ".join(_word(p) for p in bundle["placements"]),
        f"exported {_word(bundle['exported_at'])}",
        "checkpoint " + hashlib.sha256(str(bundle["checkpoint"]).encode()).hexdigest(),
    ]
    for entry in bundle["entries"]:
        attested = entry.get("attested") or {}
        if "bytes_base64" in attested:
            data = base64.b64decode(str(attested["bytes_base64"]), validate=True)
            what = "bytes " + hashlib.sha256(data).hexdigest()
        elif "withheld" in attested:
            what = "withheld " + _word(attested["withheld"], spaces=True)
        elif "purged_at" in attested:
            what = "purged " + _word(attested["purged_at"])
        else:
            what = "nothing attached"
        body = str(entry["body"]).encode()
        lines.append(
            f"leaf {int(entry['seq'])} {_word(entry['kind'])} {_word(entry['ref'])} "
            f"{leaf_hash(body).hex()} {what}"
        )
    return "\n".join(lines) + "\n"


def _word(value: object, *, spaces: bool = False) -> str:
    text = str(value)
    if any(ch < " " for ch in text) or (not spaces and " " in text):
        raise ValueError(f"{text!r} cannot stand in a manifest line")
    return text


async def _case_refs(
    conn: AsyncConnection, case_id: str, placements: Sequence[str]
) -> tuple[set[str], Attested]:
    mine = set(placements)
    refs = {f"case:{case_id}", *(f"placement:{p}" for p in placements)}
    attested: Attested = {}
    ids = []
    for oid, key, stored, purged_at in await conn.execute(
        sa.select(
            OUTBOX.c.id, OUTBOX.c.dedupe_key, OUTBOX.c.payload, OUTBOX.c.payload_purged_at
        ).where(OUTBOX.c.placement_id.in_(placements))
    ):
        ids.append(oid)
        refs.add(f"outbox:{oid}")
        payload = open_payload(conn, key, stored)
        attested[f"outbox:{oid}"] = (
            payload if payload is not None else Purged(purged_at.isoformat() if purged_at else "")
        )
    ids.sort()
    refs.update(
        f"attempt:{a}"
        for a in (
            await conn.execute(sa.select(ATTEMPTS.c.id).where(ATTEMPTS.c.outbox_id.in_(ids)))
        ).scalars()
    )
    refs.update(
        f"mismatch:{m}"
        for m in (
            await conn.execute(
                sa.select(MISMATCHES.c.id).where(MISMATCHES.c.placement_id.in_(placements))
            )
        ).scalars()
    )
    refs.update(
        f"remote_file:{r}"
        for r in (
            await conn.execute(
                sa.select(REMOTE_FILES.c.id).where(
                    REMOTE_FILES.c.batch_id.in_(
                        sa.select(BATCH_ITEMS.c.batch_id).where(BATCH_ITEMS.c.outbox_id.in_(ids))
                    )
                )
            )
        ).scalars()
    )
    # Mail and inbound messages: whole bytes only when all they carry is this case's.
    carried = _by_key(
        await conn.execute(
            sa.select(DISPATCHES.c.message_id, DISPATCHES.c.placement_id).where(
                DISPATCHES.c.message_id.in_(
                    sa.select(DISPATCHES.c.message_id).where(DISPATCHES.c.outbox_id.in_(ids))
                )
            )
        )
    )
    for mail_id, message_id, body in await conn.execute(
        sa.select(MAILS.c.id, MAILS.c.message_id, MAILS.c.body).where(
            MAILS.c.message_id.in_(sorted(carried))
        )
    ):
        refs.add(f"mail:{mail_id}")
        attested[f"mail:{mail_id}"] = _own_bytes(
            body, carried[message_id] - mine, "the mail also carries {} other case(s)"
        )
    named = _by_key(
        await conn.execute(
            sa.select(EVENTS.c.inbound_id, EVENTS.c.placement_id).where(
                EVENTS.c.inbound_id.in_(
                    sa.select(EVENTS.c.inbound_id).where(EVENTS.c.placement_id.in_(placements))
                )
            )
        )
    )
    # The conflicting copy of a message (409), kept as evidence: its mismatch names the case.
    for (theirs,) in await conn.execute(
        sa.select(MISMATCHES.c.theirs).where(
            MISMATCHES.c.placement_id.in_(placements),
            MISMATCHES.c.kind == "conflicting_duplicate",
        )
    ):
        copy_id = json.loads(theirs).get("inbound_id")
        if isinstance(copy_id, int):
            named.setdefault(copy_id, set()).update(mine)
    for inbound_id, body in await conn.execute(
        sa.select(INBOUND.c.id, INBOUND.c.body).where(INBOUND.c.id.in_(sorted(named)))
    ):
        refs.add(f"inbound:{inbound_id}")
        attested[f"inbound:{inbound_id}"] = _own_bytes(
            body, named[inbound_id] - mine, "the message also reports on {} other placement(s)"
        )
    return refs, attested


def _by_key(pairs: Iterable[Any]) -> dict[Any, set[str]]:
    """(key, placement id) pairs grouped by key."""
    grouped: dict[Any, set[str]] = {}
    for key, pid in pairs:
        grouped.setdefault(key, set()).add(pid or "")
    return grouped


def _own_bytes(body: bytes, others: set[str], withheld: str) -> bytes | str:
    """The attested bytes, or why they are withheld (``withheld`` names how many others)."""
    return bytes(body) if not others else withheld.format(len(others))


@dataclass
class BundleReport:
    """What ``verify_bundle`` found: ``ok`` only when there is no problem at all."""

    case_id: str = ""
    tree_size: int = 0
    signed_by: list[str] = field(default_factory=list)
    entries: int = 0
    bytes_checked: int = 0
    withheld: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.entries > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "case_id": self.case_id,
            "tree_size": self.tree_size,
            "signed_by": self.signed_by,
            "entries": self.entries,
            "bytes_checked": self.bytes_checked,
            "withheld": self.withheld,
            "problems": self.problems,
        }


def verify_bundle(bundle: object, trusted: Sequence[NoteVerifier]) -> BundleReport:
    """Check ``bundle`` against the ``trusted`` note keys alone (see the module docstring)."""
    if not isinstance(bundle, Mapping):
        return BundleReport(problems=["not an evidence bundle: the JSON is not an object"])
    report = BundleReport(case_id=str(bundle.get("case_id", "")))
    entries = bundle.get("entries")
    if not isinstance(entries, list):
        report.problems.append("malformed bundle: entries is not a list")
        return report
    if bundle.get("format") != FORMAT:
        report.problems.append(f"not an evidence bundle of format {FORMAT}")
        return report
    try:
        text, report.signed_by = open_note(str(bundle.get("checkpoint") or ""), trusted)
        _origin, size, root = parse_checkpoint(text)
    except EvidenceError as exc:
        report.problems.append(f"checkpoint: {exc}")
        return report
    report.tree_size = size
    for n, entry in enumerate(entries):
        report.entries += 1
        if not isinstance(entry, Mapping):
            report.problems.append(f"entry {n}: malformed entry (not an object)")
            continue
        where = f"leaf {entry.get('seq')} ({entry.get('ref')})"
        try:
            body = str(entry["body"]).encode()
            path = [bytes.fromhex(h) for h in entry["path"]]
            seq = int(entry["seq"])
            fields = json.loads(body)
        except (KeyError, TypeError, ValueError) as exc:
            report.problems.append(f"{where}: malformed entry ({exc})")
            continue
        if root_from_inclusion_proof(leaf_hash(body), seq, size, path) != root:
            report.problems.append(f"{where}: not in the signed tree of {size} leaves")
            continue
        if fields.get("kind") != entry.get("kind") or fields.get("ref") != entry.get("ref"):
            report.problems.append(f"{where}: the leaf is {fields.get('kind')} {fields.get('ref')}")
        attested = entry.get("attested") or {}
        if not isinstance(attested, Mapping) or not isinstance(fields, Mapping):
            report.problems.append(f"{where}: malformed entry (attested or body)")
        elif "withheld" in attested or "purged_at" in attested:
            report.withheld += 1
        elif "bytes_base64" in attested:
            try:
                data = base64.b64decode(str(attested["bytes_base64"]), validate=True)
            except ValueError:
                report.problems.append(f"{where}: the attached bytes are not base64")
                continue
            if hashlib.sha256(data).hexdigest() != fields.get("sha256"):
                report.problems.append(f"{where}: the attached bytes do not match the leaf")
            else:
                report.bytes_checked += 1
    if report.entries == 0:
        report.problems.append("the bundle has no entries")
    report.problems.extend(_manifest_problems(bundle, trusted))
    return report


def _manifest_problems(bundle: Mapping[str, Any], trusted: Sequence[NoteVerifier]) -> list[str]:
    """The bundle against its signed manifest, line by line (at most a few lines named)."""
    manifest = bundle.get("manifest")
    if not isinstance(manifest, str):
        return ["the bundle has no signed manifest: it cannot be checked as a whole"]
    try:
        signed, _names = open_note(manifest, trusted)
    except EvidenceError as exc:
        return [f"manifest: {exc}"]
    try:
        present = manifest_text(bundle)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"manifest: the bundle is malformed ({exc})"]
    if signed == present:
        return []
    said, has = signed.splitlines(), present.splitlines()
    missing = [line for line in said if line not in has]
    added = [line for line in has if line not in said]
    problems = [f"the signed manifest says: {line}" for line in missing[:5]]
    problems += [f"the bundle has, unsigned: {line}" for line in added[:5]]
    return problems or ["the bundle's entries are not in the order the manifest signed"]


__all__ = [
    "FORMAT",
    "MANIFEST_FORMAT",
    "BundleReport",
    "export_case",
    "manifest_text",
    "verify_bundle",
]
