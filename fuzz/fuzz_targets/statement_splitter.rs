//! Splitting and tokenising any text as PostgreSQL would (dollar quotes, nested comments,
//! E'' strings, standard_conforming_strings on and off): statements come back in order, inside
//! the text, without overlapping; redaction keeps the statement count of text that parses.
#![no_main]

use ddlgate::internals::analysis::{Options, parse_plpgsql, parse_script, redact_literals, tokens};
use libfuzzer_sys::fuzz_target;

mod stack;

fuzz_target!(|data: &[u8]| {
    stack::run(data, |data| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        for scs in [true, false] {
            let parsed = parse_script(
                text,
                Options {
                    standard_conforming_strings: scs,
                },
            );
            let mut end = 0;
            for statement in &parsed {
                assert!(statement.span.start >= end, "statements overlap or go back");
                assert!(
                    statement.span.end <= text.len(),
                    "a statement past the text"
                );
                assert!(text.is_char_boundary(statement.span.start));
                assert!(text.is_char_boundary(statement.span.end));
                end = statement.span.end;
            }
        }
        let _ = tokens(text);
        let redacted = redact_literals(text);
        let _ = parse_script(&redacted, Options::default());
        let _ = parse_plpgsql(text);
    });
});
