#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets into fuzz/seeds/<target>/ (run from anywhere).

Seeds are small valid inputs of each kind, so the fuzzer starts from the shapes real clients,
servers and policy authors produce: message sequences of psql, libpq pipelines and JDBC,
server answers, startup packets, the SQL of the rule examples and test migrations, the shipped
policy files.
"""
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def msg(tag, body=b""):
    return tag + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def query(sql):
    return msg(b"Q", cstr(sql))


def parse(name, sql):
    return msg(b"P", cstr(name) + cstr(sql) + b"\0\0")


def bind(portal, stmt):
    return msg(b"B", cstr(portal) + cstr(stmt) + b"\0\0" + b"\0\0" + b"\0\0")


def describe(kind, name):
    return msg(b"D", kind + cstr(name))


def execute(portal):
    return msg(b"E", cstr(portal) + b"\0\0\0\0")


SYNC = msg(b"S")
FLUSH = msg(b"H")


def extended(sql, name="", end=SYNC):
    return parse(name, sql) + bind("", name) + describe(b"P", "") + execute("") + end


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    frontend = {
        "query": query("SELECT 1"),
        "multi": query("BEGIN; CREATE INDEX i ON t (c); COMMIT"),
        "extended": extended("SELECT $1::int"),
        "pipeline": extended("SELECT 1", end=FLUSH) + extended("ALTER TABLE t ADD COLUMN c int", end=FLUSH) + SYNC,
        "prepare_then_execute": parse("s1", "CREATE INDEX i ON t (c)") + describe(b"S", "s1") + SYNC
        + bind("", "s1") + execute("") + SYNC,
        "copy": query("COPY t FROM STDIN") + msg(b"d", b"1\tx\n") + msg(b"c"),
        "close_terminate": msg(b"C", b"S" + cstr("s1")) + SYNC + msg(b"X"),
    }
    for name, data in frontend.items():
        write("frontend_stream", name, b"\x07\x30\x02\x40" + data)
    decision = dict(frontend)
    decision["do_block"] = query("DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$")
    decision["rename"] = extended("ALTER TABLE orders RENAME COLUMN note TO comment")
    decision["fk"] = query("ALTER TABLE o ADD CONSTRAINT o_fk FOREIGN KEY (a) REFERENCES a (id)")
    decision["override"] = query('/* ddlgate:allow drop-column reason="x" */ ALTER TABLE t DROP COLUMN c')
    for i, (name, data) in enumerate(decision.items()):
        write("decision", name, bytes([i * 37 % 256]) + data)

    backend = {
        "auth_ok": msg(b"R", struct.pack("!I", 0)) + msg(b"S", cstr("server_version") + cstr("15.4"))
        + msg(b"K", struct.pack("!I", 42) + b"\x01\x02\x03\x04") + msg(b"Z", b"I"),
        "sasl": msg(b"R", struct.pack("!I", 10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0"),
        "rows": msg(b"T", b"\0\x01" + cstr("a") + b"\0" * 18) + msg(b"D", b"\0\x01\0\0\0\x011")
        + msg(b"C", cstr("SELECT 1")) + msg(b"Z", b"T"),
        "error": msg(b"E", b"SERROR\0C55P03\0Mlock timeout\0\0") + msg(b"Z", b"E"),
        "pipeline": msg(b"1") + msg(b"2") + msg(b"n") + msg(b"C", cstr("ALTER TABLE")) + msg(b"3"),
    }
    for name, data in backend.items():
        write("backend_stream", name, b"\x03\x11\x05\x09" + data)

    # The conductor: a selector (statement, transaction, audit), a cut length, then what the
    # server says to ddlgate's statements and the client's in the order the program asks.
    timeouts = (msg(b"T", b"\0\0") + msg(b"D", b"\0\x06" + b"".join(struct.pack("!I", 1) + b"0" for _ in range(6)))
                + msg(b"C", cstr("SELECT 1")) + msg(b"Z", b"I"))
    probe = msg(b"T", b"\0\0") + msg(b"D", b"\0\x01" + struct.pack("!I", 5) + b"{1,2}") + msg(b"C", cstr("SELECT 1")) + msg(b"Z", b"I")
    lock_timeout = msg(b"E", b"SERROR\0VERROR\0C55P03\0Mcanceling statement due to lock timeout\0\0") + msg(b"Z", b"I")
    conductor = {
        "alter_ok": b"\x00\x40" + timeouts + msg(b"C", cstr("ALTER TABLE")) + msg(b"Z", b"I") + timeouts,
        "alter_retried": b"\x00\x17" + timeouts + lock_timeout * 4 + timeouts,
        "index_failed": b"\x01\x40" + timeouts + probe + msg(b"E", b"SERROR\0C23505\0Mduplicate\0\0")
        + msg(b"Z", b"I") + timeouts + probe + msg(b"C", cstr("DROP INDEX")) + msg(b"Z", b"I") + timeouts,
        "fatal": b"\x08\x09" + timeouts + msg(b"E", b"SFATAL\0VFATAL\0C57P01\0Mterminating\0\0"),
        "big_row": b"\x04\xff" + timeouts + msg(b"C", cstr("ALTER TABLE")) + msg(b"T", b"\0\0")
        + msg(b"D", b"\0\x01" + struct.pack("!I", 100000) + b"x" * 100000) + msg(b"C", cstr("SELECT 1")) + msg(b"Z", b"I"),
    }
    for name, data in conductor.items():
        write("conductor", name, data)

    startup_body = struct.pack("!I", 3 << 16) + cstr("user") + cstr("app") + cstr("database") + cstr("app") + b"\0"
    startup = {
        "startup": struct.pack("!I", len(startup_body) + 4) + startup_body,
        "ssl": struct.pack("!II", 8, 80877103),
        "gssenc": struct.pack("!II", 8, 80877104),
        "cancel": struct.pack("!III", 16, 80877102, 42) + b"\x01\x02\x03\x04",
    }
    for name, data in startup.items():
        write("startup_packet", name, data)

    sql = []
    for md in sorted((ROOT / "src" / "analysis" / "rules").glob("*.md")):
        sql += re.findall(r"```sql\n(.*?)```", md.read_text(), re.S)
    for f in sorted((ROOT / "tests" / "fixtures" / "migrations").glob("*.sql")):
        sql.append(f.read_text())
    sql += [
        "SELECT $$a;b$$; SELECT E'\\';'; /* a /* nested */ ; */ SELECT 1",
        "CREATE INDEX CONCURRENTLY i ON t (c); DROP INDEX i",
        "ALTER TABLE u ALTER COLUMN e SET NOT NULL",
        "ALTER TABLE t ADD CONSTRAINT t_pk PRIMARY KEY (id)",
        "SELECT U&\"d\\0061t\\+000061\" FROM t",
    ]
    for i, text in enumerate(sql):
        write("statement_splitter", f"sql{i:03}", text.encode())
        write("analysis", f"sql{i:03}", bytes([i * 13 % 256]) + text.encode())

    for f in sorted((ROOT / "policies").glob("*.toml")):
        write("policy_file", f.stem, f.read_bytes())
    write("policy_file", "profiles", b'''
[timeouts.brief]
lock_timeout = "1s"
[[profiles]]
name = "app"
users = ["app_*"]
clients = ["10.0.0.0/8"]
[profiles.rules]
rename-column = "warn"
''')


main()
