//! The answer side of the executor: server messages are framed (one bounded reader,
//! [`crate::protocol::frame::next_frame`]), each is passed to the client, held back while a
//! retry is possible, replaced or dropped (the answers to ddlgate's own statements); large rows
//! and COPY data stream through.

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::backend::{self, tag as bt};
use crate::protocol::frame::{HEADER_LEN, Next, POSTGRES_MESSAGE_LIMIT, frames, next_frame};
use crate::protocol::reply::{self, Fields, Severity, field};
use crate::protocol::rows;
use crate::protocol::{ProtocolError, error::Tag};

use super::super::error::SessionError;
use super::super::outbox::Outbox;
use super::super::state::SessionState;
use super::{Conductor, LOCK_NOT_AVAILABLE, Op};

/// An operation sent upstream and not yet answered with `ReadyForQuery`.
#[derive(Debug)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one operation's answer, not states of one machine"
)]
pub(super) struct Running {
    pub(super) op: Op,
    /// Code and message of the server's error, if it sent one.
    pub(super) error: Option<(String, String)>,
    /// Rows returned, first column of each (text format).
    pub(super) rows: Vec<Option<String>>,
    /// Every column of the first row.
    pub(super) first_row: Vec<Option<String>>,
    /// The client's request is in COPY FROM STDIN: the client's copy data must flow.
    pub(super) copy_in: bool,
    /// A failed request's `ReadyForQuery` is held back: cleanup runs first.
    pub(super) hold_ready_on_error: bool,
    /// The answer is collected here instead of being forwarded, while a retry is possible.
    pub(super) buffer: Option<Vec<Bytes>>,
    /// Bytes in `buffer`.
    pub(super) buffered: usize,
    /// Part of the answer has reached the client (it outgrew the buffer): no retry.
    pub(super) answered: bool,
    /// Command tags of the statements the request completed, in order.
    pub(super) completions: Vec<String>,
    /// Positions of the `ParseComplete`/`CloseComplete` messages not passed to the client.
    pub(super) hidden_completions: Vec<usize>,
    /// `ParseComplete`/`CloseComplete` messages of the answer so far.
    pub(super) close_parse_completions: usize,
    /// Where the answer of a pipelined run is.
    pub(super) pipeline: PipelinedAnswer,
    /// When it was sent.
    pub(super) started: std::time::Instant,
    /// The client's request ends with `Sync` (extended protocol), not `Query`.
    pub(super) extended: bool,
    /// After COPY data in an extended-protocol request: the client's next `Sync` passes.
    pub(super) awaiting_client_sync: bool,
}

/// The answer to a run inside a pipeline.
#[derive(Debug, Default)]
pub(super) struct PipelinedAnswer {
    /// Messages still to hide at the start of the answer (ddlgate's timeouts).
    pub(super) hidden_prefix: usize,
    /// A run ending with `Flush`: the number of messages that end its answer.
    pub(super) expected: Option<u64>,
    /// Such messages seen so far.
    pub(super) seen: u64,
    /// The answer of a run ending with `Flush` is complete.
    pub(super) complete: bool,
}

/// The most of an answer held back while its statement may still be retried.
pub(super) const MAX_BUFFERED: usize = 1 << 20;

/// A row or COPY data message of a request's answer larger than this is streamed to the
/// client as it arrives instead of being gathered whole: a governed request's memory stays
/// bounded whatever its rows hold.
pub(super) const STREAM_ABOVE: usize = 64 * 1024;

/// The message, with the blockers added to its DETAIL when it is the `lock_not_available`
/// error they caused.
pub(super) fn with_blockers(message: Bytes, blockers: &[String]) -> Bytes {
    if blockers.is_empty() || message.first() != Some(&backend::tag::ERROR_RESPONSE) {
        return message;
    }
    let body = message.get(HEADER_LEN..).unwrap_or_default();
    let Ok(fields) = Fields::decode(body) else {
        return message;
    };
    if fields.code() != LOCK_NOT_AVAILABLE {
        return message;
    }
    let who = format!("Blocked by: {}.", blockers.join("; "));
    let detail = match fields.get(field::DETAIL) {
        Some(d) => format!("{d} {who}"),
        None => who,
    };
    let mut out = BytesMut::new();
    reply::encode_fields(
        Severity::Error,
        LOCK_NOT_AVAILABLE,
        &fields.message(),
        Some(&detail),
        fields.get(field::HINT).as_deref(),
        &mut out,
    );
    out.freeze()
}

