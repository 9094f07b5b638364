"""``text/csv`` answers for clients that ask for them (``Accept: text/csv``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

import falcon
import falcon.asgi

CSV = "text/csv"


def wants_csv(req: falcon.asgi.Request) -> bool:
    """Whether the client prefers CSV to JSON (JSON when it does not say)."""
    return req.client_prefers([falcon.MEDIA_JSON, CSV]) == CSV and req.client_accepts(CSV)


def cell(value: Any) -> Any:
    """A CSV cell: null as empty, booleans as true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def render(
    resp: falcon.asgi.Response, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Answer a header line and the rows as CSV (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([cell(v) for v in row] for row in rows)
    resp.content_type = f"{CSV}; charset=utf-8"
    resp.text = out.getvalue()
