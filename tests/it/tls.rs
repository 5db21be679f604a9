//! TLS: the HTTPS listener (TLS 1.2 and 1.3 accepted, 1.0 and 1.1 refused, HSTS),
//! and PostgreSQL over rustls with
//! `sslmode=require` and `verify-full` against a cluster that refuses plain TCP.

use std::sync::OnceLock;

use hearth::config::{Config, Secret, TlsConfig};
use serde_json::json;

use crate::support::postgres::{Cluster, start_cluster};
use crate::support::tls::{TestPki, generate};
use crate::support::{Backend, TestApp, json, write_master_key};

fn client(ca_pem: &str, version: reqwest::tls::Version) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .tls_version_min(version)
        .tls_version_max(version)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_serves_tls_1_2_and_1_3() {
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "Hearth HTTPS test CA");
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.tls = Some(TlsConfig {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
            client_ca: None,
            require_client_cert: false,
        })
    })
    .await;
    assert!(app.base.starts_with("https://"));
    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        let res = client(&pki.ca_pem, version)
            .get(app.url("metadata"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{version:?}");
    }
    // A real TLS client (OpenSSL's s_client, its security level lowered so
    // that it would speak the old versions): TLS 1.0 and 1.1 are refused by
    // the server, 1.2 and 1.3 are accepted, and HSTS is sent.
    let port = app
        .base
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let handshake = |version: &str| {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                version,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-CAfile",
                pki.ca.to_str().unwrap(),
                "-servername",
                "localhost",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client (Debian package openssl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let connected = text.contains("Cipher is ") && !text.contains("Cipher is (NONE)");
        (connected, text)
    };
    for version in ["-tls1", "-tls1_1"] {
        let (connected, text) = handshake(version);
        assert!(!connected, "{version} was accepted: {text}");
        // Refused by the server (it sent an alert), not left untried.
        assert!(text.contains("SSL alert number"), "{version}: {text}");
    }
    for version in ["-tls1_2", "-tls1_3"] {
        let (connected, text) = handshake(version);
        assert!(connected, "{version} was refused: {text}");
    }
    let res = client(&pki.ca_pem, reqwest::tls::Version::TLS_1_3)
        .get(app.url("metadata"))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );

    // Plain HTTP on the TLS port gets no FHIR answer.
    let plain = crate::support::http_client()
        .get(app.url("metadata").replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
}

/// Client certificates: a listener that accepts them (optionally) turns a
/// verified certificate into a principal (its subject CN, the `certificate`
/// module's roles); a certificate from another CA ends the handshake; without
/// one, the other modules of the chain still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_authenticate() {
    use hearth::config::ModuleConfig;
    let dir = tempfile::tempdir().unwrap();
    let pki = generate(dir.path(), "Hearth mTLS test CA");
    let other = generate(&dir.path().join("other").tap_mkdir(), "Another CA");
    let app = TestApp::start_with(Backend::Sqlite, |c| {
        c.http.tls = Some(TlsConfig {
            cert: pki.cert.clone(),
            key: pki.key.clone(),
            client_ca: Some(pki.ca.clone()),
            require_client_cert: false,
        });
        c.security.modules.push(ModuleConfig::Certificate {
            name: "cert".into(),
            roles: vec!["reader".into()],
        });
        c.http.security = vec!["basic".into(), "cert".into()];
    })
    .await;
    let with_identity = |identity: &str| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let alice = with_identity(&pki.client_identity_pem);
    let res = alice.get(app.url("Patient")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = alice
        .post(app.url("Patient"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a reader");
    // No certificate, no credentials: asked to sign in; Basic still works.
    let plain = client(&pki.ca_pem, reqwest::tls::Version::TLS_1_3);
    assert_eq!(
        plain.get(app.url("Patient")).send().await.unwrap().status(),
        401
    );
    let res = plain
        .get(app.url("Patient"))
        .header("authorization", crate::support::admin_authorization())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A certificate from a CA the listener does not trust: no connection.
    let stranger = with_identity(&other.client_identity_pem);
    assert!(stranger.get(app.url("Patient")).send().await.is_err());
    // The audit log names the certificate's subject.
    let store = hearth::app::open_store(&app.config).unwrap();
    let rows = hearth_store::Store::audit_events(&store, "default", 0, 100)
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|r| r.user_name.as_deref() == Some("alice-cert") && r.status == 200)
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// A cluster that only accepts TLS connections, with its certificates.
fn tls_cluster() -> &'static (Cluster, TestPki) {
    static CLUSTER: OnceLock<(Cluster, TestPki)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let pki = generate(&dir, "Hearth PostgreSQL test CA");
        let cluster = start_cluster(|data| {
            std::fs::copy(&pki.cert, data.join("server.crt")).unwrap();
            std::fs::copy(&pki.key, data.join("server.key")).unwrap();
            let conf = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            std::fs::write(&conf, text).unwrap();
            let hba = data.join("pg_hba.conf");
            let text = std::fs::read_to_string(&hba).unwrap();
            std::fs::write(&hba, format!("hostnossl all all 0.0.0.0/0 reject\n{text}")).unwrap();
        });
        (cluster, pki)
    })
}

async fn connects(url: String) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.database.url = Some(Secret::new(url));
    config.crypto.master_key_file = Some(write_master_key(dir.path()));
    let store = hearth::app::open_store(&config).map_err(|e| e.to_string())?;
    hearth::app::migrate(&store)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let (cluster, pki) = tls_cluster();
    let base = cluster.server_url.clone();
    // Plain TCP is refused by the server.
    assert!(
        connects(format!("{base}/postgres?sslmode=disable"))
            .await
            .is_err()
    );
    // require: encrypted, certificate not checked.
    connects(format!("{base}/postgres?sslmode=require"))
        .await
        .unwrap();
    // verify-full: the chain and the host are checked.
    connects(format!(
        "{base}/postgres?sslmode=verify-full&sslrootcert={}",
        pki.ca.display()
    ))
    .await
    .unwrap();
    let other = tempfile::tempdir().unwrap();
    let wrong = generate(other.path(), "Some other CA");
    let err = connects(format!(
        "{base}/postgres?sslmode=verify-full&sslrootcert={}",
        wrong.ca.display()
    ))
    .await
    .unwrap_err();
    assert!(
        !err.contains("postgres://"),
        "the URL must not be echoed: {err}"
    );

    // The whole REST core over a verify-full connection.
    let url = format!(
        "{base}/postgres?sslmode=verify-full&sslrootcert={}",
        pki.ca.display()
    );
    let app = TestApp::start_with(Backend::Postgres, |c| {
        c.database.url = Some(Secret::new(url))
    })
    .await;
    let created = app
        .create(&json!({"resourceType": "Patient", "active": true}))
        .await;
    let (status, read) = json(
        app.get(&format!("Patient/{}", created["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!((status, read), (200, created));
}
