//! A throwaway PostgreSQL cluster for the test process: `initdb` + `pg_ctl` in a
//! temporary directory on a random port (as the `postgres` user when running as
//! root), stopped and removed by a watchdog when the test process exits.
//! `HEARTH_TEST_DATABASE_URL` points the tests at an existing server instead.
//! Every test gets a fresh database.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    /// `postgres://user@host:port` without a database name.
    pub server_url: String,
    /// Directory holding `pg_dump` and friends.
    pub bin_dir: PathBuf,
}

fn find_bin_dir() -> PathBuf {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file()
                && dir.join("pg_ctl").is_file()
                && dir.join("pg_dump").is_file()
            {
                return dir;
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").is_file());
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("PostgreSQL server binaries (initdb, pg_ctl) not found: run ./scripts/test, which installs them")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn pg_command(bin: &Path, tool: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Starts a cluster; `configure` may edit the data directory (as the current user)
/// after `initdb` and before the server starts.
pub fn start_cluster(configure: impl FnOnce(&Path)) -> Cluster {
    let bin_dir = find_bin_dir();
    let as_postgres = is_root();
    let dir = tempfile::Builder::new()
        .prefix("hearth-pg-")
        .tempdir()
        .expect("temp dir")
        .keep();
    if as_postgres {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "chown of the cluster directory failed");
    }
    let data = dir.join("data");
    let out = pg_command(&bin_dir, "initdb", as_postgres)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ])
        .output()
        .expect("initdb could not run");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    configure(&data);
    if as_postgres {
        let ok = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&data)
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "chown of the data directory failed");
    }
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400",
        dir.display()
    );
    let out = pg_command(&bin_dir, "pg_ctl", as_postgres)
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .args(["-o", &opts, "-w", "-t", "60", "start"])
        .stdout(Stdio::null())
        .output()
        .expect("pg_ctl could not run");
    assert!(
        out.status.success(),
        "pg_ctl start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Stop and remove the cluster once this test process is gone. The watchdog
    // outlives this process on purpose, so it is never waited for.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runas}{pg_ctl} -D {data} stop -m immediate >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        runas = if as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        },
        pg_ctl = bin_dir.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .args(["-c", &stop])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog");
    Cluster {
        server_url: format!("postgres://postgres@127.0.0.1:{port}"),
        bin_dir,
    }
}

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| match std::env::var("HEARTH_TEST_DATABASE_URL") {
        Ok(url) => {
            let (server, _db) = url
                .rsplit_once('/')
                .expect("HEARTH_TEST_DATABASE_URL needs a database name");
            let bin_dir = find_bin_dir();
            Cluster {
                server_url: server.to_owned(),
                bin_dir,
            }
        }
        Err(_) => start_cluster(|_| {}),
    })
}

/// Creates a fresh, empty database and returns its URL.
pub async fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let c = cluster();
    let name = format!(
        "hearth_t{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (client, conn) =
        tokio_postgres::connect(&format!("{}/postgres", c.server_url), tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    drop(client);
    let _ = task.await;
    format!("{}/{name}", c.server_url)
}

/// Runs SQL on a test database.
pub async fn execute(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.expect("execute");
    drop(client);
    let _ = task.await;
}

/// The one `bigint` a query answers.
pub async fn count(url: &str, sql: &str) -> i64 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(conn);
    let n: i64 = client.query_one(sql, &[]).await.expect("query").get(0);
    drop(client);
    let _ = task.await;
    n
}

/// `pg_dump` of a database, as text.
pub fn dump(url: &str) -> Vec<u8> {
    let out = Command::new(cluster().bin_dir.join("pg_dump"))
        .arg(url)
        .output()
        .expect("pg_dump could not run");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
