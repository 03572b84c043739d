//! ddlgate: a PostgreSQL wire-protocol proxy that makes schema changes safe in production.
pub mod analysis;
pub mod audit;
pub mod cli;
pub mod config;
pub mod enforce;
pub mod metrics;
pub mod protocol;
pub mod proxy;
