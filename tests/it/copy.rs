//! COPY through ddlgate: bulk data in both directions, byte for byte.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt, pin_mut};

use crate::support::pg::{PgServer, SCRAM, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

const ROWS: i64 = 100_000;

/// COPY … FROM STDIN of 100,000 rows through ddlgate stores exactly the bytes sent: reading the
/// table back directly reproduces the input byte for byte.
#[tokio::test]
async fn copy_from_stdin_100k_rows_is_byte_exact() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let direct = pg.connect(SCRAM).await;
    direct
        .batch_execute(
            "DROP TABLE IF EXISTS copied_in; CREATE TABLE copied_in (id bigint, label text)",
        )
        .await
        .unwrap();
    let input: String = (1..=ROWS)
        .map(|i| format!("{i}\tlabel \\t{i} é\n"))
        .collect();
    let client = proxy.connect(SCRAM).await;
    let sink = client
        .copy_in("COPY copied_in (id, label) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    // Frames of assorted sizes, splitting rows anywhere, as real clients do.
    let bytes = input.as_bytes();
    let mut at = 0;
    let mut size = 1;
    while at < bytes.len() {
        let end = (at + size).min(bytes.len());
        sink.send(Bytes::copy_from_slice(&bytes[at..end]))
            .await
            .unwrap();
        at = end;
        size = size * 7 % 70_001 + 1;
    }
    assert_eq!(sink.finish().await.unwrap(), ROWS as u64);
    let out = direct
        .copy_out("COPY (SELECT id, label FROM copied_in ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = out.try_collect().await.unwrap();
    assert!(
        chunks.concat() == input.as_bytes(),
        "COPY FROM through ddlgate altered the data"
    );
    direct.batch_execute("DROP TABLE copied_in").await.unwrap();
}

/// COPY … TO STDOUT of 100,000 rows is byte-identical to a direct connection's.
#[tokio::test]
async fn copy_to_stdout_100k_rows_is_byte_identical() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let sql = format!(
        "COPY (SELECT g, md5(g::text), now()::date - g % 365 FROM generate_series(1, {ROWS}) g) TO STDOUT"
    );
    let mut outputs = Vec::new();
    for client in [pg.connect(SCRAM).await, proxy.connect(SCRAM).await] {
        let stream = client.copy_out(sql.as_str()).await.unwrap();
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        outputs.push(chunks.concat());
    }
    assert_eq!(
        outputs[0].iter().filter(|&&b| b == b'\n').count(),
        ROWS as usize
    );
    assert!(
        outputs[1] == outputs[0],
        "COPY output differs through ddlgate"
    );
}

/// Bad COPY data gives the server's error, and the session goes on.
#[tokio::test]
async fn copy_error_reaches_the_client_and_session_continues() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let mut transcripts = Vec::new();
    for addr in [pg.addr(), proxy.addr.to_string()] {
        let (mut w, _) = Wire::startup(&addr, TRUST.name, "app").await;
        w.send(&wire::query("CREATE TEMP TABLE c (n int)")).await;
        w.until_ready().await;
        w.send(&wire::query("COPY c FROM STDIN")).await;
        let start = w.recv().await.unwrap();
        assert_eq!(start.tag, b'G');
        let mut data = wire::raw_frame(b'd', b"1\nnot a number\n");
        data.extend(wire::raw_frame(b'c', b""));
        w.send(&data).await;
        let mut t: Vec<String> = w.until_ready().await.iter().map(|m| m.summary()).collect();
        w.send(&wire::query("SELECT count(*) FROM c")).await;
        t.extend(w.until_ready().await.iter().map(|m| m.summary()));
        transcripts.push(t);
    }
    assert_eq!(
        transcripts[0],
        ["E:22P02", "Z:I", "T", "D", "C:SELECT 1", "Z:I"]
    );
    assert_eq!(transcripts[1], transcripts[0]);
}
