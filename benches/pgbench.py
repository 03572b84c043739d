#!/usr/bin/env python3
"""Throughput, added latency and proxy CPU: direct vs ddlgate vs pgbouncer, in one run.

Starts a throwaway PostgreSQL cluster, ddlgate (release build) and pgbouncer (session mode) in
front of it, initialises pgbench data, then runs every cell -- select-only and TPC-B, protocol
simple/extended/prepared, 1/8/32 clients, plus connection churn (-C) -- against the three
targets in alternating order, several rounds each, and prints medians:

  * TPS of each proxy as a ratio to direct, and the latency it adds per transaction; next to
    the ratio, its lowest and highest over the rounds (each round's proxy TPS over the same
    round's direct TPS): the noise a difference between the proxies must exceed to count;
  * the proxy's CPU time per transaction (user + system, from /proc/PID/stat), the stable
    measure on a small machine where pgbench, PostgreSQL and the proxy share two cores.

Usage: benches/pgbench.py [--duration SECONDS] [--rounds N] [--scale N] [--quick] [--cells RE] [--ddl-routine]
Needs: PostgreSQL server binaries and pgbench, pgbouncer (Debian: apt-get install postgresql
pgbouncer), cargo. Runs everything on 127.0.0.1 and stops what it started.
"""

import argparse
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_pg_bin():
    if os.environ.get("TEST_PG_BIN"):
        return os.environ["TEST_PG_BIN"]
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if os.path.exists(os.path.join(d, "initdb")):
            return d
    sys.exit("no PostgreSQL server binaries: apt-get install postgresql, or set TEST_PG_BIN")


def as_user_prefix():
    """setpriv prefix to drop root (PostgreSQL and pgbouncer refuse to run as root)."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return (["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"],
                    (pw.pw_uid, pw.pw_gid))
        except KeyError:
            continue
    sys.exit("running as root and no 'postgres' or 'nobody' user to run servers as")


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


class Env:
    def __init__(self, scale, max_connections=200, ddlgate_args=(), ddl_routine=False, observe=False,
                 own_sessions=False):
        # Each server in a session of its own (setsid), as a service manager starts it; by
        # default they share the script's session, and so a scheduler autogroup with pgbench.
        self.own_sessions = own_sessions
        self.procs = []
        self.pg_bin = find_pg_bin()
        self.prefix, ids = as_user_prefix()
        self.dir = tempfile.mkdtemp(prefix="ddlgate-bench-")
        if ids:
            os.chown(self.dir, *ids)
        self.pg_port = free_port()
        data = os.path.join(self.dir, "data")
        subprocess.run(self.prefix + [f"{self.pg_bin}/initdb", "-D", data, "-U", "postgres",
                                      "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"\nport = {self.pg_port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\nmax_connections = {max_connections}\n"
                    "shared_buffers = 256MB\nfsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\n")
        self.spawn(self.prefix + [f"{self.pg_bin}/postgres", "-D", data], "postgres.log")
        wait_port(self.pg_port)
        time.sleep(0.5)
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                        "-qc", "CREATE DATABASE bench"], check=True)
        subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                        "-i", "-q", "-s", str(scale), "bench"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if ddl_routine:
            # A routine whose body runs DDL: ddlgate then looks for its name in every query
            # text (the fast path's substring test), which this measures.
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                            "-d", "bench", "-qc",
                            "CREATE FUNCTION bench_add_note() RETURNS void LANGUAGE sql AS "
                            "$$ ALTER TABLE pgbench_history ADD COLUMN IF NOT EXISTS note text $$"],
                           check=True)

        # ddlgate counting every statement its clients run (evidence_observe), sampled into the
        # bench database every 5 minutes (not within a run).
        self.observe_args = ["--evidence-dsn", f"host=127.0.0.1 port={self.pg_port} user=postgres dbname=bench",
                             "--evidence-observe"] if observe else []
        ddlgate_args = [*ddlgate_args, *self.observe_args]
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        self.ddlgate_port = free_port()
        self.ddlgate = self.spawn(
            [os.path.join(ROOT, "target/release/ddlgate"), "serve",
             "--listen", f"127.0.0.1:{self.ddlgate_port}",
             "--upstream", f"127.0.0.1:{self.pg_port}", *ddlgate_args], "ddlgate.log",
            env={**os.environ, "DDLGATE_LOG": "warn"})
        wait_port(self.ddlgate_port)

        self.pgbouncer_port = free_port()
        ini = os.path.join(self.dir, "pgbouncer.ini")
        users = os.path.join(self.dir, "users.txt")
        with open(users, "w") as f:
            f.write('"postgres" ""\n')
        with open(ini, "w") as f:
            f.write(f"[databases]\nbench = host=127.0.0.1 port={self.pg_port} dbname=bench\n"
                    f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.pgbouncer_port}\n"
                    f"auth_type = trust\nauth_file = {users}\npool_mode = session\n"
                    "max_client_conn = 500\ndefault_pool_size = 100\nunix_socket_dir =\n"
                    "log_connections = 0\nlog_disconnections = 0\n")
        if ids:
            for p in (ini, users):
                os.chown(p, *ids)
        pgbouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.pgbouncer = self.spawn(self.prefix + [pgbouncer, ini], "pgbouncer.log")
        wait_port(self.pgbouncer_port)

    def spawn(self, argv, log, env=None):
        out = open(os.path.join(self.dir, log), "w")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=self.own_sessions)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def added(proxy, direct, churn):
    """Added latency per transaction in ms; meaningless with -C (see the footnote)."""
    return "n/a" if churn else f"{proxy[1] - direct[1]:.3f}"


def pgbench_argv(port, workload, mode, clients):
    """pgbench against `port` for one cell, without its length (-T or -t) and database."""
    argv = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n",
            "-M", mode, "-c", str(clients), "-j", str(min(clients, 2))]
    if workload == "select":
        argv.append("-S")
    return argv


def run_pgbench(port, workload, mode, clients, duration, churn):
    argv = pgbench_argv(port, workload, mode, clients) + ["-T", str(duration)]
    if churn:
        argv.append("-C")
    argv.append("bench")
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on port {port}: {out.stderr.strip()}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    txns = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    return tps, txns, latency


def spread(ratios):
    """The lowest and highest of a proxy's per-round ratios to direct."""
    return f"({min(ratios):.2f}–{max(ratios):.2f})"


