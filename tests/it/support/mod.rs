//! Test support: a PostgreSQL cluster of the harness's own, certificates, a ddlgate started
//! in-process or as its own binary, and a raw protocol client for byte-level assertions.

pub mod binary;
pub mod certs;
pub mod pg;
pub mod proxy;
pub mod wire;

/// The records of an audit log file, parsed (none when it does not exist yet).
pub fn audit_records(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
