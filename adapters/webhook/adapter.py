"""Signed JSON webhook channel (Standard Webhooks v1.0), outbound.

* ``webhook-id`` is the outbox item's dedupe key: the same on every retry, so the agency can
  deduplicate; ``webhook-timestamp`` is fresh for every attempt and signed with it.
* Several keys sign at once during rotation (space-separated ``webhook-signature``).
* 2xx is success. 410 disables the endpoint. 429, 502, 503, 504 slow down and honour
  ``Retry-After``. Other 5xx and 408 are transient. Redirects are never followed and count
  as permanent failures, as does any other 4xx.
* A connection that was never established is transient; a timeout or disconnect after the
  request may have been written leaves the outcome unknown (the agency dedupes, so the
  dispatcher may resend with the same ``webhook-id``).
"""

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime

import aiohttp

from gateway import __version__
from gateway.config.agencies import AgencyConfig, EndpointSection, WebhookAgency
from gateway.errors import (
    ConfigError,
    EndpointGone,
    OutcomeUnknown,
    PermanentDeliveryError,
    ThrottledError,
    TransientDeliveryError,
)
from gateway.ports import AdapterContext, OutboundPacket, Receipt
from gateway.signing import SigningKey, parse_signing_key, sign

THROTTLE_STATUSES = frozenset({429, 502, 503, 504})
RESPONSE_KEEP_BYTES = 64 * 1024
EXCERPT_CHARS = 500


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


class WebhookAdapter:
    """Sends packets to one agency's HTTPS endpoint.

    Args:
        agency: the agency's configuration (endpoint, timeouts).
        keys: our signing keys for this agency; all of them sign every request.
        session: a shared aiohttp session (the composition root owns it).
        clock: returns Unix time; injectable for tests.
        recipient: instead of ``agency``, another receiver's id and ``endpoint`` (the
            lender's messaging service, which takes borrower notices).
    """

    idempotent_receiver = True

    def __init__(
        self,
        *,
        agency: WebhookAgency | None = None,
        keys: Sequence[SigningKey],
        session: aiohttp.ClientSession,
        clock: Callable[[], float],
        recipient: str | None = None,
        endpoint: EndpointSection | None = None,
    ) -> None:
        if agency is not None:
            recipient, endpoint = agency.id, agency.endpoint
        if recipient is None or endpoint is None:
            raise TypeError("WebhookAdapter needs an agency, or a recipient and its endpoint")
        self._recipient = recipient
        self._endpoint = endpoint
        self._keys = tuple(keys)
        self._session = session
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(
            total=endpoint.timeout_seconds,
            sock_connect=endpoint.connect_timeout_seconds,
        )
        self._fixed_headers = {
            "content-type": "application/json",
            "user-agent": f"agency-gateway/{__version__}",
        }

    async def send(self, packet: OutboundPacket) -> Receipt:
        agency_id = self._recipient
        timestamp = int(self._clock())
        headers = {
            **self._fixed_headers,
            "webhook-id": packet.dedupe_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(packet.dedupe_key, timestamp, packet.payload, self._keys),
        }
        try:
            async with self._session.post(
                self._endpoint.url,
                data=packet.payload,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                body = await response.content.read(RESPONSE_KEEP_BYTES)
                status = response.status
                retry_after = (
                    None
                    if 200 <= status < 300
                    else parse_retry_after(response.headers.get("retry-after"), self._clock())
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise TransientDeliveryError(
                f"{agency_id}: cannot connect to {self._endpoint.url}: {exc}",
                agency_id=agency_id,
            ) from exc
        except (TimeoutError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise OutcomeUnknown(
                f"{agency_id}: no answer after sending ({type(exc).__name__}); "
                "the agency may have received the packet",
                agency_id=agency_id,
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransientDeliveryError(f"{agency_id}: {exc}", agency_id=agency_id) from exc
        excerpt = body[:EXCERPT_CHARS].decode("utf-8", errors="replace")
        if 200 <= status < 300:
            return Receipt(
                request_timestamp=timestamp,
                status=status,
                response_sha256=hashlib.sha256(body).hexdigest(),
                response_excerpt=excerpt,
            )
        what = f"{agency_id}: HTTP {status} from {self._endpoint.url}: {excerpt[:200]}"
        if status == 410:
            raise EndpointGone(what, agency_id=agency_id, status=status)
        if status in THROTTLE_STATUSES:
            raise ThrottledError(what, agency_id=agency_id, status=status, retry_after=retry_after)
        if status >= 500 or status == 408:
            raise TransientDeliveryError(
                what, agency_id=agency_id, status=status, retry_after=retry_after
            )
        if 300 <= status < 400:
            raise PermanentDeliveryError(
                f"{what} (redirects are not followed; fix the endpoint URL)",
                agency_id=agency_id,
                status=status,
            )
        raise PermanentDeliveryError(what, agency_id=agency_id, status=status)

    async def aclose(self) -> None:
        """The session belongs to the composition root; nothing to release here."""
        await asyncio.sleep(0)


def build_webhook_adapter(agency: AgencyConfig, context: AdapterContext) -> WebhookAdapter:
    """The registry's factory: resolve the agency's signing keys and build its adapter."""
    if not isinstance(agency, WebhookAgency):
        raise ConfigError(f"{agency.id}: channel {agency.channel} has no webhook settings")
    keys = [
        parse_signing_key(agency.signing.scheme, ref.resolve(context.base_dir))
        for ref in agency.signing.keys
    ]
    return WebhookAdapter(agency=agency, keys=keys, session=context.http, clock=context.clock)


__all__ = ["WebhookAdapter", "build_webhook_adapter", "parse_retry_after"]
