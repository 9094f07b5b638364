"""Refuse a coverage floor below an earlier commit's: the floor only goes up.

The floor is ``fail_under`` in setup.cfg's ``[coverage:report]`` (``coverage report``
fails under it). Run from the repository root; .ci/run calls it.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path


def floor(setup_cfg: str) -> float:
    """The ``fail_under`` of a setup.cfg text, 0 where it has none."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(setup_cfg)
    return parser.getfloat("coverage:report", "fail_under", fallback=0.0)


def earlier_floors(root: Path) -> list[tuple[str, float]]:
    """(commit, floor) of every commit of HEAD's history that changed setup.cfg.

    None in a tree without commits (nothing to compare with).
    """
    git = ["git", "-C", str(root)]
    listed = subprocess.run(
        [*git, "rev-list", "HEAD", "--", "setup.cfg"], capture_output=True, text=True, check=False
    )
    revs = listed.stdout.split() if listed.returncode == 0 else []
    floors = []
    for rev in revs:
        text = subprocess.run(
            [*git, "show", f"{rev}:setup.cfg"], capture_output=True, text=True, check=True
        ).stdout
        floors.append((rev, floor(text)))
    return floors


def main(root: Path) -> int:
    """Print the floor; 1 if it is lower than one committed before."""
    current = floor((root / "setup.cfg").read_text())
    for rev, earlier in earlier_floors(root):
        if current < earlier:
            print(
                f"coverage floor {current} is below {earlier} of commit {rev[:10]}: "
                "the floor only goes up (setup.cfg [coverage:report] fail_under)",
                file=sys.stderr,
            )
            return 1
    print(f"coverage floor: {current}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path.cwd()))
