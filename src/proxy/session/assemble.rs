//! Request assembly: client bytes are grouped into requests (a `Query`, or a run of extended
//! messages up to its `Sync` or `Flush`), each is reviewed whole, and a request that needs the
//! policy is held until the session is quiet; COPY data flows past what is held.

use tracing::warn;

use crate::protocol::backend::TxStatus;
use crate::protocol::frontend::{
    FrontendItem, answers_in_pipeline, ends_with_ready_for_query, tag as fe, waits_for_sync,
};

use super::super::error::SessionError;
use super::super::plan::{Held, Unreviewable, Verdict};
use super::super::request::{MAX_HELD_BYTES, MessageSpan, Request, RequestEnd};
use super::{Session, fill_identity};

impl Session {
    /// Groups newly read client bytes into requests, reviews each, and queues what is decided.
    pub(super) fn on_client_data(&mut self) -> Result<(), SessionError> {
        let mut forward_to = 0;
        let copy_only = self.copy_flows();
        if (self.pending.is_some() || self.planning.is_some() || self.conductor.is_some())
            && !copy_only
        {
            return Ok(());
        }
        if !copy_only && self.start_routines_read() {
            // The requests are reviewed once the routines are known.
            return Ok(());
        }
        while !self.client_done {
            if copy_only && !self.copy_flows() {
                break;
            }
            let Some(item) = self
                .frontend
                .next(&self.client_buf, self.scanned)
                .map_err(SessionError::ClientProtocol)?
            else {
                break;
            };
            match item {
                FrontendItem::CopyChunk { end } => {
                    if !self.held.is_empty() {
                        self.review_part()?;
                    }
                    self.scanned = end;
                    forward_to = end;
                }
                FrontendItem::Message { tag, end } if copy_only => {
                    // Inside the COPY of a governed request: only its data, end and failure
                    // (and the Flush/Sync the server ignores during COPY) pass.
                    if ![fe::COPY_DONE, fe::COPY_FAIL, fe::FLUSH, fe::SYNC].contains(&tag) {
                        break;
                    }
                    match self.conductor.as_mut() {
                        Some(c) => match tag {
                            fe::SYNC => c.client_synced(),
                            fe::FLUSH => {}
                            _ => c.copy_finished(),
                        },
                        // An extended-protocol COPY ends with the client's next Sync (the
                        // server ignored the one sent during the COPY).
                        None => self.sync_may_follow_copy = tag != fe::SYNC,
                    }
                    self.scanned = end;
                    forward_to = end;
                }
                FrontendItem::Message { tag, end } => {
                    self.held.push(MessageSpan {
                        tag,
                        start: self.scanned,
                        end,
                    });
                    self.scanned = end;
                    if waits_for_sync(tag) {
                        continue;
                    }
                    match self.review_held(RequestEnd::Complete)? {
                        Verdict::Hold => {
                            self.hold_request(forward_to);
                            return Ok(());
                        }
                        Verdict::Unreviewable(why) => return Err(self.unreviewable(why)),
                        Verdict::Forward => {}
                    }
                    forward_to = end;
                    if ends_with_ready_for_query(tag) {
                        self.state.awaiting_ready += 1;
                        self.unsynced = false;
                    } else if tag == fe::TERMINATE {
                        self.client_done = true;
                    }
                }
            }
        }
        let held_bytes = self
            .held
            .first()
            .map_or(0, |first| self.scanned - first.start);
        if held_bytes > MAX_HELD_BYTES {
            self.review_part()?;
            forward_to = self.scanned;
            self.unsynced = true;
        }
        if forward_to > 0 {
            self.count_bytes_in(forward_to as u64);
            if self.on_lane.on && !self.client_done && self.to_upstream.is_empty() {
                // The lane writes these bytes from the buffer itself (see `lane`).
                self.on_lane.write_through = forward_to;
            } else {
                self.queue_client_prefix(forward_to);
            }
        }
        if self.client_done {
            // Nothing after Terminate is meaningful.
            self.client_buf.clear();
            self.held.clear();
            self.scanned = 0;
        }
        Ok(())
    }

    /// Moves the first `n` bytes of the client buffer to the queue for the server.
    pub(super) fn queue_client_prefix(&mut self, n: usize) {
        let chunk = self.client_buf.split_to(n).freeze();
        self.forget_client_prefix(n);
        self.to_upstream.push(chunk);
    }

    /// Shifts the scan position and held spans after `n` leading bytes left the buffer.
    pub(super) fn forget_client_prefix(&mut self, n: usize) {
        self.scanned -= n;
        for span in &mut self.held {
            span.start -= n;
            span.end -= n;
        }
    }

