//! A session's start: the startup packet, refusals before the server is asked (TLS required,
//! replication, the connection limit), the upstream connection and authentication relay, and
//! cancel requests.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{Instrument, Span, debug, info, info_span, warn};

use crate::protocol::backend::BackendKey;

use super::super::Shared;
use super::super::error::SessionError;
use super::super::handshake::{self, ChannelBinding, Failure, Opening};
use super::super::state::SessionState;
use super::super::stream::Stream;
use super::super::upstream;
use super::{CLOSE_FLUSH_TIMEOUT, Session};

/// Serves one accepted connection until it closes. `admitted` is false when the connection
/// limit is reached: such a connection may still carry a cancel request, but a session is
/// refused with SQLSTATE 53300.
pub(crate) async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    admitted: bool,
    lane: Option<super::lane::Handle>,
) {
    let id = shared.next_session_id();
    let span = info_span!("session", id, %peer);
    let terminate = shared.terminate.clone();
    // A session still starting up when shutdown turns urgent is simply dropped; a running
    // session handles the signal itself, so it can say goodbye and cancel its query.
    let starting = start(tcp, peer, id, &shared, admitted, span.clone()).instrument(span.clone());
    let started = tokio::select! {
        started = starting => started,
        () = terminate.cancelled() => {
            debug!(parent: &span, "closed during startup by shutdown");
            None
        }
    };
    // The running session is not instrumented: entering a span on every wake-up costs more
    // than the forwarding itself. Its few log lines name the span as their parent instead.
    if let Some(mut session) = started {
        session.lane = lane;
        let began = std::time::Instant::now();
        let ending = session.pump().await;
        info!(
            parent: &span,
            reason = %ending,
            duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            "session ended"
        );
    }
}

/// Whether a `replication` startup parameter asks for a walsender: anything but a false
/// boolean as PostgreSQL spells one (`parse_bool`: a prefix of `false` or `no`, `of`/`off`, `0`).
/// Values the server would refuse are refused here too.
fn asks_for_replication(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    let false_word = !v.is_empty() && ("false".starts_with(&v) || "no".starts_with(&v));
    !(false_word || v == "of" || v == "off" || v == "0")
}

/// Why a session is refused before the server is asked, if it is.
fn refusal(
    shared: &Shared,
    client: &Stream,
    startup: &crate::protocol::startup::StartupMessage,
    admitted: bool,
) -> Option<SessionError> {
    if shared.config.require_tls && !client.is_tls() {
        return Some(SessionError::TlsRequired);
    }
    if let Some(mode) = startup
        .param("replication")
        .filter(|v| asks_for_replication(v))
    {
        return Some(SessionError::ReplicationRefused(mode.to_owned()));
    }
    if !admitted {
        shared.metrics.connections_rejected.increment(1);
        return Some(SessionError::TooManyConnections(
            shared.config.max_connections,
        ));
    }
    None
}

