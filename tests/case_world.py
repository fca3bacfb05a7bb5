"""A gateway for the case lifecycle tests: a real config and keys (``make_config``), the
composition root's services on the given database, intake files written row by row (with the
optional ``holds`` column), allocation, signed agency events through the real inbound service,
and the queries the tests assert on (statuses, holds, history, packets, leaves)."""

import csv
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from gateway.bootstrap import Gateway, build
from gateway.clock import ManualClock, to_datetime
from gateway.config.agencies import WebhookAgency
from gateway.dispatch.outbox import open_payload
from gateway.intake.reader import FIELDS, OPTIONAL_FIELDS
from gateway.intake.service import IntakeReport, import_file
from gateway.keys import sandbox_keys
from gateway.signing import sign
from gateway.store.case_tables import CaseHistory, CaseHold
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.tables import Case, EvidenceLeaf, OutboxItem, Placement

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AGENCY = "AGY_ONE"

CASES = Case.__table__  # type: ignore[attr-defined]
PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
HOLDS = CaseHold.__table__  # type: ignore[attr-defined]
HISTORY = CaseHistory.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]


def account(n: int, **overrides: object) -> dict[str, object]:
    """A valid intake row for account ``ACC-n`` (overdue, one debtor each)."""
    row: dict[str, object] = {
        "account_id": f"ACC-{n:04d}",
        "debtor_id": f"DEB-{n:04d}",
        "name": f"Debtor {n}",
        "national_id": f"1101011990010{n:05d}",
        "phones": f"+86138{n:08d}",
        "address": f"{n} Example Road",
        "region": "CN-31",
        "product": "CASH_LOAN",
        "currency": "CNY",
        "principal_minor": 1_000_000,
        "balance_minor": 500_000 + n,
        "dpd": 40,
        "credit_grade": "B",
        "due_date": (START.date() - timedelta(days=40)).isoformat(),
    }
    row.update(overrides)
    return row


def write_intake(path: Path, rows: list[dict[str, object]], *, holds: bool = True) -> Path:
    """A CSV intake file; with ``holds`` the optional column is written (empty when absent),
    and so is every other optional column that some row gives."""
    extra = [f for f in OPTIONAL_FIELDS if f != "holds" and any(f in row for row in rows)]
    columns = [*FIELDS, *extra, "holds"] if holds else [*FIELDS, *extra]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
    return path


@dataclass
class CaseWorld:
    gateway: Gateway
    clock: ManualClock
    tmp_path: Path
    _files: int = 0
    _events: int = 0

    @property
    def db(self) -> Database:
        return self.gateway.db

    async def intake(
        self,
        rows: list[dict[str, object]],
        *,
        holds: bool = True,
        confirmation: Literal["four_eyes", "off"] = "off",
        maker: str = "system",
    ) -> IntakeReport:
        """Import ``rows``; confirmation is "off" unless a test is about claim confirmation."""
        self._files += 1
        path = write_intake(self.tmp_path / f"day{self._files}.csv", rows, holds=holds)
        return await import_file(
            path,
            db=self.gateway.db,
            pii=self.gateway.pii,
            placements=self.gateway.placements,
            allocation=self.gateway.settings.allocation,
            clock=self.clock,
            confirmation=confirmation,
            maker=maker,
        )

    async def allocate(self) -> int:
        return (await self.gateway.placements.allocate()).placed

    async def post(self, event_type: str, data: dict[str, Any]) -> int:
        """Sign one event as the agency and receive it through the real inbound service."""
        agency = self.gateway.agencies[AGENCY]
        assert isinstance(agency, WebhookAgency)
        _verify, signing = sandbox_keys(agency, self.gateway.settings.base_dir)
        now = to_datetime(self.clock.now())
        body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data}).encode()
        self._events += 1
        msg_id = f"evt_{self._events}_" + hashlib.sha256(body).hexdigest()[:16]
        ts = int(self.clock.now())
        headers = [
            ("content-type", "application/json"),
            ("webhook-id", msg_id),
            ("webhook-timestamp", str(ts)),
            ("webhook-signature", sign(msg_id, ts, body, signing)),
        ]
        answer = await self.gateway.inbound.receive(AGENCY, headers, body)
        return answer.status

    async def rows(self, stmt: sa.Select[Any]) -> list[dict[str, Any]]:
        async with self.db.connect() as conn:
            return [dict(r) for r in (await conn.execute(stmt)).mappings().all()]

    async def status(self, case_id: str) -> str:
        [row] = await self.rows(sa.select(CASES.c.status).where(CASES.c.id == case_id))
        return str(row["status"])

    async def statuses(self) -> dict[str, str]:
        return {
            r["id"]: r["status"] for r in await self.rows(sa.select(CASES.c.id, CASES.c.status))
        }

    async def holds(self, case_id: str, *, standing: bool = True) -> list[dict[str, Any]]:
        stmt = sa.select(HOLDS).where(HOLDS.c.case_id == case_id).order_by(HOLDS.c.id)
        if standing:
            stmt = stmt.where(HOLDS.c.released_at.is_(None))
        return await self.rows(stmt)

    async def history(self, case_id: str) -> list[dict[str, Any]]:
        return await self.rows(
            sa.select(HISTORY).where(HISTORY.c.case_id == case_id).order_by(HISTORY.c.id)
        )

    async def placements(self, case_id: str | None = None) -> list[dict[str, Any]]:
        stmt = sa.select(PLACEMENTS).order_by(PLACEMENTS.c.id)
        if case_id is not None:
            stmt = stmt.where(PLACEMENTS.c.case_id == case_id)
        return await self.rows(stmt)

    async def packets(self, packet_type: str) -> list[dict[str, Any]]:
        """The queued packets of ``packet_type``, opened: their JSON bodies."""
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(OUTBOX.c.dedupe_key, OUTBOX.c.payload)
                    .where(OUTBOX.c.packet_type == packet_type)
                    .order_by(OUTBOX.c.id)
                )
            ).all()
            bodies = [open_payload(conn, key, payload) for key, payload in rows]
        return [json.loads(b) for b in bodies if b is not None]

    async def leaves(self, kind: str, ref: str) -> list[dict[str, Any]]:
        rows = await self.rows(
            sa.select(LEAVES.c.body)
            .where(LEAVES.c.kind == kind, LEAVES.c.ref == ref)
            .order_by(LEAVES.c.seq)
        )
        return [json.loads(r["body"]) for r in rows]


async def build_case_world(
    make_config: Any,
    tmp_path: Path,
    database_url: str,
    *,
    settlement: Mapping[str, object] | None = None,
) -> CaseWorld:
    """One webhook agency taking every bucket (its ``[settlement]`` as given); the caller
    closes ``world.gateway``."""
    spec: dict[str, object] = {"scheme": "v1", "url": "http://127.0.0.1:9/hooks"}
    if settlement is not None:
        spec["settlement"] = dict(settlement)
    _config, settings, agencies = make_config(database_url=database_url, agencies={AGENCY: spec})
    clock = ManualClock(START.timestamp())
    gateway = build(settings, agencies, clock=clock)
    await upgrade(gateway.db)
    await gateway.inbound.start()
    return CaseWorld(gateway, clock, tmp_path)


__all__ = ["AGENCY", "START", "CaseWorld", "account", "build_case_world", "write_intake"]
