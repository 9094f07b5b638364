# Shared by the scripts: paths and helpers. Source it, do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SCREENAWARE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
export SCREENAWARE_DATA_DIR="${SCREENAWARE_DATA_DIR:-$ROOT/var}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
