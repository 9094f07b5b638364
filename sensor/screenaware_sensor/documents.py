"""Local documents of a window: files whose names appear in its title (Linux ``/proc``).

A file counts when its name appears in the title and it is open in the window's process
(or a process under it, such as an editor inside a terminal), or lies in one of those
processes' working directories. Paths are absolute; the order is where the name
appears in the title.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

MAX_PROCESSES = 64  # the window's process and its descendants looked at
MAX_FDS = 1024  # open files looked at per process
MAX_DOCUMENTS = 100

# Title pieces that may be a file name or path: no white space, quotes or brackets.
_TOKEN = re.compile(r"[^\s\"'`()\[\]{}<>|,;*]+")
_NAME_CHAR = re.compile(r"[\w.\-]")


def children_map(proc: str = "/proc") -> dict[int, list[int]]:
    """Parent pid -> child pids of every process now (one pass over ``/proc``)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir(proc)
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc}/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ')'.
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_tree(pid: int, children: Mapping[int, list[int]]) -> list[int]:
    """``pid`` and its descendants, breadth first, at most ``MAX_PROCESSES``."""
    found, todo = [pid], [pid]
    while todo and len(found) < MAX_PROCESSES:
        for child in children.get(todo.pop(0), ()):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found[:MAX_PROCESSES]


def _open_files(pid: int) -> Iterable[str]:
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)[:MAX_FDS]
    except OSError:
        return
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/", "/sys/")):
            yield target


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _position(title: str, name: str) -> int:
    """Where ``name`` appears in ``title`` as a whole name (-1 if not)."""
    start = title.find(name)
    while start >= 0:
        end = start + len(name)
        before = title[start - 1] if start else " "
        after = title[end] if end < len(title) else " "
        if not _NAME_CHAR.match(before) and not _NAME_CHAR.match(after):
            return start
        start = title.find(name, start + 1)
    return -1


def find_documents(title: str, pids: Iterable[int]) -> tuple[str, ...]:
    """Absolute paths of local files named in ``title`` and known to the processes ``pids``."""
    if not title.strip():
        return ()
    found: dict[str, int] = {}
    cwds: list[str] = []
    for pid in pids:
        for path in _open_files(pid):
            name = os.path.basename(path.removesuffix(" (deleted)"))
            if not name or path.endswith(" (deleted)"):
                continue
            at = _position(title, name)
            if at >= 0 and path not in found and os.path.isfile(path):
                found[path] = at
        cwd = _cwd(pid)
        if cwd and cwd not in cwds:
            cwds.append(cwd)
    for match in _TOKEN.finditer(title):
        token = match.group().rstrip(".:")
        if not token or token in (".", ".."):
            continue
        candidates = (
            [os.path.expanduser(token)]
            if token.startswith(("/", "~"))
            else [os.path.join(cwd, token) for cwd in cwds]
        )
        for candidate in candidates:
            path = os.path.normpath(candidate)
            if path not in found and os.path.isfile(path):
                found[path] = match.start()
                break
    ordered = sorted(found, key=lambda p: found[p])
    return tuple(ordered[:MAX_DOCUMENTS])