/// What happens to one server message.
#[derive(Debug)]
pub(super) enum Forward {
    /// Pass it to the client.
    Pass,
    /// Swallow it.
    Drop,
    /// Send this instead.
    Replace(Bytes),
    /// It was the operation's `ReadyForQuery`; pass it on or not.
    Finished { pass_ready: bool },
}

/// The first `ErrorResponse` of severity FATAL among the whole messages in `bytes`.
pub(super) fn fatal_in(bytes: &Bytes) -> Option<Bytes> {
    let mut at = 0usize;
    for frame in frames(bytes) {
        let start = at;
        at = at.saturating_add(frame.bytes.len());
        if frame.tag == bt::ERROR_RESPONSE && Fields::decode(frame.body).is_ok_and(|f| f.is_fatal())
        {
            return Some(bytes.slice(start..at));
        }
    }
    None
}

impl Running {
    /// Holds a message of the answer back (while a retry is possible) or passes it on. An
    /// answer larger than [`MAX_BUFFERED`] is passed on from then on, and is not retried.
    /// Sends what was held back of the answer and passes the rest through: once the client
    /// has part of the answer, the request is not retried.
    pub(super) fn release(&mut self, to_client: &mut Outbox) {
        if let Some(buffer) = self.buffer.take() {
            for b in buffer {
                to_client.push(b);
            }
        }
        self.answered = true;
    }

    /// Drops the `CopyInResponse` held back with the answer: ddlgate ended that COPY itself.
    pub(super) fn forget_copy_in(&mut self) {
        if let Some(buffer) = self.buffer.as_mut() {
            buffer.retain(|m| m.first() != Some(&bt::COPY_IN_RESPONSE));
        }
    }

    /// Whether a message with this tag is the client's, passed on unread: a row (`DataRow`)
    /// or COPY data of the client's request, outside ddlgate's hidden prefix.
    pub(super) fn streams(&self, tag: u8) -> bool {
        matches!(self.op, Op::Request(_))
            && self.pipeline.hidden_prefix == 0
            && matches!(tag, bt::DATA_ROW | bt::COPY_DATA)
    }

    pub(super) fn keep(&mut self, bytes: Bytes, to_client: &mut Outbox) {
        let Some(buffer) = self.buffer.as_mut() else {
            to_client.push(bytes);
            return;
        };
        self.buffered = self.buffered.saturating_add(bytes.len());
        buffer.push(bytes);
        if self.buffered > MAX_BUFFERED {
            for b in buffer.drain(..) {
                to_client.push(b);
            }
            self.buffer = None;
            self.answered = true;
        }
    }

    pub(super) fn new(op: Op) -> Self {
        Self {
            op,
            error: None,
            rows: Vec::new(),
            first_row: Vec::new(),
            copy_in: false,
            hold_ready_on_error: false,
            buffer: None,
            buffered: 0,
            answered: false,
            completions: Vec::new(),
            hidden_completions: Vec::new(),
            close_parse_completions: 0,
            pipeline: PipelinedAnswer::default(),
            started: std::time::Instant::now(),
            extended: false,
            awaiting_client_sync: false,
        }
    }

    /// Hides the answer to ddlgate's own messages at the start of a pipelined run, and
    /// notices the end of the answer to a run that ends with `Flush`. Returns whether the
    /// message is hidden.
    pub(super) fn pipeline_message(&mut self, tag: u8) -> bool {
        let asynchronous = matches!(
            tag,
            bt::NOTICE_RESPONSE | bt::PARAMETER_STATUS | bt::NOTIFICATION_RESPONSE
        );
        let hidden_completion = matches!(tag, bt::PARSE_COMPLETE | bt::CLOSE_COMPLETE)
            && self
                .hidden_completions
                .contains(&self.close_parse_completions);
        let answer = &mut self.pipeline;
        if answer.hidden_prefix > 0 && !asynchronous {
            if tag == backend::tag::ERROR_RESPONSE {
                // ddlgate's statement failed: the client's error now (its run is skipped).
                answer.hidden_prefix = 0;
            } else {
                answer.hidden_prefix -= 1;
                return true;
            }
        }
        if let Some(expected) = answer.expected {
            if tag == backend::tag::ERROR_RESPONSE {
                answer.complete = true;
            } else if backend::ends_a_pipelined_answer(tag) && !hidden_completion {
                answer.seen += 1;
                answer.complete = answer.seen >= expected;
            }
        }
        false
    }