def label_of(workload, mode, clients, churn):
    return f"{workload:6} {mode:8} c={clients:<2}{' -C' if churn else ''}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per pgbench run (default 10)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per target and cell (default 2)")
    ap.add_argument("--scale", type=int, default=10, help="pgbench scale factor (default 10)")
    ap.add_argument("--quick", action="store_true", help="only select-only, 8 clients, each mode")
    ap.add_argument("--cells", help="only cells whose label matches this regex, e.g. 'select.*c=1 '")
    ap.add_argument("--observe", action="store_true",
                    help="ddlgate counts the statements its clients run (evidence_observe)")
    ap.add_argument("--ddl-routine", action="store_true",
                    help="create a function whose body runs DDL in the bench database first")
    args = ap.parse_args()

    cells = []
    for workload in ("select", "tpcb"):
        for mode in ("simple", "extended", "prepared"):
            for clients in (1, 8, 32):
                cells.append((workload, mode, clients, False))
    cells += [("select", "simple", 1, True), ("select", "simple", 8, True)]
    if args.quick:
        cells = [c for c in cells if c[0] == "select" and c[2] == 8 and not c[3]]
    if args.cells:
        cells = [c for c in cells if re.search(args.cells, label_of(*c) + " ")]

    tick = os.sysconf("SC_CLK_TCK")
    env = Env(args.scale, ddl_routine=args.ddl_routine, observe=args.observe)
    targets = [("direct", env.pg_port, None), ("ddlgate", env.ddlgate_port, env.ddlgate.pid),
               ("pgbouncer", env.pgbouncer_port, env.pgbouncer.pid)]
    results = []
    try:
        # Warm every target (page cache, binaries, connection paths) before measuring.
        for _, port, _ in targets:
            run_pgbench(port, "select", "simple", 2, 3, False)
        for n, (workload, mode, clients, churn) in enumerate(cells):
            samples = {name: [] for name, _, _ in targets}
            ratios = {"ddlgate": [], "pgbouncer": []}  # each round's TPS over direct's
            for r in range(args.rounds):
                # Rotate the order so no target always runs first (warm caches) or last.
                k = (n + r) % len(targets)
                for name, port, pid in targets[k:] + targets[:k]:
                    before = cpu_ticks(pid) if pid else 0
                    tps, txns, lat = run_pgbench(port, workload, mode, clients, args.duration, churn)
                    cpu_us = (cpu_ticks(pid) - before) / tick * 1e6 / txns if pid else 0.0
                    samples[name].append((tps, lat, cpu_us))
                for name in ratios:
                    ratios[name].append(samples[name][-1][0] / samples["direct"][-1][0])
            med = {name: tuple(statistics.median(s[i] for s in v) for i in range(3))
                   for name, v in samples.items()}
            label = label_of(workload, mode, clients, churn)
            results.append((label, churn, med, ratios))
            d, g, b = med["direct"], med["ddlgate"], med["pgbouncer"]
            print(f"{label:28} direct {d[0]:9.0f} tps | ddlgate {g[0] / d[0]:.2f} "
                  f"{spread(ratios['ddlgate'])} {added(g, d, churn)} {g[2]:.1f}us/tx | "
                  f"pgbouncer {b[0] / d[0]:.2f} {spread(ratios['pgbouncer'])} "
                  f"{added(b, d, churn)} {b[2]:.1f}us/tx", flush=True)
    finally:
        env.close()

    print()
    print(f"pgbench, {args.duration}s x {args.rounds} rounds per target, median; scale {args.scale}; "
          f"{os.cpu_count()} cores shared by pgbench, PostgreSQL and the proxy")
    print()
    print("| cell | direct TPS | ddlgate / direct (rounds' range) | pgbouncer / direct (range) | ddlgate added latency (ms) "
          "| pgbouncer added latency (ms) | ddlgate CPU (µs/tx) | pgbouncer CPU (µs/tx) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, churn, med, ratios in results:
        d, g, b = med["direct"], med["ddlgate"], med["pgbouncer"]
        print(f"| {label.strip()} | {d[0]:.0f} | {g[0] / d[0]:.2f} {spread(ratios['ddlgate'])} | "
              f"{b[0] / d[0]:.2f} {spread(ratios['pgbouncer'])} | "
              f"{added(g, d, churn)} | {added(b, d, churn)} | {g[2]:.1f} | {b[2]:.1f} |")
    print()
    print("-C: pgbench's latency average leaves out connection time, so added latency is not "
          "shown; pgbouncer reuses server connections across clients even in session mode, "
          "while ddlgate opens one upstream backend per client session by design.")


if __name__ == "__main__":
    main()
