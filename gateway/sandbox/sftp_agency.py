"""The sandbox SFTP agency: the back office behind a login on the sandbox SFTP server.

Theory of operation
-------------------
``SandboxSftpAgency`` is the agency's back office working on its own disk: ``process_once``
takes every placement batch whose done marker is in ``inbox/`` (placements first, then
expiry warnings, amendments, payments, recalls and deletion requests), checks the manifest (marker
= manifest SHA-256, file sizes, SHA-256, record counts and control totals), parses the data
file with the agency's layout, checks every document the manifest lists in the batch's
documents folder (size and SHA-256 as transmitted, and of the plaintext once decrypted),
feeds the same ``EventPlanner`` as the webhook sandbox, and
writes a result file (some rows deliberately faulty) and an inventory statement to
``results/`` the way a careful agency does: temporary name, rename, manifest, done marker.
Processed batches move to ``received/``. A ``data.deletion_requested`` record is answered in
the next result file with a ``data.deleted`` row (method ``deleted``, a ``DEL-...``
reference), and the placement leaves the agency's inventory: it holds no data on it.
A ``SETTLEMENT`` batch (monthly statements) is checked like the others and each statement's
revision and SHA-256 noted in ``statements``; it is not answered (ops or a test confirm).
"""

import asyncio
import hashlib
import json
import logging
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from adapters.sftp.batches import (
    MANIFEST_SUFFIX,
    PACKET_TYPES,
    Manifest,
    ManifestFile,
    done_marker,
    sha256_hex,
)
from adapters.sftp.layouts import ParsedRecord, RecordWriter, Trailer
from adapters.sftp.parsing import read_records
from gateway.clock import SystemClock, to_datetime
from gateway.config.sftp import SftpSection
from gateway.ports import Clock
from gateway.sandbox.agency_script import CaseFile, EventPlanner
from schemas.packets import CasePacket

log = logging.getLogger(__name__)

_PACKETS: TypeAdapter[CasePacket] = TypeAdapter(CasePacket)


@dataclass(slots=True)
class FileAgencyStats:
    batches_received: int = 0
    batches_rejected: int = 0
    packets_by_type: Counter[str] = field(default_factory=Counter)
    duplicate_packets: int = 0
    result_files: int = 0
    statement_files: int = 0
    events_written: Counter[str] = field(default_factory=Counter)
    faulty_rows_written: int = 0
    documents_verified: int = 0
    rejections: list[str] = field(default_factory=list)


_FAULTY: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (
    lambda r: {**r, "type": "payment.reportd"},
    lambda r: {
        **r,
        "type": "contact.attempted",
        "data": {
            "placement_id": r["data"].get("placement_id", "x"),
            "channel": "pigeon",
            "outcome": "reached",
            "attempted_at": r["timestamp"],
            "effective": True,
        },
    },
    lambda r: {
        **r,
        "type": "payment.reported",
        "data": {
            "placement_id": r["data"].get("placement_id", "x"),
            "payment_id": "neg_" + str(r["data"].get("placement_id", "x"))[-12:],
            "amount": {"amount_minor": -100, "currency": "CNY"},
            "paid_at": r["timestamp"],
        },
    },
)
"""Rows an agency gets wrong: unknown event type, unknown channel, negative amount."""

_LIFE_ORDER: dict[str, int] = {
    t: n
    for n, t in enumerate(("PLACEMENT", "EXPIRING", "AMENDMENT", "PAYMENT", "RECALL", "DELETION"))
}
"""File type → its place in a placement's life. The batches in the inbox are read in this
order (a placement before its recall, a recall before the deletion request, an expiry warning
before the renewal that answers it), not by name:
names sort DELETION before PLACEMENT, and a packet for a placement not yet read is dropped."""