    /// Whether the client's COPY data must flow although a request is held back or governed:
    /// the server waits for it, in the governed request itself or in an earlier request that
    /// the held one waits behind. Without it the session would wait on itself.
    pub(super) fn copy_flows(&self) -> bool {
        match &self.conductor {
            Some(c) => c.wants_copy_data(),
            None => {
                self.pending.is_some()
                    && (self.backend.server_awaits_copy_data() || self.sync_may_follow_copy)
            }
        }
    }

    /// Reviews the held part of a run that is forwarded before its end. A part that holds a
    /// statement the policy governs ends the session before anything of it is sent: the
    /// statement cannot be decided without the rest of the run, and must not pass unreviewed.
    /// The attempt is audited.
    pub(super) fn review_part(&mut self) -> Result<(), SessionError> {
        match self.review_held(RequestEnd::Partial)? {
            Verdict::Unreviewable(why) => Err(self.unreviewable(why)),
            Verdict::Forward | Verdict::Hold => Ok(()),
        }
    }

    /// Ends the session over a request that can be neither decided nor forwarded, with its
    /// audit record.
    pub(super) fn unreviewable(&mut self, why: Unreviewable) -> SessionError {
        let error = match why {
            Unreviewable::TooLarge => SessionError::UnreviewableRun {
                limit: MAX_HELD_BYTES,
            },
            Unreviewable::EncodingChanged => SessionError::EncodingChangedInRun,
        };
        warn!(why = ?why, "a request ddlgate cannot review; closing the session");
        if let Some(auditor) = &self.shared.audit {
            let mut record =
                crate::audit::Record::new(crate::audit::record::event::STATEMENT, self.state.id);
            fill_identity(&mut record, &self.state, self.profile.as_deref());
            record.in_transaction = Some(self.state.tx_status != TxStatus::Idle);
            record.sql = self.review.unreviewable_statement();
            record.action = Some(crate::config::policy::Action::Reject);
            record.outcome = error.client_report().map(|report| crate::audit::Outcome {
                status: crate::audit::record::Status::Error,
                tag: None,
                sqlstate: Some(report.code.to_owned()),
                message: Some(report.message),
            });
            auditor.record(record);
        }
        error
    }

    /// Hands the held messages to the decision point as one request. A request to forward is
    /// left in the buffer; one to hold keeps its messages in `held` for [`Self::hold_request`].
    pub(super) fn review_held(&mut self, end: RequestEnd) -> Result<Verdict, SessionError> {
        let request = Request::new(&self.client_buf, &self.held, end);
        let in_flight = self.state.awaiting_ready > 0 || self.unsynced;
        let mut verdict = self
            .review
            .review(&request, &self.state, in_flight)
            .map_err(SessionError::ClientProtocol)?;
        // Taken whatever the verdict: only a forwarded request's effect is the tracker's (a
        // held one is simulated statement by statement when it is planned).
        let (tx_effect, alone) = self.review.take_forwarded_tx();
        if end == RequestEnd::Complete
            && self.deferred_restore.is_some()
            && verdict == Verdict::Forward
        {
            verdict = Verdict::Hold;
        }
        if verdict == Verdict::Forward {
            // A pipeline is open once a message that the server answers in it has gone up
            // without a Sync after it (a Flush alone opens nothing: psycopg sends one after
            // each Sync).
            for message in &self.held {
                if ends_with_ready_for_query(message.tag) {
                    self.pipeline_expected = 0;
                    self.unsynced = false;
                } else if answers_in_pipeline(message.tag) > 0 {
                    self.pipeline_expected += answers_in_pipeline(message.tag);
                    self.unsynced = true;
                }
            }
            self.held.clear();
            self.state.tx.forwarded(tx_effect, alone);
        }
        Ok(verdict)
    }

    /// Whether every pipelined message sent since the last `Sync` has been answered (or an
    /// error made the server skip the rest), so that the next run's answer starts with its
    /// own first message. Without an open pipeline, `awaiting_ready` says it all.
    pub(super) fn pipeline_quiet(&self) -> bool {
        if !self.unsynced {
            return true;
        }
        let (answers, failed) = self.backend.pipeline();
        failed || answers >= self.pipeline_expected
    }

    /// Forwards the bytes before the request in `held` (up to `forward_to`) and takes the
    /// request out of the buffer to wait for [`Self::drive`].
    pub(super) fn hold_request(&mut self, forward_to: usize) {
        let start = self.held.first().map_or(forward_to, |m| m.start);
        let end = self.held.last().map_or(start, |m| m.end);
        if start > 0 {
            let chunk = self.client_buf.split_to(start).freeze();
            self.to_upstream.push(chunk);
        }
        let bytes = self.client_buf.split_to(end - start).freeze();
        let spans = self
            .held
            .drain(..)
            .map(|m| MessageSpan {
                tag: m.tag,
                start: m.start - start,
                end: m.end - start,
            })
            .collect();
        self.scanned = 0;
        self.pending = Some(Held {
            bytes,
            spans,
            parsed: self.review.take_parsed(),
        });
    }
}
