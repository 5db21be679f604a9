//! A real OpenID provider (the npm package `oidc-provider`) for the tests.
//!
//! [`shared`] starts `tests/provider/provider.mjs` once per test binary: one
//! Node process on a random free port of 127.0.0.1, issuing JWT access tokens
//! with the client_credentials grant, plus `/test/*` endpoints that sign
//! tokens a provider never issues and serve key sets a test controls (see the
//! script's header). It also serves those endpoints over HTTPS, with a
//! certificate from a test CA generated here.
//!
//! When `tests/provider/node_modules` is missing, `npm ci` installs the
//! locked packages first (from the npm registry or npm's cache). Node.js
//! 20.19 or later and npm must be on the PATH.
//!
//! Node runs with its standard input a pipe held by this process and exits
//! when that pipe closes: when the test binary ends, the provider goes too,
//! removing its temporary directory (a static is never dropped, so this is
//! what cleans up).

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// The audience (resource indicator) of RS256 tokens.
pub const AUD: &str = "https://fhir.example.test";
/// Audiences whose tokens the provider signs with PS256, ES256 and EdDSA.
pub const AUD_PS: &str = "https://fhir-ps.example.test";
pub const AUD_ES: &str = "https://fhir-es.example.test";
pub const AUD_ED: &str = "https://fhir-ed.example.test";

/// A client whose tokens carry extra claims: `preferred_username`
/// `svc-reporting`, `realm_access.roles` `[clinician, auditor]`, `groups`
/// `"night-shift  ward-7"`, `fhirUser` `Practitioner/77`, `patient` `123`.
pub const CLIENT: (&str, &str) = ("hearth-test", "hearth-test-secret");
/// A client whose tokens carry only what oidc-provider puts in.
pub const PLAIN_CLIENT: (&str, &str) = ("hearth-plain", "hearth-plain-secret");

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The running provider.
pub struct Provider {
    /// `http://127.0.0.1:PORT`: the provider's issuer identifier.
    pub issuer: String,
    /// `https://127.0.0.1:PORT`, serving `/test/*` only.
    pub tls_base: String,
    /// The CA that signed the HTTPS certificate (PEM file).
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the provider presents.
    pub untrusted_ca_file: PathBuf,
    log: PathBuf,
    /// Closing it stops the provider (see the module docs).
    _stdin: Mutex<ChildStdin>,
    _stdout: Mutex<BufReader<ChildStdout>>,
    _child: Mutex<Child>,
}

/// The provider shared by every test of this binary, started on first use.
pub fn shared() -> &'static Provider {
    static PROVIDER: OnceLock<Provider> = OnceLock::new();
    PROVIDER.get_or_init(Provider::start)
}

/// The Node provider's directory, from this crate's tests or from the
/// application's integration tests (which include this file).
fn provider_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = root.join("tests/provider");
    if here.join("provider.mjs").is_file() {
        here
    } else {
        root.join("security_modules/oidc/tests/provider")
    }
}

impl Provider {
    fn start() -> Provider {
        let dir = provider_dir();
        check_node();
        install_packages(&dir);

        let tmp = tempfile::Builder::new()
            .prefix("hearth-oidc-provider-")
            .tempdir()
            .unwrap()
            .keep();
        let (ca_file, untrusted_ca_file, cert, key) = write_pki(&tmp);
        let log = tmp.join("provider.log");
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("HEARTH_TEST_TLS_CERT", &cert)
            .env("HEARTH_TEST_TLS_KEY", &key)
            .env("HEARTH_TEST_CLEANUP_DIR", &tmp)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start node");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());

        // The first line tells where it listens; read it on a thread so a
        // provider that never answers fails the tests instead of hanging them.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let read = stdout.read_line(&mut line);
            let _ = tx.send(read.map(|_| line));
            stdout
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                panic!(
                    "the OIDC test provider did not start ({other:?}); its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let stdout = reader.join().unwrap();
        let started: Value = serde_json::from_str(&line).unwrap();
        let issuer = started["issuer"].as_str().unwrap().to_owned();
        let tls_port = started["tls_port"].as_u64().unwrap();
        Provider {
            issuer,
            tls_base: format!("https://127.0.0.1:{tls_port}"),
            ca_file,
            untrusted_ca_file,
            log,
            _stdin: Mutex::new(stdin),
            _stdout: Mutex::new(stdout),
            _child: Mutex::new(child),
        }
    }

    /// The provider's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `{issuer}/jwks`, the provider's own key set.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// `{issuer}/test/ns/NAME`: the base of a test's namespace (and the
    /// issuer its discovery document names by default).
    pub fn ns(&self, name: &str) -> String {
        format!("{}/test/ns/{name}", self.issuer)
    }

    /// The key set URL of a namespace.
    pub fn ns_jwks(&self, name: &str) -> String {
        format!("{}/jwks", self.ns(name))
    }

    /// A real access token from the token endpoint (client_credentials).
    pub async fn token(&self, client: (&str, &str), resource: &str, scope: &str) -> String {
        let mut body = format!("grant_type=client_credentials&resource={}", form(resource));
        if !scope.is_empty() {
            body.push_str(&format!("&scope={}", form(scope)));
        }
        let response = http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client.0, Some(client.1))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: Value = response.json_value().await;
        assert!(status.is_success(), "token endpoint: {status} {answer}");
        assert_eq!(answer["token_type"], "Bearer");
        answer["access_token"].as_str().unwrap().to_owned()
    }

