#!/usr/bin/env python3
"""PostgreSQL's own regression scripts as a transparency test: direct vs. through ddlgate.

Starts two identical fresh clusters, ddlgate (release build) in front of the second with a
policy, runs every regression script with `psql -X -a -q` against both (test_setup first, then
the rest in name order, one psql per file, the same order on both sides), and compares the
outputs file by file. A file that does not finish within --timeout seconds on either side is a
hang and fails the run with its name.

    python3 scripts/regress.py [--sql DIR] [--pg-bin DIR] [--policy allow|default|FILE]
                               [--ddlgate BIN] [--timeout 60] [--only REGEX] [--out DIR]

DIR holds the regression scripts (`src/test/regress/sql/*.sql`). They are PostgreSQL's
(PostgreSQL License), not ddlgate's, and this repository does not ship them. Without --sql the
script takes PostgreSQL 18.6's from a published package that carries them: the source
distribution of pglast 8.8 on PyPI (pglast bundles libpg_query, whose tests include
`test/sql/postgres_regress`), downloaded once into a cache (DDLGATE_CACHE, default /var/tmp),
its SHA-256 checked. Compare against a PostgreSQL 18 server (`--pg-bin`) so the scripts match the
server. Data files the scripts load (`data/*.data`) are not in that copy: those COPYs fail alike
on both sides. With `--policy allow` (every rule off) every output must be identical;
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
import tarfile
import tempfile
import time
import hashlib
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from pgbench import as_user_prefix, find_pg_bin, free_port, wait_port  # noqa: E402


# PostgreSQL 18.6's regression scripts, as bundled in pglast's source distribution on PyPI.
REGRESS_SDIST = ("https://files.pythonhosted.org/packages/62/b2/"
                 "fa8b837b58f352e5941ea7a8160121d32bad978a55538232d7890b8aaad5/pglast-8.8.tar.gz")
REGRESS_SDIST_SHA256 = "ff9998ec6bac4f30f84db6b6edb28a0fb03b1eda5c8ad211ab8362f5a08b833b"
REGRESS_MEMBER = "pglast-8.8/libpg_query/test/sql/postgres_regress/"


RANDOM_UUID = re.compile(rb"\b[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")


# psql labels a NOTICE with the input line it is reading when libpq happens to parse the
# notice — during a COPY FROM STDIN, anywhere in the data lines — so the label depends on when
# the bytes arrive, directly or through any proxy (seen in triggers.sql). Notices keep their
# text and order; only that label is set aside. Errors keep their line numbers.
NOTICE_LINE = re.compile(rb"^(psql:[^:\n]+):\d+: NOTICE:", re.M)


def normalise(output, port):
    """What must be identical of one side's output: see the comments above."""
    output = output.replace(f"port {port}".encode(), b"port PORT")
    output = RANDOM_UUID.sub(b"<random uuid>", output)
    return NOTICE_LINE.sub(rb"\1:N: NOTICE:", output)