class SandboxSftpAgency:
    """The agency behind one SFTP login (see module docstring).

    Args:
        agency_id: the agency's id at the gateway.
        root: its chroot on the sandbox server.
        section: the agreed exchange (folders, naming, layout): the gateway's own config.
        seed, fault_rate: see ``EventPlanner``; ``fault_rate`` also adds faulty rows.
        clock: event timestamps.
        decrypt: turns an encrypted batch file into plaintext (source, target), if used.
    """

    def __init__(
        self,
        *,
        agency_id: str,
        root: Path,
        section: SftpSection,
        seed: int,
        fault_rate: float,
        clock: Clock | None = None,
        decrypt: Callable[[Path, Path], None] | None = None,
    ) -> None:
        self.agency_id = agency_id
        self.root = root
        self.section = section
        self.fault_rate = fault_rate
        self.planner = EventPlanner(agency_id=agency_id, seed=seed, fault_rate=fault_rate)
        self.stats = FileAgencyStats()
        self.files_by_packet: dict[str, list[str]] = {}
        self.deleted: set[str] = set()
        self.statements: dict[int, tuple[int, str]] = {}
        """Settlement statements received: id → (revision, SHA-256)."""
        self._clock: Clock = clock or SystemClock()
        self._decrypt = decrypt
        self._rng = random.Random(seed)
        self._seq: Counter[str] = Counter()
        folders = section.folders
        for folder in (
            folders.inbox,
            folders.results,
            folders.processing,
            folders.archive,
            folders.error,
            "received",
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)

    @property
    def inbox(self) -> Path:
        return self.root / self.section.folders.inbox

    @property
    def results(self) -> Path:
        return self.root / self.section.folders.results

    async def process_once(self) -> int:
        """Handle every complete batch in the inbox; returns how many files were written."""
        return await asyncio.to_thread(self._process)

    def _process(self) -> int:
        now = to_datetime(self._clock.now())
        touched: dict[str, CaseFile] = {}
        done_suffix = self.section.naming.done_suffix
        markers = sorted(self.inbox.glob("*" + done_suffix), key=self._batch_order)
        for marker in markers:
            base = marker.name.removesuffix(done_suffix)
            cases = self._receive(base, marker, now)
            if cases is None:
                continue
            touched.update((c.placement_id, c) for c in cases)
        if not touched:
            return 0
        records = self._events(touched.values(), now)
        written = 0
        if records:
            self._write("RESULT", "result", records, now)
            self.stats.result_files += 1
            written += 1
        inventory = self._inventory(now)
        if inventory:
            self._write("STATEMENT", "statement", inventory, now)
            self.stats.statement_files += 1
            written += 1
        return written

    def _batch_order(self, marker: Path) -> tuple[int, str]:
        base = marker.name.removesuffix(self.section.naming.done_suffix)
        try:
            manifest = json.loads((self.inbox / (base + MANIFEST_SUFFIX)).read_bytes())
            place = _LIFE_ORDER[manifest["file_type"]]
        except (OSError, ValueError, KeyError, TypeError):
            place = len(_LIFE_ORDER)  # _receive rejects it, in its turn
        return place, marker.name

    def _receive(self, base: str, marker: Path, now: datetime) -> list[CaseFile] | None:
        manifest_path = self.inbox / (base + MANIFEST_SUFFIX)
        try:
            manifest_bytes = manifest_path.read_bytes()
            if marker.read_bytes().strip() != sha256_hex(manifest_bytes).encode():
                return self._reject(base, "done marker does not match the manifest's sha256")
            manifest = json.loads(manifest_bytes)
            packet_type = PACKET_TYPES[manifest["file_type"]]
            cases: list[CaseFile] = []
            for item in manifest["files"]:
                data = self.inbox / item["name"]
                body = data.read_bytes()
                if len(body) != item["bytes"] or sha256_hex(body) != item["sha256"]:
                    return self._reject(base, f"{item['name']} does not match the manifest")
                plain = data
                if item.get("encryption") == "openpgp":
                    if self._decrypt is None:
                        return self._reject(base, "encrypted, but this agency has no key")
                    plain = data.with_name(data.name + ".plain")
                    self._decrypt(data, plain)
                    if sha256_hex(plain.read_bytes()) != item["plaintext_sha256"]:
                        return self._reject(base, "plaintext sha256 differs from the manifest")
                if packet_type == "settlement.statement":
                    rows = self._statement_rows(plain)
                    if plain != data:
                        plain.unlink()
                    if rows != item["record_count"]:
                        return self._reject(base, f"{item['name']}: record count differs")
                    continue
                found = self._packets(plain, packet_type, item["name"], now)
                if plain != data:
                    plain.unlink()
                if found is None or len(found) != item["record_count"]:
                    return self._reject(base, f"{item['name']}: record count or trailer differs")
                cases += [c for c in (self._apply(p, item["name"]) for p in found) if c]
            problem = self._check_documents(manifest.get("documents") or [])
            if problem is not None:
                return self._reject(base, problem)
        except (OSError, KeyError, ValueError) as exc:
            return self._reject(base, f"unreadable batch: {exc}")
        self.stats.batches_received += 1
        self._archive(base)
        return cases

    def _check_documents(self, documents: list[dict[str, Any]]) -> str | None:
        """Check each listed document as transmitted and as plaintext; the first problem."""
        for item in documents:
            relative = Path(item["path"])
            if relative.is_absolute() or ".." in relative.parts:
                return f"document path {item['path']!r} leaves the inbox"
            path = self.inbox / relative
            if _file_digest(path) != (item["bytes"], item["sha256"]):
                return f"document {item['path']} does not match the manifest"
            plain = path
            if item.get("encryption") == "openpgp":
                if self._decrypt is None:
                    return "encrypted documents, but this agency has no key"
                plain = path.with_name(path.name + ".plain")
                self._decrypt(path, plain)
            digest = _file_digest(plain)
            if plain != path:
                plain.unlink()
            if digest != (item["size"], item["plaintext_sha256"]):
                return f"document {item['path']}: plaintext differs from the manifest"
            self.stats.documents_verified += 1
        return None

    def _reject(self, base: str, reason: str) -> list[CaseFile] | None:
        self.stats.batches_rejected += 1
        self.stats.rejections.append(f"{base}: {reason}")
        log.warning("sandbox %s rejected batch %s: %s", self.agency_id, base, reason)
        self._archive(base)
        return None

    def _archive(self, base: str) -> None:
        for path in self.inbox.glob(base + "*"):
            shutil.move(path, self.root / "received" / path.name)

    def _packets(
        self, path: Path, packet_type: str, name: str, now: datetime
    ) -> list[CasePacket] | None:
        packets: list[CasePacket] = []
        trailer: Trailer | None = None
        with path.open("rb") as stream:
            for row in read_records(stream, self.section.layout, packet_type):  # type: ignore[arg-type]
                if isinstance(row, Trailer):
                    trailer = row
                elif isinstance(row, ParsedRecord):
                    packets.append(_packet(row.record, packet_type, now))
                else:
                    log.warning("sandbox %s: %s %s", self.agency_id, name, row)
                    return None
        if trailer is not None and trailer.record_count != len(packets):
            return None
        return packets

    def _statement_rows(self, path: Path) -> int | None:
        """Read a SETTLEMENT file: note each statement's revision and SHA-256 (what a
        confirmation names) in ``statements``; the rows read, or None when one is bad."""
        rows = 0
        with path.open("rb") as stream:
            for row in read_records(stream, self.section.layout, "settlement.statement"):
                if isinstance(row, Trailer):
                    continue
                if not isinstance(row, ParsedRecord):
                    return None
                rows += 1
                data = row.record.get("data", {})
                if row.record.get("row", "SUMMARY") == "SUMMARY":
                    sid = int(data["statement_id"])
                    self.statements[sid] = (int(data["revision"]), str(data["sha256"]))
                    self.stats.packets_by_type["settlement.statement"] += 1
        return rows

    def _apply(self, packet: CasePacket, file_name: str) -> CaseFile | None:
        packet_id = packet.data.packet_id
        files = self.files_by_packet.setdefault(packet_id, [])
        files.append(file_name)
        if len(files) > 1:
            self.stats.duplicate_packets += 1
            return None
        self.stats.packets_by_type[packet.type] += 1
        case = self.planner.on_packet(packet)
        if case is not None and packet.type == "data.deletion_requested":
            self.deleted.add(case.placement_id)
        return case

    def _events(self, cases: Iterable[CaseFile], now: datetime) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for case in cases:
            while (event := self.planner.next_event(case, now)) is not None:
                records.append(json.loads(event.body))
                self.stats.events_written[event.type] += 1
        if records and self.fault_rate > 0:
            for fault in _FAULTY:
                if self._rng.random() < max(self.fault_rate * 4, 0.5):
                    records.append(fault(self._rng.choice(records)))
                    self.stats.faulty_rows_written += 1
        return records

    def _inventory(self, now: datetime) -> list[dict[str, Any]]:
        day = now.date().isoformat()
        return [
            {
                "placement_id": case.placement_id,
                "balance": {"amount_minor": max(case.outstanding, 0), "currency": case.currency},
                "currency": case.currency,
                "status": "active" if case.outstanding > 0 else "closed",
                "period_start": day,
                "period_end": day,
            }
            for case in self.planner.cases.values()
            if not case.recalled and case.placement_id not in self.deleted
        ]

    def _write(
        self, file_type: str, kind: str, records: list[dict[str, Any]], now: datetime
    ) -> None:
        naming, layout = self.section.naming, self.section.layout
        day = now.date()
        self._seq[f"{file_type}{day}"] += 1
        seq = self._seq[f"{file_type}{day}"]
        agency_code = naming.receiver or self.agency_id
        base = f"{agency_code}_{naming.sender}_{file_type}_{day:%Y%m%d}_{seq:04d}"
        name = f"{base}.{layout.extension}"
        writer = RecordWriter(layout, kind)  # type: ignore[arg-type]
        chunk, errors = writer.write_records(records)
        body = writer.start() + chunk + writer.finish()
        self._put(name, body)
        manifest = Manifest(
            batch_id=base,
            sender=agency_code,
            receiver=naming.sender,
            file_type=file_type,
            business_date=day,
            seq=seq,
            created_at=now,
            files=(
                ManifestFile(
                    name=name,
                    bytes=len(body),
                    sha256=sha256_hex(body),
                    plaintext_sha256=sha256_hex(body),
                    record_count=len(records) - len(errors),
                    layout=layout.format,
                    encoding=layout.encoding,
                ),
            ),
            case_count=len(records) - len(errors),
            totals=writer.totals.amounts,
        ).render()
        self._put(base + MANIFEST_SUFFIX, manifest)
        self._put(base + naming.done_suffix, done_marker(sha256_hex(manifest)))

    def _put(self, name: str, body: bytes) -> None:
        temp = self.results / f".{name}.part"
        temp.write_bytes(body)
        os.replace(temp, self.results / name)

    def stats_json(self) -> dict[str, object]:
        s = self.stats
        return {
            "agency_id": self.agency_id,
            "batches_received": s.batches_received,
            "batches_rejected": s.batches_rejected,
            "packets_by_type": dict(s.packets_by_type),
            "duplicate_packets": s.duplicate_packets,
            "placements": len(self.planner.cases),
            "result_files": s.result_files,
            "statement_files": s.statement_files,
            "events_written": dict(s.events_written),
            "faulty_rows_written": s.faulty_rows_written,
            "documents_verified": s.documents_verified,
        }


