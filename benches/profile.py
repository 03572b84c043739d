#!/usr/bin/env python3
"""Where a proxy's time goes, without hardware counters: ddlgate and pgbouncer side by side.

Starts the throwaway cluster, ddlgate (release build, default policy) and pgbouncer (session
mode) of benches/pgbench.py, and for each cell (pgbench select-only and TPC-B; simple,
extended, prepared protocol; --clients) measures each proxy three ways, in the same run:

  * user-space instructions per transaction: the proxy runs under `valgrind --tool=callgrind`;
    its counters are zeroed (`callgrind_control -z`) after a warm-up, pgbench runs a fixed
    number of transactions (-t), and the counters are dumped (`callgrind_control -d`): the
    instructions of exactly those transactions, repeatable to the instruction;
  * system calls per transaction: `strace -c -f` attached to every thread of the (unprofiled)
    proxy during a fixed-count run;
  * CPU time per transaction in the steady state (user + system, every thread's
    /proc/PID/task/TID/schedstat, read at each of pgbench's progress reports of a timed run,
    the first second left out): the ordinary traffic of open sessions, as in the cells of
    benches/pgbench.py; --cpu-rounds runs per proxy, the proxies and a direct run taking turns
    (the order reversed every other round), the median reported: on a 2-core machine shared by
    pgbench, the server and the proxy, one run of a ~6 µs select cell moves by ±10 %.

Session start-up is measured on its own: CPU per session of `pgbench -C` (a session per
transaction). It differs by design: pgbouncer hands a new client a pooled server connection,
ddlgate opens one per session (it never holds the password). Until 2026-12-06 the CPU column
came from fixed-count runs (-t) that opened their sessions inside the measurement, which put
that start-up difference into the per-transaction numbers (~0.1-0.3 µs/tx at 1,500
transactions per client).

It also reports each proxy's added latency (the median of pgbench's average latency through
it minus the same round's directly) and its memory per idle session (RSS before and after
opening --idle-sessions sessions, fresh and after 20 queries each).

Usage: benches/profile.py [--transactions N] [--profiled-transactions N] [--clients 1,8]
       [--cpu-rounds N] [--cpu-seconds N] [--sessions N] [--cells RE] [--keep DIR]
       [--idle-sessions N]
Needs: valgrind, strace, pgbouncer, PostgreSQL server binaries and pgbench, cargo.
"""

import argparse
import glob
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from statistics import median

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import Env, free_port, pgbench_argv, wait_port  # noqa: E402
from soak import idle_session, rss_kib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pgbench(port, workload, mode, clients, transactions, latency=None):
    """Runs `transactions` per client (pgbench -t; each run opens its sessions afresh, so
    their startup is part of what is measured, for both proxies); the number done in all.
    `latency`: a list that gets pgbench's average latency (ms)."""
    argv = pgbench_argv(port, workload, mode, clients) + ["-t", str(transactions), "bench"]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed on port {port}: {out.stderr.strip()}")
    done = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    if latency is not None:
        latency.append(float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1)))
    return done


def threads(pid):
    return [int(os.path.basename(t)) for t in glob.glob(f"/proc/{pid}/task/*")]


def syscalls_per_tx(env, pid, port, cell, transactions):
    """strace -c over every thread of `pid` during `transactions` transactions."""
    out = os.path.join(env.dir, f"strace-{pid}.txt")
    argv = ["strace", "-c", "-f", "-U", "calls,name", "-o", out]
    for tid in threads(pid):
        argv += ["-p", str(tid)]
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    done = pgbench(port, *cell, transactions)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    with open(out) as f:
        text = f.read()
    total = re.search(r"^\s*(\d+)\s+total\s*$", text, re.M)
    if not total:
        raise RuntimeError(f"no strace total in {out}:\n{text}")
    return int(total.group(1)) / done


