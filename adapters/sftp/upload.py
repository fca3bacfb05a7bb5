"""Batch upload: one spooled file batch onto the agency's server, never overwriting a file.

Theory of operation
-------------------
``BatchUpload.deliver()`` takes a batch whose rows are all in the spool (adapters.sftp.spool;
staged or re-rendered by adapters.sftp.drop):

1. It finishes the data file (trailer), encrypts it when the agency wants OpenPGP, hashes
   it, copies the documents its packets list into the spool (adapters.sftp.documents) and
   encrypts and hashes them the same way, renders the manifest and done marker, and records
   every file's path, size and SHA-256 (``staged``; documents as roles ``doc:1``, ``doc:2``,
   ...) before a byte leaves. A document that cannot be sent (changed since it was
   recorded, missing from its pack) fails the batch (permanent error; a resend gets a new
   sequence number).
2. Data file, documents (in their folder ``<base>.documents/<placement>/``, created as
   needed), checksum sidecar and manifest are uploaded under temporary names,
   size-checked and renamed, the done marker last (the same way, so a crash never leaves a
   partial marker). A final name that already exists is never overwritten: its SHA-256 is
   compared, equal means it arrived before a crash (``present``), different is a conflict
   (the batch is marked ``conflict``; permanent error).
3. The batch is ``delivered``, with one evidence leaf per file.

Encrypted bytes differ on every run, so when a resumed batch is re-rendered the recorded
hash is replaced only while the final name does not exist on the server; once it exists,
the recorded hash is what it must match (data file and documents alike).
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from adapters.sftp import batch_store as store
from adapters.sftp.batches import ManifestDocument, document_path, remote_path, temp_path
from adapters.sftp.documents import copy_document, find_documents, find_statement_files
from adapters.sftp.pgp import Pgp, PgpError
from adapters.sftp.spool import LocalFile, SpoolBatch, companion_files, hash_file
from gateway.config.agencies import SftpAgency
from gateway.crashpoints import crash_point
from gateway.documents.pack import PackDocument
from gateway.errors import DocumentError, PermanentDeliveryError, TransientDeliveryError
from gateway.evidence.log import LeafInput, append_leaves
from gateway.ports import DocumentSource, NoDocumentStore, RemoteSession
from gateway.store.database import Database

PgpProvider = Callable[[], Awaitable[Pgp | None]]


class _Source(NamedTuple):
    """A document to send: a placement pack's, or a settlement statement's (``placement_id``
    ``statement:<id>``, in the folder ``statement-<id>``)."""

    placement_id: str
    folder: str
    document_id: int
    kind: str
    name: str
    media_type: str
    size: int
    sha256: str
    reference: str | None


class BatchUpload:
    """Puts spooled batches of one SFTP agency on its server (see module docstring).

    Args:
        db: the database (batch records, evidence).
        agency: the agency's config (naming, folders, OpenPGP).
        pgp: returns the agency's OpenPGP keys, or None when files go unencrypted.
        now: the current time (UTC).
        documents: the lender's document store (the packs' store documents); None when
            none is configured.
    """

    def __init__(
        self,
        *,
        db: Database,
        agency: SftpAgency,
        pgp: PgpProvider,
        now: Callable[[], datetime],
        documents: DocumentSource | None = None,
    ) -> None:
        self._db = db
        self._agency = agency
        self._cfg = agency.sftp
        self._pgp = pgp
        self._now = now
        self._store: DocumentSource = documents if documents is not None else NoDocumentStore()

    async def deliver(
        self,
        batch: SpoolBatch,
        recorded: dict[str, store.RemoteFileRow],
        connected: Callable[[], Awaitable[RemoteSession]],
        *,
        resend_of: list[str],
    ) -> dict[str, store.RemoteFileRow]:
        """Finish, record and upload the batch; return its recorded files.

        ``recorded`` are the files a previous attempt recorded (empty for a new batch);
        ``resend_of`` names the batches this one resends.
        """
        files = await self._finish(batch, recorded, connected, resend_of)
        session = await connected()
        states: dict[str, str] = {}
        folders: set[str] = set()
        for local in files:
            folder = local.staged.remote_path.rpartition("/")[0]
            if local.staged.role.startswith("doc:") and folder not in folders:
                await session.makedirs(folder)
                folders.add(folder)
            crash_point("sftp.before_upload")
            state, remote_sha = await self._put(session, local)
            crash_point("sftp.after_rename")
            if state == "conflict":
                error = self._conflict(local.staged, remote_sha)
                async with self._db.transaction() as conn:
                    await store.set_state(
                        conn, batch.id, "conflict", now=self._now(), error=str(error)[:2000]
                    )
                raise error
            states[local.staged.role] = state
        now = self._now()
        async with self._db.transaction() as conn:
            rows = await store.remote_files(conn, batch.id)
            await store.mark_files(conn, {rows[r].id: s for r, s in states.items()}, now=now)
            await store.set_state(conn, batch.id, "delivered", now=now)
            await append_leaves(
                conn,
                [
                    LeafInput(
                        kind="remote_file",
                        ref=f"remote_file:{rows[role].id}",
                        fields={
                            "agency_id": self._agency.id,
                            "batch": batch.names.base,
                            "role": role,
                            "remote_path": rows[role].remote_path,
                            "size": rows[role].size,
                            "sha256": rows[role].sha256,
                            "plaintext_sha256": rows[role].plaintext_sha256,
                            "record_count": rows[role].record_count,
                            "recipient_fpr": rows[role].recipient_fpr,
                            "outcome": state,
                        },
                    )
                    for role, state in states.items()
                ],
                now=now,
            )
            return await store.remote_files(conn, batch.id)

    async def _finish(
        self,
        batch: SpoolBatch,
        recorded: dict[str, store.RemoteFileRow],
        connected: Callable[[], Awaitable[RemoteSession]],
        resend_of: list[str],
    ) -> list[LocalFile]:
        """Close the data file, encrypt, build manifest and marker, record them (staged)."""
        plain_sha = await asyncio.to_thread(batch.close)
        data_local = batch.plain_path
        fpr: str | None = None
        wants_pgp = self._cfg.pgp is not None and self._cfg.pgp.encrypt
        pgp = await self._pgp() if wants_pgp else None
        if pgp is not None:
            data_local = batch.folder / batch.names.data
            try:
                await pgp.encrypt_file(
                    batch.plain_path,
                    data_local,
                    filename=batch.plain_path.name,
                    sign=self._cfg.pgp is not None and self._cfg.pgp.sign,
                )
            except PgpError as exc:
                raise PermanentDeliveryError(
                    f"{self._agency.id}: {exc}", agency_id=self._agency.id
                ) from exc
            fpr = pgp.recipient_fingerprint
        if pgp is None:  # the spool hashed and counted the plaintext as it was written
            data_sha, data_size = plain_sha, batch.size
        else:
            data_sha, data_size = await asyncio.to_thread(hash_file, data_local)
        data_path = remote_path(self._cfg.folders.inbox, batch.names.data)
        data = store.StagedFile("data", data_path, data_size, data_sha, plain_sha, batch.rows, fpr)
        data_file = await self._bound(LocalFile(data, data_local), recorded, connected)
        data = data_file.staged
        documents, listed = await self._documents(batch, recorded, connected, pgp)
        files = [data_file, *documents]
        files += await asyncio.to_thread(
            companion_files,
            batch,
            data,
            section=self._cfg,
            receiver=self._agency.id,
            resend_of=resend_of,
            documents=listed,
        )
        async with self._db.transaction() as conn:
            await store.stage(
                conn,
                batch_id=batch.id,
                agency_id=self._agency.id,
                record_count=batch.records,
                totals=batch.writer.totals.amounts,
                files=[f.staged for f in files],
                resend_of=resend_of,
                now=self._now(),
            )
        return files

    async def _bound(
        self,
        local: LocalFile,
        recorded: dict[str, store.RemoteFileRow],
        connected: Callable[[], Awaitable[RemoteSession]],
    ) -> LocalFile:
        """``local``, or the recorded rendering of its role when that differs (re-encrypted)
        and already reached the server: the old bytes bind once they are there."""
        staged = local.staged
        old = recorded.get(staged.role)
        if old is None or old.sha256 == staged.sha256 or old.remote_path != staged.remote_path:
            return local
        if await (await connected()).stat(staged.remote_path) is None:
            return local
        return LocalFile(
            store.StagedFile(
                staged.role,
                staged.remote_path,
                old.size,
                old.sha256,
                old.plaintext_sha256,
                old.record_count,
                old.recipient_fpr,
            ),
            None,
        )

    async def _documents(
        self,
        batch: SpoolBatch,
        recorded: dict[str, store.RemoteFileRow],
        connected: Callable[[], Awaitable[RemoteSession]],
        pgp: Pgp | None,
    ) -> tuple[list[LocalFile], list[ManifestDocument]]:
        """Copy, encrypt and hash the documents the batch's packets list; their files and
        manifest entries, in order."""
        if not batch.documents:
            return [], []
        files: list[LocalFile] = []
        listed: list[ManifestDocument] = []
        per_placement: dict[str, int] = {}
        pack_refs = [r for r in batch.documents if r.statement_id is None]
        statement_refs = [r for r in batch.documents if r.statement_id is not None]
        try:
            async with self._db.snapshot() as conn:
                found = await find_documents(conn, pack_refs) if pack_refs else []
                entries: list[tuple[_Source, Callable[[Path], Awaitable[None]]]] = []
                for placement_id, doc in found:

                    async def copy(target: Path, doc: PackDocument = doc) -> None:
                        await copy_document(conn, doc, target, store=self._store)

                    source = _Source(
                        placement_id,
                        placement_id,
                        doc.id,
                        doc.kind,
                        doc.name,
                        doc.media_type,
                        doc.size,
                        doc.sha256,
                        doc.reference,
                    )
                    entries.append((source, copy))
                for sf in await find_statement_files(conn, self._agency.id, statement_refs):

                    async def write(target: Path, body: bytes = sf.body) -> None:
                        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
                        await asyncio.to_thread(target.write_bytes, body)

                    source = _Source(
                        f"statement:{sf.statement_id}",
                        f"statement-{sf.statement_id}",
                        sf.document_id,
                        sf.kind,
                        sf.name,
                        sf.media_type,
                        len(sf.body),
                        sf.sha256,
                        None,
                    )
                    entries.append((source, write))
                for n, (src, put) in enumerate(entries, 1):
                    ordinal = per_placement[src.folder] = per_placement.get(src.folder, 0) + 1
                    path = document_path(
                        batch.names.base,
                        src.folder,
                        ordinal,
                        src.kind,
                        src.name,
                        encrypted=pgp is not None,
                    )
                    plain = batch.folder / path.removesuffix(".pgp")
                    await put(plain)
                    local, fpr = plain, None
                    if pgp is not None:
                        local = batch.folder / path
                        await pgp.encrypt_file(
                            plain,
                            local,
                            filename=plain.name,
                            sign=self._cfg.pgp is not None and self._cfg.pgp.sign,
                        )
                        fpr = pgp.recipient_fingerprint
                    sha, size = await asyncio.to_thread(hash_file, local)
                    staged = store.StagedFile(
                        f"doc:{n}",
                        remote_path(self._cfg.folders.inbox, path),
                        size,
                        sha,
                        src.sha256,
                        None,
                        fpr,
                    )
                    file = await self._bound(LocalFile(staged, local), recorded, connected)
                    files.append(file)
                    listed.append(
                        ManifestDocument(
                            placement_id=src.placement_id,
                            document_id=src.document_id,
                            kind=src.kind,
                            name=src.name,
                            media_type=src.media_type,
                            path=path,
                            size=src.size,
                            plaintext_sha256=src.sha256,
                            bytes=file.staged.size,
                            sha256=file.staged.sha256,
                            reference=src.reference,
                            encryption="openpgp" if fpr else None,
                            recipient_fpr=fpr,
                        )
                    )
        except (DocumentError, PgpError) as exc:
            error = PermanentDeliveryError(
                f"{self._agency.id}: batch {batch.names.base}: {exc}",
                agency_id=self._agency.id,
            )
            async with self._db.transaction() as conn:
                await store.set_state(
                    conn, batch.id, "failed", now=self._now(), error=str(error)[:2000]
                )
            raise error from exc
        return files, listed

    async def _put(self, session: RemoteSession, local: LocalFile) -> tuple[str, str]:
        """Upload one file without ever overwriting: (``uploaded``, ``present`` or
        ``conflict``, the SHA-256 found on the server)."""
        staged = local.staged
        # The done marker goes up like the others (temporary name, rename): written in
        # place, a crash could leave a partial marker under its final name.
        if local.path is not None and await session.upload(
            local.path,
            staged.remote_path,
            temp_path=temp_path(self._cfg.naming, staged.remote_path),
        ):
            return "uploaded", staged.sha256
        if await session.stat(staged.remote_path) is None:
            raise TransientDeliveryError(
                f"{self._agency.id}: {staged.remote_path} vanished while we compared it",
                agency_id=self._agency.id,
            )
        remote_sha = await session.sha256(staged.remote_path)
        return ("present" if remote_sha == staged.sha256 else "conflict"), remote_sha

    def _conflict(self, staged: store.StagedFile, remote_sha: str) -> PermanentDeliveryError:
        return PermanentDeliveryError(
            f"{self._agency.id}: {staged.remote_path} already exists on the server with other "
            f"content (sha256 {remote_sha[:16]}…, ours {staged.sha256[:16]}…); it was not "
            "overwritten. Check with the agency, then resend: the new batch names this one "
            "in resend_of",
            agency_id=self._agency.id,
        )


__all__ = ["BatchUpload", "PgpProvider"]
