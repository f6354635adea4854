#!/usr/bin/env bash
# Services the tests need beyond Python: Debian's Chromium (browser tests) and a throwaway
# PostgreSQL server (the index's PostgreSQL tests). Installs them from Debian's packages when run
# as root and they are missing, starts the server on 127.0.0.1 at a free port in a fresh folder
# (UTF-8, trust authentication, loopback only), and prints the lines to eval:
#     eval "$(bash tools/ci_services.sh start)"   ...   bash tools/ci_services.sh stop "$ESTATELENS_PG_STATE"
# A service that cannot be had is reported on stderr and left out; the other still starts.
set -euo pipefail
shopt -s nullglob

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "ci_services: $* missing, and not root: cannot install it" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
}

postgres_bin() {
    local dirs=(/usr/lib/postgresql/*/bin)
    [ ${#dirs[@]} -gt 0 ] || return 0
    printf '%s\n' "${dirs[@]}" | sort -V | tail -1
}

as_postgres() {  # PostgreSQL refuses to run as root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local bin state port
    bin="$(postgres_bin)"
    if [ -z "$bin" ] || [ ! -x "$bin/postgres" ]; then
        apt_install postgresql || return 1
        bin="$(postgres_bin)"
    fi
    state="$(mktemp -d /tmp/estatelens-postgres.XXXXXX)"
    [ "$(id -u)" = 0 ] && chown postgres "$state"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_postgres "$bin/initdb" -D "$state/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
    as_postgres "$bin/pg_ctl" -D "$state/data" -l "$state/log" -w \
        -o "-p $port -k $state -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
    echo "$bin" > "$state/bin"
    echo "export ESTATELENS_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$port/postgres"
    echo "export ESTATELENS_PG_STATE=$state"
}

start() {
    command -v chromium >/dev/null 2>&1 || apt_install chromium || echo "ci_services: no chromium" >&2
    start_postgres || echo "ci_services: no PostgreSQL server" >&2
}

stop() {
    local state="${1:-${ESTATELENS_PG_STATE:-}}"
    [ -n "$state" ] && [ -f "$state/bin" ] || return 0
    as_postgres "$(cat "$state/bin")/pg_ctl" -D "$state/data" -m fast -w stop >&2 || true
    rm -rf "$state"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    *) echo "usage: $0 start | stop [STATE_FOLDER]" >&2; exit 2 ;;
esac
