//! `hearth import`: Bundles (plain and gzip) and NDJSON through the write
//! path, a re-run that skips what is in, and a per-file report with a non-zero
//! exit when something fails. The store is then served and counted.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{Backend, TestApp, fixtures, json, postgres, write_master_key};

fn import(env: &[(&str, String)], args: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HEARTH_BOOTSTRAP_ADMIN_PASSWORD",
            crate::support::ADMIN_PASSWORD,
        )
        .arg("import")
        .args(["--jobs", "2"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn count(app: &TestApp, query: &str) -> u64 {
    let (status, b) = json(app.get(&format!("{query}&_summary=count")).await).await;
    assert_eq!(status, 200, "{b}");
    b["total"].as_u64().unwrap()
}

async fn import_then_serve(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = write_master_key(dir.path());
    let data = dir.path().join("data");
    let mut env = vec![
        ("HEARTH_DATA_DIR", data.display().to_string()),
        ("HEARTH_MASTER_KEY_FILE", key.display().to_string()),
    ];
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(postgres::fresh_database().await),
    };
    if let Some(url) = &url {
        env.push(("HEARTH_DATABASE_URL", url.clone()));
    }
    let good = fixtures().join("import");
    let out = import(&env, &[&good]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("imported 11 resources from 4 files"),
        "{}",
        stdout(&out)
    );
    // Again: every file is skipped, nothing is added.
    let out = import(&env, &[&good]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("imported 0 resources from 0 files")
            && stdout(&out).contains("4 skipped"),
        "{}",
        stdout(&out)
    );
    // Broken files: exit 1, a line per failed file saying why.
    let broken = fixtures().join("import-broken");
    let out = import(&env, &[&broken]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = stdout(&out);
    assert!(report.contains("2 failed"), "{report}");
    assert!(
        report.contains("FAILED")
            && report.contains("bad-transaction.json")
            && report.contains("Bundle.entry[1]"),
        "{report}"
    );
    assert!(
        report.contains("bad-line.ndjson") && report.contains("line 2"),
        "{report}"
    );
    // A named file of an unknown kind is a usage error.
    let out = import(&env, &[&fixtures().join("README.md")]);
    assert_eq!(out.status.code(), Some(2));

    let app = TestApp::start_with(backend, |c| {
        c.data_dir = data.clone();
        c.crypto.master_key_file = Some(key.clone());
        if let Some(url) = &url {
            c.database.url = Some(hearth::config::Secret::new(url.clone()));
        }
    })
    .await;
    assert_eq!(count(&app, "Patient?").await, 7);
    assert_eq!(count(&app, "Observation?").await, 3);
    assert_eq!(count(&app, "Encounter?").await, 1);
    assert_eq!(count(&app, "Patient?family=Importa").await, 1);
    assert_eq!(count(&app, "Patient?family=Importc").await, 2);
    // References were resolved and indexed.
    let (_, b) = json(app.get("Patient?family=Importa").await).await;
    let id = b["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        count(&app, &format!("Observation?subject=Patient/{id}")).await,
        1
    );
    assert_eq!(
        count(&app, &format!("Encounter?subject=Patient/{id}")).await,
        1
    );
    // Nothing of the broken transaction, nor of the NDJSON chunk with the bad line.
    assert_eq!(count(&app, "Patient?family=Broken").await, 0);
    assert_eq!(count(&app, "Patient?family=Brokenn").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_on_sqlite() {
    import_then_serve(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_on_postgres() {
    import_then_serve(Backend::Postgres).await;
}
