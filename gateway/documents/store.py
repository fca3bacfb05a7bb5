"""The lender's document store: the files of each case, read safely and streamed.

Theory of operation
-------------------
The store is laid out ``<store>/<case_id>/<file>``. A case's folder may hold a
``documents.json`` that names each file's kind and reference (a notarisation certificate
number, or an electronic preservation (存证) platform and deposit id)::

    {"contract.pdf": {"kind": "loan_contract"},
     "notary.pdf": {"kind": "notarisation", "reference": "(2026)京长安内经证字第123号"},
     "deposit.pdf": {"kind": "preservation", "platform": "BaoQuan", "reference": "BQ-77"}}

Without it, or for a file it does not name, the kind is guessed from the file's name
(gateway.documents.kinds). Only regular files directly in the case's folder are documents;
``documents.json`` itself, hidden files and sub-folders are not.

Nothing outside the store is ever read: a case id that is not a plain folder name, a
symbolic link (the case's folder or a file in it) and a path that resolves outside the store
are refused with DocumentError. Files are opened without following links (``O_NOFOLLOW``).

``DocumentStore`` is the port; ``FolderStore`` (a local or mounted folder) is its one
implementation. An object-store backend implements the same three methods. Every method is
blocking: callers run them in a worker thread.
"""

import hashlib
import json
import logging
import mimetypes
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from gateway.documents.kinds import KINDS, guess_kind
from gateway.errors import DocumentError

log = logging.getLogger(__name__)

MANIFEST = "documents.json"
CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreFile:
    """One file of a case in the store, with what its manifest (or its name) says."""

    case_id: str
    name: str
    source: str
    """The path inside the store (``<case_id>/<name>``), as recorded in ``case_documents``."""
    size: int
    kind: str
    media_type: str
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """A file the store would not read, and why (it is skipped, and the skip is reported)."""

    case_id: str
    name: str
    reason: str


class DocumentStore(Protocol):
    """Where the lender keeps each case's documents (blocking: call from a worker thread)."""

    def case_ids(self) -> set[str]:
        """The cases that have documents in the store (a listing, no file is read)."""
        ...

    def case_files(self, case_id: str) -> tuple[list[StoreFile], list[Refused]]:
        """The case's documents (none when it has no folder) and the files refused."""
        ...

    def open(self, source: str) -> BinaryIO:
        """The file at ``source`` (a ``StoreFile.source``) opened for binary reading;
        DocumentError when it is missing, unsafe or unreadable."""
        ...

    def describe(self, source: str) -> str:
        """Where ``source`` is, for messages (never its content)."""
        ...


def _plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def media_type_of(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


class FolderStore:
    """A folder of case folders (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _case_dir(self, case_id: str) -> Path | None:
        if not _plain_name(case_id) or case_id.startswith("."):
            raise DocumentError(
                f"case {case_id!r}: not usable as a folder name in the document store "
                f"{self.root}; documents are kept under <store>/<case id>/"
            )
        path = self.root / case_id
        try:
            info = path.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DocumentError(f"{path}: cannot read the case's folder: {exc.strerror}") from None
        if stat.S_ISLNK(info.st_mode):
            raise DocumentError(
                f"{path}: case {case_id}'s folder is a symbolic link; the document store "
                "must hold the files themselves"
            )
        return path if stat.S_ISDIR(info.st_mode) else None

    def _manifest(self, folder: Path, case_id: str) -> dict[str, dict[str, str]]:
        path = folder / MANIFEST
        try:
            raw = _read_small(path)
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DocumentError(f"{path}: case {case_id}'s manifest is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DocumentError(f"{path}: must be an object of file name to {{kind, reference}}")
        entries: dict[str, dict[str, str]] = {}
        for name, entry in data.items():
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise DocumentError(f"{path}: {name}: must be an object of strings")
            unknown = set(entry) - {"kind", "reference", "platform"}
            if unknown:
                raise DocumentError(
                    f"{path}: {name}: unknown key {sorted(unknown)[0]!r}; "
                    "use kind, reference and platform"
                )
            kind = entry.get("kind")
            if kind is not None and kind not in KINDS:
                raise DocumentError(
                    f"{path}: {name}: kind {kind!r} is not one of {', '.join(KINDS)}"
                )
            entries[str(name)] = entry
        return entries

    def case_ids(self) -> set[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise DocumentError(
                f"{self.root}: cannot list the document store: {exc.strerror}"
            ) from None
        # Links are listed too: case_files refuses them, and the refusal is reported.
        return {
            e.name for e in entries if not e.name.startswith(".") and (e.is_dir() or e.is_symlink())
        }

    def case_files(self, case_id: str) -> tuple[list[StoreFile], list[Refused]]:
        folder = self._case_dir(case_id)
        if folder is None:
            return [], []
        manifest = self._manifest(folder, case_id)
        files: list[StoreFile] = []
        refused: list[Refused] = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            name = entry.name
            if name == MANIFEST or name.startswith("."):
                continue
            if entry.is_symlink():
                refused.append(Refused(case_id, name, "a symbolic link"))
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            given = manifest.get(name, {})
            reference = given.get("reference")
            if reference and given.get("platform"):
                reference = f"{given['platform']}:{reference}"
            files.append(
                StoreFile(
                    case_id=case_id,
                    name=name,
                    source=f"{case_id}/{name}",
                    size=entry.stat(follow_symlinks=False).st_size,
                    kind=given.get("kind") or guess_kind(name),
                    media_type=media_type_of(name),
                    reference=reference or None,
                )
            )
        for name in sorted(set(manifest) - {f.name for f in files} - {r.name for r in refused}):
            log.warning("document store: %s/%s is named in %s but missing", case_id, name, MANIFEST)
        return files, refused

    def _path(self, source: str) -> Path:
        parts = source.split("/")
        if len(parts) != 2 or not all(_plain_name(p) for p in parts):
            raise DocumentError(
                f"{source!r} is not a path of the document store (<case id>/<file name>)"
            )
        folder = self._case_dir(parts[0])
        if folder is None:
            raise DocumentError(f"{self.root / source}: case {parts[0]}'s folder is missing")
        return folder / parts[1]

    def open(self, source: str) -> BinaryIO:
        path = self._path(source)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise DocumentError(f"{path}: the document is missing from the store") from None
        except OSError as exc:
            raise DocumentError(f"{path}: cannot open the document: {exc.strerror}") from None
        fh = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            fh.close()
            raise DocumentError(f"{path}: not a regular file")
        return fh

    def describe(self, source: str) -> str:
        return str(self.root / source)


def _read_small(path: Path, limit: int = 1024 * 1024) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise DocumentError(f"{path}: over {limit} bytes; a manifest names files, no more")
    return data


def chunks(fh: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    while block := fh.read(size):
        yield block


def hash_file(store: DocumentStore, source: str) -> tuple[int, str]:
    """The size and SHA-256 of a store file, streamed (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with store.open(source) as fh:
        for block in chunks(fh):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


__all__ = [
    "MANIFEST",
    "DocumentStore",
    "FolderStore",
    "Refused",
    "StoreFile",
    "chunks",
    "hash_file",
    "media_type_of",
]
