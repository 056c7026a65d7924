#!/usr/bin/env bash
# A PostgreSQL for `make test` (the e2e, scale-out and reliability tests need one: trust auth,
# user postgres, on loopback).
#
#   tests/pg_server.sh start STATE_DIR   print `export FLIGHTDECK_TEST_PG_{HOST,PORT,USER}=...` lines
#   tests/pg_server.sh stop STATE_DIR    stop the server `start` started in STATE_DIR (if any)
#
# `start` uses the machine's server when one answers on 127.0.0.1:5432 AND a trust login as
# postgres works there; it starts nothing then. Otherwise it finds initdb/pg_ctl (PATH, then the
# newest /usr/lib/postgresql/*/bin; Debian's `postgresql` package is installed with apt-get when
# they are missing), initialises STATE_DIR/pgdata once and starts a throwaway server on a free
# loopback port (recorded in STATE_DIR/port, log in STATE_DIR/pg.log, socket in STATE_DIR).
# PostgreSQL refuses to run as root: as root, the server runs as the system user flightdeck-pg
# (created when missing). If that user cannot reach STATE_DIR (a checkout under /root, say),
# the data lives in a private temporary directory that STATE_DIR/pgdata links to.
# `stop` only ever stops a server whose STATE_DIR/pgdata/postmaster.pid exists: never the machine's.
#
# Only the export lines go to stdout (for `eval`); everything else goes to stderr.
# FLIGHTDECK_PG_PROBE_PORT (default 5432) changes the probed port: for testing this script only.
set -euo pipefail

HOST=127.0.0.1
PG_USER=postgres
PROBE_PORT=${FLIGHTDECK_PG_PROBE_PORT:-5432}
SERVICE_USER=flightdeck-pg

log() { echo "pg_server: $*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() { die "usage: $0 start|stop STATE_DIR"; }

print_env() { # PORT
  echo "export FLIGHTDECK_TEST_PG_HOST=$HOST"
  echo "export FLIGHTDECK_TEST_PG_PORT=$1"
  echo "export FLIGHTDECK_TEST_PG_USER=$PG_USER"
}

# Something accepts connections on HOST:PORT, and (when psql is here) a trust login as postgres works.
answers() { # PORT
  local port=$1
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$HOST" -p "$port" -U "$PG_USER" -t 3 || return 1
  else
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$port" 2>/dev/null || return 1
  fi
  if command -v psql >/dev/null 2>&1; then
    [ "$(PGCONNECT_TIMEOUT=5 psql -X -w -h "$HOST" -p "$port" -U "$PG_USER" -d postgres -Atc 'select 1' 2>/dev/null)" = 1 ] || return 1
  fi
}

# The directory holding initdb and pg_ctl: PATH first, then the newest /usr/lib/postgresql/*/bin.
find_bindir() {
  local ctl dir
  if ctl=$(command -v pg_ctl 2>/dev/null) && command -v initdb >/dev/null 2>&1; then
    dir=$(dirname "$(readlink -f "$ctl")")
    if [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  fi
  while IFS= read -r dir; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  return 1
}

install_postgresql() {
  log "no initdb/pg_ctl found: installing PostgreSQL (Debian's postgresql) ..."
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } >&2
}

free_port() {
  local py
  for py in python3 python3.11 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
      return 0
    fi
  done
  die "python3 is needed to pick a free port"
}

# Run a command as the user that owns the server (ourselves, or SERVICE_USER when root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u "$SERVICE_USER" -- "$@")
  else
    "$@"
  fi
}

ensure_service_user() {
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    log "creating the system user $SERVICE_USER (PostgreSQL does not run as root)"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
}

