"""InfluxDB line protocol for the hot write paths, byte for byte what
``influxdb_client``'s ``Point.to_line_protocol`` gives.

Why our own: a profile of snapshot ingest put about a quarter of a worker's time
in ``Point.to_line_protocol``, mostly in its escaping (``str.translate`` with a
multi-character table walks every string in Python-level steps). Most strings
need no escaping at all, and a C-speed test says so. ``tests/test_lineprotocol.py``
proves the output equal to the library's with hypothesis, over every character
class in measurement, tag keys and values, field keys and every field type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# The same tables as influxdb_client's point module (what they escape, and how).
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_NEEDS_MEASUREMENT = re.compile(r"[, \n\t\r]")
_NEEDS_KEY = re.compile(r"[,= \n\t\r]")

FieldValue = str | int | float | bool


def _key(text: str) -> str:
    return text.translate(_KEY) if _NEEDS_KEY.search(text) else text


def _string(text: str) -> str:
    # Two C-level replaces (backslashes first, so the quotes' new ones stay single)
    # are what the library's translate table does, several times faster on JSON.
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    return text.replace('"', '\\"') if '"' in text else text


def encode(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, FieldValue | None],
    time_ns: int,
) -> str:
    """One point as a line.

    Args:
        measurement: the measurement.
        tags: tag keys and values (``None`` or empty: left out, as the library does).
        fields: field keys and values: ``str``, ``int`` (``i`` suffix), ``float``
            (non-finite ones left out, a trailing ``.0`` dropped) or ``bool``.
        time_ns: the time in nanoseconds.

    Returns:
        The line, or ``""`` if no field is left (the library writes nothing then).
    """
    name = (
        measurement.translate(_MEASUREMENT)
        if _NEEDS_MEASUREMENT.search(measurement)
        else measurement
    )
    parts = [name]
    for tag_key, tag_value in sorted(tags.items()):
        if tag_value is None:
            continue
        key, value = _key(tag_key), _key(tag_value)
        if value.endswith("\\"):
            value += " "
        if key and value:
            parts.append(f",{key}={value}")
    parts.append(" ")
    rendered = []
    for field_key, field_value in sorted(fields.items()):
        if field_value is None:
            continue
        if isinstance(field_value, bool):
            rendered.append(f"{_key(field_key)}={'true' if field_value else 'false'}")
        elif isinstance(field_value, int):
            rendered.append(f"{_key(field_key)}={field_value}i")
        elif isinstance(field_value, float):
            if not math.isfinite(field_value):
                continue
            text = str(field_value)
            rendered.append(f"{_key(field_key)}={text[:-2] if text.endswith('.0') else text}")
        else:
            rendered.append(f'{_key(field_key)}="{_string(field_value)}"')
    if not rendered:
        return ""
    parts.append(",".join(rendered))
    parts.append(f" {time_ns}")
    return "".join(parts)


# The pieces of a line, for encoders of one fixed measurement (the snapshot path's
# ``window`` and ``activity`` points): the same text encode() writes for them.


def tag_pair(key: str, value: str | None) -> str:
    """``,key=value`` as :func:`encode` writes one tag (``""`` where it leaves it out)."""
    if value is None:
        return ""
    key, value = _key(key), _key(value)
    if value.endswith("\\"):
        value += " "
    return f",{key}={value}" if key and value else ""


def string_field(text: str) -> str:
    """A string field's value between its quotes, as :func:`encode` writes it."""
    return _string(text)


def float_field(value: float) -> str | None:
    """A float field's value as :func:`encode` writes it (None: left out, non-finite)."""
    if not math.isfinite(value):
        return None
    text = str(value)
    return text[:-2] if text.endswith(".0") else text
