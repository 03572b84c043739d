#!/usr/bin/env bash
# Starts a throwaway PostgreSQL, puts ddlgate in front of it (default policy, audit trail in a
# file), runs a migration through it — one statement refused, one rewritten — shows the audit
# records, and keeps serving until Ctrl-C. Installs the PostgreSQL server with apt-get if it is
# missing.
#
#   bash scripts/quickstart.sh            # then, in another shell:
#   psql "host=127.0.0.1 port=6432 user=postgres dbname=postgres"
set -euo pipefail
cd "$(dirname "$0")/.."
DDLGATE_PORT="${DDLGATE_PORT:-6432}"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# pg_query (PostgreSQL's parser) generates its bindings with libclang at build time.
{ ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-*.so* && ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h; } >/dev/null 2>&1 \
  || missing+=(libclang1-14 libclang-common-14-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

echo "== building ddlgate (release)"
cargo build --release --quiet

# PostgreSQL refuses to run as root: run it as the 'postgres' user then.
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then RUN_AS=(setpriv --reuid=postgres --regid=postgres --clear-groups); fi
WORK=$(mktemp -d /tmp/ddlgate-quickstart-XXXXXX)
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$WORK"
PG_PORT=""
for p in $(seq 54320 54420); do
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then PG_PORT=$p; break; fi
done
[ -n "$PG_PORT" ] || { echo "no free port in 54320-54420" >&2; exit 1; }

cleanup() {
  [ -n "${DDLGATE_PID:-}" ] && kill -TERM "$DDLGATE_PID" 2>/dev/null && wait "$DDLGATE_PID" 2>/dev/null || true
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== starting a throwaway PostgreSQL on 127.0.0.1:$PG_PORT"
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$WORK/data" -U postgres --auth=trust --no-sync >/dev/null
if ! "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $WORK" start >/dev/null; then
  cat "$WORK/postgres.log" >&2
  exit 1
fi

echo "== starting ddlgate on 127.0.0.1:$DDLGATE_PORT in front of it"
./target/release/ddlgate serve --listen "127.0.0.1:$DDLGATE_PORT" --upstream "127.0.0.1:$PG_PORT" \
  --audit-log "$WORK/audit.jsonl" 2>"$WORK/ddlgate.log" &
DDLGATE_PID=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$DDLGATE_PORT") 2>/dev/null && break
  sleep 0.1
done
# Something else may hold the port: then ddlgate has exited with the reason.
if ! kill -0 "$DDLGATE_PID" 2>/dev/null; then
  cat "$WORK/ddlgate.log" >&2
  echo "ddlgate did not start (set DDLGATE_PORT to use another port)" >&2
  exit 1
fi

PSQL=(psql "host=127.0.0.1 port=$DDLGATE_PORT user=postgres dbname=postgres" -X)
echo "== a table with data, through ddlgate"
"${PSQL[@]}" -q -v ON_ERROR_STOP=1 <<'SQL'
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, note text);
INSERT INTO orders SELECT g, g % 1000, 'n' FROM generate_series(1, 200000) g;
SQL

cat > "$WORK/0002_orders.sql" <<'SQL'
ALTER TABLE orders RENAME COLUMN note TO comment;
CREATE INDEX orders_customer_idx ON orders (customer_id);
SQL
echo "== a migration through ddlgate: psql -e -f 0002_orders.sql"
"${PSQL[@]}" -e -f "$WORK/0002_orders.sql" || true

echo "== what the server has now"
"${PSQL[@]}" -c "SELECT indexrelid::regclass AS index, indisvalid AS valid FROM pg_index WHERE indrelid = 'orders'::regclass"

echo "== the audit record of the rewritten statement ($WORK/audit.jsonl)"
grep '"action":"rewrite"' "$WORK/audit.jsonl"
./target/release/ddlgate audit verify "$WORK/audit.jsonl"

echo
echo "== ddlgate is serving on 127.0.0.1:$DDLGATE_PORT; connect with:"
echo "     psql \"host=127.0.0.1 port=$DDLGATE_PORT user=postgres dbname=postgres\""
echo "   Ctrl-C stops ddlgate (it drains sessions first) and removes the throwaway PostgreSQL."
wait "$DDLGATE_PID"
