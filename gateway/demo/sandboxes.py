"""The demo's sandbox agencies: starting them beside the gateway, and running until quiet.

One sandbox webhook agency per webhook agency (``gateway.sandbox.partners``), on the port of
its configured endpoint or a free one, with the endpoint rewritten, and one sandbox law firm
per email agency; the SFTP sandboxes are ``gateway.sandbox.sftp_site``.
``dispatch_until_settled`` drives the gateway's dispatcher, the sandboxes' replies, the law
firms' mailboxes and the file exchanges until a pass finds nothing left to do (or
``SETTLE_TIMEOUT`` passes).
"""

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path

from gateway.bootstrap import Gateway
from gateway.config.agencies import AgencyConfig, EmailAgency
from gateway.runtime import channel_pollers, mailbox_readers
from gateway.sandbox.law_firm import SandboxLawFirm
from gateway.sandbox.sftp_site import SftpSandboxes
from gateway.sandbox.webhook_agency import SandboxWebhookAgency

SETTLE_TIMEOUT = 120.0


async def start_law_firms(
    agencies: dict[str, AgencyConfig],
    base_dir: Path,
    demo_dir: Path,
    *,
    seed: int,
    fault_rate: float,
    stack: AsyncExitStack,
    notes: list[str],
) -> list[SandboxLawFirm]:
    """One sandbox law firm per email agency: SMTP on its relay port, Dovecot for replies."""
    firms = []
    for agency_id, agency in list(agencies.items()):
        if not isinstance(agency, EmailAgency):
            continue
        firm = SandboxLawFirm(agency=agency, base_dir=base_dir, seed=seed, fault_rate=fault_rate)
        await firm.start()
        stack.push_async_callback(firm.aclose)
        agencies[agency_id] = firm.updated_agency()
        if firm.reply_path_skipped:
            notes.append(
                f"{agency_id}: the email reply path is skipped ({firm.reply_path_skipped}); "
                "referral mail is still sent, signed, encrypted and received"
            )
        firms.append(firm)
    return firms


async def dispatch_until_settled(
    gateway: Gateway,
    sandboxes: list[SandboxWebhookAgency],
    files: SftpSandboxes | None = None,
    firms: list[SandboxLawFirm] | None = None,
) -> None:
    """Dispatch and exchange with the sandboxes until a pass finds nothing left to do."""
    dispatcher = await gateway.dispatcher()
    readers = [
        r
        for r in mailbox_readers(gateway)
        if any(f.agency.id == r.agency_id and not f.reply_path_skipped for f in firms or [])
    ]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        stats = await dispatcher.drain_once()
        drained = all([await s.drain(timeout=0.5) for s in sandboxes])
        # Law firms answer by mail: wait for their replies, then read the mailboxes.
        drained = all([await f.drain(timeout=5.0) for f in firms or []]) and drained
        for reader in readers:
            if (await reader.poll()).fetched:
                drained = False
        # File agencies answer in rounds: they read our batches, we pick up their results.
        if files is not None and await files.exchange(channel_pollers(dispatcher)):
            drained = False
        if stats.claimed == 0 and drained:
            # One more quiet pass: events that just arrived may have queued nothing new.
            if (await dispatcher.drain_once()).claimed == 0:
                return
        if stats.claimed == 0:
            await asyncio.sleep(0.2)


__all__ = [
    "SETTLE_TIMEOUT",
    "dispatch_until_settled",
    "start_law_firms",
]
