#!/usr/bin/env bash
# Runs everything CI runs: installs the PostgreSQL server binaries the tests need when they are
# missing (Debian/Ubuntu, apt-get), then format check, clippy and the whole test suite.
# The tests start their own throwaway cluster; they never use a server already running.
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg_server() {
  [ -n "${TEST_PG_BIN:-}" ] && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if ! have_pg_server; then
  echo "test.sh: PostgreSQL server binaries not found; installing them with apt-get" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
