//! The composition root: from a validated [`Config`] to a running server.

use std::path::Path;
use std::sync::Arc;

use actix_web::{App, HttpServer, middleware, web};
use hearth_store::Store;
use hearth_store_postgres::PgStore;
use hearth_store_sqlite::SqliteStore;

use crate::config::Config;
use crate::crypto::{KeyRing, MasterKey};
use crate::http::{self, AppState};
use crate::service::Service;
use crate::store::{AnyStore, DEFAULT_TENANT};

/// Why start-up stopped. Messages name the setting to fix and never hold secrets.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(String),
    #[error("security modules: {0}")]
    Security(String),
    #[error("encryption: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Listener(#[from] hearth_listener_http::ListenerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

fn store_error(e: hearth_store::StoreError) -> StartError {
    use std::error::Error;
    let mut msg = e.to_string();
    if let Some(source) = e.source() {
        msg.push_str(": ");
        msg.push_str(&source.to_string());
    }
    StartError::Database(msg)
}

/// Installs the process-wide rustls provider (aws-lc-rs) once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn ensure_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StartError::DataDir {
            path: dir.display().to_string(),
            source,
        })
}

/// Opens the configured store (without migrating).
pub fn open_store(config: &Config) -> Result<AnyStore, StartError> {
    match &config.database.url {
        Some(url) => PgStore::connect(url.expose(), config.database.max_connections)
            .map(AnyStore::Postgres)
            .map_err(|e| StartError::Database(e.to_string())),
        None => {
            ensure_data_dir(&config.data_dir)?;
            SqliteStore::open(config.data_dir.join("hearth.db"))
                .map(AnyStore::Sqlite)
                .map_err(store_error)
        }
    }
}

/// Applies pending migrations; returns their names.
pub async fn migrate(store: &AnyStore) -> Result<Vec<String>, StartError> {
    store.migrate().await.map_err(store_error)
}

/// The master key from `crypto.master_key_file`, or (embedded store only) a
/// development key generated in the data directory.
pub fn master_key(config: &Config) -> Result<MasterKey, StartError> {
    if let Some(path) = &config.crypto.master_key_file {
        return Ok(MasterKey::load(path)?);
    }
    // Config validation already refused PostgreSQL without a key file.
    let path = config.data_dir.join("master.key");
    if path.exists() {
        tracing::warn!(
            path = %path.display(),
            "using the development master key from the data directory; set HEARTH_MASTER_KEY_FILE to keep keys apart from data"
        );
        return Ok(MasterKey::load(&path)?);
    }
    ensure_data_dir(&config.data_dir)?;
    let key = MasterKey::generate_file(&path)?;
    tracing::warn!(
        path = %path.display(),
        "generated a development master key in the data directory; set HEARTH_MASTER_KEY_FILE for production"
    );
    Ok(key)
}

