"""Request validation: one decorator that loads the JSON body with a schema."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import falcon
import marshmallow

from screenaware.errors import ValidationFailed

Responder = TypeVar("Responder", bound=Callable[..., Awaitable[None]])


def load_body(schema: marshmallow.Schema) -> Callable[[Responder], Responder]:
    """Decorate a responder: parse the body with ``schema`` into ``req.context.body``.

    Invalid JSON gives Falcon's 400; a body the schema rejects gives a 400 whose
    ``errors`` lists the messages per field. Apply it below any auth hook, so that
    credentials are checked before the body is read.
    """

    def decorator(responder: Responder) -> Responder:
        @functools.wraps(responder)
        async def wrapper(
            self: Any, req: falcon.asgi.Request, resp: falcon.asgi.Response, *args: Any, **kw: Any
        ) -> None:
            media = await req.get_media()
            try:
                req.context.body = schema.load(media)
            except marshmallow.ValidationError as exc:
                raise ValidationFailed(exc.messages, "Invalid request body") from None
            await responder(self, req, resp, *args, **kw)

        return wrapper  # type: ignore[return-value]

    return decorator
