#!/usr/bin/env python3
"""What a migration does to the application: each migration sent directly and through ddlgate.

Starts the same throwaway cluster and ddlgate (release build, default policy) as
benches/pgbench.py, with a table `big` of --rows rows. For every case and target it recreates
the table, runs application load directly on PostgreSQL (pgbench, --clients clients, each
updating one random row of `big` by primary key per transaction, every transaction logged),
sends the migration --lead seconds into the load — directly, or through ddlgate — and reads
pgbench's per-transaction log:

  * worst app transaction: the slowest transaction of the run (its latency);
  * longest no-commit gap: the longest time in which no client committed anything;
  * the migration's own outcome and duration.

Cases: nothing (the baseline noise of the machine); the lock queue (ADD COLUMN sent while a
12 s reader holds the table); an index build; SET NOT NULL; a foreign key; a type change
that rewrites the table (ddlgate refuses it). Prints one Markdown table.

Usage: benches/migration_impact.py [--rows N] [--clients N] [--reader SECONDS] [--cases RE]
Needs: PostgreSQL server binaries and pgbench (Debian: apt-get install postgresql), cargo,
pgbouncer (started by the shared environment, not measured here).
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import Env  # noqa: E402

APP_SCRIPT = "\\set id random(1, {rows})\nUPDATE big SET x = x + 1 WHERE id = :id;\n"

# (name, migration SQL, whether a long reader holds the table when it is sent)
CASES = [
    ("nothing (baseline)", None, False),
    ("ADD COLUMN behind a {reader} s reader (lock queue)", "ALTER TABLE big ADD COLUMN y int", True),
    ("CREATE INDEX", "CREATE INDEX big_x_idx ON big (x)", False),
    ("SET NOT NULL", "ALTER TABLE big ALTER COLUMN x SET NOT NULL", False),
    ("ADD FOREIGN KEY", "ALTER TABLE big ADD CONSTRAINT big_ref_fk FOREIGN KEY (ref) REFERENCES ref (id)", False),
    ("ALTER COLUMN TYPE (rewrite)", "ALTER TABLE big ALTER COLUMN x TYPE bigint", False),
]


def psql(port, sql, check=True):
    return subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "bench",
                           "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=check)


def recreate(port, rows):
    psql(port, "DROP TABLE IF EXISTS big, ref; "
               "CREATE TABLE ref (id int PRIMARY KEY); INSERT INTO ref SELECT generate_series(1, 100); "
               f"CREATE TABLE big (id int PRIMARY KEY, x int, ref int); "
               f"INSERT INTO big SELECT g, g, 1 + g % 100 FROM generate_series(1, {rows}) g; "
               "ANALYZE big")
    # Settle the new table (visibility map, hint bits) and flush it, so that neither autovacuum
    # nor a checkpoint lands in the measured run.
    psql(port, "VACUUM big")
    psql(port, "CHECKPOINT")


def run_case(env, target_port, migration, reader, args):
    recreate(env.pg_port, args.rows)
    logdir = tempfile.mkdtemp(prefix="impact-", dir=env.dir)
    os.chmod(logdir, 0o777)
    script = os.path.join(logdir, "script.sql")
    with open(script, "w") as f:
        f.write(APP_SCRIPT.format(rows=args.rows))
    duration = args.lead + (args.reader if reader else 0) + args.tail + 3
    app = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(env.pg_port), "-U", "postgres", "-n",
                            "-c", str(args.clients), "-j", "2", "-T", str(duration), "-f", script,
                            "-l", f"--log-prefix={logdir}/app", "bench"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=logdir)
    time.sleep(args.lead)
    reader_thread = None
    if reader:
        reader_thread = threading.Thread(target=psql, args=(
            env.pg_port, f"BEGIN; SELECT count(*) FROM big; SELECT pg_sleep({args.reader}); COMMIT"))
        reader_thread.start()
        time.sleep(1)
    outcome, took = "-", 0.0
    if migration:
        started = time.time()
        out = psql(target_port, migration, check=False)
        took = time.time() - started
        outcome = "ok" if out.returncode == 0 else "refused: " + first_error(out.stderr)
    if reader_thread:
        reader_thread.join()
    _, err = app.communicate()
    if app.returncode not in (0, 2):
        raise RuntimeError(f"pgbench failed: {err.strip()}")
    worst, gap = read_log(logdir)
    shutil.rmtree(logdir, ignore_errors=True)
    return worst, gap, outcome, took


def first_error(stderr):
    for line in stderr.splitlines():
        m = re.search(r"ERROR:\s+(.*)", line)
        if m:
            text = m.group(1)
            return text if len(text) <= 70 else text[:67] + "..."
    return stderr.strip()[:70]


def read_log(logdir):
    """Worst latency and longest gap between commits (seconds), from pgbench's -l logs."""
    latencies, ends = [], []
    for path in glob.glob(os.path.join(logdir, "app.*")):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                latencies.append(int(parts[2]) / 1e6)
                ends.append(int(parts[4]) + int(parts[5]) / 1e6)
    if not ends:
        raise RuntimeError(f"no transactions logged in {logdir}")
    ends.sort()
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return max(latencies), max(gaps) if gaps else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (default 1000000)")
    ap.add_argument("--clients", type=int, default=4, help="application clients (default 4)")
    ap.add_argument("--reader", type=int, default=12, help="seconds the long reader holds the table (default 12)")
    ap.add_argument("--lead", type=int, default=2, help="seconds of load before the migration (default 2)")
    ap.add_argument("--tail", type=int, default=3, help="seconds of load after it (default 3)")
    ap.add_argument("--cases", help="only cases whose name matches this regex")
    args = ap.parse_args()

    env = Env(1)
    results = []
    try:
        for name, migration, reader in CASES:
            name = name.format(reader=args.reader)
            if args.cases and not re.search(args.cases, name):
                continue
            row = [name]
            for label, port in (("direct", env.pg_port), ("ddlgate", env.ddlgate_port)):
                worst, gap, outcome, took = run_case(env, port, migration, reader, args)
                print(f"{name:45} {label:8} worst {worst:6.3f} s  gap {gap:6.3f} s  "
                      f"migration {took:5.2f} s {outcome}", flush=True)
                row += [f"{worst:.3f}", f"{gap:.3f}", outcome if migration else "-"]
            results.append(row)
    finally:
        env.close()

    print()
    print(f"{args.rows} rows, {args.clients} clients updating by primary key directly on PostgreSQL; "
          "the migration sent directly or through ddlgate (default policy); seconds")
    print()
    print("| migration | direct: worst app transaction | direct: longest no-commit gap | direct: migration "
          "| ddlgate: worst app transaction | ddlgate: longest no-commit gap | ddlgate: migration |")
    print("|---|---:|---:|---|---:|---:|---|")
    for r in results:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
