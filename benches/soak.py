#!/usr/bin/env python3
"""Load and soak: many sessions through ddlgate, mixed pgbench traffic plus a stream of DDL.

Starts a throwaway cluster with room for the sessions (benches/pgbench.py's Env), ddlgate
(release build, default policy, audit file) in front of it, and measures:

  1. memory per idle session: ddlgate's RSS before and after opening --sessions idle sessions
     (startup + authentication through ddlgate, then nothing);
  2. load: --sessions pgbench clients (select-only, prepared) through ddlgate for --load-seconds
     while a DDL stream runs through ddlgate too (ALTER … SET DEFAULT, CREATE INDEX rewritten to
     CONCURRENTLY, DROP INDEX, a refused RENAME COLUMN);
  3. soak: --soak-clients TPC-B clients for --soak-seconds through ddlgate with the DDL stream,
     sampling ddlgate's RSS and open file descriptors every 10 s (they must stay flat), then the
     same workload and DDL (in its safe form) for --baseline-seconds directly; p50/p99 latency
     of both from pgbench's per-transaction log, and every error pgbench or the DDL stream saw.

Usage: benches/soak.py [--sessions 1000] [--load-seconds 60] [--soak-clients 32]
                       [--soak-seconds 600] [--baseline-seconds 120] [--scale 10]
Needs what benches/pgbench.py needs. Not part of CI: it runs for more than ten minutes.
"""

import argparse
import glob
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import Env, wait_port  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_session(port):
    """A session through ddlgate as postgres (trust), left idle; returns its socket."""
    s = socket.create_connection(("127.0.0.1", port))
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0bench\0\0"
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("session closed during startup")
        buf += chunk
        # Walk the messages: done at ReadyForQuery, failed at ErrorResponse.
        at = 0
        while len(buf) - at >= 5:
            tag = buf[at:at + 1]
            length = struct.unpack("!I", buf[at + 1:at + 5])[0]
            if len(buf) - at < 1 + length:
                break
            if tag == b"E":
                raise RuntimeError(f"startup failed: {buf[at + 5:at + 1 + length]!r}")
            if tag == b"Z":
                return s
            at += 1 + length


class DdlStream(threading.Thread):
    """DDL through ddlgate, one statement per psql call, until stopped; counts outcomes."""

    STATEMENTS = [
        ("ALTER TABLE soak_ddl ALTER COLUMN v SET DEFAULT {n}", True),
        ("CREATE INDEX soak_ddl_v ON soak_ddl (v)", True),
        ("DROP INDEX CONCURRENTLY soak_ddl_v", True),
        ("ALTER TABLE soak_ddl RENAME COLUMN v TO w", False),  # refused by rename-column
    ]

    # The same work sent directly, for the baseline: the safe forms, and no refused statement.
    DIRECT = [
        ("ALTER TABLE soak_ddl ALTER COLUMN v SET DEFAULT {n}", True),
        ("CREATE INDEX CONCURRENTLY soak_ddl_v ON soak_ddl (v)", True),
        ("DROP INDEX CONCURRENTLY soak_ddl_v", True),
    ]

    def __init__(self, port, direct=False):
        super().__init__(daemon=True)
        self.port = port
        self.statements = self.DIRECT if direct else self.STATEMENTS
        self.stop = threading.Event()
        self.ok = 0
        self.refused = 0
        self.unexpected = []

    def run(self):
        n = 0
        while not self.stop.is_set():
            sql, should_pass = self.statements[n % len(self.statements)]
            n += 1
            out = subprocess.run(
                ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "bench",
                 "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql.format(n=n)],
                capture_output=True, text=True)
            if should_pass and out.returncode == 0:
                self.ok += 1
            elif not should_pass and "ddlgate: rename-column" in out.stderr:
                self.refused += 1
            else:
                self.unexpected.append((sql, out.stderr.strip()))
            self.stop.wait(0.5)


def pgbench(port, args, seconds, log_prefix=None):
    argv = ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n",
            "-T", str(seconds)] + args
    if log_prefix:
        argv += ["-l", f"--log-prefix={log_prefix}"]
    argv.append("bench")
    return subprocess.run(argv, capture_output=True, text=True)


