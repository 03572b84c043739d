//! Answers the sessions' questions about evidence of use. A task of its own holds a
//! connection to the evidence database (`evidence_dsn`) and judges the tables and columns a
//! held request drops, renames or retypes ([`super::judge`]); the session waits for the
//! answer before it plans the request, at most [`ANSWER_LIMIT`].
//!
//! Decisions, and why:
//! - **One connection, questions in turn.** Contract steps are rare; a queue of
//!   [`QUEUE`] questions is plenty, and a full queue answers "no evidence" at once rather than
//!   holding a migration.
//! - **Only the evidence database.** The samples and the catalog the statements are resolved
//!   with are that database's; a session of another database gets "no evidence" with the
//!   reason (its rules act as without evidence).
//! - **Never a reason to hang.** A failed connection or query answers "no evidence" with the
//!   error, and the next question connects afresh; the session's own wait is bounded too.
//! - **A thread of its own** (with the analysis's stack): judging parses every stored text that
//!   mentions the table, which can take a while on a busy database; the accept loop and the
//!   sessions' workers never wait for it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::EvidenceError;
use super::collect::Sampling;
use super::judge::{Window, judge};
use crate::analysis::classify::RelationName;
use crate::analysis::usage::{Evidence, Found};

/// Questions that may wait for the service.
const QUEUE: usize = 64;
/// How long one question may take at the server.
const JUDGE_LIMIT: Duration = Duration::from_secs(10);
/// How long a session waits for its answer (a little more than a question may take).
pub(crate) const ANSWER_LIMIT: Duration = Duration::from_secs(12);

/// What a session asks: the evidence about these tables and columns of its database.
struct Question {
    database: String,
    targets: Vec<(RelationName, Option<String>)>,
    window: Window,
    answer: oneshot::Sender<Vec<Found>>,
}

/// Where sessions send their questions.
#[derive(Debug, Clone)]
pub(crate) struct Asker {
    questions: mpsc::Sender<Question>,
}

impl Asker {
    /// Starts the service, and the sampler ([`super::collect`]), on a thread of their own;
    /// they stop when `stop` fires. The thread has the analysis's stack (statement texts are
    /// parsed there, deep ones included) and its own runtime, so that judging thousands of
    /// texts, or normalising what ddlgate observed, never stalls the accept loop.
    pub(crate) fn start(sampling: Sampling, stop: CancellationToken) -> Self {
        let (questions, inbox) = mpsc::channel(QUEUE);
        let started = std::thread::Builder::new()
            .name("ddlgate-evidence".to_owned())
            .stack_size(crate::analysis::STACK_SIZE)
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(async {
                        tokio::join!(
                            super::collect::run(sampling.clone(), stop.clone()),
                            run(sampling, inbox, stop),
                        );
                    }),
                    Err(e) => {
                        warn!(error = %e, "the evidence service cannot start; the contract rules act without evidence");
                    }
                }
            });
        if let Err(e) = started {
            // The receiver is gone with the closure: every question is answered "no evidence".
            warn!(error = %e, "the evidence service cannot start; the contract rules act without evidence");
        }
        Self { questions }
    }

    /// Asks about `targets` of `database`; the answer comes on the receiver (dropped: the
    /// service is gone or busy, and the session goes without evidence).
    pub(crate) fn ask(
        &self,
        database: &str,
        targets: Vec<(RelationName, Option<String>)>,
        window: Window,
    ) -> oneshot::Receiver<Vec<Found>> {
        let (answer, receiver) = oneshot::channel();
        let question = Question {
            database: database.to_owned(),
            targets,
            window,
            answer,
        };
        if let Err(e) = self.questions.try_send(question) {
            let question = match e {
                mpsc::error::TrySendError::Full(q) | mpsc::error::TrySendError::Closed(q) => q,
            };
            let _ = question.answer.send(without(
                &question.targets,
                "the evidence service is busy or stopped",
            ));
        }
        receiver
    }
}

/// "No evidence" for every target, with the reason.
pub(crate) fn without(targets: &[(RelationName, Option<String>)], why: &str) -> Vec<Found> {
    targets
        .iter()
        .map(|(name, column)| Found {
            name: name.clone(),
            column: column.clone(),
            target: None,
            evidence: Evidence::Unavailable(why.to_owned()),
        })
        .collect()
}

async fn run(sampling: Sampling, mut inbox: mpsc::Receiver<Question>, stop: CancellationToken) {
    let mut connection: Option<(tokio_postgres::Client, String)> = None;
    loop {
        let question = tokio::select! {
            () = stop.cancelled() => return,
            q = inbox.recv() => match q {
                Some(q) => q,
                None => return,
            },
        };
        let answer = match answer(&sampling, &mut connection, &question).await {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "evidence of use could not be read; the contract rules act without it");
                connection = None;
                without(&question.targets, &format!("it could not be read ({e})"))
            }
        };
        let _ = question.answer.send(answer);
    }
}

async fn answer(
    sampling: &Sampling,
    connection: &mut Option<(tokio_postgres::Client, String)>,
    question: &Question,
) -> Result<Vec<Found>, EvidenceError> {
    if connection.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        let client = sampling.database.connect().await?;
        let name = super::store::current_database(&client).await?;
        *connection = Some((client, name));
    }
    let Some((client, database)) = connection.as_mut() else {
        return Ok(Vec::new());
    };
    if *database != question.database {
        return Ok(without(
            &question.targets,
            &format!(
                "ddlgate samples pg_stat_statements for database {database:?} only (evidence_dsn), not {:?}",
                question.database
            ),
        ));
    }
    let mut out = Vec::with_capacity(question.targets.len());
    for (name, column) in &question.targets {
        let judged = tokio::time::timeout(
            JUDGE_LIMIT,
            judge(
                client,
                &sampling.store,
                name,
                column.as_deref(),
                question.window,
            ),
        )
        .await;
        let (target, evidence) = match judged {
            Ok(Ok(found)) => found,
            Ok(Err(EvidenceError::NoExtension(why))) => (None, Evidence::Unavailable(why)),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(EvidenceError::Invalid(format!(
                    "no answer within {} s",
                    JUDGE_LIMIT.as_secs()
                )));
            }
        };
        out.push(Found {
            name: name.clone(),
            column: column.clone(),
            target,
            evidence,
        });
    }
    Ok(out)
}
