#!/usr/bin/env bash
# Services the tests need beyond Python: Debian's Chromium (browser tests) and a throwaway
# PostgreSQL server (the index's PostgreSQL tests). Installs from Debian's packages when run as
# root and they are missing, starts the server on 127.0.0.1:${ESTATELENS_PG_PORT:-54329} in a fresh
# folder (trust authentication, loopback only, deleted by stop), and prints the `export` line to eval:
#     eval "$(bash tools/ci_services.sh start)"   ...   bash tools/ci_services.sh stop
set -euo pipefail
PORT="${ESTATELENS_PG_PORT:-54329}"
STATE=/tmp/estatelens-ci-postgres

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "ci_services: $* missing and not root: cannot install" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
}

start() {
    command -v chromium >/dev/null 2>&1 || apt_install chromium
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/postgres" ]; then
        apt_install postgresql
        PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    fi
    stop >/dev/null 2>&1 || true
    rm -rf "$STATE" && mkdir -p "$STATE"
    RUN=()
    if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root
        chown postgres "$STATE"
        RUN=(runuser -u postgres --)
    fi
    "${RUN[@]}" "$PGBIN/initdb" -D "$STATE/data" -A trust -U postgres >/dev/null
    "${RUN[@]}" "$PGBIN/pg_ctl" -D "$STATE/data" -l "$STATE/log" -w \
        -o "-p $PORT -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
    echo "$PGBIN" > "$STATE/bin"
    echo "export ESTATELENS_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$PORT/postgres"
}

stop() {
    [ -f "$STATE/bin" ] || return 0
    PGBIN="$(cat "$STATE/bin")"
    RUN=()
    [ "$(id -u)" = 0 ] && RUN=(runuser -u postgres --)
    "${RUN[@]}" "$PGBIN/pg_ctl" -D "$STATE/data" -m fast -w stop >&2 || true
    rm -rf "$STATE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
