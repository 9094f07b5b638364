"""What a window source sees, turned into the API's snapshot, privacy filters first."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from screenaware_sensor.config import normalise_app

MAX_WINDOWS = 200  # the API's limits per snapshot and per window
MAX_DOCUMENTS = 100
MAX_TAGS = 20

# Words of two or more letters or digits (any script), with inner dots, dashes and
# underscores kept ("screenaware.py", "issue-14").
_WORD = re.compile(r"[^\W_](?:[\w.\-]*[^\W_])?")


@dataclass(frozen=True)
class Window:
    """One window as a source saw it (before the privacy filters).

    Attributes:
        title: the window title.
        process_name: the executable's name (or the window class).
        is_focused: whether it has the keyboard focus.
        screen_percentage: share 0..1 of its monitor it covers.
        visible_percentage: share 0..1 of it on a monitor and not covered.
        documents: absolute paths of the local files it shows, best first.
    """

    title: str
    process_name: str
    is_focused: bool = False
    screen_percentage: float = 0.0
    visible_percentage: float = 0.0
    documents: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Privacy:
    """The filters that run before anything leaves the computer."""

    exclude_title: tuple[re.Pattern[str], ...] = ()
    exclude_app: tuple[str, ...] = ()

    def hides(self, window: Window) -> bool:
        """Whether the window must go out with an empty title and no documents or tags."""
        if normalise_app(window.process_name) in self.exclude_app:
            return True
        return any(p.search(window.title) for p in self.exclude_title)


def title_tags(title: str) -> dict[str, int]:
    """Word weights of a title: how often each word (lower case, 2+ characters) occurs.

    Numbers alone are left out (counters and clocks say nothing about the work); the
    heaviest ``MAX_TAGS`` words are kept, ties in title order.
    """
    words = [w.lower() for w in _WORD.findall(title)]
    counts = Counter(w for w in words if len(w) >= 2 and not w.replace(".", "").isdigit())
    return dict(counts.most_common(MAX_TAGS))


def window_json(window: Window, privacy: Privacy) -> dict[str, Any]:
    """The API's window object."""
    hidden = privacy.hides(window)
    title = "" if hidden else window.title
    return {
        "title": title,
        "processName": window.process_name,
        "isFocused": window.is_focused,
        "screenPercentage": round(min(1.0, max(0.0, window.screen_percentage)), 6),
        "visiblePercentage": round(min(1.0, max(0.0, window.visible_percentage)), 6),
        "documents": []
        if hidden
        else [{"path": path} for path in window.documents[:MAX_DOCUMENTS]],
        "tags": {} if hidden else title_tags(title),
    }


def iso_ms(ms: int) -> str:
    """Unix milliseconds as ISO 8601 UTC with milliseconds (``2026-12-01T20:00:00.000Z``)."""
    seconds, millis = divmod(ms, 1000)
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def build_snapshot(
    windows: Sequence[Window] | None, taken_ms: int, duration_ms: int, privacy: Privacy
) -> dict[str, Any]:
    """The API's snapshot covering ``[taken_ms - duration_ms, taken_ms]``.

    Args:
        windows: what was on screen, or None when the person is away (no windows).
        taken_ms: when it was taken, Unix milliseconds.
        duration_ms: how long before that it covers, 1..10000.
        privacy: the filters.
    """
    # Focused and most visible first, so the API's cap keeps the windows that matter.
    kept = sorted(windows or (), key=lambda w: (not w.is_focused, -w.visible_percentage))
    return {
        "timeTaken": iso_ms(taken_ms),
        "durationMs": duration_ms,
        "windows": [window_json(w, privacy) for w in kept[:MAX_WINDOWS]],
    }
