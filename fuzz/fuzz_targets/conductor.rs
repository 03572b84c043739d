//! The executor on any server answer: a program planned by the default policy for one of a few
//! governed statements, in and out of a transaction, then arbitrary server bytes cut at
//! arbitrary places, the audit trail confirming or failing, retry timers firing. Nothing may
//! panic; whatever the conductor sends upstream is whole `Query` messages; what reaches the
//! client is whole messages except for a large row still streaming at the end; a protocol
//! error stops the session as the session would, and a program cut short still gives its
//! records.
#![no_main]

use bytes::BytesMut;
use ddlgate::internals::analysis::Context;
use ddlgate::internals::config::Policy;
use ddlgate::internals::protocol::TxStatus;
use ddlgate::internals::protocol::frames;
use ddlgate::internals::proxy::Conductor;
use ddlgate::internals::proxy::Outbox;
use ddlgate::internals::proxy::SessionState;
use ddlgate::internals::proxy::{Held, Review, Verdict, plan};
use ddlgate::internals::proxy::{MessageSpan, Request, RequestEnd};
use libfuzzer_sys::fuzz_target;

mod stack;

const STATEMENTS: [&str; 6] = [
    "ALTER TABLE t ADD COLUMN b int",
    "CREATE UNIQUE INDEX i ON t (a)",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE o ADD CONSTRAINT o_fk FOREIGN KEY (a) REFERENCES a (id)",
    "ALTER TABLE t ADD COLUMN b int; SELECT * FROM t",
    "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
];

fn check(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut, server)) = rest.split_first() else {
        return;
    };
    let sql = STATEMENTS[usize::from(selector) % STATEMENTS.len()];
    let mut state = SessionState::new(
        1,
        "127.0.0.1:5000".parse().unwrap(),
        "app".into(),
        "app".into(),
        false,
    );
    state.parameters.insert(
        "server_version".into(),
        format!("{}.1", 12 + u32::from(selector >> 5)),
    );
    state.tx_status = if selector & 0x10 != 0 {
        TxStatus::InTransaction
    } else {
        TxStatus::Idle
    };
    let mut bytes = vec![b'Q'];
    bytes.extend(u32::try_from(sql.len() + 5).unwrap().to_be_bytes());
    bytes.extend(sql.as_bytes());
    bytes.push(0);
    let spans = vec![MessageSpan {
        tag: b'Q',
        start: 0,
        end: bytes.len(),
    }];
    let mut review = Review::default();
    let request = Request::new(&bytes, &spans, RequestEnd::Complete);
    if review.review(&request, &state, false) != Ok(Verdict::Hold) {
        return;
    }
    let policy = Policy::builtin_default();
    let program = plan(
        Held {
            bytes: bytes.clone().into(),
            spans,
            parsed: review.take_parsed(),
        },
        &state,
        &mut review,
        &mut Context::default(),
        &policy.base,
        false,
        Default::default(),
    );
    let mut conductor = Conductor::new(program, tracing::Span::none(), true);
    let (mut up, mut client) = (Outbox::default(), Outbox::default());
    let mut sent_up = Vec::new();
    let mut to_client = Vec::new();
    let mut buf = BytesMut::new();
    let step = usize::from(cut.max(1));
    let fail_audit = selector & 0x08 != 0;
    let mut chunks = server.chunks(step);
    loop {
        conductor.advance(&mut up, &mut client, &mut state);
        if conductor.take_audit().is_some() {
            let result = if fail_audit {
                Err("No space left on device".to_owned())
            } else {
                Ok(())
            };
            conductor.audited(result, fail_audit);
            continue;
        }
        if conductor.wake_at().is_some() {
            conductor.wake();
            continue;
        }
        sent_up.extend(up.take_all());
        to_client.extend(client.take_all());
        let Some(chunk) = chunks.next() else {
            break;
        };
        buf.extend_from_slice(chunk);
        if conductor
            .on_upstream(&mut buf, &mut client, &mut state)
            .is_err()
        {
            let _ = conductor.records_if_cut_short(&state, "the upstream broke the protocol");
            return;
        }
        if conductor.is_finished() {
            break;
        }
    }
    let mut whole = 0;
    for f in frames(&sent_up) {
        assert_eq!(f.tag, b'Q', "ddlgate sends simple queries upstream");
        whole += f.bytes.len();
    }
    assert_eq!(whole, sent_up.len(), "whole messages upstream");
    let _ = frames(&to_client).count();
    let _ = conductor.records_if_cut_short(&state, "the test ended");
}

fuzz_target!(|data: &[u8]| stack::run(data, check));
