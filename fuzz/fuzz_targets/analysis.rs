//! The analysis engine and the enforcement decisions on any text, as the proxy makes them with
//! the shipped default policy: outside and inside a transaction block, as a single statement
//! and among others, on PostgreSQL 12 to 18. Nothing may panic, and every rewrite ddlgate would
//! run must itself parse and must not be flagged again by the rule it fixes.
#![no_main]

use ddlgate::internals::analysis::Context;
use ddlgate::internals::analysis::{Engine, RuleId};
use ddlgate::internals::analysis::{Options, parse_script};
use ddlgate::internals::config::Policy;
use ddlgate::internals::enforce::{Plan, Situation, decide};
use libfuzzer_sys::fuzz_target;

mod stack;

fn check(data: &[u8]) {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let policy = Policy::builtin_default();
    let settings = &policy.base;
    let engine = Engine::new(settings.enabled_rules());
    let server_major = 12 + u32::from(selector % 7);
    let mut ctx = Context::for_server(server_major);
    ctx.in_transaction = selector & 0x10 != 0;
    ctx.timeouts_managed = true;
    let situation = Situation {
        single_statement: selector & 0x20 != 0,
    };
    // Every rule (the opt-in ones too) on its own context: the linter's path.
    let _ = Engine::new(RuleId::ALL.iter().copied())
        .analyze(text, &mut Context::for_server(server_major));
    for decision in decide(&engine, settings, text, &mut ctx, situation) {
        assert!(decision.span.end <= text.len());
        let steps = match &decision.plan {
            Plan::Replace(step) => vec![step.clone()],
            Plan::Steps(steps) => steps.clone(),
            Plan::Run | Plan::Reject(_) => continue,
        };
        let rewritten_rules: Vec<RuleId> = decision
            .rules
            .iter()
            .filter(|(_, action)| action.as_str() == "rewrite")
            .map(|(rule, _)| *rule)
            .collect();
        let script = steps
            .iter()
            .map(|s| s.sql.as_str())
            .collect::<Vec<_>>()
            .join(";\n");
        for step in &steps {
            for parsed in parse_script(&step.sql, Options::default()) {
                if let Err(e) = parsed.tree {
                    panic!("rewrite step does not parse: {:?}: {}", step.sql, e.message);
                }
            }
        }
        // The steps run one by one outside a transaction block, as the conductor runs them.
        let mut after = Context::for_server(server_major);
        after.timeouts_managed = true;
        for report in Engine::new(rewritten_rules.iter().copied()).analyze(&script, &mut after) {
            if let Ok(finding) = report.result {
                for v in finding.violations {
                    assert!(
                        !rewritten_rules.contains(&v.rule),
                        "the rewrite of {:?} is flagged by {} again: {script:?}",
                        &text[decision.span.clone()],
                        v.rule
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| stack::run(data, check));
