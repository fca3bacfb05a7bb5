"""Result pickup: an agency's result and statement files → stored, evidenced, reconciled.

Theory of operation
-------------------
One ``poll_once`` opens one session on the agency's server and:

1. Resumes what a crash left in ``processing/`` (a claim older than ``claim_ttl_seconds``,
   or a file no row claims), and finishes moving files already committed.
2. Lists ``results/``, skipping temporary names (``.x``, ``*.part`` ...) and companions
   (manifests, done markers, checksum sidecars). Every sighting is a ``file_pickups`` row in
   state ``seen``. A file is ready when its done marker or manifest is present; otherwise
   when its size and mtime were the same in ``stable_polls`` consecutive polls and it was
   first seen with that size at least ``min_age_seconds`` ago (never "now - mtime": copies
   keep old mtimes). Empty files are never ready.
3. Claims a ready file by renaming it into ``processing/`` (two gateways never take the
   same file), downloads it, checks size and SHA-256 against the manifest, and decrypts and
   verifies it when the agency encrypts.
4. A file whose SHA-256 was seen before, under any name, is recorded as ``duplicate`` and
   moved to ``error/`` with a reason file; nothing is applied twice.
5. Otherwise ONE transaction stores the raw file, its evidence leaf and the events of its
   good rows, reconciled, with the pickup's counts and row errors
   (``adapters.sftp.pickup_store.commit_file``). Then the file and its companions move to
   ``archive/YYYY/MM/DD/``, or to ``error/`` with ``NAME.reason.txt`` when no row was good
   (each row error on its own line: line, column, reason). Companions (manifest, done marker,
   ``.sha256`` sidecar) move with their file.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from adapters.sftp import pickup_store as store
from adapters.sftp.batches import (
    CHECKSUM_SUFFIX,
    MANIFEST_SUFFIX,
    ManifestInvalid,
    base_of,
    classify,
    dated_folder,
    read_manifest,
    remote_path,
)
from adapters.sftp.parsing import cut_off
from adapters.sftp.pgp import Pgp, PgpError
from gateway.allocation.agencies import set_endpoint_disabled
from gateway.clock import to_datetime
from gateway.config.agencies import SftpAgency
from gateway.errors import DeliveryError, EndpointGone
from gateway.ports import RemoteEntry, RemoteFolder, RemoteSession
from gateway.reconciliation.recorder import ArrivalPolicy
from gateway.store.database import Database

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 1 << 20

PgpProvider = Callable[[], Awaitable[Pgp | None]]


class _FileRefused(Exception):
    """The whole file is refused (hash mismatch, cannot decrypt); the reason goes to ops
    and into ``error/NAME.reason.txt``."""


@dataclass(frozen=True, slots=True)
class _Claim:
    pickup_id: int
    name: str
    kind: str
    path: str
    marked: bool
    """A done marker or manifest said the file was complete (else readiness was a guess)."""


class ResultPickup:
    """Polls one SFTP agency's result folder (``gateway.ports.InboundPoller``).

    Args:
        db: the database.
        agency: the agency's config (folders, naming, layout, readiness, OpenPGP).
        remote: opens sessions on the agency's server.
        spool_dir: local scratch space for downloads.
        clock: returns Unix time.
        pgp: the agency's OpenPGP keys, or None.
        worker: names this process in claims.
        arrival: the lender's rules the events are judged by as they arrive (None: quiet
            hours and caps are left to the batch run).
    """

    def __init__(
        self,
        *,
        db: Database,
        agency: SftpAgency,
        remote: RemoteFolder,
        spool_dir: Path,
        clock: Callable[[], float],
        pgp: PgpProvider,
        worker: str = "gateway",
        arrival: ArrivalPolicy | None = None,
    ) -> None:
        self._db = db
        self._arrival = arrival
        self._agency = agency
        self._cfg = agency.sftp
        self._remote = remote
        self._spool = spool_dir
        self._clock = clock
        self._pgp = pgp
        self._worker = worker
        self.name = f"sftp-pickup:{agency.id}"
        self.agency_id = agency.id
        self.interval_seconds = agency.sftp.readiness.poll_interval_seconds

    def _now(self) -> datetime:
        return to_datetime(self._clock())

    async def poll_once(self) -> dict[str, int]:
        """One pass over the result folder; returns counts by outcome."""
        counts: dict[str, int] = {}
        if await store.endpoint_disabled(self._db, self._agency.id):
            return {"skipped_disabled": 1}
        try:
            async with self._remote.session() as session:
                await self._resume(session, counts)
                entries = await session.list(self._cfg.folders.results)
                for entry, kind, marked in await self._ready(entries):
                    await self._take(session, entry, kind, marked, counts)
        except EndpointGone as exc:
            await set_endpoint_disabled(self._db, self._agency.id, disabled=True, reason=str(exc))
            log.error("result pickup of %s stopped: %s", self._agency.id, exc)
            counts["refused"] = counts.get("refused", 0) + 1
        except DeliveryError as exc:
            log.warning("result pickup of %s failed: %s", self._agency.id, exc)
            counts["errors"] = counts.get("errors", 0) + 1
        return counts

    async def _ready(self, entries: list[RemoteEntry]) -> list[tuple[RemoteEntry, str, bool]]:
        naming, readiness = self._cfg.naming, self._cfg.readiness
        names = {e.name for e in entries}
        candidates = sorted(
            ((e, kind) for e in entries if e.is_file and (kind := classify(e.name, naming))),
            key=lambda c: c[0].name,
        )
        now = self._now()
        sightings = await store.record_sightings(self._db, self._agency.id, candidates, now=now)
        ready = []
        for entry, kind in candidates:
            sighting = sightings[entry.name]
            base = base_of(entry.name)
            marked = base + naming.done_suffix in names or base + MANIFEST_SUFFIX in names
            settled = (
                not readiness.require_marker
                and sighting.stable_polls >= readiness.stable_polls
                and (now - sighting.first_seen).total_seconds() >= readiness.min_age_seconds
            )
            if entry.size >= 1 and (marked or settled):
                ready.append((entry, kind, marked))
        return ready[: readiness.max_files_per_poll]

    async def _take(
        self,
        session: RemoteSession,
        entry: RemoteEntry,
        kind: str,
        marked: bool,
        counts: dict[str, int],
    ) -> None:
        folders = self._cfg.folders
        target = remote_path(folders.processing, entry.name)
        await session.makedirs(folders.processing)
        try:
            claimed = await session.rename(remote_path(folders.results, entry.name), target)
        except FileExistsError:
            log.warning(
                "%s: %s is already in processing; left for the next poll",
                self._agency.id,
                entry.name,
            )
            return
        if not claimed:
            await store.forget_sighting(self._db, self._agency.id, entry.name)
            return
        pickup_id = await store.claim(
            self._db, self._agency.id, entry, kind, worker=self._worker, now=self._now()
        )
        outcome = await self._process(session, _Claim(pickup_id, entry.name, kind, target, marked))
        counts[outcome] = counts.get(outcome, 0) + 1

    async def _resume(self, session: RemoteSession, counts: dict[str, int]) -> None:
        """Finish what a crash left in processing/ (see module docstring, step 1)."""
        folders = self._cfg.folders
        if await session.stat(folders.processing) is None:
            return
        ttl = timedelta(seconds=self._cfg.readiness.claim_ttl_seconds)
        for entry in await session.list(folders.processing):
            kind = classify(entry.name, self._cfg.naming)
            if not entry.is_file or kind is None:
                continue
            row = await store.latest(self._db, self._agency.id, entry.name)
            path = remote_path(folders.processing, entry.name)
            if row is not None and row.state in store.FINISHED:
                await self._move_out(session, row.id, entry.name, path, row.state, None)
                continue
            if row is not None and (row.claimed_at or row.last_seen_at) >= self._now() - ttl:
                continue  # claimed by a live poller
            pickup_id = await store.claim(
                self._db,
                self._agency.id,
                entry,
                kind,
                worker=self._worker,
                now=self._now(),
                row_id=row.id if row is not None and row.state in ("seen", "claimed") else None,
            )
            base = remote_path(self._cfg.folders.results, base_of(entry.name))
            marked = any(
                [
                    await session.stat(base + self._cfg.naming.done_suffix) is not None,
                    await session.stat(base + MANIFEST_SUFFIX) is not None,
                ]
            )
            outcome = await self._process(
                session, _Claim(pickup_id, entry.name, kind, path, marked)
            )
            counts[outcome] = counts.get(outcome, 0) + 1

    async def _process(self, session: RemoteSession, claim: _Claim) -> str:
        """Download, verify, dedupe, parse and commit one claimed file; returns its state."""
        self._spool.mkdir(parents=True, exist_ok=True)
        local = self._spool / f"{claim.pickup_id}_{claim.name}"
        plain = local.with_name(local.name + ".plain")
        try:
            sha = await session.download(claim.path, local)
            size = local.stat().st_size
            try:
                manifest_count = await self._check_manifest(session, claim, sha, size)
                earlier = await store.earlier_copy(self._db, self._agency.id, sha, claim.pickup_id)
                if earlier is not None:
                    return await self._duplicate(session, claim, sha, size, earlier)
                readable, signed = await self._decrypt(claim, local, plain)
                if not claim.marked and manifest_count is None:
                    reason = await asyncio.to_thread(cut_off, readable, self._cfg.layout)
                    if reason is not None:
                        raise _FileRefused(
                            f"{claim.name} was taken without a done marker or manifest, and "
                            f"{reason}; send it again complete, with a marker"
                        )
            except _FileRefused as exc:
                await self._refuse(session, claim, sha, size, str(exc))
                return "failed"
            stored = store.StoredFile(
                claim.pickup_id,
                self._agency.id,
                claim.name,
                claim.kind,
                local,
                readable,
                sha,
                size,
                signed,
                manifest_count,
            )
            committed = await store.commit_file(
                self._db, stored, self._cfg.layout, now=self._now(), arrival=self._arrival
            )
            if committed is None:
                earlier = await store.earlier_copy(self._db, self._agency.id, sha, claim.pickup_id)
                if earlier is None:
                    return "retry"  # left claimed; the claim expires and it is taken again
                return await self._duplicate(session, claim, sha, size, earlier)
            state, tally = committed
            if tally.error_count:
                log.warning(
                    "%s: %s: %d of %d row(s) refused; first: %s",
                    self._agency.id,
                    claim.name,
                    tally.error_count,
                    tally.rows_total,
                    tally.errors[0] if tally.errors else "-",
                )
            await self._move_out(session, claim.pickup_id, claim.name, claim.path, state, None)
            return state
        finally:
            for path in (local, plain):
                path.unlink(missing_ok=True)

    async def _check_manifest(
        self, session: RemoteSession, claim: _Claim, sha: str, size: int
    ) -> int | None:
        manifest = remote_path(self._cfg.folders.results, base_of(claim.name) + MANIFEST_SUFFIX)
        if await session.stat(manifest) is None:
            return None
        try:
            entries = read_manifest(await session.read_bytes(manifest, limit=MAX_MANIFEST_BYTES))
        except ManifestInvalid as exc:
            raise _FileRefused(f"{manifest}: {exc}") from None
        entry = entries.get(claim.name)
        if entry is None:
            raise _FileRefused(f"the manifest {manifest} does not list {claim.name}")
        if entry.bytes is not None and entry.bytes != size:
            raise _FileRefused(f"{claim.name} has {size} bytes, the manifest says {entry.bytes}")
        if entry.sha256 is not None and entry.sha256 != sha:
            raise _FileRefused(
                f"{claim.name} has sha256 {sha}, the manifest says {entry.sha256} "
                "(damaged or incomplete transfer)"
            )
        return entry.record_count

    async def _decrypt(self, claim: _Claim, local: Path, plain: Path) -> tuple[Path, bool]:
        cfg = self._cfg.pgp
        if not claim.name.endswith(".pgp"):
            if cfg is not None and cfg.decrypt_results:
                raise _FileRefused(
                    f"{claim.name} is not encrypted (*.pgp); the agency must encrypt"
                )
            return local, False
        pgp = await self._pgp()
        if pgp is None or cfg is None or not cfg.decrypt_results:
            raise _FileRefused(f"{claim.name} is encrypted, but sftp.pgp.decrypt_results is off")
        signer = cfg.recipient_fingerprint if cfg.require_result_signature else None
        try:
            result = await pgp.decrypt_file(local, plain, require_signer=signer)
        except PgpError as exc:
            raise _FileRefused(str(exc)) from None
        return plain, result.signer_fingerprint is not None

    async def _duplicate(
        self, session: RemoteSession, claim: _Claim, sha: str, size: int, first: store.Earlier
    ) -> str:
        if first.name == claim.name and first.state != "failed":
            # Our own commit before a crash: only the move was left to do.
            await store.delete(self._db, claim.pickup_id)
            await self._move_out(
                session, first.pickup_id, claim.name, claim.path, first.state, None
            )
            return first.state
        reason = (
            f"{claim.name} has the same content (sha256 {sha}) as {first.name}, picked up "
            f"before as pickup {first.pickup_id}; it was recorded and skipped"
        )
        await store.finish(
            self._db,
            claim.pickup_id,
            state="duplicate",
            sha256=sha,
            size=size,
            duplicate_of=first.pickup_id,
            errors=store.file_error(reason),
            finished_at=self._now(),
        )
        log.info("%s: %s", self._agency.id, reason)
        await self._move_out(session, claim.pickup_id, claim.name, claim.path, "duplicate", reason)
        return "duplicate"

    async def _refuse(
        self, session: RemoteSession, claim: _Claim, sha: str, size: int, reason: str
    ) -> None:
        await store.finish(
            self._db,
            claim.pickup_id,
            state="failed",
            sha256=sha,
            size=size,
            errors=store.file_error(reason),
            finished_at=self._now(),
        )
        log.warning("%s: %s refused: %s", self._agency.id, claim.name, reason)
        await self._move_out(session, claim.pickup_id, claim.name, claim.path, "failed", reason)

    async def _move_out(
        self,
        session: RemoteSession,
        pickup_id: int,
        name: str,
        path: str,
        state: str,
        reason: str | None,
    ) -> None:
        """Archive (done, partial) or move to error/ with a reason file, with companions."""
        folders = self._cfg.folders
        if state in ("done", "partial"):
            folder = dated_folder(folders.archive, self._now().date())
        else:
            folder = folders.error
            if reason is None:
                reason = await store.refusal_reason(self._db, pickup_id)
        await session.makedirs(folder)
        final = await self._move(session, path, folder, name, pickup_id)
        base = base_of(name)
        companions = (
            base + MANIFEST_SUFFIX,
            base + self._cfg.naming.done_suffix,
            name + CHECKSUM_SUFFIX,
            base + CHECKSUM_SUFFIX,
        )
        for companion in dict.fromkeys(companions):
            source = remote_path(folders.results, companion)
            if await session.stat(source) is not None:
                await self._move(session, source, folder, companion, pickup_id)
        if reason is not None:
            note = (
                f"{name}: {reason}\n"
                f"agency-gateway pickup {pickup_id}, {self._now():%Y-%m-%dT%H:%M:%SZ}\n"
            ).encode()
            await session.create_exclusive(
                remote_path(folder, f"{final.rpartition('/')[2]}.reason.txt"), note
            )
        await store.finish(self._db, pickup_id, final_path=final)

    async def _move(
        self, session: RemoteSession, source: str, folder: str, name: str, pickup_id: int
    ) -> str:
        """Rename into ``folder`` without overwriting: a name taken there gets a suffix."""
        for candidate in (name, f"{name}.{pickup_id}", f"{name}.{pickup_id}.{int(self._clock())}"):
            target = remote_path(folder, candidate)
            try:
                await session.rename(source, target)
                return target
            except FileExistsError:
                continue
        raise FileExistsError(remote_path(folder, name))


__all__ = ["ResultPickup"]