def cpu_ns(pid):
    """On-CPU time of every thread of `pid` (user + system), in ns: /proc/PID/task/*/schedstat
    counts it to the nanosecond, where /proc/PID/stat counts 10 ms ticks."""
    total = 0
    for tid in threads(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return total


def steady_run(port, workload, mode, clients, seconds, pid=None):
    """A timed pgbench run (-T `seconds`, -P 1) with its sessions opened first; returns
    pgbench's average latency (ms) and, with `pid`, that process's CPU per transaction (µs)
    between the first and the last progress report: every session is open and has run for a
    second by the first, so session start-up is not in it (it is measured on its own:
    `session_start_cpu`)."""
    argv = pgbench_argv(port, workload, mode, clients) + ["-T", str(seconds), "-P", "1", "bench"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []  # (cpu ns at the report, transactions in the second it reports)
    for line in proc.stderr:
        m = re.match(r"progress: [\d.]+ s, ([\d.]+) tps", line)
        if m:
            samples.append((cpu_ns(pid) if pid else 0, float(m.group(1))))
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"pgbench failed on port {port}")
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    if pid is None:
        return latency, None
    if len(samples) < 3:
        raise RuntimeError(f"pgbench gave {len(samples)} progress reports in {seconds} s")
    transactions = sum(tps for _, tps in samples[1:])
    return latency, (samples[-1][0] - samples[0][0]) / 1e3 / transactions


def session_start_cpu(pid, port, connections):
    """The proxy's CPU (µs) per session of `pgbench -C` (one client, a session per
    transaction): accepting, authenticating, the session's set-up and end, and one select."""
    argv = pgbench_argv(port, "select", "simple", 1) + ["-C", "-t", str(connections), "bench"]
    before = cpu_ns(pid)
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench -C failed on port {port}: {out.stderr.strip()}")
    return (cpu_ns(pid) - before) / 1e3 / connections


def quiet_queries(sock, count):
    """`count` simple queries (`SELECT 1`) on an open session, each to its ReadyForQuery."""
    query = b"SELECT 1\0"
    message = b"Q" + struct.pack("!I", len(query) + 4) + query
    for _ in range(count):
        sock.sendall(message)
        buf = b""
        while not (len(buf) >= 6 and buf[-6:-5] == b"Z"):
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("session closed during a query")
            buf += chunk


def idle_memory(pid, port, sessions, queries):
    """KiB of the proxy's RSS per idle session: `sessions` opened (each after `queries` quiet
    queries), measured, then closed."""
    time.sleep(0.5)
    before = rss_kib(pid)
    socks = [idle_session(port) for _ in range(sessions)]
    for sock in socks:
        quiet_queries(sock, queries)
    time.sleep(1.0)
    after = rss_kib(pid)
    for sock in socks:
        sock.close()
    time.sleep(1.0)
    return (after - before) / sessions


def callgrind_proxy(env, name, argv, port):
    """Starts a proxy under callgrind; returns the process and its output file prefix."""
    prefix = os.path.join(env.dir, f"callgrind-{name}")
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p",
          "--dump-instr=no", "--collect-atstart=yes"]
    proc = env.spawn(env.prefix + vg + argv if name == "pgbouncer" else vg + argv,
                     f"valgrind-{name}.log", env={**os.environ, "DDLGATE_LOG": "warn"})
    wait_port(port, timeout=60)
    return proc, prefix


