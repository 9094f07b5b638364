"""Time-ordered ids (UUIDv7 layout): the first 48 bits are a time in Unix ms."""

from __future__ import annotations

import hashlib
import os
import uuid as uuidlib


def _layout(ms: int, rand_a: int, rand_b: int) -> str:
    value = (ms & (2**48 - 1)) << 80
    value |= 0x7 << 76
    value |= (rand_a & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand_b & (2**62 - 1)
    # What str(uuid.UUID(int=value)) gives, without building the object: log
    # arrays make one id per point.
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7(ms: int) -> str:
    """A random UUIDv7 for the millisecond ``ms`` (74 bits from the OS's CSPRNG)."""
    rand = int.from_bytes(os.urandom(10))  # one system call for both random fields
    return _layout(ms, rand >> 62, rand)


def stable_id(user: str, kind: str, start_ms: int) -> str:
    """A UUIDv7-layout id derived from the user, a kind and a start: the same span
    gets the same id on every call."""
    digest = int.from_bytes(hashlib.sha256(f"{user}:{kind}:{start_ms}".encode()).digest()[:10])
    return _layout(start_ms, digest >> 62, digest)


def uuid5_text(namespace: uuidlib.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, without building the object.

    Snapshot keys and application ids are one per snapshot on the ingest path,
    where ``uuid5`` (its ``UUID`` object and ``__str__``) was a measurable share.
    ``tests/test_ids.py`` proves it equal to the library's with hypothesis.
    """
    h = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).hexdigest()
    # Version 5 in the 13th hex digit; the variant (binary 10) in the top bits of the 17th.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def uuid7_ms(value: str) -> int | None:
    """The millisecond inside a version 7 uuid, or None if the text is not one."""
    try:
        parsed = uuidlib.UUID(value)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return parsed.int >> 80
