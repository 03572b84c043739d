#!/usr/bin/env python3
"""A/B: this build of ddlgate against another build (or other settings), and pgbouncer.

For changes too small for the full tables of pgbench.py and profile.py: the same pgbench cell
is run against each target in turn, round after round, the order rotating so that no target
always runs first or last, and each target's medians (with the rounds' range) are printed:

  * TPS;
  * the proxy's CPU per transaction (every thread's /proc/PID/task/TID/schedstat, between
    pgbench's first and last progress report, so session start-up is left out);
  * how often per transaction it slept (voluntary context switches) and was preempted
    (involuntary), from /proc/PID/task/TID/status — where CPU moves without the code changing,
    these say whether it was the scheduler;
  * user and system time per transaction (/proc/PID/stat, 10 ms ticks: coarse, but the split).

Targets: "this" (target/release, built first, with --args), "other" (--other-binary, with
--other-args; leave the binary out to compare settings of this build: --other-args alone) and
"pgbouncer" (session mode). --own-sessions starts the proxies in a session of their own
(setsid), as a service manager or a container would: then they no longer share a scheduler
autogroup with pgbench (README, Performance).

Usage:
  benches/ab.py --other-binary /tmp/ddlgate-before --cells 'tpcb prepared 32,select simple 8'
  benches/ab.py --other-args '--sched-batch false' --rounds 7 --seconds 5
Needs what pgbench.py needs. Runs everything on 127.0.0.1 and stops what it started.
"""

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import ROOT, Env, free_port, pgbench_argv, wait_port  # noqa: E402
from profile import cpu_ns, threads  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def switches(pid):
    """Voluntary and involuntary context switches of every thread of `pid`."""
    sleeps = preempts = 0
    for tid in threads(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        sleeps += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        preempts += int(line.split()[1])
        except FileNotFoundError:
            pass  # the thread ended meanwhile
    return sleeps, preempts


def user_system(pid):
    """User and system time of `pid` (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def run(port, pid, workload, mode, clients, seconds):
    """One timed run; per transaction between the first and last progress report."""
    argv = pgbench_argv(port, workload, mode, clients) + ["-T", str(seconds), "-P", "1", "bench"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    for line in proc.stderr:
        m = re.match(r"progress: [\d.]+ s, ([\d.]+) tps", line)
        if m:
            samples.append((float(m.group(1)), cpu_ns(pid), switches(pid), user_system(pid)))
    proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"pgbench failed on port {port}")
    if len(samples) < 3:
        raise RuntimeError(f"pgbench gave {len(samples)} progress reports in {seconds} s")
    first, last = samples[0], samples[-1]
    tx = sum(s[0] for s in samples[1:])
    return {
        "tps": tx / (len(samples) - 1),
        "cpu": (last[1] - first[1]) / 1e3 / tx,
        "sleeps": (last[2][0] - first[2][0]) / tx,
        "preempts": (last[2][1] - first[2][1]) / tx,
        "user": (last[3][0] - first[3][0]) * 1e6 / tx,
        "system": (last[3][1] - first[3][1]) * 1e6 / tx,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other-binary", help="the other ddlgate build (default: this build again)")
    ap.add_argument("--other-args", default="", help="serve flags for the other target")
    ap.add_argument("--args", default="", help="serve flags for this build")
    ap.add_argument("--cells", default="select prepared 8,tpcb prepared 32",
                    help="comma-separated 'workload mode clients' (workload select or tpcb; "
                         "mode simple, extended or prepared)")
    ap.add_argument("--rounds", type=int, default=5, help="runs per target and cell (default 5)")
    ap.add_argument("--seconds", type=int, default=5, help="seconds per run (default 5)")
    ap.add_argument("--scale", type=int, default=10, help="pgbench scale factor (default 10)")
    ap.add_argument("--own-sessions", action="store_true",
                    help="start the proxies in sessions of their own (setsid)")
    args = ap.parse_args()

    cells = []
    for spec in args.cells.split(","):
        parts = spec.split()
        if (len(parts) != 3 or parts[0] not in ("select", "tpcb")
                or parts[1] not in ("simple", "extended", "prepared") or not parts[2].isdigit()):
            sys.exit(f"bad cell {spec!r}: want e.g. 'tpcb prepared 32'")
        cells.append((parts[0], parts[1], int(parts[2])))
    if args.seconds < 4:
        sys.exit("--seconds must be at least 4 (the first progress report is left out, and "
                 "pgbench may report one second less than it runs)")
    other = args.other_binary or os.path.join(ROOT, "target/release/ddlgate")
    if not os.access(other, os.X_OK):
        sys.exit(f"no executable ddlgate at {other}")

    env = Env(args.scale, ddlgate_args=shlex.split(args.args), own_sessions=args.own_sessions)
    try:
        port = free_port()
        proc = env.spawn([other, "serve", "--listen", f"127.0.0.1:{port}",
                          "--upstream", f"127.0.0.1:{env.pg_port}", *shlex.split(args.other_args)],
                         "other.log", env={**os.environ, "DDLGATE_LOG": "warn"})
        wait_port(port)
        targets = [("this", env.ddlgate.pid, env.ddlgate_port), ("other", proc.pid, port),
                   ("pgbouncer", env.pgbouncer.pid, env.pgbouncer_port)]
        for _, pid, port in targets:  # warm each target before measuring
            run(port, pid, "select", "simple", 2, 4)
        print(f"this: target/release {args.args!r}; other: {other} {args.other_args!r}; "
              f"{args.rounds} rounds of {args.seconds} s; own sessions: {args.own_sessions}")
        print("median (range) per transaction; CPU µs, user/system µs (10 ms ticks)")
        for cell in cells:
            results = {name: [] for name, _, _ in targets}
            for r in range(args.rounds):
                k = r % len(targets)
                for name, pid, port in targets[k:] + targets[:k]:
                    results[name].append(run(port, pid, *cell, args.seconds))
            label = " ".join(map(str, cell))
            for name, _, _ in targets:
                rows = results[name]

                def med(key, fmt, rows=rows):
                    values = [row[key] for row in rows]
                    return (f"{statistics.median(values):{fmt}} "
                            f"({min(values):{fmt}}–{max(values):{fmt}})")

                print(f"{label:20} {name:9} tps {med('tps', '.0f')}  cpu {med('cpu', '.2f')}  "
                      f"sleeps {statistics.median(r['sleeps'] for r in rows):.3f}  "
                      f"preempts {statistics.median(r['preempts'] for r in rows):.3f}  "
                      f"user {statistics.median(r['user'] for r in rows):.1f}  "
                      f"system {statistics.median(r['system'] for r in rows):.1f}", flush=True)
    finally:
        env.close()


if __name__ == "__main__":
    main()
