//! ddlgate's own binary, started the way users start it: `ddlgate serve` on a free port in
//! front of the harness's cluster, its log (stderr) and output (stdout) read as they are
//! written, so tests wait on what it reports rather than on fixed sleeps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::pg::{PgServer, free_port};

/// A running `ddlgate serve`.
pub struct Binary {
    child: tokio::process::Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Its listening port.
    pub port: u16,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

/// Collects what a pipe says, as it says it.
fn collect(
    pipe: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pipe = pipe;
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    })
}

impl Binary {
    /// Starts `ddlgate serve --listen <free port> --upstream <pg>` with `args` after them and
    /// `RUST_LOG=info`, and waits (up to 10 s) until it accepts connections.
    pub async fn serve(pg: &PgServer, args: &[&str]) -> Self {
        let port = free_port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                &pg.addr(),
            ])
            .args(args)
            .env_remove("DDLGATE_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stderr.take().unwrap(), stderr.clone()),
            collect(child.stdout.take().unwrap(), stdout.clone()),
        ];
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "ddlgate did not start: {}",
                String::from_utf8_lossy(&stderr.lock().unwrap())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            addr,
            port,
            stderr,
            stdout,
            readers,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// Sends it a signal (`HUP`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (up to 10 s) until its log says `needle`.
    pub async fn until_logged(&self, needle: &str) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "ddlgate never logged {needle:?}: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) for it to exit; its exit status, everything it logged, and
    /// everything it wrote to standard output.
    pub async fn exit(mut self) -> (std::process::ExitStatus, String, Vec<u8>) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("ddlgate exits within 10 s")
            .unwrap();
        for reader in self.readers.drain(..) {
            reader.await.unwrap();
        }
        let stdout = self.stdout.lock().unwrap().clone();
        (status, self.log(), stdout)
    }
}
