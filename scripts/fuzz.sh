#!/usr/bin/env bash
# Runs ddlgate's fuzz targets (fuzz/, cargo fuzz on nightly, or on stable with RUSTC_BOOTSTRAP=1) for SECONDS each:
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 60 s, every target
#
# Installs cargo-fuzz when it is missing. Each target starts from the seeds in fuzz/seeds/<target>
# (regenerate with fuzz/make_seeds.py) and keeps what it learns in a corpus outside the source
# tree ($DDLGATE_FUZZ_CORPUS, default /var/tmp/ddlgate-fuzz/<target>). A crash stops the run with
# the input in fuzz/artifacts/<target>/: turn it into a regression test, then fix the bug.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frontend_stream backend_stream startup_packet statement_splitter analysis decision conductor policy_file)
fi

# cargo fuzz needs nightly features (sanitizer flags). Where no nightly toolchain is installed
# (and none can be downloaded), the stable toolchain is allowed to use them.
if cargo +nightly --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  echo "fuzz.sh: no nightly toolchain; running cargo fuzz on stable with RUSTC_BOOTSTRAP=1" >&2
  toolchain=()
  export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --quiet --locked cargo-fuzz
fi

corpus_root="${DDLGATE_FUZZ_CORPUS:-/var/tmp/ddlgate-fuzz}"
cargo "${toolchain[@]}" fuzz build --release --debug-assertions
status=0
for target in "${targets[@]}"; do
  corpus="$corpus_root/$target"
  mkdir -p "$corpus"
  echo "== fuzz $target for ${seconds}s"
  if ! cargo "${toolchain[@]}" fuzz run --release --debug-assertions "$target" "$corpus" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -timeout=30 -rss_limit_mb=4096 \
      -print_final_stats=1 2>"$corpus_root/$target.log"; then
    status=1
    tail -n 60 "$corpus_root/$target.log" >&2
    echo "fuzz.sh: $target found a crash; the input is in fuzz/artifacts/$target/" >&2
  else
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$corpus_root/$target.log" || true
  fi
done
exit "$status"
