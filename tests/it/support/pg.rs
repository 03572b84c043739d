//! A throwaway PostgreSQL cluster owned by the test process.
//!
//! `initdb` in a temporary directory, a free port on 127.0.0.1, password authentication
//! (SCRAM by default, with one role each for trust, password and md5), TLS with a certificate
//! generated at test time, and an unprivileged OS user when the tests run as root (PostgreSQL
//! refuses to run as root). Server binaries come from `TEST_PG_BIN`, `pg_config --bindir` or
//! `/usr/lib/postgresql/*/bin`; without any, the harness fails with instructions.
//!
//! The server is started through `setpriv --pdeathsig`, from a keeper thread that lives as long
//! as the cluster is wanted, so the server dies with the test process even when the process is
//! killed; a cluster the tests stop themselves is shut down and its directory removed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::certs::{self, Certs};

/// A login role of the test cluster.
#[derive(Debug, Clone, Copy)]
pub struct Role {
    pub name: &'static str,
    pub password: &'static str,
}

/// Superuser (SCRAM).
pub const SUPERUSER: Role = Role {
    name: "postgres",
    password: "postgres-secret",
};
/// Authenticates with SCRAM-SHA-256.
pub const SCRAM: Role = Role {
    name: "ddlgate_scram",
    password: "scram-secret",
};
/// Authenticates with the `password` method (cleartext on the wire).
pub const PASSWORD: Role = Role {
    name: "ddlgate_password",
    password: "password-secret",
};
/// Authenticates with the `md5` method against an md5-stored password.
pub const MD5: Role = Role {
    name: "ddlgate_md5",
    password: "md5-secret",
};
/// Authenticates with `trust`.
pub const TRUST: Role = Role {
    name: "ddlgate_trust",
    password: "",
};
/// The database tests work in; every role may create objects in its `public` schema.
pub const DATABASE: &str = "app";

/// A running cluster.
#[derive(Debug)]
pub struct PgServer {
    pub port: u16,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub certs: Certs,
    /// `server_version_num / 10000`.
    pub major: u32,
    stop: Mutex<Option<mpsc::Sender<()>>>,
    keeper: Mutex<Option<JoinHandle<()>>>,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

impl PgServer {
    /// The cluster shared by all tests of this process, started on first use.
    pub fn shared() -> &'static PgServer {
        SHARED.get_or_init(|| Self::start_with(&[]))
    }

