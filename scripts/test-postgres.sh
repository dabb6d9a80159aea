#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on a free loopback port for the gateway tests
# and prints the environment for them (`eval "$(scripts/test-postgres.sh start DIR)"`);
# `scripts/test-postgres.sh stop DIR` removes it. Installs Debian's postgresql when
# missing. As root, the cluster runs as the `postgres` user (PostgreSQL refuses root).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?a directory for the cluster}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$cmd" in
start)
    if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
        echo "installing postgresql from Debian's packages" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
    bin=$(pg_bin)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    echo "export JITGATE_TEST_PG=127.0.0.1:$port JITGATE_REQUIRE_PG=1"
    ;;
stop)
    bin=$(pg_bin)
    [ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
esac