    pub(super) fn on_message(
        &mut self,
        tag: u8,
        body: &[u8],
        state: &mut SessionState,
    ) -> Result<Forward, SessionError> {
        let is_request = matches!(self.op, Op::Request(_));
        let is_step = matches!(self.op, Op::Step(_));
        if is_request && self.pipeline_message(tag) {
            return Ok(Forward::Drop);
        }
        match tag {
            backend::tag::READY_FOR_QUERY => {
                state
                    .ready_for_query(body, self.error.is_some())
                    .map_err(SessionError::UpstreamProtocol)?;
                self.copy_in = false;
                // The request's answer is held back when a failed rewrite has to be cleaned
                // up first; `Conductor::fail` sends a `ReadyForQuery` at the end.
                let pass = is_request && !(self.error.is_some() && self.hold_ready_on_error);
                Ok(Forward::Finished { pass_ready: pass })
            }
            backend::tag::PARAMETER_STATUS => {
                state
                    .parameter_status(body)
                    .map_err(SessionError::UpstreamProtocol)?;
                Ok(Forward::Pass)
            }
            // NotificationResponse: asynchronous, the client's.
            bt::NOTIFICATION_RESPONSE => Ok(Forward::Pass),
            backend::tag::BACKEND_KEY_DATA => {
                Err(SessionError::UpstreamProtocol(ProtocolError::Unexpected {
                    tag: Tag(tag),
                    context: "after startup",
                }))
            }
            backend::tag::ERROR_RESPONSE => {
                let fields = Fields::decode(body).map_err(SessionError::UpstreamProtocol)?;
                let (code, message) = (fields.code(), fields.message());
                self.error = Some((code.clone(), message.clone()));
                if is_request
                    && code == reply::sqlstate::POLICY_REJECTED
                    && message.starts_with("ddlgate: ")
                {
                    // ddlgate's own refusal, raised by the server: drop the PL/pgSQL context.
                    let mut out = BytesMut::new();
                    reply::encode_fields(
                        Severity::Error,
                        &code,
                        &message,
                        fields.get(field::DETAIL).as_deref(),
                        fields.get(field::HINT).as_deref(),
                        &mut out,
                    );
                    return Ok(Forward::Replace(out.freeze()));
                }
                // A FATAL ends the session whatever it answers: the client gets the server's
                // last words as on a direct connection, even when they answer ddlgate's own
                // statement (say, an administrator's pg_terminate_backend while ddlgate reads
                // the catalog before the client's first request).
                Ok(if is_request || is_step || fields.is_fatal() {
                    Forward::Pass
                } else {
                    Forward::Drop
                })
            }
            backend::tag::NOTICE_RESPONSE => Ok(if is_request || is_step {
                Forward::Pass
            } else {
                Forward::Drop
            }),
            // ParseComplete / CloseComplete: ddlgate's own are not the client's.
            bt::PARSE_COMPLETE | bt::CLOSE_COMPLETE if is_request => {
                let position = self.close_parse_completions;
                self.close_parse_completions += 1;
                Ok(if self.hidden_completions.contains(&position) {
                    Forward::Drop
                } else {
                    Forward::Pass
                })
            }
            // CommandComplete, EmptyQueryResponse, PortalSuspended: a statement's end.
            bt::COMMAND_COMPLETE | bt::EMPTY_QUERY_RESPONSE | bt::PORTAL_SUSPENDED
                if is_request =>
            {
                self.completions.push(match tag {
                    bt::COMMAND_COMPLETE => String::from_utf8_lossy(
                        rows::command_tag(body).map_err(SessionError::UpstreamProtocol)?,
                    )
                    .into_owned(),
                    bt::PORTAL_SUSPENDED => "suspended".to_owned(),
                    _ => String::new(),
                });
                Ok(Forward::Pass)
            }
            // CopyInResponse / CopyBothResponse: the client's data must flow.
            bt::COPY_IN_RESPONSE | bt::COPY_BOTH_RESPONSE if is_request => {
                self.copy_in = true;
                Ok(Forward::Pass)
            }
            // DataRow
            bt::DATA_ROW if !is_request => {
                let row: Vec<Option<String>> = rows::data_row(body)
                    .map_err(SessionError::UpstreamProtocol)?
                    .into_iter()
                    .map(|c| c.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect();
                if self.rows.is_empty() {
                    self.first_row.clone_from(&row);
                }
                self.rows.push(row.into_iter().next().flatten());
                Ok(Forward::Drop)
            }
            _ if is_request => Ok(Forward::Pass),
            _ => Ok(Forward::Drop),
        }
    }
}

impl Conductor {
    /// The server's FATAL error among the answer held back (for a retry or for the audit
    /// trail), if any. When the upstream then closes, it is the client's explanation, sent as
    /// the server's last words (otherwise the client would see the connection close without
    /// them).
    pub fn held_fatal(&self) -> Option<Bytes> {
        let buffered = self
            .running
            .as_ref()
            .and_then(|r| r.buffer.as_ref())
            .into_iter()
            .flatten();
        buffered.chain(self.held_reply.iter()).find_map(fatal_in)
    }

