"""psycopg 3 driver of the compatibility suite (tests/compat).

Usage: psycopg_driver.py SCENARIO.json

The scenario names the server, a mode and a list of steps (tests/compat/harness.rs). Each step
runs its statements in autocommit mode or inside one transaction block; the results are printed
as JSON on stdout so that the suite can compare a direct connection with one through ddlgate.

Modes: "simple" (no parameters: psycopg sends the simple Query protocol), "prepared" (named
server-side prepared statements, prepare=True), "pipeline" (each step's statements in one
pipeline).
"""

import json
import sys

import psycopg


def value(v):
    return None if v is None else str(v)


def error(e):
    return {"error": {"sqlstate": e.sqlstate, "message": e.diag.message_primary}}


def result(cur):
    out = {"tag": cur.statusmessage}
    if cur.description is not None:
        out["rows"] = [[value(v) for v in row] for row in cur.fetchall()]
    return out


def run_plain(conn, step, prepare):
    results = []
    if step["transaction"]:
        try:
            with conn.transaction():
                for sql in step["sql"]:
                    try:
                        results.append(result(conn.execute(sql, prepare=prepare)))
                    except psycopg.Error as e:
                        results.append(error(e))
                        raise
        except psycopg.Error:
            pass
    else:
        for sql in step["sql"]:
            try:
                results.append(result(conn.execute(sql, prepare=prepare)))
            except psycopg.Error as e:
                results.append(error(e))
    return results


def run_pipeline(conn, step):
    results = []
    cursors = []
    try:
        with conn.pipeline():
            if step["transaction"]:
                with conn.transaction():
                    for sql in step["sql"]:
                        cursors.append(conn.execute(sql))
            else:
                for sql in step["sql"]:
                    cursors.append(conn.execute(sql))
    except psycopg.Error as e:
        # The pipeline stops at the first error; psycopg reports it once, at the sync.
        results.append(error(e))
        return results
    for cur in cursors:
        results.append(result(cur))
    return results


def main():
    with open(sys.argv[1]) as f:
        scenario = json.load(f)
    c = scenario["connection"]
    conn = psycopg.connect(
        host=c["host"], port=c["port"], user=c["user"], password=c["password"],
        dbname=c["database"], sslmode="disable", autocommit=True,
        application_name="compat-psycopg",
    )
    mode = scenario["mode"]
    out = []
    for step in scenario["steps"]:
        if mode == "pipeline":
            results = run_pipeline(conn, step)
        else:
            results = run_plain(conn, step, prepare=(mode == "prepared"))
        out.append({"name": step["name"], "results": results})
    conn.close()
    json.dump(out, sys.stdout, indent=1)


main()
