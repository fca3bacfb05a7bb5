"""Sandbox partners for a config: each agency's simulated counterpart on loopback, exactly where
the config points, for ``agency-gateway sandbox`` (an agency's onboarding rehearsed against
``agency-gateway serve`` before go-live).

Theory of operation
-------------------
``SandboxPartners.start`` starts, for each chosen agency, the same sandboxes the demo uses:

* webhook: a ``SandboxWebhookAgency`` on the host and port of ``endpoint.url``, verifying our
  packets with the agency's keys and pushing signed events to the gateway's inbound API;
* SFTP: a ``SandboxSftpServer`` on ``sftp.host``/``sftp.port`` with the pinned host key and our
  client key, and a ``SandboxSftpAgency`` behind it that answers what lands in its inbox;
* email: a ``SandboxLawFirm``, SMTP (STARTTLS, the relay login) on ``email.smtp`` and Dovecot on
  ``email.imap`` for its replies (replies are skipped, with a note, without Dovecot).

Unlike the demo, which moves a sandbox to a free port and rewrites its config in memory, a
standalone sandbox must listen where the config points, because ``serve`` reads the same
files: an address that is not loopback, or a port already taken, is a ``ConfigError`` naming
the agency, and nothing is left running. Webhook agencies and law firms answer as packets
arrive; file agencies look at their inbox every ``interval`` seconds (``run``).
"""

import asyncio
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from gateway.config.agencies import AgencyConfig, EmailAgency, SftpAgency, WebhookAgency
from gateway.errors import ConfigError, GatewayError
from gateway.keys import sandbox_keys
from gateway.runtime import bound_socket
from gateway.sandbox.law_firm import SandboxLawFirm
from gateway.sandbox.sftp_site import SftpSandboxes
from gateway.sandbox.webhook_agency import SandboxWebhookAgency


@dataclass(frozen=True, slots=True)
class Partner:
    """One running sandbox: which agency, where it listens, and its counters."""

    agency_id: str
    channel: str
    listening: str
    note: str
    stats: Callable[[], dict[str, object]]


def choose(agencies: Mapping[str, AgencyConfig], wanted: Sequence[str]) -> list[AgencyConfig]:
    """The agencies named (all enabled ones when none is), or a ConfigError naming the
    unknown ids."""
    if not wanted:
        return [a for a in agencies.values() if a.enabled]
    unknown = [a for a in wanted if a not in agencies]
    if unknown:
        raise ConfigError(
            [
                f"--agency {a}: no such agency (the config has {', '.join(agencies)})"
                for a in unknown
            ]
        )
    return [agencies[a] for a in dict.fromkeys(wanted)]


def _loopback(agency_id: str, what: str, host: str) -> None:
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    if not local:
        raise ConfigError(
            f"{agency_id}: {what} is {host}, not loopback; the sandbox only stands in for "
            "agencies the config points at this machine"
        )


def _taken(agency_id: str, what: str, configured: int, actual: int) -> None:
    """A ConfigError unless the sandbox listens on the configured port (``actual`` 0: it
    could not listen at all)."""
    if configured and actual != configured:
        raise ConfigError(
            f"{agency_id}: {what} port {configured} is taken; the sandbox must listen where the "
            "config points (stop what holds the port, or change the agency's config)"
        )


