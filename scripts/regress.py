#!/usr/bin/env python3
"""PostgreSQL's own regression scripts as a transparency test: direct vs. through ddlgate.

Starts two identical fresh clusters, ddlgate (release build) in front of the second with a
policy, runs every regression script with `psql -X -a -q` against both (test_setup first, then
the rest in name order, one psql per file, the same order on both sides), and compares the
outputs file by file. A file that does not finish within --timeout seconds on either side is a
hang and fails the run with its name.

    python3 scripts/regress.py --sql DIR [--pg-bin DIR] [--policy allow|default|FILE]
                               [--timeout 60] [--only REGEX] [--out DIR]

DIR holds the regression scripts (`src/test/regress/sql/*.sql` of the PostgreSQL version
--pg-bin serves). They are PostgreSQL's, not ddlgate's: this repository does not ship them and
no package registry reachable from CI carries them, so the script runs where a copy exists
(see the issue notes). With `--policy allow` (every rule off) every output must be identical;
with `--policy default` the differences are listed for review (a rule firing is expected,
anything else is a bug). The allow policy also sets no timeouts: with them ddlgate runs
statements of its own before DDL, which warm the backend's caches and change, for example,
EXPLAIN (BUFFERS) counts.

Exit status: 0 when every file is identical (allow) or no file hung (other policies), 1
otherwise, 2 on usage errors.
"""

import argparse
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from pgbench import as_user_prefix, find_pg_bin, free_port, wait_port  # noqa: E402


def allow_all_policy(ddlgate, path):
    """Every rule `allow`, no timeouts of ddlgate's: it forwards every statement as sent and
    runs none of its own, so the outputs must be identical byte for byte."""
    text = subprocess.run([ddlgate, "rules", "--format", "toml"], check=True,
                          capture_output=True, text=True).stdout
    head, rules = text.split("[rules]", 1)
    head = re.sub(r'(lock_timeout|statement_timeout) = "[^"]*"', r'\1 = "0"', head)
    text = head + "[rules]" + re.sub(r'= "(warn|reject|rewrite)"', '= "allow"', rules)
    with open(path, "w") as f:
        f.write(text)


class Cluster:
    def __init__(self, pg_bin, prefix, ids, root, name):
        self.dir = os.path.join(root, name)
        os.mkdir(self.dir)
        if ids:
            os.chown(self.dir, *ids)
        self.port = free_port()
        data = os.path.join(self.dir, "data")
        subprocess.run(prefix + [f"{pg_bin}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                                 "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                    "max_prepared_transactions = 2\n")
        log = open(os.path.join(self.dir, "postgres.log"), "w")
        self.proc = subprocess.Popen(prefix + [f"{pg_bin}/postgres", "-D", data],
                                     stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        time.sleep(0.3)
        subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                        "postgres", "-c", "CREATE DATABASE regression"], check=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def run_file(port, path, timeout, env):
    """psql's output for one script, or None when it did not finish in time."""
    try:
        out = subprocess.run(["psql", "-X", "-a", "-q", "-h", "127.0.0.1", "-p", str(port),
                              "-U", "postgres", "-d", "regression", "-f", path],
                             capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    return out.stdout + out.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sql", required=True, help="directory of regression scripts")
    ap.add_argument("--pg-bin", help="server binaries (default: TEST_PG_BIN or the newest installed)")
    ap.add_argument("--policy", default="allow", help="allow (every rule off), default, or a file")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per file and side (default 60)")
    ap.add_argument("--only", help="only files whose name matches this regex")
    ap.add_argument("--out", help="keep both outputs and the diffs here")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.sql, "*.sql")))
    if not files:
        print(f"regress.py: no *.sql in {args.sql}", file=sys.stderr)
        return 2
    files.sort(key=lambda p: (os.path.basename(p) != "test_setup.sql", p))
    if args.only:
        files = [f for f in files if re.search(args.only, os.path.basename(f))
                 or os.path.basename(f) == "test_setup.sql"]
    pg_bin = args.pg_bin or find_pg_bin()
    prefix, ids = as_user_prefix()
    root = tempfile.mkdtemp(prefix="ddlgate-regress-")
    if ids:
        os.chown(root, *ids)
    out_dir = args.out or os.path.join(root, "out")
    os.makedirs(out_dir, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    ddlgate = os.path.join(ROOT, "target/release/ddlgate")
    policy = args.policy
    if policy == "allow":
        policy = os.path.join(root, "allow.toml")
        allow_all_policy(ddlgate, policy)
    elif policy == "default":
        policy = os.path.join(ROOT, "policies/default.toml")

    direct = Cluster(pg_bin, prefix, ids, root, "direct")
    proxied = Cluster(pg_bin, prefix, ids, root, "proxied")
    gate_port = free_port()
    gate_log = open(os.path.join(root, "ddlgate.log"), "w")
    gate = subprocess.Popen([ddlgate, "serve", "--listen", f"127.0.0.1:{gate_port}",
                             "--upstream", f"127.0.0.1:{proxied.port}", "--policy", policy],
                            stdout=gate_log, stderr=subprocess.STDOUT,
                            env={**os.environ, "DDLGATE_LOG": "warn"})
    wait_port(gate_port)
    # The scripts read their data files relative to PG_ABS_SRCDIR; both sides get the same.
    env = {**os.environ, "PG_ABS_SRCDIR": os.path.dirname(os.path.abspath(args.sql)),
           "PG_LIBDIR": os.path.join(os.path.dirname(pg_bin), "lib"), "PG_DLSUFFIX": ".so",
           "PGTZ": "PST8PDT", "PGDATESTYLE": "Postgres, MDY", "PGOPTIONS": ""}

    identical, differ, hung = [], [], []
    started = time.time()
    try:
        for path in files:
            name = os.path.basename(path)[:-4]
            a = run_file(direct.port, path, args.timeout, env)
            b = run_file(gate_port, path, args.timeout, env)
            if a is None or b is None:
                side = "direct" if a is None else "through ddlgate"
                hung.append(f"{name} ({side})")
                print(f"HANG  {name} ({side}, over {args.timeout}s)", flush=True)
                continue
            if a == b:
                identical.append(name)
                continue
            differ.append(name)
            diff = difflib.unified_diff(a.decode(errors="replace").splitlines(keepends=True),
                                        b.decode(errors="replace").splitlines(keepends=True),
                                        f"{name} direct", f"{name} ddlgate", n=2)
            text = "".join(diff)
            with open(os.path.join(out_dir, f"{name}.diff"), "w") as f:
                f.write(text)
            print(f"DIFF  {name}: {text.count(chr(10))} diff lines ({out_dir}/{name}.diff)",
                  flush=True)
    finally:
        gate.terminate()
        gate.wait(timeout=30)
        direct.stop()
        proxied.stop()
    print(f"\n{len(files)} files in {time.time() - started:.0f}s: {len(identical)} identical, "
          f"{len(differ)} different, {len(hung)} hung (policy {args.policy}, {pg_bin})")
    if hung:
        print("hung: " + ", ".join(hung))
    if differ:
        print("different: " + ", ".join(differ))
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)
    if hung or (args.policy == "allow" and differ):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
