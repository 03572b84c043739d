//! The one place where a session decides what happens to a client request.
//!
//! Every request passes through [`Review::review`] before any of its bytes reach the server.
//! Plain DML is proven harmless by the cheap pre-filter and forwarded at once (the hot path:
//! no parse, no added round trip). A request that runs or prepares DDL (or a `DO`/`CALL`) is
//! *held*: the session waits until every earlier request has been answered, so the
//! transaction status is exact, and then [`plan`] turns the policy's decision
//! ([`crate::enforce`]) into a [`Program`] for the [`super::conductor`]: the timeouts to apply
//! first, the statements to run, the client's request as sent or with statements replaced,
//! and what to clean up if it fails.
//!
//! What is governed, and how (see also the README, "Enforcement"):
//! - A simple `Query` is decided as a whole; its statements are replaced in its text (a
//!   rewrite, or a refusal as a `DO` block that raises ddlgate's error, so that the server
//!   fails the statement itself and client and server agree on the transaction state).
//! - In the extended protocol, the text of each `Parse` is decided when it arrives; the
//!   timeouts of a statement are applied when a run (up to `Sync`) executes it. Named
//!   statements and portals are tracked so that a later `Execute` of DDL is recognised.
//! - A run without a `Sync` cannot be wrapped (its answers have no end ddlgate could see): DDL
//!   executed in one is refused with a clear error rather than run without timeouts.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use crate::analysis::context::{ManagedTimeouts, NewObjects};
use crate::analysis::parse;
use crate::analysis::{Context, Engine};
use crate::config::policy::{Connection, Settings};
use crate::enforce::{self, Class, Plan, Situation};
use crate::protocol::backend::TxStatus;
use crate::protocol::extended::{Bind, Parse, Target, execute_portal, put_close, put_execute};
use crate::protocol::frontend::{ends_with_ready_for_query, tag as fe};
use crate::protocol::query::{put_query, query_text};

use super::client_text::{self, Mapping};
use super::program::{PIPELINE_TIMEOUTS_ANSWERS, Program};
use super::request::{MessageSpan, Request, RequestEnd};
use super::state::SessionState;
use super::tx::Since;

mod decide;
pub(crate) mod pool;
mod recent;
mod review;

use decide::{apply, decide_query};
pub(crate) use review::Unreviewable;
pub use review::{Review, Verdict};
use review::{deferred_name, precheck_parsed};

/// A held request.
#[derive(Debug)]
pub struct Held {
    /// Its bytes, as the client sent them.
    pub bytes: Bytes,
    /// Its messages within `bytes`.
    pub spans: Vec<MessageSpan>,
    /// What the review already parsed of it, by message index: the plan uses it instead of
    /// parsing the same text again.
    pub parsed: Vec<(usize, ParsedText)>,
}

/// Statements parsed from one message's text, and the setting they were parsed with.
#[derive(Debug)]
pub struct ParsedText {
    /// `standard_conforming_strings` at the parse.
    pub standard_conforming_strings: bool,
    /// The timeout class the review's pre-check found for the text.
    pub class: Option<Class>,
    /// The statements.
    pub statements: Vec<parse::Parsed>,
}

impl Held {
    fn request(&self) -> Request<'_> {
        Request::new(&self.bytes, &self.spans, RequestEnd::Complete)
    }

    /// Whether the server answers it with `ReadyForQuery`.
    pub fn ends_with_ready(&self) -> bool {
        self.spans
            .last()
            .is_some_and(|s| ends_with_ready_for_query(s.tag))
    }
}

/// ddlgate's statement and portal for the timeouts of a pipelined run.
const PIPELINE_TIMEOUTS_NAME: &[u8] = b"ddlgate_timeouts";