async def start_webhook_sandbox(
    agency: WebhookAgency,
    base_dir: Path,
    *,
    seed: int,
    fault_rate: float,
    stack: AsyncExitStack,
    move_if_taken: bool = True,
    letter_trust: bytes | None = None,
) -> tuple[SandboxWebhookAgency, WebhookAgency]:
    """Start the agency's sandbox on its endpoint's host and port; when the port is taken,
    on a free one (``move_if_taken``, the demo) or not at all (a ConfigError). Returns the
    sandbox and the agency with its endpoint pointing at the sandbox. ``letter_trust``: the
    lender's signing certificate the sandbox verifies authorisation letters against."""
    verify, sign = sandbox_keys(agency, base_dir)
    url = urlsplit(agency.endpoint.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    try:
        sock = bound_socket(host, port)
    except GatewayError:
        if not move_if_taken:
            _taken(agency.id, "endpoint.url", port, 0)
        sock = bound_socket(host, 0)
    sandbox = SandboxWebhookAgency(
        agency_id=agency.id,
        verify_keys=verify,
        signing_keys=sign,
        seed=seed,
        fault_rate=fault_rate,
        letter_trust=letter_trust,
    )
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.SockSite(runner, sock).start()
    await sandbox.start()
    stack.push_async_callback(sandbox.aclose)
    endpoint = urlunsplit((url.scheme, f"{host}:{sock.getsockname()[1]}", url.path, url.query, ""))
    updated = agency.model_copy(
        update={"endpoint": agency.endpoint.model_copy(update={"url": endpoint})}
    )
    return sandbox, updated


class SandboxPartners:
    """The running sandboxes of one ``agency-gateway sandbox`` (see module docstring)."""

    def __init__(self) -> None:
        self.partners: list[Partner] = []
        self._files: SftpSandboxes | None = None

    @classmethod
    async def start(
        cls,
        agencies: Sequence[AgencyConfig],
        base_dir: Path,
        *,
        gateway_url: str,
        sftp_root: Path,
        seed: int,
        fault_rate: float,
        stack: AsyncExitStack,
        letter_trust: bytes | None = None,
    ) -> "SandboxPartners":
        """Start a sandbox for each of ``agencies``; ``stack`` stops them all. Webhook
        sandboxes verify authorisation letters against ``letter_trust`` (the lender's CA)."""
        site = cls()
        for agency in agencies:
            try:
                if isinstance(agency, WebhookAgency):
                    await site._webhook(
                        agency, base_dir, gateway_url, seed, fault_rate, stack, letter_trust
                    )
                elif isinstance(agency, EmailAgency):
                    await site._law_firm(agency, base_dir, seed, fault_rate, stack)
            except (OSError, ValueError) as exc:
                raise GatewayError(f"{agency.id}: the sandbox cannot start: {exc}") from exc
        files = [a for a in agencies if isinstance(a, SftpAgency) and a.enabled]
        for agency in files:
            _loopback(agency.id, "sftp.host", agency.sftp.host)
        if files:
            site._files = await SftpSandboxes.start(
                {a.id: a for a in files},
                base_dir,
                root=sftp_root,
                seed=seed,
                fault_rate=fault_rate,
            )
            stack.push_async_callback(site._files.aclose)
            for agency, sandbox in zip(files, site._files.sandboxes, strict=True):
                actual = site._files.agencies[agency.id].sftp.port
                _taken(agency.id, "sftp", agency.sftp.port, actual)
                site.partners.append(
                    Partner(
                        agency.id,
                        "sftp",
                        f"sftp://{agency.sftp.host}:{actual} (files under {sandbox.inbox.parent})",
                        "",
                        sandbox.stats_json,
                    )
                )
        return site

    async def _webhook(
        self,
        agency: WebhookAgency,
        base_dir: Path,
        gateway_url: str,
        seed: int,
        fault_rate: float,
        stack: AsyncExitStack,
        letter_trust: bytes | None = None,
    ) -> None:
        _loopback(agency.id, "endpoint.url's host", urlsplit(agency.endpoint.url).hostname or "")
        sandbox, _ = await start_webhook_sandbox(
            agency,
            base_dir,
            seed=seed,
            fault_rate=fault_rate,
            stack=stack,
            move_if_taken=False,
            letter_trust=letter_trust,
        )
        sandbox.set_gateway_url(gateway_url)
        self.partners.append(
            Partner(
                agency.id,
                "webhook",
                agency.endpoint.url,
                f"events to {sandbox.events_url}",
                sandbox.stats_json,
            )
        )

    async def _law_firm(
        self,
        agency: EmailAgency,
        base_dir: Path,
        seed: int,
        fault_rate: float,
        stack: AsyncExitStack,
    ) -> None:
        smtp, imap = agency.email.smtp, agency.email.imap
        _loopback(agency.id, "email.smtp.host", smtp.host)
        if imap is not None:
            _loopback(agency.id, "email.imap.host", imap.host)
        firm = SandboxLawFirm(agency=agency, base_dir=base_dir, seed=seed, fault_rate=fault_rate)
        await firm.start()
        stack.push_async_callback(firm.aclose)
        _taken(agency.id, "email.smtp", smtp.port, firm.smtp_port)
        listening = f"smtp://{smtp.host}:{firm.smtp_port}"
        if imap is not None and firm.reply_path_skipped is None:
            _taken(agency.id, "email.imap", imap.port, firm.imap_port)
            listening += f", imap://{imap.host}:{firm.imap_port}"
        note = f"replies skipped: {firm.reply_path_skipped}" if firm.reply_path_skipped else ""
        self.partners.append(Partner(agency.id, "email", listening, note, firm.stats_json))

    async def run(self, stop: asyncio.Event, *, interval: float) -> None:
        """File agencies answer their inbox every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            if self._files is not None:
                for sandbox in self._files.sandboxes:
                    await sandbox.process_once()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    def stats(self) -> list[dict[str, object]]:
        return [{"agency": p.agency_id, "channel": p.channel, **p.stats()} for p in self.partners]


__all__ = ["Partner", "SandboxPartners", "choose", "start_webhook_sandbox"]
