"""Tables of the SFTP channel (file batches, sequences, remote files, result-file pickups).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``file_sequences``: the last sequence number per (agency, file type, business date); it only
  ever grows, so a number is never reused, even when its batch failed.
* ``file_batches`` / ``file_batch_items``: which outbox items a batch carries, and at which
  line; written before any byte leaves, so a crashed upload resumes with the same names.
* ``remote_files``: every file of a batch with its remote path, size and SHA-256.
* ``file_pickups``: every result file seen in an agency's results folder: sightings for the
  readiness test, then the claim, the content hash (dedupe), row counts and row errors.
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class FileSequence(SQLModel, table=True):
    """Last sequence number used per (agency, file type, UTC business date)."""

    __tablename__ = "file_sequences"

    agency_id: str = Field(primary_key=True, max_length=32)
    file_type: str = Field(primary_key=True, max_length=16)
    business_date: date = Field(primary_key=True)
    last_seq: int
    updated_at: datetime = Field(sa_column=_ts())


class FileBatch(SQLModel, table=True):
    """One batch: a data file, its manifest and its done marker (see adapters/sftp/batches.py).

    state: preparing (names reserved, rows being written) → staged (file sizes and hashes
    recorded) → delivered; or conflict (a final name exists with other content) / failed.
    """

    __tablename__ = "file_batches"
    __table_args__ = (
        sa.UniqueConstraint(
            "agency_id", "file_type", "business_date", "seq", name="uq_file_batch_seq"
        ),
        sa.Index("ix_file_batches_agency_state", "agency_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    file_type: str = Field(max_length=16)
    business_date: date
    seq: int
    base_name: str = Field(unique=True, max_length=200)
    state: str = Field(max_length=16)
    record_count: int = 0
    totals: str = Field(default="{}", sa_column=sa.Column(sa.Text, nullable=False))
    resend_of: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(sa_column=_ts())
    updated_at: datetime = Field(sa_column=_ts())
    delivered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class FileBatchItem(SQLModel, table=True):
    """An outbox item carried by a batch, as record ``record_no`` on file line ``line_no``."""

    __tablename__ = "file_batch_items"
    __table_args__ = (sa.UniqueConstraint("batch_id", "record_no", name="uq_file_batch_record"),)

    batch_id: int = Field(foreign_key="file_batches.id", primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", primary_key=True, index=True)
    record_no: int
    line_no: int


class RemoteFile(SQLModel, table=True):
    """A file we put on an agency's server; ``sha256`` is of the bytes as transmitted.

    state: staged (hash known, not yet confirmed on the server) → uploaded, or present (the
    final name already held exactly these bytes: a resumed upload after a crash)."""

    __tablename__ = "remote_files"
    __table_args__ = (sa.UniqueConstraint("agency_id", "remote_path", name="uq_remote_file_path"),)

    id: int | None = Field(default=None, primary_key=True)
    batch_id: int = Field(foreign_key="file_batches.id", index=True)
    agency_id: str = Field(max_length=32)
    role: str = Field(max_length=16, description="data|manifest|done|checksum")
    remote_path: str = Field(max_length=500)
    size: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    plaintext_sha256: str | None = Field(default=None, max_length=64)
    record_count: int | None = None
    recipient_fpr: str | None = Field(default=None, max_length=40)
    state: str = Field(max_length=16)
    uploaded_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class FilePickup(SQLModel, table=True):
    """A result or statement file found in an agency's results folder.

    state: seen (waiting to be ready) → claimed (renamed into processing/) → done, partial
    (some rows refused; see ``errors``), failed (the file was refused; moved to error/) or
    duplicate (the same content arrived before, under any name)."""

    __tablename__ = "file_pickups"
    __table_args__ = (
        sa.Index("ix_file_pickups_agency_state", "agency_id", "state"),
        sa.Index("ix_file_pickups_agency_sha256", "agency_id", "sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agency_id: str = Field(max_length=32)
    remote_name: str = Field(max_length=255)
    kind: str = Field(max_length=16, description="result|statement")
    state: str = Field(max_length=16)
    size: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    mtime: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    stable_polls: int = 1
    sha256: str | None = Field(default=None, max_length=64)
    inbound_id: int | None = Field(default=None, foreign_key="inbound_messages.id")
    duplicate_of: int | None = None
    rows_total: int = 0
    rows_ok: int = 0
    rows_failed: int = 0
    errors: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    final_path: str | None = Field(default=None, max_length=500)
    claimed_by: str | None = Field(default=None, max_length=64)
    first_seen_at: datetime = Field(sa_column=_ts())
    last_seen_at: datetime = Field(sa_column=_ts())
    claimed_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


__all__ = ["FileBatch", "FileBatchItem", "FilePickup", "FileSequence", "RemoteFile"]