    /// Handles the complete server messages in `buf` and consumes them.
    pub fn on_upstream(
        &mut self,
        buf: &mut BytesMut,
        to_client: &mut Outbox,
        state: &mut SessionState,
    ) -> Result<(), SessionError> {
        // Consecutive messages passed to the client go as one chunk.
        let mut forward_from = 0usize;
        let mut at = 0usize;
        loop {
            if self.streaming_left > 0 {
                // The rest of a large message streamed through: the client's, unread.
                let n = self.streaming_left.min(buf.len().saturating_sub(at));
                self.streaming_left -= n;
                at = at.saturating_add(n);
                if self.streaming_left > 0 {
                    break;
                }
            }
            let rest = buf.get(at..).unwrap_or_default();
            let (tag, body, message) = match next_frame(rest, POSTGRES_MESSAGE_LIMIT)
                .map_err(SessionError::UpstreamProtocol)?
            {
                Next::Frame(frame) => (frame.tag, frame.body, frame.bytes),
                Next::Partial(header) => {
                    // A large row or COPY data message of the client's answer is not gathered
                    // whole: what was held back of the answer goes out (no retry once the
                    // client has part of it), and the message streams through as it arrives.
                    if header.frame_len > STREAM_ABOVE
                        && let Some(running) = self.running.as_mut()
                        && running.streams(header.tag)
                    {
                        if forward_from < at {
                            to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
                            forward_from = at;
                        }
                        running.release(to_client);
                        self.streaming_left = header.frame_len - rest.len();
                        at = buf.len();
                    }
                    break;
                }
                Next::Nothing => break,
            };
            let end = at.saturating_add(message.len());
            let Some(running) = self.running.as_mut() else {
                // Nothing was asked: only asynchronous messages can come now; pass them on.
                at = end;
                continue;
            };
            let copy_was_off = !running.copy_in;
            let forward = running.on_message(tag, body, state)?;
            let copy_started = copy_was_off && running.copy_in && running.buffer.is_some();
            // A message passed on unchanged while nothing is held back joins the chunk that
            // goes out as it is; only one held back, replaced or dropped is taken apart.
            let passes_through = matches!(forward, Forward::Pass) && running.buffer.is_none();
            if !passes_through {
                if forward_from < at {
                    to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
                }
                forward_from = end;
                let keep = match forward {
                    Forward::Pass | Forward::Finished { pass_ready: true } => {
                        Some(Bytes::copy_from_slice(message))
                    }
                    Forward::Replace(ref bytes) => Some(bytes.clone()),
                    Forward::Drop | Forward::Finished { pass_ready: false } => None,
                };
                if let Some(bytes) = keep {
                    running.keep(bytes, to_client);
                }
            }
            at = end;
            if copy_started {
                if forward_from < at {
                    to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
                }
                forward_from = at;
                self.copy_started(to_client, state);
                continue;
            }
            if (matches!(forward, Forward::Finished { .. }) || running.pipeline.complete)
                && let Some(running) = self.running.take()
            {
                if matches!(running.op, Op::Request(_)) {
                    self.outcome.request_failed = running.error.is_some();
                }
                self.finished(running, state);
            }
        }
        if forward_from < at {
            to_client.push(Bytes::copy_from_slice(&buf[forward_from..at]));
        }
        buf.advance(at);
        Ok(())
    }
}
