"""The demo's borrower notices and collector checks: a sandbox messaging service on loopback
takes the notices (the demo turns ``[notices]`` on and points it there), and a few checks on
the public verification page, one per answer a borrower can get, show it working."""

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web

from gateway.bootstrap import Gateway
from gateway.config.settings import GatewaySettings
from gateway.sandbox.messaging import NOTICES_PATH, SandboxMessagingService
from gateway.signing import parse_verifying_key
from gateway.store.document_tables import AuthorisationLetter
from gateway.store.tables import Case
from gateway.verification.check import candidates

LETTERS = AuthorisationLetter.__table__  # type: ignore[attr-defined]
CASES = Case.__table__  # type: ignore[attr-defined]


@dataclass
class DemoMessaging:
    """The sandbox messaging service the demo's notices go to."""

    service: SandboxMessagingService | None = None
    url: str = ""
    checks: dict[str, int] = field(default_factory=dict)


def with_notices(settings: GatewaySettings, url: str) -> GatewaySettings:
    """``settings`` with notices on, to the sandbox at ``url`` (keys made by ``keys``)."""
    if settings.lender.registration is None:
        return settings
    notices = settings.notices.model_copy(
        update={"enabled": True, "url": url, "allow_plain_http": True, "languages": ("zh-CN", "en")}
    )
    return settings.model_copy(update={"notices": notices})


async def start_messaging(stack: AsyncExitStack, host: str = "127.0.0.1") -> DemoMessaging:
    """Start the sandbox messaging service on a free port (its keys are set later, once
    ``keys generate`` has made them: ``trust``)."""
    service = SandboxMessagingService(verify_keys=[])
    runner = web.AppRunner(service.app(), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return DemoMessaging(service, f"http://{host}:{port}{NOTICES_PATH}")


def trust(messaging: DemoMessaging, settings: GatewaySettings) -> None:
    """Let the sandbox verify what the gateway signs with ``[notices] keys``."""
    if messaging.service is None or not settings.notices.enabled:
        return
    keys = []
    for ref in settings.notices.keys:
        text = ref.resolve(settings.base_dir)
        if settings.notices.scheme == "v1a" and ref.file is not None:
            text = Path(settings.base_dir / f"{ref.file}.pub").read_text(encoding="utf-8").strip()
        keys.append(parse_verifying_key(settings.notices.scheme, text))
    messaging.service._keys = tuple(keys)


async def verify_some(gateway: Gateway, messaging: DemoMessaging) -> None:
    """Check one active letter with the debtor's digits, the same with wrong digits, and a
    forged number, as borrowers would on the public page."""
    async with gateway.db.connect() as conn:
        row = (
            await conn.execute(
                sa.select(LETTERS.c.letter_no, CASES.c.id, CASES.c.pii)
                .join(CASES, CASES.c.id == LETTERS.c.case_id)
                .where(LETTERS.c.status == "active")
                .order_by(LETTERS.c.letter_no)
                .limit(1)
            )
        ).one_or_none()
    tries = [("SQ2099-000000-X", "0000")]
    if row is not None:
        digits = candidates(gateway.pii.decrypt(row.pii, bound_to=row.id))
        if digits:
            tries += [
                (row.letter_no, digits[0]),
                (row.letter_no, "0000" if digits[0] != "0000" else "1111"),
            ]
    for letter, last4 in tries:
        answer = await gateway.verification.check(
            letter=letter, digits=last4, client="127.0.0.1", channel="page"
        )
        outcome = answer.verdict.outcome if answer.verdict else "limited"
        messaging.checks[outcome] = messaging.checks.get(outcome, 0) + 1


async def notices_note(gateway: Gateway, messaging: DemoMessaging, url: str) -> str:
    """One summary note: notices by state and kind, what the sandbox received, the checks."""
    counts = await gateway.notices.counts()
    if messaging.service is None or not gateway.notices.enabled:
        return "borrower notices: off ([lender.registration] missing)"
    received = ", ".join(f"{k} {n}" for k, n in sorted(messaging.service.by_kind().items()))
    checks = ", ".join(f"{k} {n}" for k, n in sorted(messaging.checks.items()))
    return (
        f"borrower notices: {counts['delivered']} delivered, {counts['queued']} queued, "
        f"{counts['failed']} failed; the messaging sandbox verified and kept "
        f"{len(messaging.service.received)} ({received or 'none'}), rejected "
        f"{messaging.service.rejected}; collector checks on {url}/verify: {checks or 'none'}"
    )


__all__ = [
    "DemoMessaging",
    "notices_note",
    "start_messaging",
    "trust",
    "verify_some",
    "with_notices",
]
