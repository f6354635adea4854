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
    if services="$(bash tools/ci_services.sh start)"; then
        eval "$services"
        trap 'bash tools/ci_services.sh stop' EXIT
    else
        echo "test.sh: PostgreSQL / Chromium not available: their tests will be skipped" >&2
    fi
fi
python -m pytest "$@"
