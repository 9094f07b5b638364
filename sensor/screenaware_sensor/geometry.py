"""Rectangle arithmetic for screen and visible shares, in integer pixels.

A region is a list of disjoint rectangles; subtracting a rectangle from one leaves at
most four. Snapshots hold at most 200 windows, so this stays small and exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle: left, top, width, height (pixels)."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        """Pixels inside (0 for an empty rectangle)."""
        return max(0, self.w) * max(0, self.h)

    def intersect(self, other: Rect) -> Rect | None:
        """The overlap of both, or None."""
        x1, y1 = max(self.x, other.x), max(self.y, other.y)
        x2 = min(self.x + self.w, other.x + other.w)
        y2 = min(self.y + self.h, other.y + other.h)
        if x2 <= x1 or y2 <= y1:
            return None
        return Rect(x1, y1, x2 - x1, y2 - y1)

    def minus(self, other: Rect) -> list[Rect]:
        """This rectangle without ``other``: up to four disjoint pieces."""
        cut = self.intersect(other)
        if cut is None:
            return [self]
        pieces = []
        if cut.y > self.y:  # band above the cut, full width
            pieces.append(Rect(self.x, self.y, self.w, cut.y - self.y))
        bottom = self.y + self.h
        if cut.y + cut.h < bottom:  # band below, full width
            pieces.append(Rect(self.x, cut.y + cut.h, self.w, bottom - cut.y - cut.h))
        if cut.x > self.x:  # left of the cut, its height
            pieces.append(Rect(self.x, cut.y, cut.x - self.x, cut.h))
        right = self.x + self.w
        if cut.x + cut.w < right:
            pieces.append(Rect(cut.x + cut.w, cut.y, right - cut.x - cut.w, cut.h))
        return pieces


def subtract(region: Iterable[Rect], cover: Rect) -> list[Rect]:
    """``region`` (disjoint rectangles) without ``cover``."""
    return [piece for rect in region for piece in rect.minus(cover)]


def area(region: Iterable[Rect]) -> int:
    """Pixels of a region of disjoint rectangles."""
    return sum(r.area for r in region)


def clip_to_monitors(window: Rect, monitors: Sequence[Rect]) -> list[Rect]:
    """The part of ``window`` on any monitor, as disjoint rectangles (monitors may overlap)."""
    region: list[Rect] = []
    for monitor in monitors:
        part = window.intersect(monitor)
        if part is None:
            continue
        pieces = [part]
        for done in region:  # mirrored or overlapping monitors count once
            pieces = subtract(pieces, done)
        region.extend(pieces)
    return region


def own_monitor(window: Rect, monitors: Sequence[Rect]) -> Rect | None:
    """The monitor showing most of the window (ties: the smaller monitor, then the first)."""
    best: tuple[int, int, int] | None = None
    chosen = None
    for index, monitor in enumerate(monitors):
        part = window.intersect(monitor)
        if part is None:
            continue
        rank = (part.area, -monitor.area, -index)
        if best is None or rank > best:
            best, chosen = rank, monitor
    return chosen


def screen_share(window: Rect, monitors: Sequence[Rect]) -> float:
    """Window area on its monitor / that monitor's area (0 when on no monitor)."""
    monitor = own_monitor(window, monitors)
    if monitor is None or monitor.area == 0:
        return 0.0
    part = window.intersect(monitor)
    return (part.area if part else 0) / monitor.area


def visible_share(window: Rect, above: Iterable[Rect], monitors: Sequence[Rect]) -> float:
    """The share of the window on a monitor and not covered by the windows ``above`` it."""
    if window.area == 0:
        return 0.0
    region = clip_to_monitors(window, monitors)
    for cover in above:
        if not region:
            break
        region = subtract(region, cover)
    return area(region) / window.area
