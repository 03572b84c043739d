//! A session's end: last words to each side (the server's held FATAL, or ddlgate's report), a
//! cancel for a query left running, the audit records of a program cut short, and the
//! session's end record.

use std::future::poll_fn;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tracing::warn;

use crate::protocol::frontend::TERMINATE_MESSAGE;
use crate::protocol::reply::Report;

use super::super::conductor::Conductor;
use super::super::error::SessionError;
use super::super::upstream;
use super::conduct::count_outcome;
use super::{CLOSE_FLUSH_TIMEOUT, Ending, Session, fill_identity};

impl Session {
    /// Records the end of the session in the audit trail.
    pub(super) fn audit_session_end(&self, ending: &Ending) {
        let Some(auditor) = &self.shared.audit else {
            return;
        };
        let mut record =
            crate::audit::Record::new(crate::audit::record::event::SESSION_END, self.state.id);
        fill_identity(&mut record, &self.state, self.profile.as_deref());
        record.outcome = Some(crate::audit::Outcome {
            status: if matches!(ending, Ending::Failed(_)) {
                crate::audit::record::Status::Error
            } else {
                crate::audit::record::Status::Ok
            },
            tag: None,
            sqlstate: None,
            message: Some(ending.to_string()),
        });
        record.duration_ms =
            Some(u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX));
        auditor.record(record);
    }

    /// What the client is told as the session ends: the server's own FATAL error held back
    /// with a governed statement's answer, or ddlgate's report.
    pub(super) fn last_words(&self, ending: &Ending) -> (Option<Bytes>, Option<Report>) {
        // The server's last words (administrator shutdown, crash), held back with a governed
        // statement's answer: the client gets them instead of a report of ddlgate's own.
        let held_fatal = match ending {
            Ending::UpstreamClosed => self.conductor.as_deref().and_then(Conductor::held_fatal),
            _ => None,
        };
        let client_report = match ending {
            // A server that closes without a word (a crashed backend) is passed on as it is:
            // the client sees the connection close, as it would on a direct connection, and
            // ddlgate's log and the session's end record say what happened.
            Ending::Terminated | Ending::ClientClosed | Ending::UpstreamClosed => None,
            Ending::Shutdown { deadline } => Some(
                Report::admin_shutdown("terminating connection because ddlgate is shutting down")
                    .detail(if *deadline {
                        "The drain deadline passed before the session became idle."
                    } else {
                        "The session was idle."
                    }),
            ),
            Ending::Failed(e) => e.client_report(),
        };
        (held_fatal, client_report)
    }

    /// Ends the session: last words to each side, a cancel for a query left running, close.
    pub(super) async fn close(mut self: Box<Self>, ending: Ending) -> Ending {
        let in_flight = self.state.awaiting_ready > 0 || self.unsynced || self.conductor.is_some();
        let (held_fatal, client_report) = self.last_words(&ending);
        if let Ending::UpstreamClosed
        | Ending::Failed(
            SessionError::ClientProtocol(_)
            | SessionError::UpstreamProtocol(_)
            | SessionError::UpstreamIo(_),
        ) = &ending
        {
            warn!(parent: &self.span, error = %ending, "closing session");
        }
        let client_gone = matches!(
            ending,
            Ending::ClientClosed | Ending::Failed(SessionError::ClientIo(_))
        );
        let upstream_usable = !matches!(
            ending,
            Ending::UpstreamClosed
                | Ending::Failed(SessionError::UpstreamIo(_) | SessionError::UpstreamProtocol(_))
        );
        // A backend waiting on a lock does not notice its socket closing; cancel it so it
        // leaves neither a lock nor a lock-queue entry behind.
        let closing_upstream = upstream_usable && !matches!(ending, Ending::Terminated);
        let cancel_key = (closing_upstream && in_flight)
            .then(|| self.upstream_key.clone())
            .flatten();
        if closing_upstream {
            self.to_upstream.push(Bytes::from_static(TERMINATE_MESSAGE));
        }
        if let Some(fatal) = held_fatal.filter(|_| !client_gone) {
            self.to_client.push(fatal);
        }
        if let Some(report) = client_report.filter(|_| !client_gone) {
            let mut out = BytesMut::new();
            report.encode(&mut out);
            self.to_client.push(out.freeze());
        }
        let Self {
            client,
            upstream,
            to_client,
            to_upstream,
            ..
        } = &mut *self;
        let _ = timeout(
            CLOSE_FLUSH_TIMEOUT,
            poll_fn(|cx| {
                let up = if upstream_usable {
                    to_upstream.poll_drain(cx, upstream)
                } else {
                    Poll::Ready(Ok(()))
                };
                let down = if client_gone {
                    Poll::Ready(Ok(()))
                } else {
                    to_client.poll_drain(cx, client)
                };
                match (up, down) {
                    (Poll::Pending, _) | (_, Poll::Pending) => Poll::Pending,
                    _ => Poll::Ready(()),
                }
            }),
        )
        .await;
        // Awaited rather than spawned: the worker runtime may stop as soon as its last session
        // ends, and the cancel must not be lost with it.
        if let Some(key) = cancel_key
            && let Err(e) = upstream::cancel(&self.shared.config, &key).await
        {
            warn!(parent: &self.span, error = %e, "could not cancel the upstream query of a closed session");
        }
        let _ = timeout(CLOSE_FLUSH_TIMEOUT, async {
            let _ = self.upstream.shutdown().await;
            let _ = self.client.shutdown().await;
        })
        .await;
        // A program cut short by the close (its client gone after the answer, before the
        // restore) still counts.
        if let Some(conductor) = self.conductor.take() {
            self.finish_cut_short(*conductor, &ending);
        }
        self.audit_session_end(&ending);
        self.shared.metrics.connections_active.decrement(1.0);
        ending
    }

    /// A program the session's end cut short: its statements still get their audit records
    /// (with how the session ended), and what it did still counts.
    pub(super) fn finish_cut_short(&self, mut conductor: Conductor, ending: &Ending) {
        if let (Some(auditor), Some(mut records)) = (
            &self.shared.audit,
            conductor.records_if_cut_short(&self.state, &ending.to_string()),
        ) {
            for record in &mut records {
                fill_identity(record, &self.state, self.profile.as_deref());
            }
            for record in records {
                auditor.record(record);
            }
        }
        count_outcome(&self.shared.metrics, &conductor.into_outcome());
    }
}
