#!/usr/bin/env bash
# Create .venv beside the repository root (once) and install estatelens with its test and docs tools.
# Sourced by tools/demo.sh and tools/test.sh; safe to run again (reinstalls only when
# pyproject.toml changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ESTATELENS_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
# pip's own output (here pages of warnings about the local package index) goes to a log that is
# shown in full only when an install fails.
pip_install() {
    local log="$VENV/.pip-install.log"
    if ! "$VENV/bin/python" -m pip install --quiet "$@" > "$log" 2>&1; then
        cat "$log" >&2
        echo "setup: pip install $* failed (the output above is also in $log)" >&2
        return 1
    fi
}
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV" >&2
    "$PY" -m venv "$VENV"
    pip_install --upgrade pip
fi
STAMP="$VENV/.estatelens-installed"
WANT="$(sha1sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "installing estatelens and its dependencies into $VENV (torch comes from this machine's disk)" >&2
    pip_install "torch==2.14.1" "torchvision==0.29.1"
    pip_install -e "$ROOT[dev]"
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
