#!/usr/bin/env bash
# Run the test suite in the project's own virtual environment (created on first use). Where it
# can (root with Debian's packages, as on CI), it also installs and starts what the index and
# browser tests need: Chromium and a throwaway PostgreSQL server (tools/ci_services.sh); without
# them those tests are skipped with the reason.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/tools/setup.sh"
cd "$ROOT"
if [ -z "${ESTATELENS_TEST_POSTGRES:-}" ] && [ "${ESTATELENS_NO_SERVICES:-0}" != 1 ]; then
    eval "$(bash tools/ci_services.sh start)"
    if [ -n "${ESTATELENS_PG_STATE:-}" ]; then
        trap 'bash tools/ci_services.sh stop "$ESTATELENS_PG_STATE"' EXIT
    fi
fi
python -m pytest "$@"
