"""psycopg 3 through ddlgate with the enforcement test policy: autocommit, implicit
transactions, pipeline mode and server-side prepared statements.

Run by tests/it/enforce.rs with DDLGATE_DSN (through ddlgate) and DIRECT_DSN (the cluster).
Exits non-zero with the failed assertion on any difference.
"""

import os

import psycopg

PROXY = os.environ["DDLGATE_DSN"]
DIRECT = os.environ["DIRECT_DSN"]


def refused(conn, sql, rule):
    try:
        conn.execute(sql)
    except psycopg.Error as e:
        assert e.sqlstate == "ZD001", (sql, e.sqlstate, str(e))
        assert e.diag.message_primary.startswith(f"ddlgate: {rule}: "), e.diag.message_primary
        assert e.diag.message_hint, "a hint with the safe SQL"
        return
    raise AssertionError(f"not refused: {sql}")


with psycopg.connect(DIRECT, autocommit=True) as d:
    d.execute("DROP TABLE IF EXISTS py_orders")
    d.execute("CREATE TABLE py_orders AS SELECT g AS id, g % 10 AS c, 'x' AS note FROM generate_series(1, 5000) g")

# Autocommit: rewrites apply, refusals keep the connection usable, timeouts are restored.
with psycopg.connect(PROXY, autocommit=True) as c:
    c.execute("CREATE INDEX py_orders_c ON py_orders (c)")
    valid = c.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'py_orders_c'::regclass").fetchone()[0]
    assert valid is True
    refused(c, "ALTER TABLE py_orders RENAME COLUMN note TO comment", "rename-column")
    assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"
    # Pipeline mode: DDL and a query in one pipeline.
    with c.pipeline():
        c.execute("ALTER TABLE py_orders ADD COLUMN p1 int")
        cur = c.execute("SELECT count(*) FROM py_orders")
    assert cur.fetchone()[0] == 5000
    assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"

# psycopg's default: every statement in a transaction block it opens itself.
with psycopg.connect(PROXY) as c:
    c.execute("ALTER TABLE py_orders ADD COLUMN t1 int")
    assert c.execute("SHOW lock_timeout").fetchone()[0] == "300ms", "SET LOCAL inside the block"
    refused(c, "CREATE INDEX py_orders_id ON py_orders (id)", "create-index-nonconcurrent")
    c.rollback()
    assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"
    c.rollback()

# Server-side prepared statements (named), executed repeatedly.
with psycopg.connect(PROXY, autocommit=True, prepare_threshold=0) as c:
    for column in ("p2", "p3"):
        c.execute(f"ALTER TABLE py_orders ADD COLUMN {column} int", prepare=True)
    refused(c, "ALTER TABLE py_orders RENAME COLUMN c TO category", "rename-column")

with psycopg.connect(DIRECT) as d:
    columns = [r[0] for r in d.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'py_orders'::regclass AND attnum > 0 ORDER BY attnum")]
    assert columns == ["id", "c", "note", "p1", "p2", "p3"], columns
print("ok")
