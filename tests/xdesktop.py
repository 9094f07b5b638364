"""A real X desktop for the sensor's tests: Xvfb + openbox, windows by xterm, input by xdotool.

Xvfb picks a free display number itself (``-displayfd``); everything started here is
stopped by its pid.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# No window decorations, so a window's frame is exactly its client area and the tests
# can name every pixel; two desktops for the other-desktop case.
OPENBOX_RC = """<?xml version="1.0" encoding="UTF-8"?>
<openbox_config xmlns="http://openbox.org/3.4/rc">
  <desktops><number>2</number><firstdesk>1</firstdesk></desktops>
  <theme><keepBorder>no</keepBorder></theme>
  <margins><top>0</top><bottom>0</bottom><left>0</left><right>0</right></margins>
  <applications>
    <application class="*"><decor>no</decor></application>
  </applications>
</openbox_config>
"""


@dataclass
class Geometry:
    x: int
    y: int
    w: int
    h: int


@dataclass
class Desktop:
    display: str
    width: int
    height: int
    base: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DISPLAY": self.display}

    def run(self, *argv: str, timeout: float = 20) -> str:
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
        return done.stdout

    def xdotool(self, *args: str) -> str:
        return self.run("xdotool", *args)

    def xterm(self, title: str, cwd: Path | None = None, open_file: Path | None = None) -> int:
        """Start an xterm titled ``title``; its window id. ``open_file`` stays open in it."""
        command = f"exec xterm -title {shlex.quote(title)} -e sleep 600"
        if open_file is not None:
            # Inherited by xterm across exec: the file is open in the window's process.
            command = f"exec 3<{shlex.quote(str(open_file))}; " + command
        proc = subprocess.Popen(
            ["sh", "-c", command],
            env=self.env,
            cwd=cwd or self.base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        deadline = time.monotonic() + 20
        while True:
            found = subprocess.run(
                ["xdotool", "search", "--pid", str(proc.pid)],
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            if found:
                wid = int(found[-1])
                # Mapped and managed (in the client list) before the test goes on.
                if str(wid) in self.client_list():
                    return wid
            assert time.monotonic() < deadline, f"xterm {title!r} did not appear"
            time.sleep(0.05)

    def client_list(self) -> list[str]:
        out = self.run("xprop", "-root", "_NET_CLIENT_LIST")
        return [str(int(v.strip(), 16)) for v in out.split("#", 1)[-1].split(",") if "0x" in v]

    def place(self, wid: int, x: int, y: int, w: int, h: int) -> Geometry:
        """Move and size a window; its geometry as the X server has it then."""
        self.xdotool("windowsize", "--sync", str(wid), str(w), str(h))
        self.xdotool("windowmove", "--sync", str(wid), str(x), str(y))
        return self.geometry(wid)

    def geometry(self, wid: int) -> Geometry:
        out = self.xdotool("getwindowgeometry", "--shell", str(wid))
        values = dict(line.split("=", 1) for line in out.split())
        return Geometry(int(values["X"]), int(values["Y"]), int(values["WIDTH"]),
                        int(values["HEIGHT"]))  # fmt: skip

    def activate(self, wid: int) -> None:
        """Focus and raise (through _NET_ACTIVE_WINDOW, as a person's click would)."""
        self.xdotool("windowactivate", "--sync", str(wid))
        self.settle()

    def settle(self) -> None:
        # The window manager answers requests asynchronously: a round trip through it.
        time.sleep(0.3)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def x_desktop(base: Path, width: int = 1000, height: int = 800) -> Iterator[Desktop]:
    """Xvfb on a free display with openbox managing it."""
    base.mkdir(parents=True, exist_ok=True)
    read, write = os.pipe()
    logs = [open(base / "xvfb.log", "wb"), open(base / "openbox.log", "wb")]
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
         "-nolisten", "tcp", "-noreset"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=logs[0],
    )  # fmt: skip
    os.close(write)
    number = b""
    with os.fdopen(read, "rb") as fh:
        while not number.endswith(b"\n"):
            chunk = fh.read(1)
            if not chunk:
                xvfb.kill()
                xvfb.wait()
                for log in logs:
                    log.close()
                raise RuntimeError(f"Xvfb did not start: {(base / 'xvfb.log').read_text()}")
            number += chunk
    desktop = Desktop(f":{int(number)}", width, height, base, [xvfb])
    try:
        rc = base / "openbox-rc.xml"
        rc.write_text(OPENBOX_RC)
        wm = subprocess.Popen(
            ["openbox", "--config-file", str(rc)],
            env={**desktop.env, "HOME": str(base), "XDG_CONFIG_HOME": str(base / "config")},
            stdout=subprocess.DEVNULL,
            stderr=logs[1],
        )
        desktop.procs.append(wm)
        deadline = time.monotonic() + 20
        while True:  # openbox is up once it owns _NET_SUPPORTING_WM_CHECK
            out = subprocess.run(
                ["xprop", "-root", "_NET_SUPPORTING_WM_CHECK"],
                env=desktop.env,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            if "window id" in out:
                break
            assert wm.poll() is None, (base / "openbox.log").read_text()
            assert time.monotonic() < deadline, "openbox did not start"
            time.sleep(0.05)
        yield desktop
    finally:
        desktop.stop()
        for log in logs:
            log.close()
