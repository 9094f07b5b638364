"""Small helpers at the Redis boundary."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


class Script:
    """A Lua script run by digest (EVALSHA), loaded on first use per server.

    Unlike redis-py's ``register_script``, it is not bound to one client, so it
    can be created before the client exists (clients open in the lifespan).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or was flushed of scripts: load it and go on.
            return await client.eval(self.source, len(keys), *keys, *args)
