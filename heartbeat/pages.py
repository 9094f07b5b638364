"""HTML pages and SVG badges of the Heartbeat API, rendered server-side.

Pages carry no inline script or style (a strict Content-Security-Policy holds);
``static/heartbeat.js`` keeps them live over the stats WebSocket.
"""

from __future__ import annotations

from html import escape
from string import Template
from typing import Any

from heartbeat.stats import format_duration, format_timestamp

_LAYOUT = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="stylesheet" href="/static/heartbeat.css">
<script src="/static/heartbeat.js" defer></script>
</head>
<body>
<header><h1><a href="/">$server_name</a></h1>
<nav><a href="/">Presence</a> <a href="/stats">Statistics</a> <a href="/privacy">Privacy</a></nav>
</header>
<main>
$content
</main>
<footer><span id="live-status" data-state="connecting">connecting…</span></footer>
</body>
</html>
""")

_INDEX = Template("""<p class="lead">Last seen</p>
<p class="big" id="last-seen" data-stat="last_seen" data-format="timestamp">$last_seen</p>
<dl>
<dt>Time since</dt>
<dd id="time-since" data-stat="last_seen_relative" data-format="duration">$since</dd>
<dt>Longest absence</dt>
<dd id="longest-absence" data-stat="longest_absence" data-format="duration">$longest</dd>
<dt>Total beats</dt>
<dd id="total-beats" data-stat="total_beats" data-format="number">$total</dd>
</dl>""")

_STATS = Template("""<h2>Statistics</h2>
<dl>
<dt>Last seen</dt>
<dd id="last-seen" data-stat="last_seen" data-format="timestamp">$last_seen</dd>
<dt>Time since</dt>
<dd id="time-since" data-stat="last_seen_relative" data-format="duration">$since</dd>
<dt>Longest absence</dt>
<dd id="longest-absence" data-stat="longest_absence" data-format="duration">$longest</dd>
<dt>Total beats</dt>
<dd id="total-beats" data-stat="total_beats" data-format="number">$total</dd>
<dt>Visits</dt>
<dd id="num-visits" data-stat="num_visits" data-format="number">$visits</dd>
<dt>Uptime</dt>
<dd id="uptime" data-stat="uptime" data-format="duration">$uptime</dd>
</dl>
<h2>Devices</h2>
<table>
<thead><tr><th>ID</th><th>Name</th><th>Last beat</th><th>Beats</th></tr></thead>
<tbody id="devices">
$rows
</tbody>
</table>""")

_PRIVACY = Template("""<h2>Privacy</h2>
<p>$server_name records, for each registered device, the time of every heartbeat it
sends. Nothing else about the device or its owner is stored.</p>
<p>Viewing these pages is counted as a visit (page and time only). No cookies are set,
no IP addresses are stored, and nothing is loaded from third parties.</p>""")


def _layout(server_name: str, title: str, content: str) -> str:
    return _LAYOUT.substitute(title=escape(title), server_name=escape(server_name), content=content)


def _common(stats: dict[str, Any]) -> dict[str, str]:
    return {
        "last_seen": escape(format_timestamp(stats["last_seen"])),
        "since": escape(format_duration(stats["last_seen_relative"]))
        if stats["last_seen"] is not None
        else "\u2013",
        "longest": escape(format_duration(stats["longest_absence"])),
        "total": f"{stats['total_beats']:,}",
    }


def render_index(server_name: str, stats: dict[str, Any]) -> str:
    """The presence page ``/``."""
    return _layout(server_name, server_name, _INDEX.substitute(_common(stats)))


def render_stats(server_name: str, stats: dict[str, Any]) -> str:
    """The statistics page ``/stats``, with the device table."""
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:,}</td></tr>".format(
            d["id"], escape(d["name"]), escape(format_timestamp(d["last_beat"])), d["num_beats"]
        )
        for d in stats["devices"]
    )
    content = _STATS.substitute(
        _common(stats),
        visits=f"{stats['num_visits']:,}",
        uptime=escape(format_duration(stats["uptime"])),
        rows=rows,
    )
    return _layout(server_name, f"Statistics \u2013 {server_name}", content)


def render_privacy(server_name: str) -> str:
    """The privacy page ``/privacy``."""
    content = _PRIVACY.substitute(server_name=escape(server_name))
    return _layout(server_name, f"Privacy \u2013 {server_name}", content)


def _text_width(text: str) -> int:
    # Verdana 11px averages ~6.5px per character; good enough for a badge.
    return int(len(text) * 6.5) + 10


def render_badge(label: str, value: str, color: str) -> str:
    """A shields.io-style SVG badge."""
    left, right = _text_width(label), _text_width(value)
    total = left + right
    label_e, value_e = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" '
        f'role="img" aria-label="{label_e}: {value_e}">'
        f"<title>{label_e}: {value_e}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{color}"/>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        f'font-size="11">'
        f'<text x="{left / 2}" y="14">{label_e}</text>'
        f'<text x="{left + right / 2}" y="14">{value_e}</text>'
        f"</g></svg>"
    )


def last_seen_badge(stats: dict[str, Any]) -> str:
    """Badge ``last seen | 3 minutes ago``; green while recent."""
    if stats["last_seen"] is None:
        return render_badge("last seen", "never", "#9f9f9f")
    relative = stats["last_seen_relative"]
    color = "#4c1" if relative < 600 else "#dfb317" if relative < 86400 else "#e05d44"
    return render_badge("last seen", f"{format_duration(relative)} ago", color)


def total_beats_badge(stats: dict[str, Any]) -> str:
    """Badge ``total beats | 120,062``."""
    return render_badge("total beats", f"{stats['total_beats']:,}", "#007ec6")
