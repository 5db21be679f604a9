//! Test harness: a real server on a random loopback port, over a fresh SQLite
//! file or a fresh PostgreSQL database, talked to through HTTP.

pub mod logscan;
pub mod postgres;
pub mod tls;

use std::path::PathBuf;
use std::sync::Once;

use hearth::config::{Config, Secret};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub backend: Backend,
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    /// The PostgreSQL database URL, for the PostgreSQL backend.
    pub database_url: Option<String>,
    /// The other listeners of the configuration (`[[listeners]]`): name and address.
    pub others: Vec<(String, std::net::SocketAddr)>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        hearth::app::install_crypto_provider();
        logscan::install();
    });
}

/// The bootstrap administrator's password in every test server.
pub const ADMIN_PASSWORD: &str = "Test-admin-pw-1";

/// `Authorization` for the bootstrap administrator.
pub fn admin_authorization() -> String {
    basic_authorization("admin", ADMIN_PASSWORD)
}

/// An HTTP Basic `Authorization` header value.
pub fn basic_authorization(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Default headers that sign every request in as the administrator.
pub fn admin_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        admin_authorization().parse().expect("header"),
    );
    headers
}

/// An HTTP client without credentials (after installing the TLS provider).
pub fn bare_client() -> reqwest::Client {
    init();
    reqwest::Client::new()
}

/// An HTTP client signed in as the administrator (after installing the
/// process's TLS provider).
pub fn http_client() -> reqwest::Client {
    init();
    reqwest::Client::builder()
        .default_headers(admin_headers())
        .build()
        .expect("client")
}

/// A fresh random master key file in `dir`.
pub fn write_master_key(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("test-master.key");
    let mut raw = [0u8; 32];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = (i as u8)
            .wrapping_mul(37)
            .wrapping_add(std::process::id() as u8);
    }
    std::fs::write(&path, raw).expect("write key");
    path
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        init();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        config.http.workers = 1;
        config.database.max_connections = 24;
        config.security.bootstrap_admin_password = Some(Secret::new(ADMIN_PASSWORD));
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let url = postgres::fresh_database().await;
                config.database.url = Some(Secret::new(url.clone()));
                config.crypto.master_key_file = Some(write_master_key(dir.path()));
                Some(url)
            }
        };
        adjust(&mut config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        type Ready = Result<Vec<(String, std::net::SocketAddr)>, String>;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Ready>();
        let server_config = config.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let state = match hearth::app::build_state(&server_config).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let state_for_others = state.clone();
                let (server, _) =
                    match hearth::app::http_server(&server_config, state, Some(listener)) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                // The other listeners of the configuration, on the ports it names.
                let mut handles = vec![server.handle()];
                let mut others = Vec::new();
                for l in &server_config.listeners {
                    let started = hearth::app::listener_state(&state_for_others, l)
                        .and_then(|s| hearth::app::listener_server(l, s, None));
                    match started {
                        Ok((other, addr)) => {
                            handles.push(other.handle());
                            others.push((l.name.clone(), addr));
                            actix_web::rt::spawn(other);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
                actix_web::rt::spawn(async move {
                    let _ = stop_rx.await;
                    for handle in handles {
                        handle.stop(true).await;
                    }
                });
                let _ = ready_tx.send(Ok(others));
                let _ = server.await;
            });
        });
        let ready = tokio::task::spawn_blocking(move || ready_rx.recv())
            .await
            .expect("join")
            .expect("server thread ended early");
        let others = match ready {
            Ok(others) => others,
            Err(e) => panic!("server did not start: {e}"),
        };
        let scheme = if config.http.tls.is_some() {
            "https"
        } else {
            "http"
        };
        TestApp {
            backend,
            base: format!(
                "{scheme}://localhost:{}{}",
                addr.port(),
                config.http.base_path
            ),
            client: reqwest::Client::builder()
                .default_headers(admin_headers())
                .build()
                .expect("client"),
            config,
            database_url,
            others,
            _dir: dir,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Runs SQL on the app's database directly (to set up what only a damaged
    /// or older database holds); returns nothing, panics on error.
    pub async fn execute_sql(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                use diesel::connection::SimpleConnection;
                use diesel::{Connection, SqliteConnection};
                let path = self.data_dir().join("hearth.db");
                let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                c.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
                c.batch_execute(sql).unwrap();
            }
            Backend::Postgres => {
                postgres::execute(self.database_url.as_deref().unwrap(), sql).await
            }
        }
    }

    /// `SELECT COUNT(*) FROM {from}` on the app's database directly.
    pub async fn count_rows(&self, from: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) AS n FROM {from}");
        match self.backend {
            Backend::Sqlite => {
                use diesel::{Connection, RunQueryDsl, SqliteConnection};
                #[derive(diesel::QueryableByName)]
                struct Count {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let path = self.data_dir().join("hearth.db");
                let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query(sql)
                    .get_result::<Count>(&mut c)
                    .unwrap()
                    .n
            }
            Backend::Postgres => postgres::count(self.database_url.as_deref().unwrap(), &sql).await,
        }
    }

    /// A port nobody listens on (for a listener of the configuration).
    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    /// The address of another listener of the configuration.
    pub fn other(&self, name: &str) -> std::net::SocketAddr {
        self.others
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .expect("no such listener")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("PUT")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE")
    }

    /// POSTs a JSON value and returns the created resource (asserting 201).
    pub async fn create(&self, resource: &Value) -> Value {
        let t = resource["resourceType"].as_str().expect("resourceType");
        let res = self.post(t, resource.to_string()).await;
        let status = res.status();
        let body = res.text().await.expect("body");
        assert_eq!(status, 201, "create {t}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let findings = logscan::findings();
        if !findings.is_empty() && !std::thread::panicking() {
            panic!(
                "the logs gave away what they must not:\n{}",
                findings.join("\n")
            );
        }
    }
}

/// The version numbers (`meta.versionId`) of the resources of a Bundle's
/// entries, in entry order.
pub fn entry_versions(bundle: &Value) -> Vec<i64> {
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            e["resource"]["meta"]["versionId"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("versionId")
        })
        .collect()
}

/// The JSON body of a response, with its status.
pub async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// The repository's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(
                    $crate::support::TestApp::start($crate::support::Backend::Sqlite).await,
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(
                    $crate::support::TestApp::start($crate::support::Backend::Postgres).await,
                )
                .await
            }
        }
    };
}

/// A search scenario on both backends, once with the planner's choice of
/// driving condition and once walking in result order with every condition
/// probed: both plans must give the same answers.
#[macro_export]
macro_rules! every_plan {
    ($name:ident) => {
        mod $name {
            use $crate::support::{Backend, TestApp};
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(TestApp::start(Backend::Sqlite).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(TestApp::start(Backend::Postgres).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite_walking() {
                let app =
                    TestApp::start_with(Backend::Sqlite, |c| c.fhir.search_drive_below = 0).await;
                super::$name(app).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_walking() {
                let app =
                    TestApp::start_with(Backend::Postgres, |c| c.fhir.search_drive_below = 0).await;
                super::$name(app).await
            }
        }
    };
}
