//! The extended protocol through ddlgate: parameters, named and unnamed statements and portals,
//! pipelining, errors in the middle of a pipeline, Flush, and pipelines larger than what
//! ddlgate holds back.

use futures_util::future::join_all;

use crate::support::pg::{PgServer, SCRAM, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

/// Parameterised queries (Parse/Bind/Describe/Execute/Sync) return the same rows as direct.
#[tokio::test]
async fn parameterised_query_matches_direct() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let sql = "SELECT $1::int + g, $2::text || g FROM generate_series(1, 20) g";
    let mut results = Vec::new();
    for client in [pg.connect(SCRAM).await, proxy.connect(SCRAM).await] {
        let rows = client.query(sql, &[&41i32, &"row-"]).await.unwrap();
        let rendered: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        results.push(rendered);
    }
    assert_eq!(results[0].len(), 20);
    assert_eq!(results[0][0], (42, "row-1".to_owned()));
    assert_eq!(results[1], results[0]);
}

/// One hundred queries issued at once are pipelined on one connection and each gets its own
/// answer.
#[tokio::test]
async fn pipeline_of_100_queries() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SCRAM).await;
    let stmt = client.prepare("SELECT $1::int * 2").await.unwrap();
    let futures = (0..100i32).map(|i| {
        let client = &client;
        let stmt = &stmt;
        async move {
            client
                .query_one(stmt, &[&i])
                .await
                .map(|r| r.get::<_, i32>(0))
        }
    });
    let answers: Vec<i32> = join_all(futures)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(answers, (0..100).map(|i| i * 2).collect::<Vec<_>>());
}

/// A named prepared statement is parsed once and executed many times with new parameters.
#[tokio::test]
async fn prepared_statement_reused_across_executions() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SCRAM).await;
    client
        .batch_execute("CREATE TEMP TABLE reuse (id int, v text)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO reuse VALUES ($1, $2)")
        .await
        .unwrap();
    for i in 0..50i32 {
        client
            .execute(&insert, &[&i, &format!("v{i}")])
            .await
            .unwrap();
    }
    let count = client
        .prepare("SELECT count(*), sum(id) FROM reuse WHERE v LIKE $1")
        .await
        .unwrap();
    for _ in 0..3 {
        let row = client.query_one(&count, &[&"v%"]).await.unwrap();
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (50, 1225));
    }
    // The server really holds one prepared statement for each, named by the client.
    let names: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(names >= 2, "{names}");
}

/// Sends the same raw bytes directly and through ddlgate; returns both transcripts.
async fn both_transcripts(
    pg: &PgServer,
    proxy: &TestProxy,
    bytes: &[u8],
    readies: usize,
) -> [Vec<String>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    for (slot, addr) in out.iter_mut().zip([pg.addr(), proxy.addr.to_string()]) {
        let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
        w.send(bytes).await;
        for _ in 0..readies {
            slot.extend(w.until_ready().await.iter().map(|m| m.summary()));
        }
    }
    out
}

/// An error in the middle of a pipeline: the server skips the rest until Sync, and the client
/// sees exactly the messages a direct connection gives.
#[tokio::test]
async fn error_mid_pipeline_skips_to_sync_exactly_as_postgres() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut bytes = Vec::new();
    for sql in ["SELECT 1", "SELECT 1/0", "SELECT 3"] {
        bytes.extend(wire::parse("", sql));
        bytes.extend(wire::bind("", ""));
        bytes.extend(wire::describe_portal(""));
        bytes.extend(wire::execute(""));
    }
    bytes.extend(wire::sync());
    // A second batch after the Sync runs normally.
    bytes.extend(wire::parse("", "SELECT 4"));
    bytes.extend(wire::bind("", ""));
    bytes.extend(wire::execute(""));
    bytes.extend(wire::sync());
    let [direct, proxied] = both_transcripts(pg, &proxy, &bytes, 2).await;
    assert_eq!(
        direct,
        // The third statement's Parse/Bind/Describe/Execute produce nothing: skipped to Sync.
        // (1/0 is folded by the planner, so the error comes at Bind.)
        [
            "1",
            "2",
            "T",
            "D",
            "C:SELECT 1",
            "1",
            "E:22012",
            "Z:I",
            "1",
            "2",
            "D",
            "C:SELECT 1",
            "Z:I"
        ]
    );
    assert_eq!(proxied, direct);
}

/// Named statements and portals, and a row-limited Execute that suspends the portal.
#[tokio::test]
async fn named_portal_with_row_limit_suspends_and_resumes() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut bytes = Vec::new();
    bytes.extend(wire::query("BEGIN"));
    bytes.extend(wire::parse("s1", "SELECT g FROM generate_series(1, 5) g"));
    bytes.extend(wire::bind("p1", "s1"));
    let mut limited = vec![b'E'];
    limited.extend_from_slice(&(4u32 + 3 + 4).to_be_bytes());
    limited.extend_from_slice(b"p1\0");
    limited.extend_from_slice(&2u32.to_be_bytes());
    bytes.extend(&limited);
    bytes.extend(&limited);
    bytes.extend(wire::execute("p1"));
    bytes.extend(wire::sync());
    bytes.extend(wire::query("COMMIT"));
    let [direct, proxied] = both_transcripts(pg, &proxy, &bytes, 3).await;
    assert_eq!(direct.iter().filter(|m| *m == "s").count(), 2, "{direct:?}");
    assert_eq!(direct.iter().filter(|m| *m == "D").count(), 5, "{direct:?}");
    assert_eq!(proxied, direct);
}

/// A Flush makes the server answer without a Sync, and ddlgate forwards it at once.
#[tokio::test]
async fn flush_gets_an_answer_before_sync() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (mut w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let mut bytes = wire::parse("flushed", "SELECT $1::int");
    bytes.extend(wire::flush());
    w.send(&bytes).await;
    let reply = w.recv().await.expect("ParseComplete before any Sync");
    assert_eq!(reply.tag, b'1');
    w.send(&wire::sync()).await;
    assert_eq!(w.until_ready().await.last().unwrap().summary(), "Z:I");
}

/// A pipeline far larger than what ddlgate holds back before a Sync, written while the results
/// stream back, completes without deadlock and with every result.
#[tokio::test]
async fn large_pipeline_without_sync_streams_through() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let (w, _) = Wire::startup(&proxy.addr.to_string(), TRUST.name, "app").await;
    let (mut reader, mut writer) = w.stream.into_split();
    const QUERIES: usize = 3000;
    let writer_task = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let padding = "x".repeat(200);
        for i in 0..QUERIES {
            let mut bytes = wire::parse("", &format!("SELECT {i}, repeat('{padding}', 20)"));
            bytes.extend(wire::bind("", ""));
            bytes.extend(wire::execute(""));
            writer.write_all(&bytes).await.unwrap();
        }
        writer.write_all(&wire::sync()).await.unwrap();
        writer
    });
    // Count DataRows until ReadyForQuery, reading raw frames.
    use tokio::io::AsyncReadExt;
    let mut data_rows = 0;
    let mut header = [0u8; 5];
    loop {
        reader.read_exact(&mut header).await.unwrap();
        let len = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize - 4;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await.unwrap();
        match header[0] {
            b'D' => data_rows += 1,
            b'E' => panic!("error: {}", String::from_utf8_lossy(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    writer_task.await.unwrap();
    assert_eq!(data_rows, QUERIES);
}
