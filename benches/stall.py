#!/usr/bin/env python3
"""Does analysing one huge governed statement stall the other sessions of its worker?

ddlgate parses and analyses governed statements on the worker thread that serves the session
(libpg_query leaks a pthread key per thread that parses, so parsing stays on the fixed set of
worker threads). This measures what that costs the neighbours: ddlgate runs with ONE worker
thread, 50 pgbench clients send `SELECT 1` through it for --duration seconds, and the latency
percentiles of those selects are compared

  * with nothing else running (baseline), and
  * while one more session sends, back to back, a governed statement of --size MB
    (`COMMENT ON TABLE stall_t IS '<size MB>'`: DDL, so it is parsed and analysed in full).

Usage: benches/stall.py [--duration 10] [--size 10]
Needs what benches/pgbench.py needs (PostgreSQL, pgbench, pgbouncer, cargo).
"""

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import Env  # noqa: E402


def select_latencies(port, duration, clients, workdir, tag):
    """Per-transaction latencies (ms) of `SELECT 1` from `clients` pgbench clients."""
    script = os.path.join(workdir, "select1.sql")
    with open(script, "w") as f:
        f.write("SELECT 1;\n")
    prefix = os.path.join(workdir, tag)
    subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n",
                    "-f", script, "-c", str(clients), "-j", "2", "-T", str(duration),
                    "-l", "--log-prefix", prefix, "bench"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    lat = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                # client_id transaction_no time(us) script_no time_epoch time_us
                fields = line.split()
                if len(fields) >= 6 and fields[2].isdigit():
                    lat.append(int(fields[2]) / 1000.0)
        os.remove(path)
    if not lat:
        sys.exit(f"stall.py: pgbench logged no transactions for {tag}")
    lat.sort()
    return lat


def pct(values, p):
    return values[min(len(values) - 1, int(len(values) * p))]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--size", type=int, default=10, help="MB of the governed statement")
    ap.add_argument("--clients", type=int, default=50)
    args = ap.parse_args()
    env = Env(1, max_connections=200, ddlgate_args=("--worker-threads", "1"))
    workdir = tempfile.mkdtemp(prefix="ddlgate-stall-")
    os.chmod(workdir, 0o777)
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(env.pg_port), "-U", "postgres",
                        "-d", "bench", "-qc", "CREATE TABLE stall_t (a int)"], check=True)
        big = os.path.join(workdir, "big.sql")
        with open(big, "w") as f:
            f.write("COMMENT ON TABLE stall_t IS '" + "x" * (args.size << 20) + "';\n")
        rows = []
        for name, port in (("direct", env.pg_port), ("ddlgate", env.ddlgate_port)):
            quiet = select_latencies(port, args.duration, args.clients, workdir, f"{name}-quiet")
            stop = threading.Event()
            sent = [0, 0.0]

            def send_big():
                while not stop.is_set():
                    started = time.time()
                    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(port),
                                    "-U", "postgres", "-d", "bench", "-f", big],
                                   check=True, stdout=subprocess.DEVNULL)
                    sent[0] += 1
                    sent[1] += time.time() - started

            sender = threading.Thread(target=send_big)
            sender.start()
            busy = select_latencies(port, args.duration, args.clients, workdir, f"{name}-busy")
            stop.set()
            sender.join()
            rows.append((name, quiet, busy, sent))
    finally:
        env.close()
    print(f"\nSELECT 1 latency (ms), {args.clients} clients, {args.duration}s; ddlgate with one "
          f"worker thread; 'busy': one more session sends a {args.size} MB COMMENT ON TABLE "
          "back to back\n")
    print("| target | quiet p50 | quiet p99 | quiet max | busy p50 | busy p99 | busy max "
          "| big statements sent | s per big statement |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, quiet, busy, sent in rows:
        per = sent[1] / sent[0] if sent[0] else float("nan")
        print(f"| {name} | {pct(quiet, .5):.2f} | {pct(quiet, .99):.2f} | {quiet[-1]:.1f} | "
              f"{pct(busy, .5):.2f} | {pct(busy, .99):.2f} | {busy[-1]:.1f} | {sent[0]} | "
              f"{per:.2f} |")


if __name__ == "__main__":
    main()
