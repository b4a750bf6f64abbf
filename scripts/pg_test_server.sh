#!/usr/bin/env bash
# A throwaway PostgreSQL server for the distributed-study tests (pytest -m postgres).
#
#   eval "$(scripts/pg_test_server.sh start)"   # prints the two export lines below
#   ...                                         # REMDINET_TEST_PG_URL=postgresql://remdinet@127.0.0.1:PORT/remdinet_test
#   scripts/pg_test_server.sh stop              # uses REMDINET_TEST_PG_DIR from start
#
# start: finds the Debian/Ubuntu PostgreSQL binaries (installing the `postgresql` package with apt-get
# when there are none), initialises a cluster in a fresh mktemp folder, listens on 127.0.0.1 on a free
# port (no other interface, trust authentication, fsync off: nothing here is worth keeping) and creates
# the database remdinet_test owned by the superuser `remdinet`, which may create more databases (the
# tests make one per test). initdb refuses to run as root, so as root the server runs as the system user
# `postgres` (created by the package; created here if missing). stop: fast shutdown, folder removed.
# Progress goes to stderr; stdout carries only the export lines.
set -euo pipefail

log() { echo "pg_test_server: $*" >&2; }

find_bin() {
    local initdb
    initdb=$(command -v initdb || true)
    if [ -n "$initdb" ]; then
        dirname "$(readlink -f "$initdb")"
        return
    fi
    # Debian keeps the server binaries out of PATH, one folder per major version: take the newest.
    local dirs
    dirs=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dirs" ] && [ -x "$dirs/initdb" ]; then
        echo "$dirs"
    fi
}

run_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_USER" -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
    local bin
    bin=$(find_bin)
    if [ -z "$bin" ]; then
        log "no PostgreSQL binaries found; installing the postgresql package"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
        bin=$(find_bin)
        if [ -z "$bin" ]; then
            log "the postgresql package is installed but initdb is still not found"
            exit 1
        fi
    fi
    PG_USER=$(id -un)
    if [ "$(id -u)" = 0 ]; then
        PG_USER=postgres
        if ! id "$PG_USER" >/dev/null 2>&1; then
            log "creating the system user $PG_USER"
            useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
        fi
    fi
    local dir port
    dir=$(mktemp -d /tmp/remdinet-pg.XXXXXX)
    chown "$PG_USER" "$dir"
    run_as "$bin/initdb" -D "$dir/data" -U remdinet --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    run_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || { cat "$dir/server.log" >&2; exit 1; }
    run_as "$bin/createdb" -h 127.0.0.1 -p "$port" -U remdinet remdinet_test \
        || { run_as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >&2; exit 1; }
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    echo "export REMDINET_TEST_PG_URL=postgresql://remdinet@127.0.0.1:$port/remdinet_test"
    echo "export REMDINET_TEST_PG_DIR=$dir"
}

stop() {
    local dir=${REMDINET_TEST_PG_DIR:-}
    if [ -z "$dir" ] || [ ! -d "$dir/data" ]; then
        log "REMDINET_TEST_PG_DIR does not name a server folder (${dir:-unset}); nothing to stop"
        exit 1
    fi
    local bin owner
    bin=$(find_bin)
    owner=$(stat -c %U "$dir/data")
    PG_USER=$owner
    run_as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    rm -rf "$dir"
    log "stopped; removed $dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
