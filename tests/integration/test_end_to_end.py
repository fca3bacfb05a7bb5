"""The whole loop on loopback: a temp config dir with a ``v1`` and a ``v1a`` webhook agency,
keys from ``generate_missing``, sandbox agencies speaking the real protocol, the gateway built
by ``build()`` and served by ``gateway.runtime.web_server``; intake, allocation, dispatch,
events back, recalls, reconciliation of the injected faults, evidence verification. Every
connection crosses a splitting proxy (tests/splitting_proxy.py): the packets on their way to
each agency and the events on their way back arrive in pieces of a few bytes with pauses.
"""

import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from yarl import URL

from gateway.bootstrap import Gateway, build, load_config
from gateway.clock import to_datetime
from gateway.config.agencies import AgencyConfig, EmailAgency, SftpAgency, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.demo.confirmation import Confirmation, import_and_confirm
from gateway.demo.data import generate_accounts, write_csv
from gateway.demo.sandboxes import dispatch_until_settled, start_law_firms
from gateway.dispatch.outbox import counts_by_state
from gateway.intake.service import import_file
from gateway.keys import generate_missing, sandbox_keys
from gateway.reconciliation.sla import run_sla_checks
from gateway.register.importing import import_register
from gateway.runtime import bound_socket, checkpoint, web_server
from gateway.sandbox.document_check import lender_certificate
from gateway.sandbox.partners import start_webhook_sandbox
from gateway.sandbox.sftp_site import SftpSandboxes
from gateway.sandbox.webhook_agency import SandboxWebhookAgency
from gateway.store.migrate import upgrade
from gateway.store.tables import (
    AgencyEventRow,
    DeliveryAttempt,
    EvidenceLeaf,
    InboundMessage,
    Mismatch,
    OutboxItem,
    Placement,
)
from tests.splitting_proxy import Splitting, SplittingProxy

PLACEMENTS = Placement.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxItem.__table__  # type: ignore[attr-defined]
ATTEMPTS = DeliveryAttempt.__table__  # type: ignore[attr-defined]
INBOUND = InboundMessage.__table__  # type: ignore[attr-defined]
EVENTS = AgencyEventRow.__table__  # type: ignore[attr-defined]
MISMATCHES = Mismatch.__table__  # type: ignore[attr-defined]
LEAVES = EvidenceLeaf.__table__  # type: ignore[attr-defined]

ConfigFactory = Callable[..., tuple[Path, GatewaySettings, dict[str, AgencyConfig]]]
"""The ``make_config`` fixture (tests/conftest.py)."""

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = 80
RECALLS = 6
SETTLE_SECONDS = 90.0
FAULT_MISMATCH = {
    "unknown_placement": "unknown_placement",
    "over_payment": "over_collection",
    "conflicting_duplicate": "conflicting_duplicate",
    "ack_balance_differs": "ack_balance_differs",
    "currency_mismatch": "currency_mismatch",
    "activity_after_recall": "activity_after_recall",
}


async def settle(gateway: Gateway, sandboxes: Mapping[str, SandboxWebhookAgency]) -> None:
    """Dispatch until no packet is due and no sandbox has an event left to send."""
    dispatcher = await gateway.dispatcher()
    deadline = time.monotonic() + SETTLE_SECONDS
    quiet = 0
    while time.monotonic() < deadline:
        stats = await dispatcher.drain_once()
        drained = [await s.drain(timeout=0.5) for s in sandboxes.values()]
        quiet = quiet + 1 if stats.claimed == 0 and all(drained) else 0
        if quiet == 2:
            return
    raise AssertionError(f"not settled after {SETTLE_SECONDS} s")


async def rows(gateway: Gateway, query: Any) -> list[Any]:
    async with gateway.db.connect() as conn:
        return list((await conn.execute(query)).all())


async def mismatched_webhook_ids(gateway: Gateway) -> set[tuple[str, str, str]]:
    """(kind, agency, webhook-id of the event that raised it) for every mismatch."""
    linked = await rows(
        gateway,
        sa.select(MISMATCHES.c.kind, MISMATCHES.c.agency_id, INBOUND.c.external_id)
        .join(EVENTS, EVENTS.c.id == MISMATCHES.c.event_id)
        .join(INBOUND, INBOUND.c.id == EVENTS.c.inbound_id),
    )
    found = {(r.kind, r.agency_id, r.external_id) for r in linked}
    # An inbound conflict has no parsed event; its key names the stored conflicting copy.
    for m in await rows(gateway, sa.select(MISMATCHES).where(MISMATCHES.c.event_id.is_(None))):
        kind, _, ref = m.dedupe_key.partition(":")
        if kind == "conflicting_duplicate" and ref.startswith("inbound:"):
            [copy] = await rows(
                gateway, sa.select(INBOUND.c.external_id).where(INBOUND.c.id == int(ref[8:]))
            )
            found.add((kind, m.agency_id, copy.external_id.partition("~")[0]))
    return found


