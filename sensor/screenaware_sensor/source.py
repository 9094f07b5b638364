"""The one small interface every window source implements (X11 here).

Windows and macOS sources are not written: there, the ActivityWatch bridge is the way.
"""

from __future__ import annotations

from typing import Protocol

from screenaware_sensor.snapshot import Window


class SourceError(Exception):
    """The source cannot see the screen now (display gone, server not up yet)."""


class WindowSource(Protocol):
    """What the sensor needs from a desktop."""

    def idle_seconds(self) -> float | None:
        """Seconds since the last keyboard or mouse input (None: the source cannot tell)."""
        ...

    def windows(self) -> list[Window]:
        """The windows on screen now: managed, not minimised, on the current desktop.

        Raises:
            SourceError: the screen cannot be read.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