/// Runs the startup phase; returns the ready session, or `None` when there is none to run (a
/// cancel request, a refusal, a failure — each already handled and logged).
async fn start(
    tcp: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: &Arc<Shared>,
    admitted: bool,
    span: Span,
) -> Option<Box<Session>> {
    let config = &shared.config;
    let deadline = Instant::now() + config.startup_timeout;
    let opening = match timeout_at(deadline, handshake::negotiate(tcp, config)).await {
        Err(_) => {
            info!(timeout = ?config.startup_timeout, "client did not send a startup packet in time");
            return None;
        }
        Ok(Err(Failure { client, error })) => {
            end_startup(client, &error).await;
            return None;
        }
        Ok(Ok(opening)) => opening,
    };
    let (mut client, startup) = match opening {
        Opening::Closed => {
            debug!("client closed before startup");
            return None;
        }
        Opening::Cancel(key) => {
            forward_cancel(shared, &key).await;
            return None;
        }
        Opening::Session { client, startup } => (client, startup),
    };
    let user = startup.param("user").unwrap_or_default().to_owned();
    let database = startup.param("database").unwrap_or(&user).to_owned();
    if let Some(refusal) = refusal(shared, &client, &startup, admitted) {
        end_startup(Some(client), &refusal).await;
        return None;
    }
    let connected = timeout_at(deadline, async {
        let mut up = upstream::connect(config).await?;
        let binding = match (&config.client_tls, client.is_tls(), &up.certificate) {
            (Some(tls), true, Some(cert)) if tls.leaf == *cert => ChannelBinding::PassThrough,
            _ => ChannelBinding::Unavailable {
                upstream_tls: up.stream.is_tls(),
            },
        };
        let established =
            handshake::authenticate(&mut client, &mut up.stream, &startup, binding).await?;
        Ok::<_, SessionError>((up.stream, established))
    })
    .await;
    let (upstream, established) = match connected {
        Err(_) => {
            end_startup(
                Some(client),
                &SessionError::StartupTimeout(config.startup_timeout),
            )
            .await;
            return None;
        }
        Ok(Err(error)) => {
            if matches!(
                error,
                SessionError::Upstream(_)
                    | SessionError::UpstreamIo(_)
                    | SessionError::UpstreamProtocol(_)
            ) {
                shared.metrics.upstream_connect_errors.increment(1);
            }
            if let Some(auditor) = &shared.audit
                && !matches!(error, SessionError::ClientGone)
            {
                let mut record =
                    crate::audit::Record::new(crate::audit::record::event::SESSION_START, id);
                record.client = peer.to_string();
                record.user.clone_from(&user);
                record.database.clone_from(&database);
                let (code, message) = refusal_outcome(&error);
                record.outcome = Some(crate::audit::Outcome::error(code, message));
                auditor.record(record);
            }
            end_startup(Some(client), &error).await;
            return None;
        }
        Ok(Ok(pair)) => pair,
    };

    let state = SessionState::new(id, peer, user, database, client.is_tls());
    Some(Box::new(Session::new(
        Arc::clone(shared),
        client,
        upstream,
        established,
        state,
        span,
    )))
}

/// Tells the client why its session cannot start (when possible), logs, and closes.
async fn end_startup(client: Option<Stream>, error: &SessionError) {
    match error {
        SessionError::ClientGone => debug!("client left during startup"),
        SessionError::Refused { code, message } => {
            info!(%code, reason = %message, "upstream refused the session");
        }
        SessionError::Upstream(_)
        | SessionError::UpstreamIo(_)
        | SessionError::UpstreamProtocol(_) => {
            warn!(error = %error, "session could not start");
        }
        SessionError::ClientProtocol(_) => warn!(error = %error, "session could not start"),
        _ => info!(error = %error, "session could not start"),
    }
    let (Some(mut client), Some(report)) = (client, error.client_report()) else {
        return;
    };
    let mut out = BytesMut::new();
    report.encode(&mut out);
    let _ = timeout(CLOSE_FLUSH_TIMEOUT, async {
        client.write_all(&out).await?;
        client.flush().await?;
        client.shutdown().await
    })
    .await;
}

/// Relays a client's cancel request to the backend it targets, if a live session owns the key.
async fn forward_cancel(shared: &Shared, key: &BackendKey) {
    let Some(target) = shared.cancels.lookup(key) else {
        // PostgreSQL says nothing either: an unknown key must not be distinguishable.
        info!(pid = key.pid, "cancel request with an unknown key ignored");
        return;
    };
    // The session may be the one waiting (for blockers, before a retry): it stops then.
    target.request();
    match upstream::cancel(&shared.config, &target.upstream).await {
        Ok(()) => info!(pid = key.pid, "cancel request forwarded"),
        Err(e) => warn!(pid = key.pid, error = %e, "cancel request could not be forwarded"),
    }
}

/// SQLSTATE and message of a session that could not start: the server's own for a refusal,
/// else those of the report ddlgate sends.
fn refusal_outcome(error: &SessionError) -> (String, String) {
    match error {
        SessionError::Refused { code, message } => (code.clone(), message.clone()),
        other => (
            other
                .client_report()
                .map_or(crate::protocol::reply::sqlstate::CONNECTION_FAILURE, |r| {
                    r.code
                })
                .to_owned(),
            other.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::asks_for_replication;

    #[test]
    fn replication_is_asked_for_by_anything_but_a_false_boolean() {
        for yes in [
            "database", "true", "on", "1", "yes", "t", "DATABASE", "maybe",
        ] {
            assert!(asks_for_replication(yes), "{yes}");
        }
        for no in [
            "false", "f", "fal", "off", "of", "0", "no", "n", "OFF", " false ",
        ] {
            assert!(!asks_for_replication(no), "{no}");
        }
    }
}
