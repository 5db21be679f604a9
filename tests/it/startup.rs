//! The `hearth` binary: start-up on the embedded default, configuration errors,
//! `check-config`, `migrate`, and the refusals (PostgreSQL without a master key,
//! plain HTTP on a non-loopback address).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{http_client, postgres, write_master_key};

fn hearth(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "HEARTH_BOOTSTRAP_ADMIN_PASSWORD",
            crate::support::ADMIN_PASSWORD,
        );
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
    let client = http_client();
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
    let expected = |backend: &str| -> String {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schema")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".sql")
                    .to_owned()
            })
            .collect();
        names.sort();
        names.iter().map(|n| format!("applied {n}\n")).collect()
    };
    assert_eq!(run(&[]), expected("sqlite"));
    assert_eq!(run(&[]), "no pending migrations\n");
    let url = postgres::fresh_database().await;
    let key = write_master_key(dir.path()).display().to_string();
    let pg = [
        ("HEARTH_DATABASE_URL", url),
        ("HEARTH_MASTER_KEY_FILE", key),
    ];
    assert_eq!(run(&pg), expected("postgres"));
    assert_eq!(run(&pg), "no pending migrations\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_resource_content() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Child(
        hearth(dir.path())
            .env("HEARTH_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("HEARTH_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let client = http_client();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let started = Instant::now();
    while client.get(format!("{base}/metadata")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let name = "Zyxwvutsrq";
    let send = |method: reqwest::Method, path: &str, body: Option<String>| {
        let mut req = client.request(method, format!("{base}/{path}"));
        if let Some(b) = body {
            req = req.header("content-type", "application/fhir+json").body(b);
        }
        req.send()
    };
    let patient =
        format!(r#"{{"resourceType":"Patient","id":"p1","name":[{{"family":"{name}"}}]}}"#);
    let mut statuses = Vec::new();
    for (method, path, body) in [
        (
            reqwest::Method::PUT,
            "Patient/p1".to_owned(),
            Some(patient.clone()),
        ),
        (reqwest::Method::GET, "Patient/p1".to_owned(), None),
        (reqwest::Method::GET, format!("Patient?name={name}"), None),
        (
            reqwest::Method::GET,
            format!("Patient/p1?_format=json&x={name}"),
            None,
        ),
        (
            reqwest::Method::POST,
            "Patient".to_owned(),
            Some(format!(
                r#"{{"resourceType":"Patient","birthDate":"{name}"}}"#
            )),
        ),
        (
            reqwest::Method::POST,
            "Patient".to_owned(),
            Some(format!(
                r#"{{"resourceType":"Patient","name":[{{"family":"{name}"}}],}}"#
            )),
        ),
        (
            reqwest::Method::PUT,
            "Patient/p2".to_owned(),
            Some(patient.clone()),
        ),
        (reqwest::Method::GET, "Patient/p1/_history".to_owned(), None),
        (reqwest::Method::DELETE, "Patient/p1".to_owned(), None),
    ] {
        statuses.push(send(method, &path, body).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [201, 200, 200, 200, 422, 400, 400, 200, 204]);
    drop(child);
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let request_lines = logged
        .lines()
        .filter(|l| l.contains("\"message\":\"request\""))
        .count();
    assert!(
        request_lines >= statuses.len(),
        "the access log is missing lines:\n{logged}"
    );
    assert!(
        !logged.contains(name),
        "resource content reached the log:\n{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, key_b) = (dir.path().join("a.key"), dir.path().join("b.key"));
    std::fs::write(&key_a, [1u8; 32]).unwrap();
    std::fs::write(&key_b, [2u8; 32]).unwrap();
    let port = free_port();
    let start = |key: &std::path::Path| {
        hearth(dir.path())
            .env("HEARTH_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("HEARTH_MASTER_KEY_FILE", key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    {
        let _first = Child(start(&key_a));
        let client = http_client();
        let started = Instant::now();
        while client
            .get(format!("http://127.0.0.1:{port}/fhir/metadata"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "first start failed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut second = Child(start(&key_b));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "started with the wrong master key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(second.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("wrapped by master key mk-"), "{err}");
}

/// The secure default: with no configuration the FHIR listener wants HTTP
/// Basic; the bootstrap administrator's generated password is printed once,
/// at the first start, and works; the second start prints nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_a_working_admin_password_once() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let start = |port: u16| {
        let mut c = hearth(dir.path());
        c.env_remove("HEARTH_BOOTSTRAP_ADMIN_PASSWORD")
            .env("HEARTH_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Child(c.spawn().unwrap())
    };
    let client = crate::support::bare_client();
    let wait_up = |port: u16| {
        let client = client.clone();
        async move {
            let url = format!("http://127.0.0.1:{port}/fhir/metadata");
            for _ in 0..2000 {
                if client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("server did not come up");
        }
    };

    let port = free_port();
    let mut first = start(port);
    wait_up(port).await;
    let mut stderr = first.0.stderr.take().unwrap();
    drop(first);
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    let password = text
        .lines()
        .skip_while(|l| !l.contains("Created the administrator `admin`"))
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains("Created"))
        .unwrap_or_else(|| panic!("no password printed: {text}"))
        .to_owned();
    assert_eq!(password.len(), 20);

    let port = free_port();
    let mut second = start(port);
    wait_up(port).await;
    let url = format!("http://127.0.0.1:{port}/fhir/Patient");
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().contains_key("www-authenticate"));
    let res = client
        .get(&url)
        .header(
            "authorization",
            crate::support::basic_authorization("admin", &password),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut stderr = second.0.stderr.take().unwrap();
    drop(second);
    let mut text = String::new();
    stderr.read_to_string(&mut text).unwrap();
    assert!(!text.contains("Created the administrator"), "{text}");
    assert!(!text.contains(&password));
}

/// Two FHIR listeners in one process, on different ports with different
/// chains: a staff listener that wants HTTP Basic, and a public one with no
/// security module whose anonymous callers may read Organizations only.
/// Each request is audited under its listener's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_listeners_with_different_chains() {
    let dir = tempfile::tempdir().unwrap();
    let (staff, public) = (free_port(), free_port());
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[http]
name = "staff"
addr = "127.0.0.1:{staff}"
security = ["basic"]

[[listeners]]
name = "public"
addr = "127.0.0.1:{public}"
base_path = "/open"
security = []
anonymous = ["read:Organization"]
"#
        ),
    )
    .unwrap();
    let _child = Child(
        hearth(dir.path())
            .env("HEARTH_CONFIG", &config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = crate::support::bare_client();
    let staff_url = format!("http://127.0.0.1:{staff}/fhir");
    let public_url = format!("http://127.0.0.1:{public}/open");
    for url in [&staff_url, &public_url] {
        let mut up = false;
        for _ in 0..2000 {
            if client
                .get(format!("{url}/metadata"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(up, "{url} did not come up");
    }
    let admin = crate::support::admin_authorization();
    let res = client
        .post(format!("{staff_url}/Organization"))
        .header("authorization", &admin)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"Organization","name":"Open Clinic"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    // The public listener: Organizations without credentials, nothing else.
    let res = client
        .get(format!("{public_url}/Organization"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, bundle) = crate::support::json(res).await;
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 1);
    let res = client
        .get(format!("{public_url}/Patient"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Its chain has no Basic module: the administrator's password means nothing there.
    let res = client
        .get(format!("{public_url}/Organization"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The staff listener wants credentials for the same read.
    let res = client
        .get(format!("{staff_url}/Organization"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // One audit log, each row naming its listener.
    let res = client
        .get(format!("{staff_url}/AuditEvent?_count=100"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    let (_, events) = crate::support::json(res).await;
    let sites: std::collections::BTreeSet<String> = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["source"]["site"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sites,
        std::collections::BTreeSet::from(["public".to_owned(), "staff".to_owned()])
    );
}