/// Decides about a held request now that the session is quiet.
pub fn plan(
    mut held: Held,
    session: &SessionState,
    review: &mut Review,
    ctx: &mut Context,
    settings: &Settings,
    unsynced: bool,
    since: Since,
) -> Program {
    let reviewed = std::mem::take(&mut held.parsed);
    let in_transaction = session.tx_status != TxStatus::Idle || unsynced;
    catch_up(ctx, since, in_transaction);
    prepare_context(ctx, session, settings, in_transaction);
    let engine = Engine::new(settings.enabled_rules());
    let mut program = Program {
        request_ends_with_ready: held.ends_with_ready(),
        request_is_extended: held.spans.last().is_some_and(|s| s.tag != fe::QUERY),
        in_transaction,
        // A run ending with Flush leaves the pipeline open: after an error the server skips
        // the client's later messages, so nothing could be sent again.
        retryable: !in_transaction && held.ends_with_ready(),
        settings: settings.clone(),
        ..Program::default()
    };
    // In a failed transaction the server refuses everything but the end of it.
    if session.tx_status == TxStatus::Failed {
        program.request = held.bytes;
        return program;
    }
    let request = held.request();
    let executes = request.messages().filter(|m| m.tag == fe::EXECUTE).count();
    // A run that ends with Flush, or follows one, is part of a pipeline whose end (Sync) has
    // not been sent. No rewrite is valid there: a failed rewrite is cleaned up with statements
    // of ddlgate's own, which the server would skip after the error. A run that opens the
    // pipeline still gets its timeouts first, as usual (they are restored after the Sync);
    // inside an open pipeline nothing can run before a run, so its timeouts become part of it
    // (see `put_pipeline_timeouts`).
    let governable = !unsynced && program.request_ends_with_ready;
    let mut run = RunState {
        engine: &engine,
        settings,
        executes,
        parses: request.messages().filter(|m| m.tag == fe::PARSE).count(),
        governable,
        out: BytesMut::with_capacity(held.bytes.len()),
        run_classes: HashMap::new(),
        portal_classes: HashMap::new(),
        refused: false,
        completions: 0,
        injected: 0,
        encoding: session.parameter("client_encoding"),
    };
    let mut parsed = reviewed.into_iter().peekable();
    for (index, (message, span)) in request.messages().zip(&held.spans).enumerate() {
        let original = held.bytes.get(span.start..span.end).unwrap_or_default();
        match message.tag {
            fe::QUERY => {
                // Validated by the review: an error cannot come here, and empty text would
                // only be forwarded as sent.
                let text = query_text(message.body).unwrap_or_default();
                let (text, mapping) = client_text::decode(text, run.encoding);
                let reviewed = reviewed_at(&mut parsed, index, ctx);
                let sql = decide_query(
                    &text,
                    mapping,
                    reviewed,
                    &engine,
                    settings,
                    ctx,
                    &mut program,
                );
                // Unchanged text goes up as the client's own bytes.
                if sql == *text {
                    run.out.extend_from_slice(original);
                } else {
                    put_query(&client_text::encode(&sql, mapping), &mut run.out);
                }
            }
            fe::PARSE => {
                let reviewed = reviewed_at(&mut parsed, index, ctx);
                run.parse(message.body, original, reviewed, review, ctx, &mut program);
            }
            fe::BIND => run.bind(message.body, original, review, ctx, &mut program),
            fe::EXECUTE => {
                let portal = execute_portal(message.body).unwrap_or_default();
                let class = match run.portal_classes.get(portal) {
                    Some(c) => *c,
                    None => review.class_of_portal(portal),
                };
                program.request_class = program.request_class.max(class);
                run.out.extend_from_slice(original);
            }
            fe::CLOSE => {
                run.completions += 1;
                run.out.extend_from_slice(original);
            }
            _ => run.out.extend_from_slice(original),
        }
    }
    let out = run.out;
    finish_pipelined(&mut program, &request, settings, out, unsynced, governable);
    program
}

