"""An agency's inbound health, shown beside its outbound health on the agency page.

What came in: when the last message and the last event arrived, how many messages were
accepted and refused in the last 24 hours and 7 days, the refused ones by reason (the problem
type the gateway answered with), and per channel how the gateway fetches: for an SFTP agency
the last result file picked up and its state, for an email agency each mailbox's last poll and
the last reply read. A fixed number of queries, on indexes (``ix_inbound_agency_received``).

A refusal's reason is read from the first bytes of the stored answer: the problem document
starts with its ``type`` and ``title``, which are fixed per kind of error, so grouping by that
prefix in SQL and parsing it here counts every refusal without reading the bodies.
"""

import re
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.console.timeline import Row, rows
from gateway.store.mail_tables import MailboxState, MailReply
from gateway.store.tables import AgencyEventRow, InboundMessage
from gateway.store.transfer_tables import FilePickup

INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
PICKUPS = FilePickup.__table__  # type: ignore[attr-defined]
MAILBOXES = MailboxState.__table__  # type: ignore[attr-defined]
REPLIES = MailReply.__table__  # type: ignore[attr-defined]
IN, EV, FP, MB, MR = INBOUND.c, EVENTS.c, PICKUPS.c, MAILBOXES.c, REPLIES.c

ACCEPTED: Final = "accepted"
PREFIX_BYTES: Final = 200
_TYPE = re.compile(rb'"type":\s*"[^"]*?([A-Za-z0-9_.-]+)"')
_TITLE = re.compile(rb'"title":\s*"((?:[^"\\]|\\.)*)"')


def refusal_reason(prefix: bytes | None, status: str, response_status: int) -> tuple[str, str]:
    """(code, title) of a refusal from the start of its stored answer: the problem type's
    last path segment and its title, or the message state and HTTP status when the answer
    is not a problem document."""
    found = _TYPE.search(prefix or b"")
    title = _TITLE.search(prefix or b"")
    if found is None:
        return f"{status}-{response_status}", f"{status} (HTTP {response_status})"
    code = found.group(1).decode("ascii")
    text = title.group(1).decode("utf-8", "replace") if title else code
    return code, f"{text} (HTTP {response_status})"


def tally(groups: list[tuple[str, int, bytes | None, int, int]]) -> Row:
    """Accepted and refused counts from ``(status, http status, answer prefix, n 24 h,
    n 7 d)`` groups; the refused ones by reason, most frequent first."""
    accepted = {"24h": 0, "7d": 0}
    reasons: dict[str, dict[str, Any]] = {}
    for status, http, prefix, day, week in groups:
        if status == ACCEPTED:
            accepted["24h"] += int(day)
            accepted["7d"] += int(week)
            continue
        code, title = refusal_reason(prefix, status, http)
        entry = reasons.setdefault(code, {"code": code, "title": title, "24h": 0, "7d": 0})
        entry["24h"] += int(day)
        entry["7d"] += int(week)
    by_reason = sorted(reasons.values(), key=lambda r: (-r["7d"], r["code"]))
    return {
        "accepted": accepted,
        "refused": {
            "24h": sum(r["24h"] for r in by_reason),
            "7d": sum(r["7d"] for r in by_reason),
        },
        "refused_by_reason": by_reason,
    }


async def _channel_status(
    conn: AsyncConnection, agency_id: str, channel: str, week: datetime
) -> Row:
    if channel == "sftp":
        last = await rows(
            conn,
            sa.select(
                FP.id, FP.remote_name, FP.kind, FP.state, FP.rows_ok, FP.rows_failed,
                FP.first_seen_at, FP.finished_at,
            )
            .where(FP.agency_id == agency_id)
            .order_by(FP.id.desc())
            .limit(1),
        )  # fmt: skip
        states = (
            await conn.execute(
                sa.select(FP.state, sa.func.count())
                .where(FP.agency_id == agency_id, FP.first_seen_at >= week)
                .group_by(FP.state)
            )
        ).all()
        return {"last_pickup": last[0] if last else None, "pickups_7d": dict(states)}
    if channel == "email":
        mailboxes = await rows(
            conn,
            sa.select(MB.mailbox, MB.last_uid, MB.updated_at)
            .where(MB.agency_id == agency_id)
            .order_by(MB.mailbox),
        )
        last_reply = await rows(
            conn,
            sa.select(MR.id, MR.mailbox, MR.kind, MR.signature, MR.received_at)
            .where(MR.agency_id == agency_id)
            .order_by(MR.id.desc())
            .limit(1),
        )
        kinds = (
            await conn.execute(
                sa.select(MR.kind, sa.func.count())
                .where(MR.agency_id == agency_id, MR.received_at >= week)
                .group_by(MR.kind)
            )
        ).all()
        return {
            "mailboxes": mailboxes,
            "last_reply": last_reply[0] if last_reply else None,
            "replies_7d": dict(kinds),
        }
    return {}


async def inbound_health(
    conn: AsyncConnection, agency_id: str, channel: str, *, now: datetime
) -> Row:
    """Everything in the module docstring, for one agency (on ``channel``) as of ``now``."""
    day, week = now - timedelta(hours=24), now - timedelta(days=7)
    last_message = (
        await conn.execute(sa.select(sa.func.max(IN.received_at)).where(IN.agency_id == agency_id))
    ).scalar()
    last_event = (
        await conn.execute(sa.select(sa.func.max(EV.received_at)).where(EV.agency_id == agency_id))
    ).scalar()
    prefix = sa.case(
        (IN.status == ACCEPTED, sa.null()),
        else_=sa.func.substr(IN.response_body, 1, PREFIX_BYTES),
    )
    groups = (
        await conn.execute(
            sa.select(
                IN.status,
                IN.response_status,
                prefix,
                sa.func.sum(sa.case((IN.received_at >= day, 1), else_=0)),
                sa.func.count(),
            )
            .where(IN.agency_id == agency_id, IN.received_at >= week)
            .group_by(IN.status, IN.response_status, prefix)
        )
    ).all()
    return {
        "last_message_at": last_message,
        "last_event_at": last_event,
        **tally([(s, h, None if p is None else bytes(p), d, w) for s, h, p, d, w in groups]),
        **await _channel_status(conn, agency_id, channel, week),
    }


__all__ = ["inbound_health", "refusal_reason", "tally"]
