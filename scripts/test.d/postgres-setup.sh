# shellcheck shell=bash
# Sourced by scripts/test.sh before the build: provides the PostgreSQL server the store's
# conformance suite and the herald's PostgreSQL tests run against.
#
# - DB_URL already set to postgres://… → the tests use that server (nothing is started).
# - Otherwise: installs Debian's PostgreSQL if missing, creates a throw-away cluster in its own
#   data directory under /tmp, listening only on 127.0.0.1 on a free port, and removes it when
#   the test script exits (chained with any EXIT trap already set).
#
# Exports for the tests:
#   HELIX_TEST_PG_URL    postgres://… of a database the tests may create schemas/databases in
#   HELIX_TEST_PG_BIN    directory with initdb/pg_ctl/postgres (outage tests start their own cluster)
#   HELIX_TEST_PG_USER   OS user those binaries must run as (initdb refuses root)

_helix_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

_helix_pg_setup() {
    if ! _helix_pg_bin >/dev/null; then
        echo "postgres-setup: installing Debian's PostgreSQL"
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        else
            sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        fi
    fi
    local bin
    bin=$(_helix_pg_bin) || { echo "postgres-setup: no initdb found after installing postgresql" >&2; return 1; }
    export HELIX_TEST_PG_BIN="$bin"

    # The server runs as an unprivileged user: the `postgres` user Debian's package creates, or
    # ourselves when we are not root.
    local run_as=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
        run_as=(runuser -u postgres --)
        export HELIX_TEST_PG_USER=postgres
    else
        export HELIX_TEST_PG_USER="$(id -un)"
    fi

    case "${DB_URL:-}" in
        postgres://*|postgresql://*)
            echo "postgres-setup: using the server of DB_URL"
            export HELIX_TEST_PG_URL="$DB_URL"
            return 0
            ;;
    esac

    local dir port
    dir=$(mktemp -d /tmp/helix-pg-test.XXXXXX)
    chmod 755 "$dir"
    [ "${#run_as[@]}" -gt 0 ] && chown postgres: "$dir"
    # A free port: ask the kernel for one, then hand it to the server.
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -U helix --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    # Tests create a schema per check and several heralds each keep a pool: allow plenty of
    # connections. fsync stays on: the durability tests rely on it.
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=400 -c shared_buffers=256MB" \
        start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
    "$bin/psql" -h 127.0.0.1 -p "$port" -U helix -d postgres -qAt -c "CREATE DATABASE helix_test" >/dev/null

    export HELIX_TEST_PG_URL="postgres://helix@127.0.0.1:$port/helix_test"
    _HELIX_PG_DIR="$dir"
    echo "postgres-setup: throw-away cluster on 127.0.0.1:$port in $dir"

    # Sourced script: keep whatever EXIT trap the caller already has, then stop and remove ours.
    local previous
    previous=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
    # shellcheck disable=SC2064
    trap "${previous:+$previous; }_helix_pg_teardown" EXIT
}

_helix_pg_teardown() {
    [ -n "${_HELIX_PG_DIR:-}" ] && [ -d "$_HELIX_PG_DIR" ] || return 0
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$HELIX_TEST_PG_BIN/pg_ctl" -D "$_HELIX_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    else
        "$HELIX_TEST_PG_BIN/pg_ctl" -D "$_HELIX_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$_HELIX_PG_DIR"
}

_helix_pg_setup