def latencies_ms(prefix):
    """Per-transaction latencies from pgbench's -l log files (column 3 is µs)."""
    out = []
    for path in glob.glob(prefix + "*"):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out.append(int(parts[2]) / 1000.0)
    return out


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--load-seconds", type=int, default=60)
    ap.add_argument("--soak-clients", type=int, default=32)
    ap.add_argument("--soak-seconds", type=int, default=600)
    ap.add_argument("--baseline-seconds", type=int, default=120)
    ap.add_argument("--scale", type=int, default=10)
    args = ap.parse_args()

    # Every session is one socket to ddlgate and one to PostgreSQL, in this process and in
    # pgbench: raise the descriptor limit the children inherit.
    want = 4 * args.sessions + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))

    work = tempfile.mkdtemp(prefix="ddlgate-soak-")
    audit = os.path.join(work, "audit.jsonl")
    env = Env(args.scale, max_connections=args.sessions + 100,
              ddlgate_args=["--audit-log", audit, "--max-connections", str(args.sessions + 50)])
    pid, port, direct = env.ddlgate.pid, env.ddlgate_port, env.pg_port
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(direct), "-U", "postgres", "-d", "bench",
                    "-qc", "CREATE TABLE soak_ddl (id int, v int); "
                           "INSERT INTO soak_ddl SELECT g, g FROM generate_series(1, 10000) g"],
                   check=True)
    try:
        # 1. Memory per idle session.
        time.sleep(1)
        before = rss_kib(pid)
        sockets = [idle_session(port) for _ in range(args.sessions)]
        time.sleep(2)
        after = rss_kib(pid)
        print(f"idle sessions: {args.sessions}; ddlgate RSS {before} KiB -> {after} KiB: "
              f"{(after - before) / args.sessions:.1f} KiB per idle session; "
              f"open fds {open_fds(pid)}", flush=True)
        for s in sockets:
            s.close()
        time.sleep(2)
        print(f"after closing them: RSS {rss_kib(pid)} KiB, open fds {open_fds(pid)}", flush=True)

        # 2. Load: every session busy, with DDL alongside.
        ddl = DdlStream(port)
        ddl.start()
        out = pgbench(port, ["-S", "-M", "prepared", "-c", str(args.sessions), "-j", "2"],
                      args.load_seconds)
        ddl.stop.set()
        ddl.join()
        print(f"load: {args.sessions} clients, {args.load_seconds}s, rc={out.returncode}: "
              + " | ".join(l for l in out.stdout.splitlines()
                           if l.startswith(("tps", "number of transactions actually", "number of failed",
                                            "latency average")))
              + f" | DDL ok {ddl.ok}, refused as expected {ddl.refused}, unexpected {len(ddl.unexpected)}",
              flush=True)
        for sql, err in ddl.unexpected[:5]:
            print(f"  unexpected: {sql}: {err}")
        if out.returncode != 0:
            print(out.stderr[-2000:])

        # 3. Soak through ddlgate, sampling RSS and fds, then the same directly.
        samples = []
        ddl = DdlStream(port)
        ddl.start()
        prefix = os.path.join(work, "soak")
        proc = threading.Thread(target=lambda: samples.append(("result", pgbench(
            port, ["-M", "prepared", "-c", str(args.soak_clients), "-j", "2"], args.soak_seconds,
            prefix))), daemon=True)
        started = time.time()
        proc.start()
        while proc.is_alive():
            time.sleep(10)
            samples.append((round(time.time() - started), rss_kib(pid), open_fds(pid)))
            print(f"  t={samples[-1][0]:4}s rss={samples[-1][1]} KiB fds={samples[-1][2]}", flush=True)
        ddl.stop.set()
        ddl.join()
        result = next(s[1] for s in samples if s[0] == "result")
        points = [s for s in samples if s[0] != "result"]
        through = latencies_ms(prefix)
        # The baseline runs the same traffic and the same DDL stream, directly.
        base_prefix = os.path.join(work, "direct")
        ddl_direct = DdlStream(direct, direct=True)
        ddl_direct.start()
        base = pgbench(direct, ["-M", "prepared", "-c", str(args.soak_clients), "-j", "2"],
                       args.baseline_seconds, base_prefix)
        ddl_direct.stop.set()
        ddl_direct.join()
        if base.returncode != 0:
            print(f"  direct baseline failed: {base.stderr[-500:]}")
        direct_lat = latencies_ms(base_prefix)
        rss = [p[1] for p in points]
        fds = [p[2] for p in points]
        print(f"soak: {args.soak_clients} TPC-B clients, {args.soak_seconds}s through ddlgate, "
              f"rc={result.returncode}; RSS first/max/last {rss[0]}/{max(rss)}/{rss[-1]} KiB; "
              f"fds first/max/last {fds[0]}/{max(fds)}/{fds[-1]}")
        print(f"  latency through ddlgate p50 {percentile(through, 50):.3f} ms p99 "
              f"{percentile(through, 99):.3f} ms ({len(through)} tx); direct p50 "
              f"{percentile(direct_lat, 50):.3f} ms p99 {percentile(direct_lat, 99):.3f} ms "
              f"({len(direct_lat)} tx, {args.baseline_seconds}s); added p50 "
              f"{percentile(through, 50) - percentile(direct_lat, 50):.3f} ms, p99 "
              f"{percentile(through, 99) - percentile(direct_lat, 99):.3f} ms")
        failed = [l for l in result.stdout.splitlines() + result.stderr.splitlines()
                  if "failed" in l or "abort" in l or "ERROR" in l]
        print(f"  pgbench errors: {failed or 'none'}; DDL ok {ddl.ok}, refused as expected "
              f"{ddl.refused}, unexpected {len(ddl.unexpected)}")
        for sql, err in ddl.unexpected[:5]:
            print(f"  unexpected: {sql}: {err}")
        verify = subprocess.run([os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                              "target/release/ddlgate"), "audit", "verify", audit],
                                capture_output=True, text=True)
        print(f"  audit: {verify.stdout.strip() or verify.stderr.strip()}")
        if statistics.mean(rss[len(rss) // 2:]) > 1.5 * statistics.mean(rss[: max(1, len(rss) // 2)]):
            print("  WARNING: RSS grew during the soak")
    finally:
        env.close()


if __name__ == "__main__":
    main()