    /// A token signed by the Node side with one of its keys (`rs-1`, `ps-1`,
    /// `es-1`, `ed-1`: published by the provider; `rs-2`: published only in
    /// namespaces that list it; `stranger`: never published) or
    /// `hmac-with-public-key`. `header` fields are merged into the protected
    /// header (`"kid": null` removes it).
    pub async fn sign(&self, key: &str, header: Value, claims: &Value) -> String {
        let response = http()
            .post(format!("{}/test/sign", self.issuer))
            .body(json!({ "key": key, "header": header, "claims": claims }).to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "sign: {status} {text}");
        text
    }

    /// Configures a namespace (see provider.mjs).
    pub async fn configure(&self, name: &str, config: Value) {
        let response = http()
            .post(self.ns(name))
            .body(config.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// How often a namespace's key set was fetched.
    pub async fn jwks_hits(&self, name: &str) -> u64 {
        self.hits(name).await["jwks"].as_u64().unwrap()
    }

    /// How often a namespace's discovery document was fetched.
    pub async fn discovery_hits(&self, name: &str) -> u64 {
        self.hits(name).await["discovery"].as_u64().unwrap()
    }

    async fn hits(&self, name: &str) -> Value {
        http()
            .get(format!("{}/hits", self.ns(name)))
            .send()
            .await
            .unwrap()
            .json_value()
            .await
    }

    /// Claims of a valid token of this issuer for [`AUD`] (`sub` alice, client
    /// `app`, valid five minutes), with `extra` merged in (`null` removes).
    pub fn claims(&self, extra: Value) -> Value {
        claims_for(&self.issuer, extra)
    }
}

/// Claims as [`Provider::claims`], for another issuer.
pub fn claims_for(issuer: &str, extra: Value) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": issuer,
        "aud": AUD,
        "sub": "alice",
        "client_id": "app",
        "scope": "patient/Observation.rs launch/patient",
        "iat": now,
        "exp": now + 300,
        "jti": "t-1",
    });
    let map = claims.as_object_mut().unwrap();
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP client for the test endpoints, one per call: a client's
/// connections belong to the runtime that opened them, and each test has
/// its own. Its TLS configuration names aws-lc-rs, as the crate does: no
/// process-wide provider is installed, so the tests also prove the crate
/// never needs one.
fn http() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .unwrap()
}

trait JsonBody {
    async fn json_value(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_value(self) -> Value {
        let text = self.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// Percent-encodes a form value.
fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fails with what to install when Node.js is missing.
fn check_node() {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let Some(version) = version else {
        panic!(
            "the OIDC tests need Node.js 20.19+ and npm on the PATH (they run the npm \
             package oidc-provider); install them, e.g. `apt-get install nodejs npm`"
        );
    };
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the OIDC tests need Node.js 20.19 or later, found {version}"
    );
}

/// Runs `npm ci` in the provider's directory unless its packages are there.
fn install_packages(dir: &Path) {
    if dir
        .join("node_modules/oidc-provider/package.json")
        .is_file()
        && dir.join("node_modules/jose/package.json").is_file()
    {
        return;
    }
    eprintln!("installing the OIDC test provider's npm packages (npm ci)");
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .output()
        .expect("cannot run npm (the OIDC tests need Node.js and npm on the PATH)");
    assert!(
        out.status.success(),
        "`npm ci` in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the test CA (`ca.pem`), a server certificate for 127.0.0.1 and
/// localhost signed by it, and an unrelated CA (`untrusted-ca.pem`). Returns
/// the two CA files, the certificate and its key.
fn write_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, issuer) = ca("Hearth OIDC test CA");
    let (untrusted_pem, _) = ca("Hearth OIDC untrusted CA");
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();

    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    (
        write("ca.pem", &ca_pem),
        write("untrusted-ca.pem", &untrusted_pem),
        write("server.crt", &cert.pem()),
        write("server.key", &key.serialize_pem()),
    )
}
