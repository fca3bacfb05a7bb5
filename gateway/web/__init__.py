"""The aiohttp application: inbound agency API, health and metrics."""

from gateway.web.app import create_app

__all__ = ["create_app"]