/// What the review parsed of message `index`, if it parsed it with the setting the plan reads
/// it with.
fn reviewed_at(
    parsed: &mut std::iter::Peekable<std::vec::IntoIter<(usize, ParsedText)>>,
    index: usize,
    ctx: &Context,
) -> Option<ParsedText> {
    parsed
        .next_if(|(i, _)| *i == index)
        .map(|(_, p)| p)
        .filter(|p| p.standard_conforming_strings == ctx.standard_conforming_strings)
}

/// What [`plan`] keeps while it goes through the messages of a run.
struct RunState<'a> {
    engine: &'a Engine,
    settings: &'a Settings,
    /// Executes and Parses in the run.
    executes: usize,
    parses: usize,
    /// The run ends with Sync and no pipeline is open before it (see [`plan`]).
    governable: bool,
    /// The run as it goes upstream.
    out: BytesMut,
    /// Timeout classes of the statements parsed and portals bound in this run.
    run_classes: HashMap<Vec<u8>, Option<Class>>,
    portal_classes: HashMap<Vec<u8>, Option<Class>>,
    /// A statement of the run is refused (the server skips the rest until Sync).
    refused: bool,
    /// `CloseComplete`/`ParseComplete` messages the answer holds before the next one that
    /// answers ddlgate's own message, and how many statements ddlgate prepared in this run.
    completions: usize,
    injected: usize,
    /// The session's `client_encoding`, to read query texts the way the server does.
    encoding: Option<&'a str>,
}

