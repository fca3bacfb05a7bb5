"""One agency's month settled end to end, for the demo and for scripts: build the statement,
issue it (documents, evidence, the packet to the agency), and have the agency confirm it or
dispute lines of it, through the same code the channels use (gateway.settlement.answers).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.settlement.statements import StatementService


@dataclass(frozen=True, slots=True)
class SettledMonth:
    statement_id: int
    revision: int
    sha256: str
    state: str
    total_minor: int
    lines: int
    disputed_lines: tuple[int, ...] = ()


async def settle_month(
    statements: StatementService,
    agency_id: str,
    month: str,
    *,
    maker: str = "ops:demo",
    issuer: str = "ops:demo-checker",
    dispute: Sequence[int] = (),
    reason: str = "",
    claimed_minor: int = 0,
) -> SettledMonth:
    """Build and issue ``agency_id``'s statement for ``month`` (YYYY-MM); the agency then
    confirms it, or, when ``dispute`` names line numbers, disputes those lines claiming
    ``claimed_minor`` for them (a ``settlement_disputed`` mismatch). ``issuer`` differs from
    ``maker`` so a statement above the agency's four-eyes limit can be issued."""
    sid = await statements.build(agency_id, month, actor=maker)
    sha = await statements.issue(sid, actor=issuer)
    view = await statements.show(sid)
    revision = int(str(view.statement["revision"]))
    if dispute:
        await statements.dispute(
            agency_id,
            sid,
            revision,
            list(dispute),
            reason=reason or "the agency disputes the commission on these lines",
            claimed_minor=claimed_minor,
        )
    else:
        await statements.confirm(agency_id, sid, revision, sha)
    view = await statements.show(sid)
    return SettledMonth(
        statement_id=sid,
        revision=revision,
        sha256=sha,
        state=str(view.statement["state"]),
        total_minor=int(str(view.statement["total_minor"])),
        lines=len(view.lines),
        disputed_lines=tuple(dispute),
    )


__all__ = ["SettledMonth", "settle_month"]