    /// A cluster of the caller's own, stopped and removed when dropped, with extra `postgresql.conf` lines; `{dir}` in them stands
    /// for the cluster directory (where `server.crt`, `wrong-name.crt`, … are).
    pub fn start_with(extra_conf: &[&str]) -> PgServer {
        let bin = find_bin();
        remove_stale_dirs();
        let mut last_err = String::new();
        // A free port can be taken between our probe and the server's bind: retry.
        for _ in 0..3 {
            match try_start(&bin, extra_conf) {
                Ok(server) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start a PostgreSQL test cluster: {last_err}");
    }

    /// `host=… port=… user=… password=… dbname=app`, for libpq and tokio-postgres.
    pub fn conn_str(&self, role: Role) -> String {
        conn_str(self.port, role)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the server has logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Connects as `role` directly, bypassing ddlgate.
    pub async fn connect(&self, role: Role) -> tokio_postgres::Client {
        connect(&self.conn_str(role)).await
    }

    /// Backends whose `application_name` is `name` (seen as superuser, who sees every session),
    /// counting only those in `state` when given.
    pub async fn backends(&self, name: &str, state: Option<&str>) -> i64 {
        self.connect(SUPERUSER)
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND ($2::text IS NULL OR state = $2)",
                &[&name, &state],
            )
            .await
            .unwrap()
            .get(0)
    }

    /// Waits up to three seconds for every backend named `name` to be gone.
    pub async fn wait_until_no_backends(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.backends(name, None).await > 0 {
            assert!(
                Instant::now() < deadline,
                "a backend with application_name {name:?} is still there after 3s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `sql` on a direct superuser connection (setup the policy would refuse, like DROP
/// TABLE).
pub async fn run_direct(pg: &PgServer, sql: &str) {
    pg.connect(SUPERUSER)
        .await
        .batch_execute(sql)
        .await
        .unwrap();
}

/// Connects expecting a refusal, and returns the error.
pub async fn connect_error(conn_str: &str) -> tokio_postgres::Error {
    match tokio_postgres::connect(conn_str, tokio_postgres::NoTls).await {
        Ok(_) => panic!("connection with {conn_str} succeeded; a refusal was expected"),
        Err(e) => e,
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
        if let Some(keeper) = self.keeper.lock().unwrap().take() {
            let _ = keeper.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Connection string for a server on 127.0.0.1.
pub fn conn_str(port: u16, role: Role) -> String {
    let mut s = format!(
        "host=127.0.0.1 port={port} user={} dbname={DATABASE} sslmode=disable",
        role.name
    );
    if !role.password.is_empty() {
        s.push_str(&format!(" password={}", role.password));
    }
    s
}

/// Connects with tokio-postgres (no TLS) and drives the connection in the background.
pub async fn connect(conn_str: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conn_str}: {e}"));
    tokio::spawn(connection);
    client
}

fn find_bin() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(dir) = std::env::var("TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_server(&dir),
            "TEST_PG_BIN={} does not hold initdb and postgres",
            dir.display()
        );
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return dir;
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries found. Install them (Debian: apt-get install \
             postgresql) or set TEST_PG_BIN to a directory holding initdb and postgres. The \
             tests start their own cluster and never use a server already running."
        )
    })
}

/// The unprivileged account to run PostgreSQL as when we are root: `(uid, gid)`.
fn unprivileged_user() -> Option<(u32, u32)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let euid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let entry = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| (f[2].parse().ok(), f[3].parse().ok()))
        })
    };
    match entry("postgres").or_else(|| entry("nobody")) {
        Some((Some(uid), Some(gid))) => Some((uid, gid)),
        _ => panic!(
            "running as root, but neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as"
        ),
    }
}

/// A command run as the unprivileged user (when root), optionally dying with its parent thread.
fn command(program: &Path, user: Option<(u32, u32)>, die_with_parent: bool) -> Command {
    let mut cmd = Command::new("setpriv");
    if let Some((uid, gid)) = user {
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups");
    }
    if die_with_parent {
        cmd.arg("--pdeathsig=SIGQUIT");
    }
    cmd.arg("--").arg(program);
    cmd
}

