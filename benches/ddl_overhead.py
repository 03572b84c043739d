#!/usr/bin/env python3
"""What ddlgate adds to each DDL statement: direct vs ddlgate vs pgbouncer, in one run.

Starts the same throwaway cluster, ddlgate (default policy) and pgbouncer as benches/pgbench.py,
then runs pgbench with one client and a custom script per cell, against the three targets in
alternating order, several rounds each, and prints the median latency per statement:

  * autocommit DDL (ALTER TABLE … SET DEFAULT): ddlgate reads the catalog facts of the table,
    sets the class's timeouts, runs the statement and restores the client's values (three
    extra round trips);
  * the same DDL inside BEGIN … COMMIT: two extra round trips (catalog, SET LOCAL);
  * CREATE INDEX rewritten to CONCURRENTLY vs the same CREATE INDEX CONCURRENTLY sent directly
    (catalog, timeouts, the index probe and the restore: four extra round trips), plus the
    DROP;
  * plain SELECT, for the hop itself;
  * the same through ddlgate with an audit file, fsync on and off (--audit-fsync always /
    never): what recording each statement costs.

With --baseline-binary, another ddlgate build (say, the previous commit's) runs as one more
target in the same alternating rounds: a before/after comparison in one run.

Usage: benches/ddl_overhead.py [--duration SECONDS] [--rounds N] [--cells RE]
                               [--baseline-binary PATH]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import Env, free_port, wait_port  # noqa: E402

CELLS = {
    "select 1 (hop only)": "SELECT 1;\n",
    "autocommit ALTER TABLE": "ALTER TABLE ddl_bench ALTER COLUMN v SET DEFAULT 1;\n",
    "ALTER TABLE in BEGIN/COMMIT": "BEGIN;\nALTER TABLE ddl_bench ALTER COLUMN v SET DEFAULT 2;\nCOMMIT;\n",
    # Through ddlgate the plain CREATE INDEX is rewritten; directly it is sent CONCURRENTLY
    # already, so both sides do the same work on the server.
    "CREATE INDEX (rewritten) + DROP": "CREATE INDEX ddl_bench_v ON ddl_bench (v);\nDROP INDEX CONCURRENTLY ddl_bench_v;\n",
}
DIRECT_FORM = {
    "CREATE INDEX (rewritten) + DROP": "CREATE INDEX CONCURRENTLY ddl_bench_v ON ddl_bench (v);\nDROP INDEX CONCURRENTLY ddl_bench_v;\n",
}


def run(port, script, duration):
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        out = subprocess.run(
            ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n", "-c", "1",
             "-T", str(duration), "-f", path, "bench"], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on port {port}: {out.stderr.strip()}")
    return float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per pgbench run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per target and cell (default 3)")
    ap.add_argument("--cells", help="only scripts whose label matches this regex")
    ap.add_argument("--baseline-binary", metavar="PATH",
                    help="another ddlgate build (e.g. the previous commit's) run as one more target "
                         "in the same rounds, default policy: before/after in one run")
    args = ap.parse_args()
    cells = {k: v for k, v in CELLS.items() if not args.cells or re.search(args.cells, k)}
    env = Env(1)
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(env.pg_port), "-U", "postgres", "-d", "bench",
                    "-qc", "CREATE TABLE ddl_bench (id int, v int); INSERT INTO ddl_bench SELECT g, g FROM generate_series(1, 1000) g"],
                   check=True)
    audited = {}
    for fsync in ("always", "never"):
        port = free_port()
        env.spawn([os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "target/release/ddlgate"),
                   "serve", "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{env.pg_port}",
                   "--audit-log", os.path.join(env.dir, f"audit-{fsync}.jsonl"), "--audit-fsync", fsync],
                  f"ddlgate-audit-{fsync}.log", env={**os.environ, "DDLGATE_LOG": "warn"})
        wait_port(port)
        audited[fsync] = port
    targets = [("direct", env.pg_port), ("ddlgate", env.ddlgate_port), ("pgbouncer", env.pgbouncer_port),
               ("audit+fsync", audited["always"]), ("audit nofsync", audited["never"])]
    if args.baseline_binary:
        port = free_port()
        env.spawn([args.baseline_binary, "serve", "--listen", f"127.0.0.1:{port}",
                   "--upstream", f"127.0.0.1:{env.pg_port}"], "ddlgate-baseline.log",
                  env={**os.environ, "DDLGATE_LOG": "warn"})
        wait_port(port)
        targets.append(("baseline", port))
    rows = []
    try:
        for n, (label, script) in enumerate(cells.items()):
            samples = {name: [] for name, _ in targets}
            for r in range(args.rounds):
                k = (n + r) % len(targets)
                for name, port in targets[k:] + targets[:k]:
                    body = script if name not in ("direct", "pgbouncer") else DIRECT_FORM.get(label, script)
                    samples[name].append(run(port, body, args.duration))
            med = {name: statistics.median(v) for name, v in samples.items()}
            rows.append((label, med))
            print(f"{label:34} direct {med['direct']:.3f} ms | ddlgate {med['ddlgate']:.3f} ms "
                  f"(+{med['ddlgate'] - med['direct']:.3f}) | pgbouncer {med['pgbouncer']:.3f} ms "
                  f"(+{med['pgbouncer'] - med['direct']:.3f}) | audit+fsync {med['audit+fsync']:.3f} ms "
                  f"| audit nofsync {med['audit nofsync']:.3f} ms"
                  + (f" | baseline {med['baseline']:.3f} ms (+{med['baseline'] - med['direct']:.3f})"
                     if "baseline" in med else ""), flush=True)
    finally:
        env.close()
    print()
    print(f"pgbench -c 1, {args.duration}s x {args.rounds} rounds per target, median latency per "
          f"script run; {os.cpu_count()} cores shared by pgbench, PostgreSQL and the proxies")
    print()
    print("| script | direct (ms) | ddlgate (ms) | added by ddlgate (ms) | added by pgbouncer (ms) "
          "| audit, fsync always: added over ddlgate (ms) | audit, fsync never: added over ddlgate (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, med in rows:
        print(f"| {label} | {med['direct']:.3f} | {med['ddlgate']:.3f} | "
              f"{med['ddlgate'] - med['direct']:.3f} | {med['pgbouncer'] - med['direct']:.3f} | "
              f"{med['audit+fsync'] - med['ddlgate']:.3f} | {med['audit nofsync'] - med['ddlgate']:.3f} |")
    if args.baseline_binary:
        print()
        print(f"before/after: added by {args.baseline_binary} (baseline) and by this build, same rounds")
        print()
        print("| script | baseline added (ms) | this build added (ms) |")
        print("|---|---:|---:|")
        for label, med in rows:
            print(f"| {label} | {med['baseline'] - med['direct']:.3f} | {med['ddlgate'] - med['direct']:.3f} |")


if __name__ == "__main__":
    main()
