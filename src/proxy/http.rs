//! The metrics and health endpoint on `--metrics-listen`: a minimal HTTP/1.1 server (one
//! request per connection) for Prometheus and orchestrators.
//!
//! - `GET /metrics`: the Prometheus text exposition of [`crate::metrics::CATALOG`];
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when the upstream accepts a TCP connection (within 2 s) and the audit
//!   trail (if configured) took its last write; 503 with the reason otherwise.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use super::Shared;

/// The largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until the drain signal.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shared.drain.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &shared).await {
                        debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            refresh(shared);
            (
                "200 OK",
                "text/plain; version=0.0.4",
                shared.metrics.render(),
            )
        }
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
        ("GET", "/readyz") => match readiness(shared).await {
            Ok(()) => ("200 OK", "text/plain", "ready\n".to_owned()),
            Err(why) => (
                "503 Service Unavailable",
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Copies the audit writer's own counts into the metrics before a scrape.
fn refresh(shared: &Shared) {
    if let Some(audit) = &shared.audit {
        shared
            .metrics
            .audit_write_errors
            .absolute(audit.write_errors());
        #[expect(
            clippy::cast_precision_loss,
            reason = "a queue depth is far below 2^52"
        )]
        shared
            .metrics
            .audit_queue_depth
            .set(audit.queue_depth() as f64);
    }
}

async fn readiness(shared: &Shared) -> Result<(), String> {
    let upstream = &shared.config.upstream;
    match tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect((upstream.host.as_str(), upstream.port)),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("upstream {upstream} unreachable: {e}")),
        Err(_) => return Err(format!("upstream {upstream} did not answer within 2s")),
    }
    if let Some(audit) = &shared.audit
        && !audit.is_healthy()
    {
        return Err("the audit trail's last write failed".to_owned());
    }
    Ok(())
}
