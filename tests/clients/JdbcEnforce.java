// pgjdbc through ddlgate with the enforcement test policy. Run by tests/it/enforce.rs with
// the JDBC URL of the proxy as its argument; prints one line per check and exits non-zero on
// the first difference from what the policy promises.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class JdbcEnforce {
    static void check(boolean ok, String what) {
        if (!ok) {
            System.out.println("FAILED: " + what);
            System.exit(1);
        }
        System.out.println("ok: " + what);
    }

    static String one(Statement s, String sql) throws SQLException {
        try (ResultSet r = s.executeQuery(sql)) {
            r.next();
            return r.getString(1);
        }
    }

    static String refusal(Statement s, String sql) {
        try {
            s.execute(sql);
            return "ran";
        } catch (SQLException e) {
            return e.getSQLState();
        }
    }

    public static void main(String[] args) throws Exception {
        try (Connection c = DriverManager.getConnection(args[0], args[1], args[2])) {
            c.setAutoCommit(true);
            try (Statement s = c.createStatement()) {
                s.execute("CREATE INDEX jd_orders_c ON jd_orders (c)");
                check("true".equals(one(s, "SELECT indisvalid::text FROM pg_index WHERE indexrelid = 'jd_orders_c'::regclass")),
                        "autocommit CREATE INDEX built concurrently and valid");
                check("0".equals(one(s, "SHOW lock_timeout")), "lock_timeout restored after autocommit DDL");
            }
            // autocommit off: pgjdbc sends BEGIN and the statement under one Sync.
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.execute("ALTER TABLE jd_orders ADD COLUMN t1 int");
                check("300ms".equals(one(s, "SHOW lock_timeout")), "the policy's lock_timeout inside the transaction");
                check("ZD001".equals(refusal(s, "CREATE INDEX jd_orders_id ON jd_orders (id)")),
                        "CREATE INDEX refused inside a transaction");
                check("25P02".equals(refusal(s, "SELECT 1")), "the transaction is aborted on the server too");
                c.rollback();
            }
            c.setAutoCommit(true);
            try (PreparedStatement p = c.prepareStatement("ALTER TABLE jd_orders RENAME COLUMN note TO comment")) {
                String state;
                try {
                    p.execute();
                    state = "ran";
                } catch (SQLException e) {
                    state = e.getSQLState();
                }
                check("ZD001".equals(state), "prepared RENAME COLUMN refused");
            }
            try (Statement s = c.createStatement()) {
                check("5000".equals(one(s, "SELECT count(*) FROM jd_orders")), "the connection stays usable");
                check("0".equals(one(s, "SHOW lock_timeout")), "lock_timeout is the client's at the end");
                check("0".equals(one(s, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'jd_orders'::regclass AND attname IN ('t1', 'comment')")),
                        "nothing of the rolled back or refused statements remains");
            }
        }
    }
}
