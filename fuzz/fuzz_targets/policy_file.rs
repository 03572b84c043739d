//! Policy files: any text loads or is refused with an error; a loaded policy answers for every
//! rule and every connection.
#![no_main]

use std::path::Path;

use ddlgate::internals::analysis::RuleId;
use ddlgate::internals::config::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, Path::new("fuzz.toml")) {
        Ok(policy) => {
            for rule in RuleId::ALL {
                let _ = policy.base.action(*rule);
            }
            let _ = policy.base.enabled_rules();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