impl RunState<'_> {
    /// Decides a statement text of the run (a `Parse`, or a deferred one bound now), on the
    /// statements the review parsed when it did; it is the run's single statement when the
    /// run executes once and parses `parses_if_alone`.
    fn decide(
        &mut self,
        (text, mapping): (&str, Mapping),
        reviewed: Option<ParsedText>,
        parses_if_alone: usize,
        ctx: &mut Context,
        program: &mut Program,
    ) -> (String, Option<Class>, bool) {
        ctx.query_string = false;
        ctx.in_multi_statement_query = self.executes > 1;
        let situation = Situation {
            single_statement: self.executes == 1
                && self.parses == parses_if_alone
                && self.governable,
        };
        let (engine, settings) = (self.engine, self.settings);
        let decisions = match reviewed {
            Some(parsed) => {
                enforce::decide_parsed(engine, settings, text, parsed.statements, ctx, situation)
            }
            None => enforce::decide(engine, settings, text, ctx, situation),
        };
        let refuses_here = decisions.iter().any(|d| matches!(d.plan, Plan::Reject(_)));
        let mut notices = Vec::new();
        let (sql, class, steps, builds) = apply(text, decisions, &mut notices, program);
        // Once a statement of the run is refused, the server skips the rest until Sync.
        if !self.refused {
            program.notices.extend(notices);
        }
        self.refused |= refuses_here;
        if !steps.is_empty() {
            program.mapping = mapping;
            program.steps = steps;
        }
        if builds.is_some() {
            program.request_builds_indexes = builds;
        }
        (sql, class, refuses_here)
    }

    fn parse(
        &mut self,
        body: &[u8],
        original: &[u8],
        reviewed: Option<ParsedText>,
        review: &mut Review,
        ctx: &mut Context,
        program: &mut Program,
    ) {
        let Ok(Parse {
            name,
            sql: text_bytes,
            rest: parameter_types,
        }) = Parse::decode(body)
        else {
            self.out.extend_from_slice(original);
            return;
        };
        let (text, mapping) = client_text::decode(text_bytes, self.encoding);
        self.completions += 1;
        if self.executes == 0 && self.governable {
            // Preparing runs nothing: the text is decided when a run executes it, where the
            // transaction state and the rest of that run are known.
            let class = match reviewed {
                Some(reviewed) => reviewed.class,
                None => {
                    precheck_parsed(
                        &text,
                        ctx.server_major,
                        ctx.standard_conforming_strings,
                        &ctx.routines,
                    )
                    .class
                }
            };
            review.defer(name, class.map(|_| (text.into_owned(), mapping)));
            review.remember_statement(name, class);
            review.remember_refused(name, false);
            self.run_classes.insert(name.to_vec(), class);
            self.out.extend_from_slice(original);
            return;
        }
        review.defer(name, None);
        // Alone in its run when the run parses nothing else.
        let (sql, class, refused) = self.decide((&text, mapping), reviewed, 1, ctx, program);
        review.remember_statement(name, class);
        review.remember_refused(name, refused);
        self.run_classes.insert(name.to_vec(), class);
        if sql == *text {
            self.out.extend_from_slice(original);
        } else {
            Parse {
                name,
                sql: &client_text::encode(&sql, mapping),
                // The statement that raises the refusal takes no parameters; its binds are
                // sent without the client's (see `bind`).
                rest: if refused {
                    &NO_PARAMETER_TYPES
                } else {
                    parameter_types
                },
            }
            .encode(&mut self.out);
        }
    }

    fn bind(
        &mut self,
        body: &[u8],
        original: &[u8],
        review: &Review,
        ctx: &mut Context,
        program: &mut Program,
    ) {
        let Ok(Bind {
            portal,
            statement,
            rest: bind_rest,
        }) = Bind::decode(body)
        else {
            self.out.extend_from_slice(original);
            return;
        };
        let deferred = if self.run_classes.contains_key(statement) {
            None
        } else {
            review.deferred.get(statement)
        };
        let Some((text, mapping)) = deferred else {
            let class = match self.run_classes.get(statement) {
                Some(c) => *c,
                None => review.statements.get(statement).copied(),
            };
            self.portal_classes.insert(portal.to_vec(), class);
            if review.refused_statements.contains(statement) {
                Bind {
                    portal,
                    statement,
                    rest: &NO_PARAMETERS,
                }
                .encode(&mut self.out);
            } else {
                self.out.extend_from_slice(original);
            }
            return;
        };
        // A deferred text runs alone when the run parses nothing.
        let (sql, class, refused) = self.decide((text, *mapping), None, 0, ctx, program);
        self.portal_classes.insert(portal.to_vec(), class);
        if sql == *text {
            self.out.extend_from_slice(original);
            return;
        }
        // The server holds the text as sent; what the policy decided runs as a statement of
        // ddlgate's own, bound to the client's portal.
        let name = deferred_name(self.injected);
        self.injected += 1;
        put_close(Target::Statement, &name, &mut self.out);
        Parse {
            name: &name,
            sql: &client_text::encode(&sql, *mapping),
            rest: &[0, 0],
        }
        .encode(&mut self.out);
        Bind {
            portal,
            statement: &name,
            rest: if refused { &NO_PARAMETERS } else { bind_rest },
        }
        .encode(&mut self.out);
        program
            .request_hidden_completions
            .extend([self.completions, self.completions + 1]);
        self.completions += 2;
    }
}

/// A `Parse` without parameter types.
const NO_PARAMETER_TYPES: [u8; 2] = [0, 0];
/// A `Bind` without format codes, parameters or result formats: how the statement that raises
/// a refusal is bound, whatever parameters the client's refused statement took (their number
/// must match the statement's, or the server answers with a protocol error instead).
const NO_PARAMETERS: [u8; 6] = [0; 6];

/// The parts of a plan that depend on where the run is in a pipeline (see [`plan`]).
fn finish_pipelined(
    program: &mut Program,
    request: &Request<'_>,
    settings: &Settings,
    mut out: BytesMut,
    unsynced: bool,
    governable: bool,
) {
    if !governable {
        program.steps.clear();
        program.request_builds_indexes = None;
    }
    if unsynced {
        let class = program.request_class.take();
        if let Some(pair) = class
            .map(|c| c.timeouts(&settings.timeouts))
            .filter(|p| !p.sets_nothing())
        {
            let mut prefixed = BytesMut::with_capacity(out.len().saturating_add(1024));
            put_pipeline_timeouts(&super::sql::apply_timeouts(pair, true, None), &mut prefixed);
            prefixed.extend_from_slice(&out);
            out = prefixed;
            program.request_hidden_prefix = PIPELINE_TIMEOUTS_ANSWERS;
        }
    }
    if !program.request_ends_with_ready {
        program.request_answers = Some(
            request
                .messages()
                .map(|m| crate::protocol::frontend::answers_in_pipeline(m.tag))
                .sum(),
        );
    }
    program.request = out.freeze();
}

