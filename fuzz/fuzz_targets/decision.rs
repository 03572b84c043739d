//! The proxy's decision point on any run of client messages: the messages are framed as the
//! session frames them, reviewed (the hot-path check) and, when held, planned with the default
//! policy in every transaction state, inside a pipeline or not. Nothing may panic, the planned
//! request must be well-framed messages, and a run that ended with Sync still does.
#![no_main]

use ddlgate::internals::analysis::Context;
use ddlgate::internals::config::Policy;
use ddlgate::internals::protocol::TxStatus;
use ddlgate::internals::protocol::{FrontendItem, FrontendScanner};
use ddlgate::internals::proxy::SessionState;
use ddlgate::internals::proxy::{Held, Review, Verdict, plan};
use ddlgate::internals::proxy::{MessageSpan, Request, RequestEnd};
use libfuzzer_sys::fuzz_target;

mod stack;

/// Splits `bytes` into messages; `None` when they are not a sequence of whole messages.
fn frames(bytes: &[u8]) -> Option<Vec<MessageSpan>> {
    let mut scanner = FrontendScanner::new(1 << 20);
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match scanner.next(bytes, pos) {
            Ok(Some(FrontendItem::Message { tag, end })) => {
                spans.push(MessageSpan {
                    tag,
                    start: pos,
                    end,
                });
                pos = end;
            }
            _ => return None,
        }
    }
    Some(spans)
}

fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let Some(spans) = frames(bytes) else {
        return;
    };
    if spans.is_empty() {
        return;
    }
    let mut state = SessionState::new(
        1,
        "127.0.0.1:5000".parse().unwrap(),
        "app".into(),
        "app".into(),
        false,
    );
    state.parameters.insert(
        "server_version".into(),
        format!("{}.1", 12 + u32::from(selector % 7)),
    );
    state.tx_status = match (selector >> 3) % 3 {
        0 => TxStatus::Idle,
        1 => TxStatus::InTransaction,
        _ => TxStatus::Failed,
    };
    let unsynced = selector & 0x40 != 0;
    // The client encoding decides how query text is read (see proxy::client_text).
    let encoding = ["UTF8", "LATIN1", "SJIS", "GB18030"]
        [usize::from((selector >> 5) & 1) | usize::from((selector >> 6) & 2)];
    state
        .parameters
        .insert("client_encoding".into(), encoding.into());
    let mut review = Review::default();
    let request = Request::new(bytes, &spans, RequestEnd::Complete);
    if review.review(&request, &state, unsynced) != Ok(Verdict::Hold) {
        return;
    }
    let policy = Policy::builtin_default();
    let mut ctx = Context::default();
    let held = Held {
        bytes: bytes::Bytes::copy_from_slice(bytes),
        spans: spans.clone(),
        parsed: review.take_parsed(),
    };
    let ended_with_ready = held.ends_with_ready();
    // A transaction may have ended since the last plan (the selector's high bit says so).
    let since = ddlgate::internals::proxy::Since {
        ended: (selector & 0x80 != 0).then_some(false),
        rolled_back_to_savepoint: selector & 0x04 != 0,
    };
    let program = plan(
        held,
        &state,
        &mut review,
        &mut ctx,
        &policy.base,
        unsynced,
        since,
    );
    let planned = frames(&program.request).expect("the planned request is whole messages");
    assert_eq!(
        planned.last().map(|m| m.tag),
        spans.last().map(|m| m.tag),
        "the run ends as the client ended it"
    );
    assert_eq!(program.request_ends_with_ready, ended_with_ready);
    for step in &program.steps {
        assert!(!step.sql.is_empty());
    }
}

fuzz_target!(|data: &[u8]| stack::run(data, check));
