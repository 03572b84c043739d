//! COPY through ddlgate: bulk data in both directions, byte for byte.

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt, pin_mut};

use crate::support::pg::{PgServer, SCRAM, TRUST};
use crate::support::proxy::TestProxy;
use crate::support::wire::{self, Wire};

const ROWS: i64 = 100_000;

/// COPY … FROM STDIN of 100,000 rows lands every row.
#[tokio::test]
async fn copy_from_stdin_100k_rows() {
    let pg = PgServer::shared();
    let proxy = TestProxy::start(pg).await;
    let client = proxy.connect(SCRAM).await;
    client
        .batch_execute("CREATE TEMP TABLE copied (id bigint, label text)")
        .await
        .unwrap();
    let sink = client
        .copy_in("COPY copied (id, label) FROM STDIN")
        .await
        .unwrap();
    pin_mut!(sink);
    let mut chunk = String::new();
    for i in 1..=ROWS {
        chunk.push_str(&format!("{i}\tlabel {i}\n"));
        if chunk.len() > 60_000 {
            sink.send(Bytes::from(std::mem::take(&mut chunk)))
                .await
                .unwrap();
        }
    }
    sink.send(Bytes::from(chunk)).await.unwrap();
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, ROWS as u64);
    let row = client
        .query_one(
            "SELECT count(*), sum(id), count(DISTINCT label) FROM copied",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, rust_decimal_free::Sum>(1).0,
            row.get::<_, i64>(2)
        ),
        (ROWS, ROWS * (ROWS + 1) / 2, ROWS)
    );
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

/// Reads a `numeric` sum without pulling in a decimal crate: the text form is exact.
mod rust_decimal_free {
    use tokio_postgres::types::{FromSql, Type};

    pub struct Sum(pub i64);

    impl<'a> FromSql<'a> for Sum {
        fn from_sql(
            _: &Type,
            raw: &'a [u8],
        ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
            // numeric binary format: ndigits, weight, sign, dscale, then base-10000 digits.
            let word = |i: usize| i16::from_be_bytes([raw[2 * i], raw[2 * i + 1]]);
            let (ndigits, weight, sign) = (word(0), word(1), word(2));
            let mut value: i64 = 0;
            for d in 0..ndigits as usize {
                value = value * 10_000 + i64::from(word(4 + d));
            }
            for _ in 0..(i64::from(weight) + 1 - i64::from(ndigits)) {
                value *= 10_000;
            }
            Ok(Sum(if sign == 0x4000 { -value } else { value }))
        }

        fn accepts(ty: &Type) -> bool {
            *ty == Type::NUMERIC
        }
    }
}
