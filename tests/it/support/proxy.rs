//! ddlgate started in-process on a free port, in front of a test cluster.

use std::net::SocketAddr;

use ddlgate::internals::config::{ServeConfig, ServeOptions};
use ddlgate::internals::proxy::{Server, Shutdown};
use tokio::task::JoinHandle;

use super::pg::{self, PgServer, Role};

/// A running proxy; it shuts down when dropped.
#[derive(Debug)]
pub struct TestProxy {
    pub addr: SocketAddr,
    /// Where metrics are served, when `metrics_listen` was set.
    pub metrics: Option<SocketAddr>,
    pub shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl TestProxy {
    /// A proxy with default settings in front of `pg`.
    pub async fn start(pg: &PgServer) -> Self {
        Self::start_with(pg, |_| {}).await
    }

    /// A proxy whose options `tweak` may change.
    pub async fn start_with(pg: &PgServer, tweak: impl FnOnce(&mut ServeOptions)) -> Self {
        init_logging();
        let mut options = ServeOptions {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(pg.addr()),
            ..ServeOptions::default()
        };
        tweak(&mut options);
        let config = ServeConfig::from_options(&options).expect("valid test configuration");
        let server = Server::bind(config).await.expect("bind");
        let addr = server.local_addr().unwrap();
        let metrics = server.metrics_addr();
        let shutdown = Shutdown::default();
        let run = server.run(shutdown.clone());
        let task =
            tokio::spawn(async move { run.await.expect("the proxy could not start serving") });
        Self {
            addr,
            metrics,
            shutdown,
            task: Some(task),
        }
    }

    /// Connection string for `role` through the proxy.
    pub fn conn_str(&self, role: Role) -> String {
        pg::conn_str(self.addr.port(), role)
    }

    /// Connects through the proxy with tokio-postgres.
    pub async fn connect(&self, role: Role) -> tokio_postgres::Client {
        pg::connect(&self.conn_str(role)).await
    }

    /// Starts draining and waits until the server has stopped.
    pub async fn drain_and_wait(mut self) {
        self.shutdown.drain.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shutdown.drain.cancel();
        self.shutdown.terminate.cancel();
    }
}

/// Sends ddlgate's logs to the test output (shown for failing tests); `RUST_LOG` filters.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ddlgate=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
