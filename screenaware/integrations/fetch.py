"""What both integrations' HTTP clients share: an answer read to a cap."""

from __future__ import annotations

import httpx


class TooLarge(Exception):
    """The answer is longer than the cap."""


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The body of a streamed ``response``, read chunk by chunk.

    Raises:
        TooLarge: more than ``max_bytes`` arrived (nothing more is read).
    """
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)