fn chown(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes directories of earlier test processes that no longer run.
fn remove_stale_dirs() {
    for entry in fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("ddlgate-it-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn try_start(bin: &Path, extra_conf: &[&str]) -> Result<PgServer, String> {
    let user = unprivileged_user();
    let dir = tempfile::Builder::new()
        .prefix(&format!("ddlgate-it-{}-", std::process::id()))
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    chown(&dir, user);
    let certs = certs::generate(&dir);
    for f in [
        &certs.ca,
        &certs.server_cert,
        &certs.server_key,
        &certs.proxy_cert,
        &certs.proxy_key,
        &certs.wrong_name_cert,
        &certs.wrong_name_key,
    ] {
        chown(f, user);
    }
    for key in [&certs.server_key, &certs.proxy_key, &certs.wrong_name_key] {
        fs::set_permissions(key, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let pwfile = dir.join("pwfile");
    fs::write(&pwfile, SUPERUSER.password).unwrap();
    chown(&pwfile, user);
    let data = dir.join("data");
    let out = command(&bin.join("initdb"), user, false)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            SUPERUSER.name,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--locale=C", "--no-sync"])
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    let mut conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
         max_connections = 300\nshared_buffers = 32MB\nfsync = off\nsynchronous_commit = off\n\
         full_page_writes = off\nssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n\
         password_encryption = 'scram-sha-256'\nlog_min_messages = warning\n",
        dir = dir.display(),
        cert = certs.server_cert.display(),
        key = certs.server_key.display(),
    );
    for line in extra_conf {
        conf.push_str(&line.replace("{dir}", &dir.display().to_string()));
        conf.push('\n');
    }
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
    fs::write(
        data.join("pg_hba.conf"),
        format!(
            "local all all trust\n\
             host all {} 127.0.0.1/32 trust\n\
             host all {} 127.0.0.1/32 password\n\
             host all {} 127.0.0.1/32 md5\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
            TRUST.name, PASSWORD.name, MD5.name
        ),
    )
    .unwrap();

    let log = fs::File::create(dir.join("postgres.log")).unwrap();
    chown(&dir.join("postgres.log"), user);
    let mut server_cmd = command(&bin.join("postgres"), user, true);
    server_cmd
        .arg("-D")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let (started_tx, started_rx) = mpsc::channel::<Result<u32, String>>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    // The keeper thread owns the server process: PR_SET_PDEATHSIG fires when the thread that
    // spawned the process exits, so that thread must live exactly as long as the cluster.
    let keeper = std::thread::spawn(move || {
        let mut child: Child = match server_cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = started_tx.send(Err(format!("cannot start postgres: {e}")));
                return;
            }
        };
        let _ = started_tx.send(Ok(child.id()));
        let _ = stop_rx.recv();
        // Fast shutdown: roll back open transactions, disconnect clients, exit.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    });
    started_rx.recv().map_err(|e| e.to_string())??;
    let mut server = PgServer {
        port,
        dir: dir.clone(),
        bin: bin.to_owned(),
        certs,
        major: 0,
        stop: Mutex::new(Some(stop_tx)),
        keeper: Mutex::new(Some(keeper)),
    };
    match setup(port) {
        Ok(major) => server.major = major,
        Err(e) => {
            let log = server.log();
            return Err(format!("{e}\n--- postgres.log ---\n{log}"));
        }
    }
    Ok(server)
}

/// Waits for the server, then creates the roles and the test database. Runs on a thread of its
/// own so it works from inside and outside a tokio runtime.
fn setup(port: u16) -> Result<u32, String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let superuser = loop {
                let cs = conn_str(port, SUPERUSER).replace("dbname=app", "dbname=postgres");
                match tokio_postgres::connect(&cs, tokio_postgres::NoTls).await {
                    Ok((client, conn)) => {
                        tokio::spawn(conn);
                        break client;
                    }
                    Err(e) if Instant::now() > deadline => {
                        return Err(format!("server did not come up within 60s: {e}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let sql = format!(
                "CREATE ROLE {scram} LOGIN PASSWORD '{scram_pw}';
                 CREATE ROLE {pw} LOGIN PASSWORD '{pw_pw}';
                 CREATE ROLE {trust} LOGIN;
                 SET password_encryption = 'md5';
                 CREATE ROLE {md5} LOGIN PASSWORD '{md5_pw}';
                 RESET password_encryption;",
                scram = SCRAM.name,
                scram_pw = SCRAM.password,
                pw = PASSWORD.name,
                pw_pw = PASSWORD.password,
                trust = TRUST.name,
                md5 = MD5.name,
                md5_pw = MD5.password,
            );
            superuser
                .batch_execute(&sql)
                .await
                .map_err(|e| format!("{e:?}"))?;
            superuser
                .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
                .await
                .map_err(|e| format!("{e:?}"))?;
            let version: String = superuser
                .query_one("SHOW server_version_num", &[])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            let (app, conn) =
                tokio_postgres::connect(&conn_str(port, SUPERUSER), tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            app.batch_execute("GRANT ALL ON SCHEMA public TO PUBLIC")
                .await
                .map_err(|e| e.to_string())?;
            Ok(version.parse::<u32>().map_err(|e| e.to_string())? / 10_000)
        })
    })
    .join()
    .map_err(|_| "setup thread panicked".to_owned())?
}

/// The live columns of `table` (read directly), in order.
pub async fn columns(pg: &PgServer, table: &str) -> Vec<String> {
    pg.connect(SUPERUSER)
        .await
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
