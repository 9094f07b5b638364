"""Falcon resources of the Heartbeat API, and :func:`mount` to add them to an app."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any

import falcon
import falcon.asgi

from heartbeat import pages
from heartbeat.service import HeartbeatService, StatsBroadcaster
from schemas.heartbeat import DeviceCreateSchema, DeviceSchema, StatsSchema
from screenaware.storage.outages import backend_of
from screenaware.web.headers import SECURITY_HEADERS
from screenaware.web.openapi import operation
from screenaware.web.validation import load_body

LOG = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
HTML = ("text/html", {"type": "string"})

_device_schema = DeviceSchema()
_stats_schema = StatsSchema()


def _credential(req: falcon.asgi.Request) -> str:
    """The raw ``Authorization`` value (the Heartbeat API uses no scheme prefix)."""
    value = req.get_header("Authorization")
    if not value:
        raise falcon.HTTPUnauthorized(description="Missing Authorization header")
    return value.strip()


class SecretKeyAuth:
    """Checks that the Authorization header equals the secret key, in constant time."""

    def __init__(self, secret_key: str) -> None:
        self._key = secret_key.encode()

    def __repr__(self) -> str:
        return "SecretKeyAuth(secret_key='***')"

    def check(self, req: falcon.asgi.Request) -> None:
        """Raise 401 unless the request carries the secret key."""
        if not hmac.compare_digest(_credential(req).encode(), self._key):
            raise falcon.HTTPUnauthorized(description="Invalid Authorization header")


async def require_secret_key(
    req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: Any, params: Any
) -> None:
    """``falcon.before`` hook: runs before the body is read, so 401 wins over 400."""
    resource.auth.check(req)


class DevicesResource:
    """``POST /api/devices``."""

    def __init__(self, service: HeartbeatService, auth: SecretKeyAuth) -> None:
        self._service = service
        self.auth = auth

    @operation(
        "Register a device",
        "heartbeat",
        security="secretKey",
        responses={200: DeviceSchema},
        description="Exists only when a secret key is configured.",
    )
    @falcon.before(require_secret_key)
    @load_body(DeviceCreateSchema())
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        name = req.context.body["name"]
        device_id, token = await self._service.store.add_device(name, self._service.now())
        LOG.info("device %d registered", device_id)
        resp.media = _device_schema.dump({"id": device_id, "name": name, "token": token})


class DeviceTokenResource:
    """``POST /api/devices/{id}/token/generate``."""

    def __init__(self, service: HeartbeatService, auth: SecretKeyAuth) -> None:
        self._service = service
        self.auth = auth

    @operation(
        "Generate a new token for a device (the old one stops working)",
        "heartbeat",
        security="secretKey",
        responses={200: DeviceSchema},
    )
    @falcon.before(require_secret_key)
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, device_id: int
    ) -> None:
        found = await self._service.store.regenerate_token(device_id)
        if found is None:
            raise falcon.HTTPNotFound(description=f"Device {device_id} does not exist")
        name, token = found
        LOG.info("device %d got a new token", device_id)
        resp.media = _device_schema.dump({"id": device_id, "name": name, "token": token})


class BeatResource:
    """``POST /api/beat``: answers the acknowledgement time as plain text."""

    def __init__(self, service: HeartbeatService) -> None:
        self._service = service

    @operation(
        "Send a beat",
        "heartbeat",
        security="deviceToken",
        responses={
            200: ("text/plain", {"type": "string", "description": "Unix seconds of the beat"})
        },
    )
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        acknowledged = await self._service.beat(_credential(req))
        if acknowledged is None:
            raise falcon.HTTPUnauthorized(description="Invalid Authorization header")
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = str(acknowledged)


class StatsResource:
    """``GET /api/stats``."""

    def __init__(self, service: HeartbeatService) -> None:
        self._service = service

    @operation("Presence statistics", "heartbeat", responses={200: StatsSchema})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = _stats_schema.dump(await self._service.stats())


class StatsSocketResource:
    """``GET /api/stats/ws``: the stats at once, then every second."""

    def __init__(self, service: HeartbeatService, broadcaster: StatsBroadcaster) -> None:
        self._service = service
        self._broadcaster = broadcaster

    @operation(
        "Statistics over a WebSocket, once a second",
        "heartbeat",
        responses={101: None},
        description="Upgrade to a WebSocket; every message is the stats object.",
    )
    async def on_websocket(self, req: falcon.asgi.Request, ws: falcon.asgi.WebSocket) -> None:
        try:
            first = _stats_schema.dump(await self._service.stats())
        except Exception as exc:
            backend = backend_of(exc)
            if backend is None:
                LOG.warning("stats socket refused: %s", type(exc).__name__)
            else:  # one line per outage, not per socket
                self._service.outages.failure(backend, exc)
            await ws.close(1011)
            return
        await ws.accept()
        queue = self._broadcaster.subscribe()
        try:
            await ws.send_media(first)
            while True:
                await ws.send_text(await queue.get())
        except falcon.WebSocketDisconnected:
            pass
        finally:
            self._broadcaster.unsubscribe(queue)


class _Page:
    """Base of the HTML pages: security headers and visit counting."""

    page = ""

    def __init__(self, service: HeartbeatService, server_name: str) -> None:
        self._service = service
        self._server_name = server_name

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._service.visit(self.page)
        resp.set_headers(SECURITY_HEADERS)
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self.render(await self._service.stats())

    def render(self, stats: dict[str, Any]) -> str:
        raise NotImplementedError


class IndexPage(_Page):
    """``/``: who was last seen when."""

    page = "index"

    @operation("Presence page", "pages", responses={200: HTML})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await super().on_get(req, resp)

    def render(self, stats: dict[str, Any]) -> str:
        return pages.render_index(self._server_name, stats)


class StatsPage(_Page):
    """``/stats``: every statistic and the device table."""

    page = "stats"

    @operation("Statistics page", "pages", responses={200: HTML})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await super().on_get(req, resp)

    def render(self, stats: dict[str, Any]) -> str:
        return pages.render_stats(self._server_name, stats)


class PrivacyPage:
    """``/privacy``: not counted as a visit (DESIGN.md counts /, /stats, badges)."""

    def __init__(self, server_name: str) -> None:
        self._html = pages.render_privacy(server_name)

    @operation("Privacy page", "pages", responses={200: HTML})
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.set_headers(SECURITY_HEADERS)
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self._html


class BadgeResource:
    """``/badge/last-seen`` and ``/badge/total-beats``."""

    _renderers = {
        "last-seen": pages.last_seen_badge,
        "total-beats": pages.total_beats_badge,
    }

    def __init__(self, service: HeartbeatService) -> None:
        self._service = service

    @operation(
        "SVG badge: last-seen or total-beats",
        "pages",
        responses={200: ("image/svg+xml", {"type": "string"})},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, name: str) -> None:
        renderer = self._renderers.get(name)
        if renderer is None:
            raise falcon.HTTPNotFound(description=f"No badge named {name!r}")
        await self._service.visit(f"badge/{name}")
        resp.set_headers(SECURITY_HEADERS)
        resp.content_type = "image/svg+xml; charset=utf-8"
        resp.text = renderer(await self._service.stats())
