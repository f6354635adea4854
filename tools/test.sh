#!/usr/bin/env bash
# Run the test suite in the project's own virtual environment (created on first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
exec python -m pytest "$@"