def _file_digest(path: Path) -> tuple[int, str]:
    """(size, SHA-256) of a file, streamed."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _packet(record: dict[str, Any], packet_type: str, now: datetime) -> CasePacket:
    """A packet from a parsed row. Agencies that map few columns still get a packet: fields
    the script does not need are filled with placeholders (ValueError if that fails)."""
    data = dict(record.get("data", {}))
    pid = str(data.get("placement_id", ""))
    case_id = str(data.get("case_id", pid))
    zero = {"amount_minor": 0, "currency": "CNY"}
    balance = data.get("balance", zero)
    today, moment = now.date().isoformat(), now.isoformat()
    defaults: dict[str, dict[str, Any]] = {
        "placement.created": {
            "case_id": case_id,
            "bucket": "M1",
            "dpd": 0,
            "balance": balance,
            "principal": balance,
            "due_date": today,
            "product": "-",
            "credit_grade": "-",
            "placed_at": moment,
            "return_by": today,
        },
        "placement.amended": {
            "case_id": case_id,
            "version": 2,
            "balance": balance,
            "previous_balance": balance,
            "reason": "-",
        },
        "placement.expiring": {"case_id": case_id, "return_by": today, "recall_on": today},
        "placement.recalled": {"case_id": case_id, "reason_code": "RECALL", "recalled_at": moment},
        "payment.direct": {"case_id": case_id, "payment_id": f"pay_{pid}", "paid_at": moment},
        "payment.attributed": {
            "case_id": case_id,
            "payment_id": f"pay_{pid}",
            "paid_at": moment,
            "attribution": {"rule": "grace_old", "share_bps": 10_000, "amount": zero},
        },
        "request.decided": {
            "case_id": case_id,
            "request_id": f"rq_{pid}",
            "request_type": "waiver",
            "decision": "rejected",
            "decided_at": moment,
        },
        "data.deletion_requested": {
            "case_id": case_id,
            "reason": "recalled",
            "ended_at": moment,
            "delete_by": today,
            "categories": [],
            "legal_basis": "-",
        },
    }
    data = {**defaults[packet_type], **data}
    data.setdefault("packet_id", hashlib.sha256(repr(sorted(record.items())).encode()).hexdigest())
    if packet_type == "placement.created":
        data["debtor"] = {"debtor_id": case_id, **data.get("debtor", {})}
    envelope = {"timestamp": moment, **record, "type": packet_type, "data": data}
    try:
        return _PACKETS.validate_python(envelope)
    except ValidationError as exc:
        raise ValueError(
            f"row does not make a {packet_type} packet: {exc.error_count()} error(s)"
        ) from None


__all__ = ["FileAgencyStats", "SandboxSftpAgency"]
