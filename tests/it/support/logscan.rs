//! The log scan: every log line the integration suite produces (everything
//! Hearth's own crates log, down to `trace`, plus warnings from the rest) is
//! checked as it is written for the names of the fixture patients, the test
//! passwords and credentials (`Basic …`, `Bearer …`, JWTs). Findings are
//! kept; each `TestApp` checks them when it stops, so the test whose server
//! logged one fails.

use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

struct Scanner {
    needles: Vec<String>,
    findings: Mutex<Vec<String>>,
}

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| Scanner {
        needles: needles(),
        findings: Mutex::new(Vec::new()),
    })
}

/// Names of the patients (and other people) in the fixtures, at least four
/// characters long, and the secrets the tests use.
fn needles() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("family", serde_json::Value::String(s)) => out.push(s.clone()),
                        ("given", serde_json::Value::Array(a)) => {
                            out.extend(a.iter().filter_map(|g| g.as_str().map(str::to_owned)))
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "json" || x == "ndjson") {
                out.push(p);
            }
        }
    }
    let mut paths = Vec::new();
    files(&super::fixtures(), &mut paths);
    let mut out = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let docs: Vec<serde_json::Value> = if p.extension().is_some_and(|x| x == "ndjson") {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        } else {
            serde_json::from_str(&text).into_iter().collect()
        };
        for d in &docs {
            walk(d, &mut out);
        }
    }
    out.retain(|n| n.chars().count() >= 4);
    out.push(super::ADMIN_PASSWORD.to_owned());
    out.sort();
    out.dedup();
    out
}

/// What a log line gives away, if anything.
pub fn scan(line: &str, needles: &[String]) -> Vec<String> {
    let mut found: Vec<String> = needles
        .iter()
        .filter(|n| line.contains(n.as_str()))
        .map(|n| format!("the fixture value {n:?}"))
        .collect();
    let lower = line.to_ascii_lowercase();
    for scheme in ["basic ", "bearer "] {
        if let Some(i) = lower.find(scheme) {
            // A credential: base64 or a JWT (`=` only as padding at the end).
            let token: String = line[i + scheme.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "+/-_.".contains(*c))
                .collect();
            if token.len() >= 12 {
                found.push(format!("a {}credential", scheme));
            }
        }
    }
    if line.contains("eyJ") {
        found.push("a JWT".into());
    }
    found
}

struct ScanWriter;

impl Write for ScanWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let s = scanner();
        let text = String::from_utf8_lossy(buf);
        for line in text.lines() {
            let found = scan(line, &s.needles);
            if !found.is_empty() {
                s.findings
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(format!("{}: {line}", found.join(", ")));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the suite's subscriber: standard error at `HEARTH_TEST_LOG`
/// (default `warn`), and the scanner at trace level for Hearth's crates.
pub fn install() {
    let shown = EnvFilter::new(std::env::var("HEARTH_TEST_LOG").unwrap_or_else(|_| "warn".into()));
    let scanned = EnvFilter::new(
        "warn,hearth=trace,hearth_store=trace,hearth_store_sqlite=trace,\
         hearth_store_postgres=trace,hearth_listener_http=trace,hearth_security=trace,\
         hearth_auth_local=trace,hearth_auth_ldap=trace,hearth_auth_oidc=trace",
    );
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(shown),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| ScanWriter)
                .with_filter(scanned),
        )
        .try_init();
}

/// What the scanner has found so far.
pub fn findings() -> Vec<String> {
    scanner()
        .findings
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

#[test]
fn the_scanner_finds_names_and_credentials() {
    let needles = needles();
    assert!(needles.iter().any(|n| n == "Chalmers"), "{needles:?}");
    assert!(needles.iter().any(|n| n == "Łukasiewicz"));
    assert!(!scan("GET /fhir/Patient?family=Chalmers status=200", &needles).is_empty());
    assert!(!scan("authorization: Basic YWRtaW46cGFzc3dvcmQ=", &needles).is_empty());
    assert!(!scan("token Bearer abcdefghijkl", &needles).is_empty());
    assert!(!scan("authorization=\"basic dXNlcjpwYXNzd29yZA==\"", &needles).is_empty());
    assert!(!scan("a eyJhbGciOiJSUzI1NiJ9 token", &needles).is_empty());
    assert!(scan("request route=/fhir/Patient/{id} status=200", &needles).is_empty());
    assert!(scan("module=basic reason=authentication failed", &needles).is_empty());
}
