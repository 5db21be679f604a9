//! The `hearth` binary: start-up on the embedded default, configuration errors,
//! `check-config`, `migrate`, and the refusals (PostgreSQL without a master key,
//! plain HTTP on a non-loopback address).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{postgres, write_master_key};

fn hearth(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_configuration_starts_on_sqlite_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let started = Instant::now();
    let _child = Child(
        hearth(dir.path())
            .env("HEARTH_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/fhir/metadata");
    let body = loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status() == 200
        {
            break r.text().await.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed();
    let cs: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    let data = dir.path().join("hearth-data");
    assert!(data.join("hearth.db").is_file());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hearth.toml");
    std::fs::write(
        &cfg,
        "[http]\nbase_path = \"/fhir\"\nlisten = \"0.0.0.0:1\"\n",
    )
    .unwrap();
    let out = hearth(dir.path())
        .env("HEARTH_CONFIG", &cfg)
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen") && err.contains("line 3"), "{err}");

    let out = hearth(dir.path())
        .env("HEARTH_HTTP_ADDR", "localhost")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HEARTH_HTTP_ADDR"));

    let out = hearth(dir.path())
        .env(
            "HEARTH_DATABASE_URL",
            "postgres://hearth:Sup3rSecret@db.invalid/hearth",
        )
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "PostgreSQL without a master key must not start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HEARTH_MASTER_KEY_FILE") && !err.contains("Sup3rSecret"),
        "{err}"
    );
}

#[test]
fn check_config_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_master_key(dir.path());
    let out = hearth(dir.path())
        .env(
            "HEARTH_DATABASE_URL",
            "postgres://hearth:Sup3rSecret@db.invalid/hearth",
        )
        .env("HEARTH_MASTER_KEY_FILE", &key)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("hearth:****@db.invalid") && !shown.contains("Sup3rSecret"),
        "{shown}"
    );
    assert!(shown.contains("base_path = \"/fhir\""), "{shown}");
}

#[test]
fn plain_http_on_a_public_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = hearth(dir.path())
        .env("HEARTH_HTTP_ADDR", format!("0.0.0.0:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve plain HTTP"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_once_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, String)]| {
        let mut c = hearth(dir.path());
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.arg("migrate").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Logs on standard error are JSON lines when it is not a terminal.
        for line in String::from_utf8_lossy(&out.stderr).lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&[]), "applied 0001_init\n");
    assert_eq!(run(&[]), "no pending migrations\n");
    let url = postgres::fresh_database().await;
    let key = write_master_key(dir.path()).display().to_string();
    let pg = [
        ("HEARTH_DATABASE_URL", url),
        ("HEARTH_MASTER_KEY_FILE", key),
    ];
    assert_eq!(run(&pg), "applied 0001_init\n");
    assert_eq!(run(&pg), "no pending migrations\n");
}
