//! Fetching the discovery document and the key set: reqwest over rustls,
//! with aws-lc-rs named as the crypto provider (the only one in Hearth's
//! graph). Certificates are always verified; there is no switch to turn
//! verification off. Redirects are not followed, bodies are bounded, and
//! every request is bounded by the configured timeout.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use reqwest::redirect::Policy;
use rustls::ClientConfig;
use serde_json::Value;
use url::Url;

use crate::config::{ConfigError, KeySource, Settings, check_url};
use crate::jwks::KeySet;

/// The largest discovery document or key set read (bytes).
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Fetches the issuer's key set, through discovery when configured.
pub(crate) struct Fetcher {
    client: reqwest::Client,
    issuer: String,
    source: KeySource,
}

impl Fetcher {
    pub fn new(settings: &Settings, ca_file: Option<&Path>) -> Result<Fetcher, ConfigError> {
        let tls = client_config(ca_file, settings.needs_tls)?;
        let mut builder = reqwest::Client::builder();
        if settings.loopback {
            // A local issuer (tests, a sidecar) is never behind a proxy.
            builder = builder.no_proxy();
        }
        let client = builder
            .tls_backend_preconfigured(tls)
            .redirect(Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("hearth-auth-oidc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::new("ca_file", format!("HTTP client set-up failed: {e}")))?;
        Ok(Fetcher {
            client,
            issuer: settings.issuer.clone(),
            source: settings.source.clone(),
        })
    }

    /// Fetches the key set. With discovery, `jwks_uri` caches the key set's
    /// URL between calls; it is forgotten when the key set cannot be fetched,
    /// so the next attempt reads the discovery document again.
    pub async fn key_set(&self, jwks_uri: &mut Option<Url>) -> Result<KeySet, String> {
        let uri = match (&self.source, &jwks_uri) {
            (KeySource::Jwks(uri), _) => uri.clone(),
            (KeySource::Discovery(_), Some(uri)) => uri.clone(),
            (KeySource::Discovery(discovery), None) => {
                let uri = self.discover(discovery).await?;
                *jwks_uri = Some(uri.clone());
                uri
            }
        };
        let result = match self.get(&uri).await {
            Ok(body) => KeySet::parse(&body).map_err(|why| format!("{uri}: {why}")),
            Err(why) => Err(why),
        };
        if result.is_err() {
            *jwks_uri = None;
        }
        result
    }

    /// Reads the discovery document: it must name the configured issuer
    /// exactly (OpenID Connect Discovery 1.0, section 4.3) and a `jwks_uri`
    /// that is `https://` (or `http://` on loopback).
    async fn discover(&self, url: &Url) -> Result<Url, String> {
        let body = self.get(url).await?;
        let document: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("{url}: the discovery document is not JSON"))?;
        if document.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(format!(
                "{url}: the discovery document names another issuer"
            ));
        }
        let Some(jwks_uri) = document.get("jwks_uri").and_then(Value::as_str) else {
            return Err(format!("{url}: the discovery document has no jwks_uri"));
        };
        check_url("jwks_uri", jwks_uri)
            .map_err(|e| format!("{url}: the discovery document's jwks_uri: {}", e.message))
    }

    /// GETs `url`: a 200 answer's body, at most [`MAX_BODY_BYTES`].
    async fn get(&self, url: &Url) -> Result<Vec<u8>, String> {
        let fail = |why: String| format!("{url}: {why}");
        let mut response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fail(describe(e)))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(fail(format!("answered {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(fail("the answer is too large".to_owned()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(describe(e)))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(fail("the answer is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An error and its causes, without the URL reqwest adds (the caller names it).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A client configuration trusting the CAs in `ca_file` (PEM), or the system
/// trust store when there is none. TLS 1.2 and 1.3 only.
fn client_config(ca_file: Option<&Path>, needs_tls: bool) -> Result<ClientConfig, ConfigError> {
    let err = |message: String| ConfigError::new("ca_file", message);
    let roots = match ca_file {
        Some(path) => hearth_tls::roots_from_pem(path).map_err(err)?,
        None => hearth_tls::system_roots(),
    };
    if roots.is_empty() && needs_tls {
        return Err(err(
            "the system trust store holds no CA certificate; name the issuer's CA in ca_file"
                .into(),
        ));
    }
    hearth_tls::client_config(roots).map_err(err)
}
