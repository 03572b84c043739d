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

missing=()
have_pg_server || missing+=(postgresql)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
# pg_query (PostgreSQL's parser) generates its bindings with libclang at build time.
{ ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-*.so* && ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h; } >/dev/null 2>&1 \
  || missing+=(libclang1-14 libclang-common-14-dev)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} with apt-get" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked 2>&1 | tee "$log" || status=$?
# One plain total over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