/// Appends ddlgate's timeouts as extended-protocol messages that run first in the pipeline:
/// `set_config(…, true)` lasts until the pipeline's transaction ends, implicit (at `Sync`) or
/// explicit. A fresh statement and portal of ddlgate's own, so that none of the client's
/// (the unnamed ones included) is touched; their answers are hidden from the client.
fn put_pipeline_timeouts(sql: &str, out: &mut BytesMut) {
    put_close(Target::Statement, PIPELINE_TIMEOUTS_NAME, out);
    put_close(Target::Portal, PIPELINE_TIMEOUTS_NAME, out);
    Parse {
        name: PIPELINE_TIMEOUTS_NAME,
        sql: sql.as_bytes(),
        rest: &[0, 0],
    }
    .encode(out);
    // No parameters, no result format codes.
    Bind {
        portal: PIPELINE_TIMEOUTS_NAME,
        statement: PIPELINE_TIMEOUTS_NAME,
        rest: &[0, 0, 0, 0, 0, 0],
    }
    .encode(out);
    put_execute(PIPELINE_TIMEOUTS_NAME, out);
}

/// Brings the engine's context up to date with the session.
fn prepare_context(
    ctx: &mut Context,
    session: &SessionState,
    settings: &Settings,
    in_transaction: bool,
) {
    ctx.server_major = session.server_major();
    ctx.routines = std::sync::Arc::clone(&session.routines);
    ctx.standard_conforming_strings =
        session.parameter("standard_conforming_strings") != Some("off");
    ctx.timeouts_managed = true;
    ctx.managed_timeouts = managed_timeouts(settings);
    // Each request is applied its timeouts afresh; only its own statements can undo them.
    ctx.request_timeout_changes.clear();
    ctx.whole_scripts = false;
    ctx.new_objects = NewObjects::Transaction;
    // Foreign keys are matched with their indexes within one text (a request).
    ctx.history.foreign_keys.clear();
    ctx.in_transaction = in_transaction;
}

/// Ends in the engine's context what the server ended since the engine last looked: the
/// transaction-scoped facts of a transaction that is over (see [`super::tx`]). With no
/// transaction open nothing can be left of one, whatever was seen.
pub(crate) fn catch_up(ctx: &mut Context, since: Since, transaction_open: bool) {
    match since.ended {
        Some(committed) => ctx.end_transaction(committed),
        None if !transaction_open => ctx.end_transaction(false),
        None => {}
    }
    if since.rolled_back_to_savepoint {
        ctx.rollback_to_savepoint();
    }
}

/// The policy's timeouts as the engine sees them.
pub(crate) fn managed_timeouts(settings: &Settings) -> ManagedTimeouts {
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let pair =
        |p: &crate::config::policy::TimeoutPair| (ms(p.lock_timeout), ms(p.statement_timeout));
    ManagedTimeouts {
        brief_ms: pair(&settings.timeouts.brief),
        online_ms: pair(&settings.timeouts.online),
    }
}

/// The settings for a session, and the name of the profile that chose them.
pub(crate) fn settings_for(
    policy: &crate::config::policy::Policy,
    session: &SessionState,
) -> (Option<String>, Settings) {
    let (profile, settings) = policy.for_connection(&Connection {
        user: &session.user,
        database: &session.database,
        application_name: session.application_name(),
        client: session.peer.ip(),
    });
    (profile.map(str::to_owned), settings.clone())
}

#[cfg(test)]
mod tests;
