"""Debtors' personal data in the console: masked by default, revealed only to allowed roles,
and every reveal audited (a ``pii_reveals`` row and a ``pii_reveal`` evidence leaf naming
the case, the fields and who asked why; never the values).

Masking is pure: enough stays visible to tell two debtors apart on a call with an agency
(surname, the ends of an id or phone number, the start of an address), not enough to use.
"""

from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.errors import NotFound
from gateway.evidence.log import LeafInput, append_leaves_sequenced
from gateway.privacy.pii import PiiKeyRing
from gateway.store.console_tables import PiiReveal
from gateway.store.database import Database
from gateway.store.tables import Case

CASES = Case.__table__  # type: ignore[attr-defined]
REVEALS = PiiReveal.__table__  # type: ignore[attr-defined]

PII_FIELDS: Final = ("name", "national_id", "phones", "address")


def _keep_ends(value: str, head: int, tail: int) -> str:
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def mask_name(name: str) -> str:
    """张三 → 张*; Jane Doe → J*** D**."""
    if " " in name.strip():
        return " ".join(part[:1] + "*" * (len(part) - 1) for part in name.split())
    return name[:1] + "*" * max(len(name) - 1, 1)


def mask_national_id(value: str) -> str:
    return _keep_ends(value, 3, 4)


def mask_phone(value: str) -> str:
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 7:
        return "*" * len(value)
    return "".join(digits[:3]) + "****" + "".join(digits[-4:])


def mask_address(value: str) -> str:
    return value[:6] + "…" if len(value) > 6 else "*" * len(value)


def masked(record: dict[str, object]) -> dict[str, object]:
    """The personal fields of a decrypted case record, masked."""
    out: dict[str, object] = {}
    name = record.get("name")
    national_id = record.get("national_id")
    phones = record.get("phones")
    address = record.get("address")
    out["name"] = mask_name(name) if isinstance(name, str) and name else None
    out["national_id"] = (
        mask_national_id(national_id) if isinstance(national_id, str) and national_id else None
    )
    out["phones"] = [mask_phone(str(p)) for p in phones] if isinstance(phones, list | tuple) else []
    out["address"] = mask_address(address) if isinstance(address, str) and address else None
    return out


def personal(record: dict[str, object]) -> dict[str, object]:
    """The personal fields of a decrypted case record, in the clear (for a reveal)."""
    phones = record.get("phones")
    return {
        "name": record.get("name"),
        "national_id": record.get("national_id"),
        "phones": list(phones) if isinstance(phones, list | tuple) else [],
        "address": record.get("address"),
    }


async def masked_case_pii(db: Database, pii: PiiKeyRing, case_id: str) -> dict[str, object]:
    """The case's personal data, masked; raises NotFound for an unknown case."""
    async with db.snapshot() as conn:
        blob = (await conn.execute(sa.select(CASES.c.pii).where(CASES.c.id == case_id))).scalar()
    if blob is None:
        raise NotFound(f"case {case_id} does not exist")
    return masked(pii.decrypt(blob, bound_to=case_id))


async def reveal(
    db: Database,
    pii: PiiKeyRing,
    case_id: str,
    *,
    user_name: str,
    reason: str,
    remote: str,
    now: datetime,
) -> dict[str, object]:
    """Decrypt the case's personal data and audit the reveal in the same transaction.

    The caller has checked that the user's role may see personal data.
    """
    async with db.transaction() as conn:
        blob = (await conn.execute(sa.select(CASES.c.pii).where(CASES.c.id == case_id))).scalar()
        if blob is None:
            raise NotFound(f"case {case_id} does not exist")
        clear = personal(pii.decrypt(blob, bound_to=case_id))
        fields = ",".join(name for name in PII_FIELDS if clear.get(name))
        await audit_reveal(
            conn, case_id, fields, user_name=user_name, reason=reason, remote=remote, now=now
        )
    return clear


async def audit_reveal(
    conn: AsyncConnection,
    case_id: str,
    fields: str,
    *,
    user_name: str,
    reason: str,
    remote: str,
    now: datetime,
) -> int:
    """Record that ``user_name`` saw ``fields`` of the case (a ``pii_reveals`` row and its
    ``pii_reveal`` leaf), in the caller's transaction; the leaf's seq."""
    reveal_id = (
        await conn.execute(
            REVEALS.insert().returning(REVEALS.c.id),
            [
                {
                    "user_name": user_name,
                    "case_id": case_id,
                    "fields": fields,
                    "reason": reason[:500],
                    "remote": remote[:64],
                    "evidence_seq": -1,
                    "created_at": now,
                }
            ],
        )
    ).scalar_one()
    [seq] = await append_leaves_sequenced(
        conn,
        [
            LeafInput(
                kind="pii_reveal",
                ref=f"case:{case_id}",
                fields={
                    "reveal_id": reveal_id,
                    "user": user_name,
                    "fields": fields,
                    "reason": reason[:500],
                    "at": now.isoformat(),
                },
            )
        ],
        now=now,
    )
    await conn.execute(REVEALS.update().where(REVEALS.c.id == reveal_id).values(evidence_seq=seq))
    return int(seq)


async def recent_reveals(db: Database, *, limit: int = 200) -> list[dict[str, object]]:
    """The latest reveals, newest first (admin audit page)."""
    async with db.snapshot() as conn:
        rows = await conn.execute(sa.select(REVEALS).order_by(REVEALS.c.id.desc()).limit(limit))
        return [dict(r) for r in rows.mappings()]


__all__ = [
    "PII_FIELDS",
    "audit_reveal",
    "mask_address",
    "mask_name",
    "mask_national_id",
    "mask_phone",
    "masked",
    "masked_case_pii",
    "personal",
    "recent_reveals",
    "reveal",
]