# The directories the server uses: RUN_DIR (socket, log) and PGDATA_DIR (STATE_DIR/pgdata, or
# where that link points).
RUN_DIR=
PGDATA_DIR=
prepare_dirs() { # STATE_DIR
  local state=$1
  mkdir -p "$state"
  RUN_DIR=$state
  PGDATA_DIR=$state/pgdata
  [ "$(id -u)" = 0 ] || return 0
  ensure_service_user
  if [ -L "$state/pgdata" ]; then
    if [ -d "$state/pgdata" ]; then
      PGDATA_DIR=$(readlink -f "$state/pgdata")
      RUN_DIR=$(dirname "$PGDATA_DIR")
      return 0
    fi
    rm -f "$state/pgdata" # its temporary directory is gone (a reboot): start afresh
  fi
  chown "$SERVICE_USER:" "$state"
  [ -e "$state/pgdata" ] && chown -R "$SERVICE_USER:" "$state/pgdata"
  if ! runuser -u "$SERVICE_USER" -- test -w "$state" -a -x "$state"; then
    # A parent directory is closed to other users: keep the server's files in a private temp dir.
    rm -rf "${state:?}/pgdata"
    RUN_DIR=$(mktemp -d /tmp/flightdeck-test-pg.XXXXXX)
    PGDATA_DIR=$RUN_DIR/pgdata
    mkdir "$PGDATA_DIR"
    chown "$SERVICE_USER:" "$RUN_DIR" "$PGDATA_DIR"
    ln -s "$PGDATA_DIR" "$state/pgdata"
    log "$SERVICE_USER cannot reach $state: the server's files are in $RUN_DIR"
  fi
}

start() { # STATE_DIR
  local state=$1 bindir pgdata port sockdir
  if answers "$PROBE_PORT"; then
    log "using the PostgreSQL already answering on $HOST:$PROBE_PORT"
    print_env "$PROBE_PORT"
    return 0
  fi
  log "no PostgreSQL with trust login on $HOST:$PROBE_PORT: using a throwaway one in $state"
  bindir=$(find_bindir) || {
    install_postgresql
    bindir=$(find_bindir) || die "initdb/pg_ctl still not found after installing postgresql"
  }
  prepare_dirs "$state"
  pgdata=$PGDATA_DIR

  # Already running from an earlier start (an interrupted `make test`)? Use it.
  if [ -f "$pgdata/postmaster.pid" ] && [ -f "$state/port" ] &&
    as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1 && answers "$(cat "$state/port")"; then
    log "reusing the server already running in $state"
    print_env "$(cat "$state/port")"
    return 0
  fi

  if [ ! -f "$pgdata/PG_VERSION" ]; then
    log "initdb $pgdata ($bindir)"
    if ! as_pg "$bindir/initdb" -D "$pgdata" -U "$PG_USER" -A trust -E UTF8 --no-locale >"$RUN_DIR/initdb.log" 2>&1; then
      cat "$RUN_DIR/initdb.log" >&2
      die "initdb failed"
    fi
  fi
  port=$(free_port)
  echo "$port" >"$state/port"
  sockdir=$RUN_DIR
  # A Unix socket path is limited to 107 bytes; the tests use TCP only, so a long one is dropped.
  [ ${#sockdir} -le 90 ] || sockdir=
  if ! as_pg "$bindir/pg_ctl" -D "$pgdata" -o "-h $HOST -p $port -k '$sockdir' -c fsync=off" \
    -l "$RUN_DIR/pg.log" -w -t 60 start >&2; then
    tail -n 30 "$RUN_DIR/pg.log" >&2 || true
    die "the throwaway PostgreSQL did not start (log: $RUN_DIR/pg.log)"
  fi
  answers "$port" || die "the throwaway PostgreSQL on $HOST:$port refuses a trust login as $PG_USER"
  log "PostgreSQL started on $HOST:$port (stop: $0 stop $state)"
  print_env "$port"
}

stop() { # STATE_DIR
  local state=$1 pgdata bindir pid
  if [ ! -f "$state/pgdata/postmaster.pid" ]; then
    return 0 # nothing of ours runs (the machine's server, if used, is left alone)
  fi
  pgdata=$(readlink -f "$state/pgdata") # the server's user may not reach it through the link
  if bindir=$(find_bindir); then
    if as_pg "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
      as_pg "$bindir/pg_ctl" -D "$pgdata" -m fast -w -t 60 stop >&2
    fi
  else # no pg_ctl any more: a fast shutdown is SIGINT to the postmaster
    pid=$(head -n 1 "$pgdata/postmaster.pid")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -INT "$pid"
    fi
  fi
}

[ $# = 2 ] || usage
case $2 in
  /*) state_dir=$2 ;;
  *) state_dir=$PWD/$2 ;;
esac
state_dir=${state_dir%/}
case $1 in
  start) start "$state_dir" ;;
  stop) stop "$state_dir" ;;
  *) usage ;;
esac
