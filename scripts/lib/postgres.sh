# shellcheck shell=bash
# The PostgreSQL prerequisite of scripts/check (sourced by it): probe for a server, else
# provide a private throw-away one from the installed programs, else explain what is missing.
# Uses the caller's `cleanups` array (shell commands run at exit) and `$work` (its temp dir).

pg_default_url="postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

# The directory holding PostgreSQL's server programs, or nothing.
pg_bindir() {
  local dir
  if [[ -n ${CAIRN_CHECK_PG_BINDIR:-} ]]; then
    dir=$CAIRN_CHECK_PG_BINDIR
  elif dir=$(pg_config --bindir 2>/dev/null) && [[ -x $dir/initdb ]]; then
    :
  elif dir=$(command -v initdb 2>/dev/null); then
    dir=$(dirname "$(readlink -f "$dir")")
  else
    local installed=(/usr/lib/postgresql/*/bin)
    dir=$(printf '%s\n' "${installed[@]}" | sort -V | tail -n 1)
  fi
  [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]] && echo "$dir"
}

# psql: from the server programs' directory, else from PATH (unless the lookup is pinned).
pg_psql() {
  local dir
  if dir=$(pg_bindir) && [[ -x $dir/psql ]]; then
    echo "$dir/psql"
  elif [[ -z ${CAIRN_CHECK_PG_BINDIR:-} ]]; then
    command -v psql
  else
    return 1
  fi
}

# Whether a server answers at URL: a query with psql, or without psql a TCP connection to
# the URL's host and port.
pg_answers() {
  local url=$1 psql host port
  if psql=$(pg_psql); then
    PGCONNECT_TIMEOUT=5 "$psql" "$url" -Atqc 'SELECT 1' >/dev/null 2>&1
    return
  fi
  host=$(sed -E 's#^[a-z]+://([^@/]*@)?([^:/?]+).*#\2#' <<<"$url")
  port=$(sed -nE 's#^[a-z]+://([^@/]*@)?[^:/?]+:([0-9]+).*#\2#p' <<<"$url")
  timeout 5 bash -c "exec 3<>/dev/tcp/$host/${port:-5432}" 2>/dev/null
}

probe_postgres() {
  if [[ -n ${CAIRN_TEST_DATABASE_URL:-} ]]; then
    echo "check: PostgreSQL tests use CAIRN_TEST_DATABASE_URL" >&2
    return 0
  fi
  local url=${CAIRN_CHECK_PROBE_URL:-$pg_default_url}
  pg_answers "$url" || return 1
  echo "check: PostgreSQL tests use the server at $url" >&2
  export CAIRN_TEST_DATABASE_URL=$url
}

# Runs a command as the server's user: `postgres` refuses to run as root, so as root the
# unprivileged `nobody` runs it (from the server's directory, which it owns).
as_server_user() {
  if ((EUID == 0)); then
    (cd "$pg_dir" && runuser -u nobody -- "$@")
  else
    "$@"
  fi
}

# Stops and removes the servers of earlier checks that were killed before they could.
reap_stale_servers() {
  local dir owner
  for dir in /tmp/cairn-check-pg.*; do
    [[ -f $dir/owner ]] || continue
    owner=$(<"$dir/owner")
    kill -0 "$owner" 2>/dev/null && continue
    pg_dir=$dir as_server_user "$(<"$dir/bindir")/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  done
}

provide_postgres() {
  local bindir port attempt started=""
  bindir=$(pg_bindir) || return 1
  reap_stale_servers
  pg_dir=$(mktemp -d /tmp/cairn-check-pg.XXXXXX)
  cleanups+=("as_server_user '$bindir/pg_ctl' -D '$pg_dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$pg_dir'")
  echo $$ >"$pg_dir/owner"
  echo "$bindir" >"$pg_dir/bindir"
  ((EUID == 0)) && chown nobody "$pg_dir"
  echo "check: no server at ${CAIRN_CHECK_PROBE_URL:-$pg_default_url}; starting a private PostgreSQL from $bindir in $pg_dir" >&2
  if ! as_server_user "$bindir/initdb" -D "$pg_dir/data" -U postgres --auth=trust -E UTF8 \
    --locale=C --no-sync >"$pg_dir/initdb.log" 2>&1; then
    echo "check: FAILED: initdb did not create the private server's data directory:" >&2
    cat "$pg_dir/initdb.log" >&2
    exit 1
  fi
  # A free port: one nothing answers on, taken by the server (another taker makes it fail to
  # start, and the next attempt picks another).
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 40000))
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && continue
    if as_server_user "$bindir/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
      -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null; then
      started=yes
      break
    fi
  done
  if [[ -z $started ]]; then
    echo "check: FAILED: the private PostgreSQL server did not start (attempt $attempt):" >&2
    tail -n 20 "$pg_dir/server.log" >&2
    exit 1
  fi
  if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc 'CREATE DATABASE test'; then
    echo "check: FAILED: could not create the database test in the private server" >&2
    exit 1
  fi
  export CAIRN_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/test?sslmode=disable"
  export PATH="$PATH:$bindir" # the end-to-end tests drop their schemas with psql
  echo "check: PostgreSQL tests use the private server at $CAIRN_TEST_DATABASE_URL" >&2
}

explain_postgres() {
  echo "no PostgreSQL: nothing answers at ${CAIRN_CHECK_PROBE_URL:-$pg_default_url} and no initdb/pg_ctl/postgres were found${CAIRN_CHECK_PG_BINDIR:+ in $CAIRN_CHECK_PG_BINDIR}; install them (apt-get install postgresql) or set CAIRN_TEST_DATABASE_URL"
}

# The server programs themselves, for the tests that run a private cluster of their own and
# restart or crash it (crates/cairn-e2e/tests/postgres_faults.rs): found as `pg_bindir` does,
# and named to the tests by CAIRN_TEST_PG_BINDIR.
probe_postgres_server() {
  local dir
  dir=$(pg_bindir) || return 1
  export CAIRN_TEST_PG_BINDIR=$dir
}

provide_postgres_server() {
  return 1
}

explain_postgres_server() {
  echo "no PostgreSQL server programs (initdb, pg_ctl, postgres) for the tests that restart and crash a private cluster: install them (apt-get install postgresql) or set CAIRN_CHECK_PG_BINDIR"
}
