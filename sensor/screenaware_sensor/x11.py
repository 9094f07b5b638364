"""The X11 window source: EWMH properties through python-xlib.

Windows come from ``_NET_CLIENT_LIST_STACKING`` (bottom to top); minimised windows
(``_NET_WM_STATE_HIDDEN`` or ICCCM iconic), windows of other desktops, unmapped ones and
the desktop background are skipped. A window's rectangle includes the frame the window
manager draws (``_NET_FRAME_EXTENTS``). Monitors are RandR 1.5's, else Xinerama's, else
the whole screen. Idle time is the MIT screen-saver extension's.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from Xlib import X, Xatom, display, error
from Xlib.ext import randr, screensaver, xinerama  # noqa: F401  (registers the extensions)

from screenaware_sensor import geometry
from screenaware_sensor.documents import children_map, find_documents, process_tree
from screenaware_sensor.geometry import Rect
from screenaware_sensor.snapshot import Window
from screenaware_sensor.source import SourceError

log = logging.getLogger("screenaware_sensor.x11")

ALL_DESKTOPS = 0xFFFFFFFF
ICONIC_STATE = 3


@dataclass(frozen=True)
class _Seen:
    """A managed window as read from the server, before the shares are computed."""

    title: str
    process_name: str
    pid: int | None
    frame: Rect
    focused: bool


class X11Source:
    """Windows and idle time of one X display.

    Args:
        display_name: e.g. ``":0"``; None = ``$DISPLAY``.
        hostname: this machine's name, to tell our own clients' pids from remote ones.
    """

    def __init__(self, display_name: str | None = None, hostname: str | None = None) -> None:
        try:
            self.display = display.Display(display_name)
        except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
            raise SourceError(f"cannot open X display {display_name or '$DISPLAY'}: {exc}") from exc
        self.root = self.display.screen().root
        self.hostname = hostname or socket.gethostname()
        self._atoms: dict[str, int] = {}
        self._has_saver = self.display.has_extension("MIT-SCREEN-SAVER")
        if not self._has_saver:
            log.warning("the X server has no screen-saver extension: idle time is unknown")

    def close(self) -> None:
        """Close the display connection."""
        try:
            self.display.close()
        except (error.ConnectionClosedError, OSError):
            pass

    def atom(self, name: str) -> int:
        """An interned atom (cached)."""
        if name not in self._atoms:
            self._atoms[name] = self.display.intern_atom(name)
        return self._atoms[name]

    def idle_seconds(self) -> float | None:
        """Seconds since the last input, from the screen-saver extension."""
        if not self._has_saver:
            return None
        try:
            info = self.root.screensaver_query_info()
        except (error.XError, error.ConnectionClosedError, OSError) as exc:
            raise SourceError(f"X display lost: {exc}") from exc
        return float(info.idle) / 1000.0

    def _property(self, window: Any, name: str, kind: int = X.AnyPropertyType) -> Any:
        prop = window.get_full_property(self.atom(name), kind)
        return None if prop is None else prop.value

    def _cardinals(self, window: Any, name: str) -> list[int]:
        value = self._property(window, name)
        if value is None or isinstance(value, bytes | str):
            return []
        return [int(v) for v in value]

    def monitors(self) -> list[Rect]:
        """The monitors: RandR 1.5, else Xinerama, else the screen."""
        try:
            if self.display.has_extension("RANDR"):
                got = self.root.xrandr_get_monitors(is_active=True).monitors
                found = [
                    Rect(m.x, m.y, m.width_in_pixels, m.height_in_pixels)
                    for m in got
                    if m.width_in_pixels and m.height_in_pixels
                ]
                if found:
                    return found
        except error.XError:
            pass  # RandR before 1.5
        try:
            if self.display.has_extension("XINERAMA") and self.display.xinerama_is_active():
                screens = self.display.xinerama_query_screens().screens
                found = [Rect(s.x, s.y, s.width, s.height) for s in screens if s.width]
                if found:
                    return found
        except error.XError:
            pass
        screen = self.display.screen()
        return [Rect(0, 0, screen.width_in_pixels, screen.height_in_pixels)]

    def _title(self, window: Any) -> str:
        value = self._property(window, "_NET_WM_NAME", self.atom("UTF8_STRING"))
        if isinstance(value, bytes):
            return value.decode("utf-8", "replace")
        if isinstance(value, str):
            return value
        prop = window.get_full_property(Xatom.WM_NAME, X.AnyPropertyType)
        if prop is None:
            return ""
        raw = prop.value
        if isinstance(raw, str):
            return raw
        if not isinstance(raw, bytes):
            return ""
        # STRING is Latin-1 by ICCCM; UTF8_STRING and (mostly) COMPOUND_TEXT read as UTF-8.
        encoding = "latin-1" if prop.property_type == Xatom.STRING else "utf-8"
        return raw.decode(encoding, "replace")

    def _pid(self, window: Any) -> int | None:
        pids = self._cardinals(window, "_NET_WM_PID")
        if not pids or pids[0] <= 0:
            return None
        machine = window.get_full_property(Xatom.WM_CLIENT_MACHINE, X.AnyPropertyType)
        if machine is not None and isinstance(machine.value, bytes):
            # A client of another machine: its pid means nothing here.
            if machine.value.decode("latin-1").split(".")[0] != self.hostname.split(".")[0]:
                return None
        return pids[0]

    def _process_name(self, window: Any, pid: int | None) -> str:
        if pid is not None:
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
                name = os.path.basename(exe.removesuffix(" (deleted)"))
                if name:
                    return name
            except OSError:
                pass
        wm_class = window.get_wm_class()
        if wm_class:
            return str(wm_class[-1])
        return ""

    def _frame(self, window: Any) -> Rect:
        geom = window.get_geometry()
        origin = self.root.translate_coords(window, 0, 0)
        left, right, top, bottom = (self._cardinals(window, "_NET_FRAME_EXTENTS") + [0] * 4)[:4]
        return Rect(
            origin.x - left, origin.y - top, geom.width + left + right, geom.height + top + bottom
        )

    def _skipped(self, window: Any, desktop: int | None) -> bool:
        if window.get_attributes().map_state != X.IsViewable:
            return True
        states = self._cardinals(window, "_NET_WM_STATE")
        if self.atom("_NET_WM_STATE_HIDDEN") in states:
            return True
        wm_state = self._cardinals(window, "WM_STATE")
        if wm_state and wm_state[0] == ICONIC_STATE:
            return True
        if self.atom("_NET_WM_WINDOW_TYPE_DESKTOP") in self._cardinals(
            window, "_NET_WM_WINDOW_TYPE"
        ):
            return True
        on = self._cardinals(window, "_NET_WM_DESKTOP")
        return desktop is not None and bool(on) and on[0] not in (desktop, ALL_DESKTOPS)

    def _read(self) -> tuple[list[_Seen], list[Rect]]:
        stacking = self._cardinals(self.root, "_NET_CLIENT_LIST_STACKING") or self._cardinals(
            self.root, "_NET_CLIENT_LIST"
        )
        active = (self._cardinals(self.root, "_NET_ACTIVE_WINDOW") or [0])[0]
        current = self._cardinals(self.root, "_NET_CURRENT_DESKTOP")
        desktop = current[0] if current else None
        seen = []
        for wid in stacking:
            window = self.display.create_resource_object("window", wid)
            try:
                if self._skipped(window, desktop):
                    continue
                pid = self._pid(window)
                seen.append(
                    _Seen(
                        title=self._title(window),
                        process_name=self._process_name(window, pid),
                        pid=pid,
                        frame=self._frame(window),
                        focused=wid == active,
                    )
                )
            except (error.BadWindow, error.BadDrawable, error.BadMatch):
                continue  # closed while we looked
        return seen, self.monitors()

    def windows(self) -> list[Window]:
        """The windows on screen now, bottom to top."""
        try:
            seen, monitors = self._read()
        except (error.XError, error.ConnectionClosedError, OSError) as exc:
            raise SourceError(f"X display lost: {exc}") from exc
        return shares(seen, monitors)


def shares(seen: Sequence[_Seen], monitors: Sequence[Rect]) -> list[Window]:
    """Screen and visible shares (stacking order: later windows are above) and documents."""
    children = children_map() if any(s.pid for s in seen) else {}
    result = []
    for index, item in enumerate(seen):
        above = [other.frame for other in seen[index + 1 :]]
        pids = process_tree(item.pid, children) if item.pid else []
        result.append(
            Window(
                title=item.title,
                process_name=item.process_name,
                is_focused=item.focused,
                screen_percentage=geometry.screen_share(item.frame, monitors),
                visible_percentage=geometry.visible_share(item.frame, above, monitors),
                documents=find_documents(item.title, pids) if pids else (),
            )
        )
    return result
