"""``GET /.well-known/health``: are InfluxDB and Redis answering?"""

from __future__ import annotations

import asyncio

import falcon
import falcon.asgi

from schemas.heartbeat import HealthSchema
from screenaware.storage.backends import Backends
from screenaware.storage.outages import INFLUXDB, REDIS
from screenaware.web.openapi import operation

_schema = HealthSchema()


class HealthResource:
    """200 when both stores answer, else 503 naming the one that does not."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends

    async def _check_influx(self) -> str:
        try:
            await self._backends.influx.ping()
        except Exception as exc:
            # Whatever the failure, the check answers; the outage log says which
            # backend and why (class name, no secrets), once per transition.
            self._backends.outages.failure(INFLUXDB, exc)
            return "unavailable"
        return "ok"

    async def _check_redis(self) -> str:
        try:
            await self._backends.ping_redis()
        except Exception as exc:
            self._backends.outages.failure(REDIS, exc)
            return "unavailable"
        return "ok"

    @operation(
        "Are InfluxDB and Redis answering?",
        "pages",
        responses={200: HealthSchema, 503: HealthSchema},
    )
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        influx, redis = await asyncio.gather(self._check_influx(), self._check_redis())
        healthy = influx == "ok" and redis == "ok"
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        resp.set_header("Cache-Control", "no-store")
        resp.media = _schema.dump(
            {"status": "ok" if healthy else "unavailable", "influxdb": influx, "redis": redis}
        )
