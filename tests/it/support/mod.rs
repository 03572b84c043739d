//! Test support: a PostgreSQL cluster of the harness's own, certificates, a ddlgate started
//! in-process, and a raw protocol client for byte-level assertions.

pub mod certs;
pub mod pg;
pub mod proxy;
pub mod wire;
