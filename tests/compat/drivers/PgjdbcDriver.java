// pgjdbc driver of the compatibility suite (tests/compat); the driver under Flyway and Liquibase.
//
// Usage: java -cp postgresql.jar PgjdbcDriver.java SCENARIO.json
//
// Modes: "default" (pgjdbc's defaults: extended protocol, unnamed statements, BEGIN pipelined
// with the first statement of a transaction), "prepared" (prepareThreshold=1: named server-side
// statements from the first execution), "simple" (preferQueryMode=simple). Results are printed
// as JSON on stdout, in the shape tests/compat/harness.rs compares.

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

public class PgjdbcDriver {
    public static void main(String[] args) throws Exception {
        @SuppressWarnings("unchecked")
        Map<String, Object> scenario = (Map<String, Object>) new Json(Files.readString(Path.of(args[0]))).value();
        @SuppressWarnings("unchecked")
        Map<String, Object> c = (Map<String, Object>) scenario.get("connection");
        String mode = (String) scenario.get("mode");
        String url = "jdbc:postgresql://" + c.get("host") + ":" + c.get("port") + "/" + c.get("database")
                + "?sslmode=disable&ApplicationName=compat-pgjdbc";
        if (mode.equals("prepared")) url += "&prepareThreshold=1";
        if (mode.equals("simple")) url += "&preferQueryMode=simple";
        Properties props = new Properties();
        props.setProperty("user", (String) c.get("user"));
        props.setProperty("password", (String) c.get("password"));
        StringBuilder out = new StringBuilder("[");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            boolean firstStep = true;
            for (Object s : (List<?>) scenario.get("steps")) {
                Map<?, ?> step = (Map<?, ?>) s;
                List<String> results = new ArrayList<>();
                boolean tx = Boolean.TRUE.equals(step.get("transaction"));
                conn.setAutoCommit(!tx);
                boolean failed = false;
                for (Object sql : (List<?>) step.get("sql")) {
                    try (PreparedStatement ps = conn.prepareStatement((String) sql)) {
                        results.add(run(ps));
                    } catch (SQLException e) {
                        results.add("{\"error\":{\"sqlstate\":" + str(e.getSQLState()) + ",\"message\":"
                                + str(primary(e)) + "}}");
                        failed = true;
                        if (tx) break;
                    }
                }
                if (tx) {
                    if (failed) conn.rollback(); else conn.commit();
                }
                out.append(firstStep ? "" : ",").append("{\"name\":").append(str((String) step.get("name")))
                        .append(",\"results\":[").append(String.join(",", results)).append("]}");
                firstStep = false;
            }
        }
        System.out.println(out.append("]"));
    }

    static String run(PreparedStatement ps) throws SQLException {
        boolean hasRows = ps.execute();
        if (!hasRows) return "{\"count\":" + ps.getUpdateCount() + "}";
        StringBuilder rows = new StringBuilder("{\"rows\":[");
        try (ResultSet rs = ps.getResultSet()) {
            int n = rs.getMetaData().getColumnCount();
            boolean first = true;
            while (rs.next()) {
                rows.append(first ? "[" : ",[");
                first = false;
                for (int i = 1; i <= n; i++) rows.append(i > 1 ? "," : "").append(str(rs.getString(i)));
                rows.append("]");
            }
        }
        return rows.append("]}").toString();
    }

    /** The server's primary message, without pgjdbc's "ERROR: " prefix and detail lines. */
    static String primary(SQLException e) {
        if (e instanceof org.postgresql.util.PSQLException p && p.getServerErrorMessage() != null) {
            return p.getServerErrorMessage().getMessage();
        }
        return e.getMessage();
    }

    static String str(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (ch < 0x20) b.append(String.format("\\u%04x", (int) ch)); else b.append(ch);
                }
            }
        }
        return b.append('"').toString();
    }

    /** Just enough JSON for the scenario file: objects, arrays, strings, numbers, booleans, null. */
    static final class Json {
        private final String s;
        private int i;

        Json(String s) { this.s = s; }

        Object value() {
            skip();
            char ch = s.charAt(i);
            if (ch == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                skip();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    skip();
                    String k = string();
                    skip();
                    i++; // ':'
                    m.put(k, value());
                    skip();
                    if (s.charAt(i++) == '}') return m;
                }
            }
            if (ch == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                skip();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    skip();
                    if (s.charAt(i++) == ']') return l;
                }
            }
            if (ch == '"') return string();
            int start = i;
            while (i < s.length() && ",}] \n\r\t".indexOf(s.charAt(i)) < 0) i++;
            String word = s.substring(start, i);
            return switch (word) {
                case "true" -> Boolean.TRUE;
                case "false" -> Boolean.FALSE;
                case "null" -> null;
                default -> Long.parseLong(word);
            };
        }

        private String string() {
            StringBuilder b = new StringBuilder();
            i++; // opening quote
            while (true) {
                char ch = s.charAt(i++);
                if (ch == '"') return b.toString();
                if (ch != '\\') { b.append(ch); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> { b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> b.append(e);
                }
            }
        }

        private void skip() {
            while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++;
        }
    }
}
