"""Request validation: decorators that load the JSON body or the query with a schema.

Each records its schema on the responder (see :func:`record`), where
:mod:`screenaware.web.openapi` finds it: the document describes exactly what is
validated.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import falcon
import marshmallow

from screenaware.web.errors import ValidationFailed
from screenaware.web.fastload import MISS, compile_loader

Responder = TypeVar("Responder", bound=Callable[..., Awaitable[None]])

# The attribute of a responder that holds what documents it.
DOC_ATTRIBUTE = "__openapi__"


def record(responder: Any, **doc: Any) -> None:
    """Add ``doc`` to what documents ``responder`` (kept by ``functools.wraps`` above)."""
    setattr(responder, DOC_ATTRIBUTE, {**getattr(responder, DOC_ATTRIBUTE, {}), **doc})


def load_body(
    schema: marshmallow.Schema, *, batch: int | str | None = None
) -> Callable[[Responder], Responder]:
    """Decorate a responder: parse the body with ``schema`` into ``req.context.body``.

    Valid bodies take the fast path compiled from the same schema
    (:mod:`.fastload`); marshmallow decides everything else, with its messages.

    Invalid JSON gives Falcon's 400; a body the schema rejects gives a 400 whose
    ``errors`` lists the messages per field. Apply it below any auth hook, so that
    credentials are checked before the body is read.

    Args:
        schema: the schema of one item.
        batch: accept one object or an array of at most this many (or as many as
            the resource's attribute of that name says, for a configured limit);
            the body is then always a list (errors of an array are keyed by index).
    """

    fast = compile_loader(schema) or (lambda _: MISS)

    def load_one(media: Any) -> Any:
        loaded = fast(media)
        return schema.load(media) if loaded is MISS else loaded

    def load_many(media: list[Any]) -> list[Any]:
        loaded = [fast(item) for item in media]
        if any(item is MISS for item in loaded):
            return schema.load(media, many=True)  # type: ignore[no-any-return]
        return loaded

    def decorator(responder: Responder) -> Responder:
        @functools.wraps(responder)
        async def wrapper(
            self: Any, req: falcon.asgi.Request, resp: falcon.asgi.Response, *args: Any, **kw: Any
        ) -> None:
            media = await req.get_media()
            limit = getattr(self, batch) if isinstance(batch, str) else batch
            try:
                if limit is None:
                    req.context.body = load_one(media)
                elif isinstance(media, list):
                    if len(media) > limit:
                        raise ValidationFailed(
                            {"_schema": [f"At most {limit} items per request."]},
                            f"At most {limit} items per request",
                        )
                    req.context.body = load_many(media)
                else:
                    req.context.body = [load_one(media)]
            except marshmallow.ValidationError as exc:
                raise ValidationFailed(exc.messages, "Invalid request body") from None
            await responder(self, req, resp, *args, **kw)

        record(wrapper, body=schema, batch=batch)
        return wrapper  # type: ignore[return-value]

    return decorator


def load_query(
    schema: marshmallow.Schema, *, from_body: bool = True
) -> Callable[[Responder], Responder]:
    """Like :func:`load_body` for GET parameters, into ``req.context.query``.

    Parameters come from the query string or, as the API examples show, from a
    JSON body; the query string wins.

    Args:
        schema: the schema of the parameters.
        from_body: also read them from a JSON body (False where the body is
            something else, such as on a PUT).
    """

    def decorator(responder: Responder) -> Responder:
        @functools.wraps(responder)
        async def wrapper(
            self: Any, req: falcon.asgi.Request, resp: falcon.asgi.Response, *args: Any, **kw: Any
        ) -> None:
            params: dict[str, Any] = {}
            if from_body and req.content_length:
                media = await req.get_media(default_when_empty=None)
                if media is not None and not isinstance(media, dict):
                    raise ValidationFailed({"_schema": ["Expected an object."]})
                params.update(media or {})
            for key, value in req.params.items():
                params[key] = value[-1] if isinstance(value, list) else value
            try:
                req.context.query = schema.load(params)
            except marshmallow.ValidationError as exc:
                raise ValidationFailed(exc.messages, "Invalid query parameters") from None
            await responder(self, req, resp, *args, **kw)

        record(wrapper, query=schema)
        return wrapper  # type: ignore[return-value]

    return decorator
