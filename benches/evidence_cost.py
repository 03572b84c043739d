#!/usr/bin/env python3
"""What evidence of use costs the server, and what a judgement costs a migration.

Starts a throwaway cluster with pg_stat_statements loaded (`pg_stat_statements.max` =
--statements), fills it with that many distinct statements, and runs `ddlgate serve
--evidence-dsn` (release build) sampling every --interval seconds while a workload runs
--changing distinct statements between two samples. Then reads, from pg_stat_statements itself,
what ddlgate's own sampling statements cost the server (calls, mean and total execution time
per sample), how many rows each sample wrote and how large the evidence tables grew, and times
`ddlgate explain --database` judging a DROP COLUMN against every stored statement text.

Usage: benches/evidence_cost.py [--statements N] [--changing N] [--interval S] [--samples N]
Needs: PostgreSQL server binaries with pg_stat_statements, psql, cargo.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pgbench import ROOT, as_user_prefix, find_pg_bin, free_port, wait_port  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--statements", type=int, default=5000,
                    help="distinct statements in pg_stat_statements (default 5000, its default max)")
    ap.add_argument("--changing", type=int, default=500,
                    help="distinct statements that run between two samples (default 500)")
    ap.add_argument("--interval", type=float, default=2.0, help="seconds between samples (default 2)")
    ap.add_argument("--samples", type=int, default=10, help="samples to measure (default 10)")
    args = ap.parse_args()

    bin_dir = find_pg_bin()
    prefix, owner = as_user_prefix()
    work = tempfile.mkdtemp(prefix="ddlgate-evidence-")
    if owner:
        os.chown(work, *owner)
    data = os.path.join(work, "data")
    port = free_port()
    subprocess.run(prefix + [os.path.join(bin_dir, "initdb"), "-D", data, "-U", "postgres",
                             "--auth=trust"], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(data, "postgresql.conf"), "a") as f:
        f.write(f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{work}'\n"
                "shared_preload_libraries = 'pg_stat_statements'\n"
                f"pg_stat_statements.max = {max(args.statements + 1000, 100)}\n")
    server = subprocess.Popen(prefix + [os.path.join(bin_dir, "postgres"), "-D", data],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = None
    try:
        wait_port(port)
        time.sleep(0.5)
        dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
        psql = shutil.which("psql") or os.path.join(bin_dir, "psql")

        def sql(text, quiet=True):
            out = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", dsn],
                                 input=text, capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(out.stderr)
            return out.stdout

        # Distinct statements: pg_stat_statements' query id ignores constants and aliases, so
        # each reads another column of another table: orders0..orders99, columns a0..a49. Every
        # text mentions "orders", the judged table's name: all of them are parsed (worst case).
        tables = max(1, (args.statements + 49) // 50)
        columns = ", ".join(f"a{j} int" for j in range(50))
        sql("CREATE EXTENSION pg_stat_statements;\n" + "\n".join(
            f"CREATE TABLE orders{i} ({columns}); INSERT INTO orders{i} (a0) VALUES (1);"
            for i in range(tables)))

        def statement(k):
            return f"SELECT a{k % 50} FROM orders{(k // 50) % tables} WHERE a0 = {k};"

        sql("\n".join(statement(k) for k in range(args.statements)))
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        listen = free_port()
        proxy = subprocess.Popen(
            [os.path.join(ROOT, "target/release/ddlgate"), "serve", "--listen", f"127.0.0.1:{listen}",
             "--upstream", f"127.0.0.1:{port}", "--evidence-dsn", dsn,
             "--evidence-interval", f"{int(args.interval * 1000)}ms"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(listen)
        # The first sample writes every statement (the starting counts); measure after it.
        time.sleep(args.interval * 1.5)
        before = sql("SELECT count(*) FROM ddlgate.samples").strip()
        rows_before = int(sql("SELECT count(*) FROM ddlgate.calls").strip())
        started = time.time()
        round_ = 0
        while time.time() - started < args.interval * args.samples:
            base = (round_ * args.changing) % args.statements
            sql("\n".join(statement((base + k) % args.statements) for k in range(args.changing)))
            round_ += 1
            time.sleep(max(0.0, args.interval - 0.2))
        time.sleep(args.interval)
        samples = int(sql("SELECT count(*) FROM ddlgate.samples").strip()) - int(before)
        rows = int(sql("SELECT count(*) FROM ddlgate.calls").strip()) - rows_before
        own = sql("SELECT calls, round(total_exec_time::numeric, 2), round(mean_exec_time::numeric, 3), "
                  "left(regexp_replace(query, '\\s+', ' ', 'g'), 70) FROM pg_stat_statements "
                  "WHERE (query LIKE '%pg_stat_statements(%' OR query LIKE '%\"ddlgate\".%') "
                  "AND query NOT LIKE '%round(total_exec_time%' ORDER BY total_exec_time DESC")
        sizes = sql("SELECT relname, pg_size_pretty(pg_total_relation_size(c.oid)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'ddlgate' "
                    "AND c.relkind = 'r' ORDER BY relname")
        t0 = time.time()
        policy = os.path.join(work, "policy.toml")
        window = max(1, int(args.interval * args.samples / 2))
        with open(policy, "w") as f:
            f.write(f'[evidence]\nwindow = "{window}s"\nmin_observation = "{window}s"\n')
        out = subprocess.run([os.path.join(ROOT, "target/release/ddlgate"), "explain", "--database", dsn,
                              "--policy", policy, "ALTER TABLE orders0 DROP COLUMN a1"],
                             capture_output=True, text=True)
        judged = time.time() - t0
        evidence = [l.strip() for l in out.stdout.splitlines() if "evidence:" in l]

        print(f"pg_stat_statements entries: ~{args.statements}; {args.changing} distinct statements "
              f"ran between samples; interval {args.interval} s; {samples} samples measured")
        print()
        print(f"rows written to ddlgate.calls per sample: {rows / max(samples, 1):.0f}")
        print()
        print("| ddlgate's statement (server side, whole run) | calls | total ms | mean ms |")
        print("|---|---:|---:|---:|")
        total = 0.0
        for line in own.strip().splitlines():
            calls, tot, mean, text = line.split("|", 3)
            total += float(tot)
            print(f"| `{text}` | {calls} | {tot} | {mean} |")
        print()
        print(f"server time of all sampling statements: {total:.1f} ms over the run "
              f"(~{total / max(samples + 2, 1):.1f} ms per sample)")
        print()
        print("| table | size |")
        print("|---|---:|")
        for line in sizes.strip().splitlines():
            name, size = line.split("|")
            print(f"| ddlgate.{name} | {size} |")
        print()
        print(f"`explain --database` judging DROP COLUMN a1 of orders0 against {args.statements}+ stored texts: "
              f"{judged * 1000:.0f} ms wall ({evidence[0] if evidence else out.stderr.strip()})")
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait()
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
