"""``GET /api/openapi.json`` and ``GET /api/docs``: the contract, as JSON and as a page.

The page is rendered on the server from the same document (no script, no external
assets), so it works offline and under the strict Content-Security-Policy.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import falcon
import falcon.asgi

from screenaware.web.headers import SECURITY_HEADERS
from screenaware.web.openapi import build_spec


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " | ".join(str(k) for k in kind)
    if kind == "array" and "items" in schema:
        return f"array of {_type(schema['items'])}"
    extra = []
    if "enum" in schema:
        extra.append("one of " + ", ".join(escape(json.dumps(v)) for v in schema["enum"]))
    if "format" in schema:
        extra.append(escape(schema["format"]))
    return escape(str(kind)) + (f" ({'; '.join(extra)})" if extra else "")


def render(spec: dict[str, Any]) -> str:
    """The reference page for an OpenAPI document."""
    info = spec["info"]
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info['title'])} API reference</title>",
        "<link rel='stylesheet' href='/static/docs.css'></head><body>",
        f"<h1>{escape(info['title'])} API reference <small>{escape(info['version'])}</small></h1>",
        f"<p>{escape(info.get('description', ''))} The machine-readable document is "
        "<a href='/api/openapi.json'>/api/openapi.json</a>.</p>",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            by_tag.setdefault(op["tags"][0], []).append((method, path, op))
    for tag, ops in by_tag.items():
        out.append(f"<h2>{escape(tag)}</h2>")
        for method, path, op in ops:
            out.append(f"<div class='op' id='{escape(op['operationId'])}'>")
            out.append(f"<p><span class='m'>{escape(method)}</span><code>{escape(path)}</code>"
                       f" — {escape(op['summary'])}</p>")  # fmt: skip
            if op.get("description"):
                out.append(f"<p>{escape(op['description'])}</p>")
            security = [name for req in op.get("security", []) for name in req] or ["none"]
            out.append(f"<p>Authentication: {escape(', '.join(security))}</p>")
            if op.get("parameters"):
                out.append("<table><tr><th>parameter</th><th>in</th><th>type</th></tr>")
                for p in op["parameters"]:
                    needed = " (required)" if p.get("required") else ""
                    name = f"<td><code>{escape(p['name'])}</code>{needed}</td>"
                    out.append(
                        f"<tr>{name}<td>{escape(p['in'])}</td><td>{_type(p['schema'])}</td></tr>"
                    )
                out.append("</table>")
            if "requestBody" in op:
                for media, content in op["requestBody"]["content"].items():
                    out.append(f"<p>Body ({escape(media)}): {_type(content['schema'])}</p>")
            for code, response in op["responses"].items():
                kinds = [f"{escape(m)}: {_type(c['schema'])}"
                         for m, c in response.get("content", {}).items()]  # fmt: skip
                out.append(f"<p>{escape(code)} — {escape(response['description'])}"
                           f"{' — ' + '; '.join(kinds) if kinds else ''}</p>")  # fmt: skip
            out.append("</div>")
    out.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        required = set(schema.get("required", []))
        out.append(f"<h3 id='schema-{escape(name)}'>{escape(name)}</h3><table>")
        for prop, sub in schema.get("properties", {}).items():
            mark = " (required)" if prop in required else ""
            cells = f"<td><code>{escape(prop)}</code>{mark}</td><td>{_type(sub)}</td>"
            out.append(f"<tr>{cells}</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


class OpenAPIResource:
    """``GET /api/openapi.json``."""

    def __init__(self) -> None:
        self._spec = build_spec()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = self._spec


class DocsResource:
    """``GET /api/docs``."""

    def __init__(self) -> None:
        self._html = render(build_spec())

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.set_headers(SECURITY_HEADERS)
        resp.content_type = falcon.MEDIA_HTML
        resp.text = self._html