async def started(proxy: SplittingProxy) -> int:
    await proxy.start()
    return proxy.port


async def test_intake_to_reconciliation_over_real_protocols(
    tmp_path: Path, database_url: str, make_config: ConfigFactory
) -> None:
    ids = ("AGY_V1", "AGY_V1A")
    sockets = {agency_id: bound_socket("127.0.0.1", 0) for agency_id in ids}
    # The gateway reaches each agency, and the agencies reach the gateway, only through proxies.
    to_agency = {
        agency_id: SplittingProxy(
            "127.0.0.1", sockets[agency_id].getsockname()[1], seed=n, name=f"to {agency_id}"
        )
        for n, agency_id in enumerate(ids)
    }
    _, settings, agencies = make_config(
        database_url=database_url,
        agencies={
            agency_id: {
                "scheme": "v1" if agency_id == "AGY_V1" else "v1a",
                "url": f"http://127.0.0.1:{await started(to_agency[agency_id])}/hooks",
            }
            for agency_id in ids
        },
        dispatch={"batch_size": 20, "lease_seconds": 30},
    )
    async with AsyncExitStack() as stack:
        for proxy in to_agency.values():
            stack.push_async_callback(proxy.aclose)
        sandboxes: dict[str, SandboxWebhookAgency] = {}
        for agency_id, agency in agencies.items():
            assert isinstance(agency, WebhookAgency)
            verify_keys, signing_keys = sandbox_keys(agency, settings.base_dir)
            sandboxes[agency_id] = SandboxWebhookAgency(
                agency_id=agency_id,
                verify_keys=verify_keys,
                signing_keys=signing_keys,
                seed=11,
                fault_rate=0.5,
            )
            runner = web.AppRunner(sandboxes[agency_id].app(), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.SockSite(runner, sockets[agency_id]).start()
        gateway = build(settings, agencies)
        stack.push_async_callback(gateway.aclose)
        await upgrade(gateway.db)
        url = URL(await stack.enter_async_context(web_server(gateway, "127.0.0.1", 0)))
        assert url.port is not None
        to_gateway = SplittingProxy("127.0.0.1", url.port, seed=7, name="to the gateway")
        stack.push_async_callback(to_gateway.aclose)
        proxied = str(url.with_port(await started(to_gateway)))
        for sandbox in sandboxes.values():
            sandbox.set_gateway_url(proxied)

        accounts = tmp_path / "accounts.csv"
        today = datetime.now(UTC).date()
        write_csv(generate_accounts(ACCOUNTS, seed=3, as_of=today), accounts)
        intake = await import_file(
            accounts,
            db=gateway.db,
            pii=gateway.pii,
            placements=gateway.placements,
            allocation=settings.allocation,
            clock=gateway.clock,
            confirmation="off",
        )
        assert intake.inserted == ACCOUNTS
        allocation = await gateway.placements.allocate()
        assert allocation.placed == ACCOUNTS and set(allocation.by_agency) == set(ids)
        await settle(gateway, sandboxes)

        working = await rows(
            gateway,
            sa.select(PLACEMENTS.c.case_id)
            .where(PLACEMENTS.c.state.in_(["acknowledged", "active"]))
            .order_by(PLACEMENTS.c.id)
            .limit(RECALLS),
        )
        for row in working:
            await gateway.placements.recall(row.case_id, "PAID_DIRECT")
        await settle(gateway, sandboxes)

        # Every packet delivered once, as the agencies themselves counted.
        async with gateway.db.connect() as conn:
            assert await counts_by_state(conn) == {"delivered": ACCOUNTS + len(working)}
        items = await rows(gateway, sa.select(OUTBOX.c.agency_id, OUTBOX.c.packet_type))
        for agency_id, sandbox in sandboxes.items():
            stats = sandbox.stats
            assert stats.packets_received == sum(1 for i in items if i.agency_id == agency_id)
            assert not stats.packets_refused and stats.events_abandoned == 0
            assert sandbox.pending_events == 0
        recalled = sum(s.stats.packets_by_type["placement.recalled"] for s in sandboxes.values())
        assert recalled == len(working) == RECALLS

        # Events came back and were stored; every placement was acknowledged.
        inbound = await rows(gateway, sa.select(INBOUND))
        for agency_id, sandbox in sandboxes.items():
            answered = Counter(r.response_status for r in inbound if r.agency_id == agency_id)
            assert answered[200] == sum(sandbox.stats.events_sent.values())
            assert answered[403] == sandbox.stats.events_refused["403"]
            assert set(sandbox.stats.events_refused) <= {"403"}
        states = Counter(r.state for r in await rows(gateway, sa.select(PLACEMENTS.c.state)))
        assert states["placed"] == 0 and states["recalled"] + states["returned"] >= 1

        # Each injected fault raised exactly its mismatch, and nothing else was raised.
        faults = [(f, a) for a, s in sandboxes.items() for f in s.fault_log]
        assert len(faults) >= 5, "the seed must inject faults for this test to mean anything"
        expected = {(FAULT_MISMATCH[f.kind], agency, f.event_id) for f, agency in faults}
        assert await mismatched_webhook_ids(gateway) == expected
        kinds = Counter(r.kind for r in await rows(gateway, sa.select(MISMATCHES.c.kind)))
        assert kinds == Counter(FAULT_MISMATCH[f.kind] for f, _ in faults)

        # Acknowledgements met their expectations, even those faster than the delivery record.
        async with gateway.db.transaction() as conn:
            breaches = await run_sla_checks(
                conn, now=to_datetime(gateway.clock.now()) + timedelta(hours=30)
            )
        assert "missing_ack" not in breaches

        # The evidence log attests every packet, receipt and inbound message, and verifies.
        leaves = Counter(r.kind for r in await rows(gateway, sa.select(LEAVES.c.kind)))
        attempts = await rows(gateway, sa.select(ATTEMPTS.c.id))
        assert leaves["packet"] == len(items)
        assert leaves["receipt"] == len(attempts)
        assert leaves["inbound"] == len(inbound)
        await checkpoint(gateway)
        report = await gateway.evidence.verify([gateway.note_verifier])
        assert report.ok, [str(p) for p in report.problems]
        assert report.leaves_checked == sum(leaves.values())

        # All of it crossed the splitting proxies, in more pieces than were read.
        for proxy in [*to_agency.values(), to_gateway]:
            tally = proxy.tally
            assert tally.connections > 0 and tally.split, (proxy.name, tally)
            assert tally.bytes_up > 0 and tally.bytes_down > 0, (proxy.name, tally)

        # Allocating again queues nothing new.
        again = await gateway.placements.allocate()
        assert again.placed == 0
        assert len(await rows(gateway, sa.select(OUTBOX.c.id))) == len(items)


def proxied_agency(agency: AgencyConfig, port: int, imap_port: int | None = None) -> AgencyConfig:
    """``agency`` with its endpoint, SFTP server or SMTP relay (and IMAP) at a proxy's port."""
    if isinstance(agency, WebhookAgency):
        url = str(URL(agency.endpoint.url).with_port(port))
        return agency.model_copy(
            update={"endpoint": agency.endpoint.model_copy(update={"url": url})}
        )
    if isinstance(agency, SftpAgency):
        return agency.model_copy(update={"sftp": agency.sftp.model_copy(update={"port": port})})
    assert isinstance(agency, EmailAgency)
    email = agency.email
    update: dict[str, object] = {"smtp": email.smtp.model_copy(update={"port": port})}
    if email.imap is not None and imap_port is not None:
        update["imap"] = email.imap.model_copy(update={"port": imap_port})
    return agency.model_copy(update={"email": email.model_copy(update=update)})


@pytest.mark.slow
async def test_every_channel_crosses_a_splitting_network(tmp_path: Path, database_url: str) -> None:
    """The repository's own agencies (webhook, SFTP, email) against the demo's sandboxes, each
    connection through a splitting proxy: HTTP both ways, SSH/SFTP, SMTP and IMAP."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    settings, agencies = load_config(tmp_path / "config" / "gateway.toml")
    settings = settings.model_copy(
        update={"database": settings.database.model_copy(update={"url": database_url})}
    )
    generate_missing(settings, agencies)
    proxies: list[SplittingProxy] = []
    async with AsyncExitStack() as stack:

        async def through(name: str, port: int) -> int:
            # HTTP in pieces of up to 7 bytes; the bulk protocols (files over SSH, mail with
            # attachments) in pieces of up to 97, still many per segment.
            cut = Splitting(max_piece=7 if name.startswith("http") else 97)
            proxy = SplittingProxy("127.0.0.1", port, seed=len(proxies), splitting=cut, name=name)
            proxies.append(proxy)
            stack.push_async_callback(proxy.aclose)
            return await started(proxy)

        sandboxes: list[SandboxWebhookAgency] = []
        for agency_id, agency in list(agencies.items()):
            if isinstance(agency, WebhookAgency):
                sandbox, real = await start_webhook_sandbox(
                    agency,
                    settings.base_dir,
                    seed=5,
                    fault_rate=0.0,
                    stack=stack,
                    letter_trust=lender_certificate(
                        settings.lender.signing_certificate, settings.base_dir
                    ),
                )
                port = URL(real.endpoint.url).port
                assert port is not None
                agencies[agency_id] = proxied_agency(real, await through(f"http {agency_id}", port))
                sandboxes.append(sandbox)
        files = await SftpSandboxes.start(
            agencies, settings.base_dir, root=tmp_path / "sftp", seed=5, fault_rate=0.0
        )
        stack.push_async_callback(files.aclose)
        for agency_id, sftp_agency in files.agencies.items():
            port = await through(f"sftp {agency_id}", sftp_agency.sftp.port)
            agencies[agency_id] = proxied_agency(sftp_agency, port)
        notes: list[str] = []
        firms = await start_law_firms(
            agencies,
            settings.base_dir,
            tmp_path,
            seed=5,
            fault_rate=0.0,
            stack=stack,
            notes=notes,
        )
        for firm in firms:
            email = firm.updated_agency().email
            imap = email.imap
            agencies[firm.agency.id] = proxied_agency(
                firm.updated_agency(),
                await through(f"smtp {firm.agency.id}", email.smtp.port),
                # Without Dovecot the reply path is skipped and nothing reads the mailbox.
                None
                if imap is None or firm.reply_path_skipped
                else await through(f"imap {firm.agency.id}", imap.port),
            )
        assert sandboxes and files.sandboxes and firms, "the repository config has every channel"

        gateway = build(settings, agencies)
        stack.push_async_callback(gateway.aclose)
        await upgrade(gateway.db)
        # The shipped config enforces the register: admit its agencies as the demo does.
        await import_register(
            gateway.db,
            tmp_path / "config" / "register.toml",
            actor="test",
            now=datetime.now(UTC),
        )
        url = URL(await stack.enter_async_context(web_server(gateway, "127.0.0.1", 0)))
        assert url.port is not None
        proxied = str(url.with_port(await through("http gateway", url.port)))
        for sandbox in sandboxes:
            sandbox.set_gateway_url(proxied)

        accounts = tmp_path / "accounts.csv"
        today = datetime.now(UTC).date()
        write_csv(
            generate_accounts(60, seed=9, as_of=today, breakdown=True), accounts, breakdown=True
        )
        await import_and_confirm(gateway, accounts, Confirmation(), expect_placeable=True)
        allocation = await gateway.placements.allocate()
        assert allocation.placed > 0
        await dispatch_until_settled(gateway, sandboxes, files, firms)

        # Everything queued was delivered, and each kind of agency saw its share intact.
        async with gateway.db.connect() as conn:
            assert set(await counts_by_state(conn)) == {"delivered"}
        for sandbox in sandboxes:
            assert sandbox.stats.packets_received > 0 and not sandbox.stats.packets_refused
            assert sum(sandbox.stats.events_sent.values()) > 0
            assert not sandbox.stats.events_refused and sandbox.stats.events_abandoned == 0
        for sftp_stats in files.stats_json():
            assert sftp_stats["batches_received"] and not sftp_stats["batches_rejected"]
            assert sftp_stats["result_files"]
        assert sum(files.picked_up.values()) > 0
        for firm in firms:
            assert firm.stats.mails_received > 0
            assert firm.stats.signatures_verified == firm.stats.mails_received
            assert firm.stats.document_problems == []
        await checkpoint(gateway)
        report = await gateway.evidence.verify([gateway.note_verifier])
        assert report.ok, [str(p) for p in report.problems]

        # Every protocol crossed its proxy, in more pieces than were read.
        for proxy in proxies:
            assert proxy.tally.connections > 0 and proxy.tally.split, (proxy.name, proxy.tally)
        names = {proxy.name.split()[0] for proxy in proxies}
        assert names == {"http", "sftp", "smtp"} | (
            {"imap"} if any(not f.reply_path_skipped for f in firms) else set()
        )