def instructions_per_tx(proc, prefix, port, cell, warmup, transactions, as_user=(), keep=None):
    """`as_user`: the prefix the proxy runs under (callgrind_control must be its user).
    `keep`: a directory to copy the dumps to, for `callgrind_annotate`."""
    control = list(as_user) + ["callgrind_control"]
    pgbench(port, *cell, warmup)
    subprocess.run(control + ["-z", str(proc.pid)], check=True, capture_output=True, timeout=60)
    done = pgbench(port, *cell, transactions)
    for old in glob.glob(f"{prefix}.{proc.pid}*"):
        os.remove(old)
    subprocess.run(control + ["-d", str(proc.pid)], check=True, capture_output=True, timeout=60)
    dumps = sorted(glob.glob(f"{prefix}.{proc.pid}*"))
    total = 0
    for path in dumps:
        with open(path) as f:
            for line in f:
                m = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if m:
                    total += int(m.group(1))
                    break
    if not dumps or total == 0:
        raise RuntimeError(f"no callgrind dump for {prefix}.{proc.pid}")
    if keep:
        os.makedirs(keep, exist_ok=True)
        name = f"{os.path.basename(prefix)}-{cell[0]}-{cell[1]}-c{cell[2]}"
        for i, path in enumerate(dumps):
            shutil.copy(path, os.path.join(keep, f"{name}.{i}"))
    return total / done


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=5000,
                    help="transactions per client in each strace run (default 5000)")
    ap.add_argument("--profiled-transactions", type=int, default=2000,
                    help="transactions per client in each callgrind run (default 2000)")
    ap.add_argument("--clients", default="1,8", help="client counts (default 1,8)")
    ap.add_argument("--cpu-rounds", type=int, default=5,
                    help="CPU and latency runs per proxy and cell, alternated; the median is "
                         "reported (default 5)")
    ap.add_argument("--cpu-seconds", type=int, default=4,
                    help="length of each CPU and latency run; the first second, which opens the "
                         "sessions, is left out of CPU per transaction (default 4)")
    ap.add_argument("--sessions", type=int, default=2000,
                    help="sessions of each session start-up run, pgbench -C (default 2000)")
    ap.add_argument("--cells", help="only cells whose label matches this regex")
    ap.add_argument("--idle-sessions", type=int, default=100,
                    help="idle sessions opened to measure memory per session (default 100; "
                         "pgbouncer's pool holds 100)")
    ap.add_argument("--observe", action="store_true",
                    help="ddlgate counts the statements its clients run (evidence_observe): its cost")
    ap.add_argument("--keep", metavar="DIR",
                    help="copy each callgrind dump to DIR (read them with callgrind_annotate)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "strace", "pgbouncer"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            sys.exit(f"{tool} is needed (Debian: apt-get install valgrind strace pgbouncer)")

    cells = [(w, m, int(c)) for w in ("select", "tpcb") for m in ("simple", "extended", "prepared")
             for c in args.clients.split(",")]
    label = lambda c: f"{c[0]} {c[1]} c={c[2]}"  # noqa: E731
    if args.cells:
        cells = [c for c in cells if re.search(args.cells, label(c))]

    env = Env(10, observe=args.observe)
    rows = []
    try:
        plain = {"ddlgate": (env.ddlgate.pid, env.ddlgate_port),
                 "pgbouncer": (env.pgbouncer.pid, env.pgbouncer_port)}
        # The same two proxies under callgrind, on ports of their own.
        dport, bport = free_port(), free_port()
        ddl_argv = [os.path.join(ROOT, "target/release/ddlgate"), "serve", "--listen",
                    f"127.0.0.1:{dport}", "--upstream", f"127.0.0.1:{env.pg_port}", *env.observe_args]
        ini = os.path.join(env.dir, "pgbouncer-profiled.ini")
        with open(os.path.join(env.dir, "pgbouncer.ini")) as f:
            text = f.read().replace(f"listen_port = {env.pgbouncer_port}", f"listen_port = {bport}")
        with open(ini, "w") as f:
            f.write(text)
        if env.prefix:
            shutil.chown(ini, *[os.stat(env.dir).st_uid, os.stat(env.dir).st_gid])
        bouncer = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        profiled = {"ddlgate": callgrind_proxy(env, "ddlgate", ddl_argv, dport) + (dport,),
                    "pgbouncer": callgrind_proxy(env, "pgbouncer", [bouncer, ini], bport) + (bport,)}
        for cell in cells:
            row = [label(cell)]
            counts = {}
            for name in ("ddlgate", "pgbouncer"):
                pid, port = plain[name]
                proc, prefix, pport = profiled[name]
                as_user = env.prefix if name == "pgbouncer" else ()
                ir = instructions_per_tx(proc, prefix, pport, cell, 200,
                                         args.profiled_transactions, as_user, args.keep)
                sc = syscalls_per_tx(env, pid, port, cell, args.transactions)
                counts[name] = (ir, sc)
            cpu = {"ddlgate": [], "pgbouncer": []}
            added = {"ddlgate": [], "pgbouncer": []}
            for round_ in range(args.cpu_rounds):
                order = ["ddlgate", "pgbouncer", "direct"]
                if round_ % 2:
                    order.reverse()
                latency = {}
                for name in order:
                    if name == "direct":
                        latency[name], _ = steady_run(env.pg_port, *cell, args.cpu_seconds)
                        continue
                    pid, port = plain[name]
                    latency[name], per_tx = steady_run(port, *cell, args.cpu_seconds, pid)
                    cpu[name].append(per_tx)
                for name in ("ddlgate", "pgbouncer"):
                    added[name].append((latency[name] - latency["direct"]) * 1000)
            for name in ("ddlgate", "pgbouncer"):
                ir, sc = counts[name]
                c, a = median(cpu[name]), median(added[name])
                spread = f"{min(cpu[name]):.1f}-{max(cpu[name]):.1f}"
                print(f"{label(cell):22} {name:9} {ir:10.0f} instr/tx  {sc:5.2f} syscalls/tx  "
                      f"{c:6.1f} CPU us/tx ({spread})  {a:7.1f} us added latency", flush=True)
                row.append((ir, sc, c, a))
            rows.append(row)
        starts = {"ddlgate": [], "pgbouncer": []}
        for round_ in range(args.cpu_rounds):
            for name in ("ddlgate", "pgbouncer") if round_ % 2 == 0 else ("pgbouncer", "ddlgate"):
                pid, port = plain[name]
                starts[name].append(session_start_cpu(pid, port, args.sessions))
        for name in ("ddlgate", "pgbouncer"):
            print(f"{name:9} {median(starts[name]):6.1f} CPU us per session (pgbench -C)", flush=True)
        memory = []
        for name in ("ddlgate", "pgbouncer"):
            pid, port = plain[name]
            for queries in (0, 20):
                kib = idle_memory(pid, port, args.idle_sessions, queries)
                print(f"{name:9} {kib:6.1f} KiB per idle session after {queries} queries", flush=True)
                memory.append((name, queries, kib))
    finally:
        env.close()

    print()
    print(f"user-space instructions per transaction (callgrind, {args.profiled_transactions} "
          f"transactions per client after a warm-up, sessions opened in the run), system calls "
          f"per transaction (strace -c, {args.transactions}), proxy CPU per transaction (schedstat, "
          f"{args.cpu_seconds} s runs without their first second; median of {args.cpu_rounds} "
          f"alternated rounds) and added latency (median of the same rounds)")
    print()
    print("| cell | ddlgate instr/tx | pgbouncer instr/tx | ddlgate syscalls/tx | pgbouncer syscalls/tx "
          "| ddlgate CPU µs/tx | pgbouncer CPU µs/tx | ddlgate added latency µs "
          "| pgbouncer added latency µs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell, d, b in rows:
        print(f"| {cell} | {d[0]:.0f} | {b[0]:.0f} | {d[1]:.2f} | {b[1]:.2f} | {d[2]:.1f} "
              f"| {b[2]:.1f} | {d[3]:.0f} | {b[3]:.0f} |")
    print()
    print(f"session start-up: proxy CPU per session of pgbench -C (1 client, {args.sessions} "
          f"sessions of one select each; median of {args.cpu_rounds} rounds), µs; pgbouncer hands "
          f"each session a server connection from its pool, ddlgate opens one per session")
    print()
    print("| ddlgate | pgbouncer |")
    print("|---:|---:|")
    print(f"| {median(starts['ddlgate']):.1f} | {median(starts['pgbouncer']):.1f} |")
    print()
    print(f"memory per idle session (proxy RSS before and after opening {args.idle_sessions} "
          f"sessions, each after 0 or 20 `SELECT 1`), KiB")
    print()
    print("| proxy | fresh session | after 20 queries |")
    print("|---|---:|---:|")
    for name in ("ddlgate", "pgbouncer"):
        kib = {q: k for n, q, k in memory if n == name}
        print(f"| {name} | {kib[0]:.1f} | {kib[20]:.1f} |")


if __name__ == "__main__":
    main()
