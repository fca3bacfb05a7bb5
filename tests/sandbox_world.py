"""A gateway in front of one real sandbox webhook agency on loopback, for the tests of
packets delivered over the wire (expiry warnings, attributions, request decisions)."""

import socket
from collections.abc import Mapping
from contextlib import AsyncExitStack

from aiohttp import web

from gateway.bootstrap import Gateway, build
from gateway.clock import ManualClock
from gateway.config.agencies import AgencyConfig, WebhookAgency
from gateway.config.settings import GatewaySettings
from gateway.keys import sandbox_keys
from gateway.sandbox.webhook_agency import SandboxWebhookAgency
from gateway.store.migrate import upgrade


async def serve_sandbox(
    stack: AsyncExitStack,
    sock: socket.socket,
    settings: GatewaySettings,
    agencies: Mapping[str, AgencyConfig],
    agency: WebhookAgency,
    clock: ManualClock,
) -> tuple[SandboxWebhookAgency, Gateway]:
    """Start ``agency``'s sandbox (its keys as ``keys`` generated them, no faults) on ``sock``
    and build and migrate the gateway; both are closed with ``stack``."""
    verify_keys, signing_keys = sandbox_keys(agency, settings.base_dir)
    sandbox = SandboxWebhookAgency(
        agency_id=agency.id,
        verify_keys=verify_keys,
        signing_keys=signing_keys,
        seed=3,
        fault_rate=0.0,
        clock=clock,
    )
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock).start()
    gateway = build(settings, dict(agencies), clock=clock)
    stack.push_async_callback(gateway.aclose)
    await upgrade(gateway.db)
    return sandbox, gateway


__all__ = ["serve_sandbox"]
