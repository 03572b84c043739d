//! The planner's tests: what a held request becomes.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::config::policy::{Action, Policy};

/// A held `Query` of `text`, with `reviewed` as what the review parsed of it.
fn held(text: &str, reviewed: Option<&str>) -> Held {
    let mut bytes = vec![b'Q'];
    bytes.extend(u32::try_from(text.len() + 5).unwrap().to_be_bytes());
    bytes.extend(text.as_bytes());
    bytes.push(0);
    let end = bytes.len();
    Held {
        bytes: bytes.into(),
        spans: vec![MessageSpan {
            tag: fe::QUERY,
            start: 0,
            end,
        }],
        parsed: reviewed
            .map(|r| {
                vec![(
                    0,
                    ParsedText {
                        standard_conforming_strings: true,
                        class: Some(Class::Brief),
                        statements: parse::parse_script(r, parse::Options::default()),
                    },
                )]
            })
            .unwrap_or_default(),
    }
}

fn planned(held: Held) -> Program {
    let state = SessionState::with_server_version("17.2");
    plan(
        held,
        &state,
        &mut Review::default(),
        &mut Context::default(),
        &Policy::builtin_default().base,
        false,
        Since::default(),
    )
}

/// The planner decides on the statements the review already parsed instead of parsing
/// the text again: handed a parse of something else (a white-box check), it decides on
/// that — and without one it parses the text itself.
#[test]
fn the_plan_decides_on_what_the_review_parsed() {
    let text = "SELECT 123456";
    let other = "DROP TABLE ab";
    assert_eq!(text.len(), other.len());
    let reused = planned(held(text, Some(other)));
    assert_eq!(reused.audited.len(), 1);
    assert_eq!(reused.audited[0].action, Action::Reject);
    let parsed_here = planned(held(text, None));
    assert!(parsed_here.audited.is_empty());
}

/// A held extended-protocol run (Parse, Bind, Execute, Sync) of `text`, reviewed the way a
/// session reviews it, and whether the review holds it.
fn reviewed_run(text: &str, review: &mut Review) -> (Held, bool) {
    let mut out = BytesMut::new();
    Parse {
        name: b"",
        sql: text.as_bytes(),
        rest: &[0, 0],
    }
    .encode(&mut out);
    Bind {
        portal: b"",
        statement: b"",
        rest: &[0, 0, 0, 0, 0, 0],
    }
    .encode(&mut out);
    crate::protocol::extended::put_execute(b"", &mut out);
    crate::protocol::extended::put_sync(&mut out);
    let mut spans = Vec::new();
    let mut at = 0;
    for frame in crate::protocol::frame::frames(&out) {
        let end = at + 5 + frame.body.len();
        spans.push(MessageSpan {
            tag: frame.tag,
            start: at,
            end,
        });
        at = end;
    }
    let state = SessionState::with_server_version("17.2");
    let request = Request::new(&out, &spans, RequestEnd::Complete);
    let verdict = review.review(&request, &state, false).unwrap();
    let held = Held {
        parsed: review.take_parsed(),
        bytes: out.freeze(),
        spans,
    };
    (held, matches!(verdict, review::Verdict::Hold))
}

/// The review keeps its parse of a `Parse` text too, and the planner decides on it.
#[test]
fn a_parse_text_is_parsed_once() {
    let mut review = Review::default();
    let (held, holds) = reviewed_run("ALTER TABLE t RENAME COLUMN a TO b", &mut review);
    assert!(holds);
    assert_eq!(held.parsed.len(), 1);
    assert_eq!(held.parsed[0].0, 0, "kept by the index of the Parse");
    // White box: the planner decides on the statements it is handed.
    let (mut held, holds) = reviewed_run("SELECT 1234567890123456789012", &mut review);
    assert!(!holds);
    assert!(
        held.parsed.is_empty(),
        "plain DML is cleared without a parse"
    );
    held.parsed = vec![(
        0,
        ParsedText {
            standard_conforming_strings: true,
            class: Some(Class::Brief),
            statements: parse::parse_script(
                "ALTER TABLE t RENAME COLUMN a TO b",
                parse::Options::default(),
            ),
        },
    )];
    let state = SessionState::with_server_version("17.2");
    let program = plan(
        held,
        &state,
        &mut review,
        &mut Context::default(),
        &Policy::builtin_default().base,
        false,
        Since::default(),
    );
    assert_eq!(program.audited.len(), 1);
    assert_eq!(program.audited[0].action, Action::Reject);
}

/// With the real parse, reusing it plans exactly what parsing again plans.
#[test]
fn reusing_the_review_parse_changes_nothing() {
    for text in [
        "ALTER TABLE t ADD COLUMN b int",
        "CREATE INDEX i ON t (a)",
        "BEGIN; ALTER TABLE t RENAME COLUMN a TO b; COMMIT",
        "DROP TABLE t; SELECT 1",
    ] {
        let a = planned(held(text, Some(text)));
        let b = planned(held(text, None));
        assert_eq!(a.request, b.request, "{text}");
        assert_eq!(a.steps, b.steps, "{text}");
        assert_eq!(a.request_class, b.request_class, "{text}");
        assert_eq!(a.audited.len(), b.audited.len(), "{text}");
    }
}
