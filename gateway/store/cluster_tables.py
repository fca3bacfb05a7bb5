"""Tables of many ``serve`` processes on one database (gateway.cluster, gateway.evidence).

SQLModel needs runtime annotations here: no `from __future__ import annotations`.

* ``evidence_staged``: leaves written by a transaction on PostgreSQL without the log's lock;
  the sequencer moves them, committed, into ``evidence_leaves`` and numbers them there.
* ``cluster_leases``: one row per role held by one process at a time (the schedulers, the
  evidence sequencer, an allocation round): the holder, until when, and a fencing token that
  grows at every change of holder.
* ``cluster_runs``: every run of a scheduled job by a lease holder, with the token it ran
  under, its start and its end (null while running, or when its process died).
"""

# No `from __future__ import annotations` here: SQLModel needs runtime annotations.
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def _ts(nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(UtcDateTime(), nullable=nullable)


class EvidenceStaged(SQLModel, table=True):
    """A leaf waiting for the sequencer; ``id`` only orders the waiting leaves."""

    __tablename__ = "evidence_staged"

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    kind: str = Field(max_length=32)
    ref: str = Field(max_length=160)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=sa.Column(sa.LargeBinary(32), nullable=False))
    created_at: datetime = Field(sa_column=_ts())


class ClusterLease(SQLModel, table=True):
    """Who holds the role ``name`` until ``expires_at``; ``token`` fences a former holder."""

    __tablename__ = "cluster_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    token: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    acquired_at: datetime = Field(sa_column=_ts())
    expires_at: datetime = Field(sa_column=_ts())


class ClusterRun(SQLModel, table=True):
    """One run of the scheduled job ``job`` by ``holder`` under lease ``token``."""

    __tablename__ = "cluster_runs"
    __table_args__ = (sa.Index("ix_cluster_runs_job", "job", "started_at"),)

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    )
    job: str = Field(max_length=64)
    holder: str = Field(max_length=128)
    token: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    started_at: datetime = Field(sa_column=_ts())
    finished_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    failed: bool = False


__all__ = ["ClusterLease", "ClusterRun", "EvidenceStaged"]