/// Everything a listener needs, ready to serve.
pub async fn build_state(config: &Config) -> Result<AppState, StartError> {
    let store = open_store(config)?;
    let applied = migrate(&store).await?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    let keys = Arc::new(KeyRing::new(master_key(config)?));
    keys.load_tenant(&store, DEFAULT_TENANT).await?;
    tracing::info!(
        backend = store.backend_name(),
        master_key = keys.master_key_id(),
        "store ready"
    );
    let service = Service::new(store, keys, config.http.public_url.clone())
        .with_search_drive_below(config.fhir.search_drive_below);
    // Added search parameters first, so pending jobs index them too; index
    // changes of a migration are finished before the first search.
    let added = service
        .load_search_parameters(DEFAULT_TENANT)
        .await
        .map_err(|e| StartError::Database(format!("search parameters: {e}")))?;
    if added > 0 {
        tracing::info!(
            count = added,
            "search parameters added from SearchParameter resources"
        );
    }
    service
        .run_reindex_jobs(DEFAULT_TENANT)
        .await
        .map_err(|e| StartError::Database(format!("reindex: {e}")))?;
    service
        .refresh_custom_readiness()
        .await
        .map_err(|e| StartError::Database(format!("reindex: {e}")))?;
    crate::auth::bootstrap_admin(config, service.store())
        .await
        .map_err(|e| StartError::Database(format!("bootstrap administrator: {e}")))?;
    let modules =
        crate::auth::Modules::new(config, service.store()).map_err(StartError::Security)?;
    let auth = modules
        .authenticator(&config.http.security, &config.http.anonymous)
        .map_err(StartError::Security)?;
    modules.watch_users();
    let modules = Arc::new(modules);
    // Audit retention: now, then daily.
    {
        let store = service.store().clone();
        let retention =
            std::time::Duration::from_secs(u64::from(config.audit.retention_days) * 86_400);
        tokio::spawn(async move {
            loop {
                match crate::audit::prune(&store, DEFAULT_TENANT, retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "audit rows past retention deleted"),
                    Err(e) => tracing::error!(error = %e, "audit retention failed"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
            }
        });
    }
    let started = crate::time::format_instant(crate::time::now_micros());
    Ok(AppState {
        auth: Arc::new(auth),
        modules,
        audit: crate::audit::AuditLog::new(service.store().clone(), service.keys()),
        listener: config.http.name.clone(),
        kind: config.http.kind,
        trusted_proxies: config.http.trusted_proxies.clone(),
        throttle: Arc::new(crate::auth::Throttle::new(
            std::time::Duration::from_secs(
                config.security.failure_window_minutes.saturating_mul(60),
            ),
            config.security.max_failures_per_source,
            config.security.max_failed_logins,
        )),
        service,
        base_path: config.http.base_path.clone(),
        public_url: config.http.public_url.clone(),
        capability: Arc::new(http::Capability::new(
            started,
            config.fhir.conditional_delete_multiple,
        )),
        max_body_bytes: config.http.max_body_bytes,
        max_bundle_entries: config.fhir.max_bundle_entries,
        default_page_size: config.fhir.default_page_size,
        default_search_count: config.fhir.default_search_count,
        max_page_size: config.fhir.max_page_size,
        search_drive_below: config.fhir.search_drive_below,
        max_sorted_in_memory: config.fhir.max_sorted_in_memory,
        conditional_delete_multiple: config.fhir.conditional_delete_multiple,
        max_conditional_deletes: config.fhir.max_conditional_deletes,
        export_part_bytes: config.fhir.export_part_bytes,
    })
}

/// Binds the main FHIR listener (`[http]`) and returns the server (not yet
/// awaited) and its address.
pub fn http_server(
    config: &Config,
    state: AppState,
    listener: Option<std::net::TcpListener>,
) -> Result<(actix_web::dev::Server, std::net::SocketAddr), StartError> {
    listener_server(&config.http, state, listener)
}

/// The state of another listener: the same service and audit log, its own
/// base path, name and chain of security modules.
pub fn listener_state(
    base: &AppState,
    l: &crate::config::HttpConfig,
) -> Result<AppState, StartError> {
    let auth = base
        .modules
        .authenticator(&l.security, &l.anonymous)
        .map_err(StartError::Security)?;
    let mut state = base.clone();
    state.auth = Arc::new(auth);
    state.base_path = l.base_path.clone();
    state.public_url = l.public_url.clone();
    state.listener = l.name.clone();
    state.kind = l.kind;
    state.trusted_proxies = l.trusted_proxies.clone();
    state.max_body_bytes = l.max_body_bytes;
    Ok(state)
}

/// Binds one listener (FHIR or Admin API).
pub fn listener_server(
    l: &crate::config::HttpConfig,
    state: AppState,
    listener: Option<std::net::TcpListener>,
) -> Result<(actix_web::dev::Server, std::net::SocketAddr), StartError> {
    let tls = l.tls.is_some();
    let state = web::Data::new(state);
    let base_path = l.base_path.clone();
    let kind = l.kind;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(|cfg| match kind {
                crate::config::ListenerKind::Fhir => http::routes(cfg, &base_path),
                crate::config::ListenerKind::Admin => http::admin::routes(cfg, &base_path),
            })
            .default_service(web::to(http::not_found))
            .wrap(middleware::from_fn(http::guard))
            .wrap(middleware::from_fn(http::xml_responses))
            .wrap(middleware::from_fn(http::audit_requests))
            .wrap(middleware::from_fn(http::request_context))
            .wrap(http::security_headers(tls))
    });
    // The client certificate (when the TLS handshake verified one) travels
    // with the connection to the guard.
    let server = server.on_connect(|conn, ext| {
        if let Some(tls) =
            conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
            && let Some(first) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
        {
            ext.insert(http::PeerCertificate(first.as_ref().to_vec()));
        }
    });
    let server = match l.workers {
        0 => server,
        n => server.workers(n),
    };
    let handle_signals = listener.is_none();
    let bind_err = |source| StartError::Bind {
        addr: l.addr.to_string(),
        source,
    };
    let listener = match listener {
        Some(t) => t,
        None => {
            hearth_listener_http::check_bind(l.addr, tls, l.allow_insecure_http)?;
            if !tls && !l.addr.ip().is_loopback() {
                tracing::warn!(
                    listener = %l.name,
                    addr = %l.addr,
                    "plain HTTP on a non-loopback address (allow_insecure_http): credentials and data cross the network unencrypted"
                );
            }
            std::net::TcpListener::bind(l.addr).map_err(bind_err)?
        }
    };
    let addr = listener.local_addr().map_err(bind_err)?;
    let server = match &l.tls {
        Some(t) => {
            let tls = hearth_listener_http::server_config(
                &t.cert,
                &t.key,
                t.client_ca.as_deref(),
                t.require_client_cert,
            )?;
            server
                .listen_rustls_0_23(listener, (*tls).clone())
                .map_err(bind_err)?
        }
        None => server.listen(listener).map_err(bind_err)?,
    };
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    tracing::info!(listener = %l.name, addr = %addr, tls, base_path = %l.base_path, "listening");
    Ok((server.run(), addr))
}