def fetch_regression_scripts():
    """The directory of PostgreSQL 18.6's regression scripts, downloaded once into the cache."""
    cache = os.path.join(os.environ.get("DDLGATE_CACHE", "/var/tmp"), "ddlgate-regress", "pg18.6")
    sql = os.path.join(cache, "sql")
    if len(glob.glob(os.path.join(sql, "*.sql"))) > 200:
        return sql
    os.makedirs(cache, exist_ok=True)
    archive = os.path.join(cache, "pglast-8.8.tar.gz")
    print(f"regress.py: downloading the regression scripts ({REGRESS_SDIST})", flush=True)
    with urllib.request.urlopen(REGRESS_SDIST, timeout=120) as r, open(archive + ".part", "wb") as f:
        shutil.copyfileobj(r, f)
    with open(archive + ".part", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != REGRESS_SDIST_SHA256:
        sys.exit(f"regress.py: {REGRESS_SDIST} has SHA-256 {digest}, expected {REGRESS_SDIST_SHA256}")
    os.replace(archive + ".part", archive)
    staging = tempfile.mkdtemp(dir=cache)
    os.makedirs(os.path.join(staging, "sql"))
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name
            if not (member.isfile() and name.startswith(REGRESS_MEMBER) and name.endswith(".sql")):
                continue
            base = os.path.basename(name)
            source = tar.extractfile(member)
            with open(os.path.join(staging, "sql", base), "wb") as out:
                shutil.copyfileobj(source, out)
    shutil.rmtree(sql, ignore_errors=True)
    os.replace(os.path.join(staging, "sql"), sql)
    shutil.rmtree(staging, ignore_errors=True)
    os.remove(archive)
    return sql


def allow_all_policy(ddlgate, path):
    """Every rule `allow`, no timeouts of ddlgate's and no waiting for lock holders: it forwards
    every statement as sent and runs none of its own, so the outputs must be identical byte for
    byte."""
    text = subprocess.run([ddlgate, "rules", "--format", "toml"], check=True,
                          capture_output=True, text=True).stdout
    head, rules = text.split("[rules]", 1)
    head = re.sub(r'(lock_timeout|statement_timeout) = "[^"]*"', r'\1 = "0"', head)
    # No looking for lock holders either: no statement of ddlgate's at all.
    head = re.sub(r'max_wait = "[^"]*"', 'max_wait = "0"', head)
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


def wait_accepting(port, limit=120):
    """Waits until the server on `port` accepts sessions again: a script that crashes a backend
    sends the cluster through crash recovery, and the next script must not race it on one side
    only."""
    deadline = time.time() + limit
    while time.time() < deadline:
        done = subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(port), "-U",
                               "postgres", "-d", "regression", "-c", "SELECT 1"],
                              capture_output=True)
        if done.returncode == 0:
            return
        time.sleep(0.2)
    sys.exit(f"regress.py: the server on port {port} did not accept sessions for {limit}s")


def psql_version():
    """The major version of the psql on PATH."""
    out = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"(\d+)", out).group(1))


def needs_newer_psql(path, psql_major):
    """Why this psql cannot run the script, or None. psql's pipeline commands came with 18;
    an older psql reads them as errors and then waits on input, on both sides alike."""
    with open(path, "rb") as f:
        text = f.read()
    if psql_major < 18 and re.search(rb"^\\startpipeline", text, re.M):
        return f"uses psql 18's \\startpipeline; this psql is {psql_major}"
    return None


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
    ap.add_argument("--sql", help="directory of regression scripts (default: PostgreSQL 18.6's, "
                    "downloaded from PyPI once)")
    ap.add_argument("--ddlgate", help="the ddlgate binary (default: build target/release/ddlgate)")
    ap.add_argument("--pg-bin", help="server binaries (default: TEST_PG_BIN or the newest installed)")
    ap.add_argument("--policy", default="allow", help="allow (every rule off), default, or a file")
    ap.add_argument("--timeout", type=int, default=60, help="seconds per file and side (default 60)")
    ap.add_argument("--only", help="only files whose name matches this regex")
    ap.add_argument("--out", help="keep both outputs and the diffs here")
    args = ap.parse_args()

    if not args.sql:
        args.sql = fetch_regression_scripts()
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
    ddlgate = args.ddlgate
    if not ddlgate:
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

    psql_major = psql_version()
    identical, differ, hung, skipped = [], [], [], []
    started = time.time()
    try:
        for path in files:
            name = os.path.basename(path)[:-4]
            why_not = needs_newer_psql(path, psql_major)
            if why_not:
                skipped.append(name)
                print(f"SKIP  {name}: {why_not}", flush=True)
                continue
            a = run_file(direct.port, path, args.timeout, env)
            if a is None:
                # Not ddlgate's doing; the file cannot be compared here.
                skipped.append(name)
                print(f"SKIP  {name}: hangs on the direct connection (over {args.timeout}s)",
                      flush=True)
                continue
            wait_accepting(direct.port)
            b = run_file(gate_port, path, args.timeout, env)
            wait_accepting(proxied.port)
            if b is None:
                hung.append(name)
                print(f"HANG  {name} (through ddlgate, over {args.timeout}s)", flush=True)
                continue
            # Error messages name the port psql connected to; random (version 4 and 7) UUIDs
            # differ between any two clusters (uuid.sql prints some when the server predates
            # the scripts' minor release).
            a = normalise(a, direct.port)
            b = normalise(b, gate_port)
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
          f"{len(differ)} different, {len(hung)} hung, {len(skipped)} not comparable here "
          f"(policy {args.policy}, {pg_bin}, psql {psql_major})")
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
