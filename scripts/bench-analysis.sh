#!/usr/bin/env bash
# Analysis benchmarks (benches/analysis.rs), with squawk installed for the `check` comparison.
#   scripts/bench-analysis.sh            # everything
#   scripts/bench-analysis.sh check_10k  # only the 10,000-statement file against squawk
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DDLGATE_SQUAWK_VENV:-/var/tmp/ddlgate-squawk}
if [ ! -x "$venv/bin/squawk" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet squawk-cli
fi
echo "squawk $("$venv/bin/squawk" --version | awk '{print $2}')"
SQUAWK="$venv/bin/squawk" exec cargo bench --bench analysis -- "$@"
