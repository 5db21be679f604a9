//! OIDC bearer tokens at the FHIR listener, against a real OpenID provider
//! (npm `oidc-provider`, started by the harness of `security_modules/oidc`):
//! a valid token is allowed within its scopes and its holder's permissions;
//! expired, wrong audience, wrong issuer, `alg: none`, HS256 keyed with the
//! public key, unknown key and tampered tokens are refused with 401 and a
//! Bearer challenge, and every one of them leaves an audit row.

use base64::Engine;
use hearth::config::{ModuleConfig, OidcModuleConfig};
use hearth_store::Store;
use serde_json::json;

use crate::support::{Backend, TestApp};

#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../../security_modules/oidc/tests/support/mod.rs"]
mod provider;

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn oidc_tokens(backend: Backend) {
    let idp = provider::shared();
    let issuer = idp.issuer.clone();
    let app = TestApp::start_with(backend, move |c| {
        c.security
            .modules
            .push(ModuleConfig::Oidc(Box::new(OidcModuleConfig {
                name: "idp".into(),
                issuer,
                jwks_uri: None,
                audience: vec![provider::AUD.into()],
                algorithms: Vec::new(),
                leeway_seconds: Some(5),
                user_claim: Some("preferred_username".into()),
                roles_claim: Some("realm_access.roles".into()),
                ca_file: None,
                timeout_seconds: Some(3),
            })));
        c.http.security = vec!["basic".into(), "idp".into()];
        c.security
            .roles
            .insert("clinician".into(), vec!["read:*".into()]);
    })
    .await;
    for p in ["p1", "p2"] {
        app.put(
            &format!("Patient/{p}"),
            json!({"resourceType": "Patient", "id": p, "name": [{"family": "Token"}]}).to_string(),
        )
        .await;
    }
    let client = crate::support::bare_client();
    let call = |method: reqwest::Method, path: &str, token: &str| {
        client
            .request(method, app.url(path))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient"}).to_string())
    };

    // A real token (client credentials, system/Patient.rs, role clinician).
    let token = idp
        .token(provider::CLIENT, provider::AUD, "system/Patient.rs")
        .await;
    let res = call(reqwest::Method::GET, "Patient", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Its scopes do not include writing, whatever the role allows.
    let res = call(reqwest::Method::POST, "Patient", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Nor another type.
    let res = call(reqwest::Method::GET, "Observation", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let now = provider::now();
    let forged = [
        (
            "expired",
            idp.sign(
                "rs-1",
                json!({}),
                &idp.claims(json!({"exp": now - 600, "iat": now - 900})),
            )
            .await,
        ),
        (
            "wrong audience",
            idp.sign(
                "rs-1",
                json!({}),
                &idp.claims(json!({"aud": "https://elsewhere.test"})),
            )
            .await,
        ),
        (
            "wrong issuer",
            idp.sign(
                "rs-1",
                json!({}),
                &idp.claims(json!({"iss": "https://impostor.test"})),
            )
            .await,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&idp.claims(json!({})))
            ),
        ),
        (
            "HS256 keyed with the public key",
            idp.sign("hmac-with-public-key", json!({}), &idp.claims(json!({})))
                .await,
        ),
        (
            "unknown key",
            idp.sign("stranger", json!({}), &idp.claims(json!({})))
                .await,
        ),
        ("tampered", {
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let mut claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&parts[1])
                    .unwrap(),
            )
            .unwrap();
            claims["scope"] = json!("system/*.*");
            parts[1] = b64(&claims);
            parts.join(".")
        }),
    ];
    for (what, token) in &forged {
        let res = call(reqwest::Method::GET, "Patient", token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{what}");
        let challenges: Vec<&str> = res
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(challenges.iter().any(|c| c.starts_with("Bearer")), "{what}");
    }

    // A SMART 2.x patient token with a filter: laboratory Observations of the
    // launch patient only.
    let mut ids = std::collections::BTreeMap::new();
    for (p, category) in [
        ("p1", "laboratory"),
        ("p1", "vital-signs"),
        ("p2", "laboratory"),
    ] {
        let obs = app
            .create(&json!({"resourceType": "Observation", "status": "final",
                "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": category}]}]}))
            .await;
        ids.insert(
            format!("{p}-{category}"),
            obs["id"].as_str().unwrap().to_owned(),
        );
    }
    let smart = idp
        .sign(
            "rs-1",
            json!({}),
            &idp.claims(json!({
                "scope": "launch/patient patient/Observation.rs?category=laboratory",
                "patient": "p1",
                "preferred_username": "alice",
                "realm_access": {"roles": ["clinician"]},
            })),
        )
        .await;
    let res = call(reqwest::Method::GET, "Observation", &smart)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, bundle) = crate::support::json(res).await;
    let seen: Vec<&str> = bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(seen, [ids["p1-laboratory"].as_str()]);
    let res = call(
        reqwest::Method::GET,
        &format!("Observation/{}", ids["p1-vital-signs"]),
        &smart,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 404, "outside the filter: hidden");
    let res = call(reqwest::Method::GET, "Observation?_summary=count", &smart)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "a count would reveal what the filter hides"
    );
    let res = call(reqwest::Method::GET, "Patient/p1", &smart)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        403,
        "the token's scopes name Observation only"
    );

    // Every refusal is in the audit log, with its reason and never the token.
    let store = hearth::app::open_store(&app.config).unwrap();
    let rows = store.audit_events("default", 0, 1000).await.unwrap();
    let refused: Vec<_> = rows.iter().filter(|r| r.status == 401).collect();
    assert_eq!(refused.len(), forged.len());
    for r in &refused {
        assert!(
            r.detail.starts_with("authentication refused"),
            "{}",
            r.detail
        );
        assert!(forged.iter().all(|(_, t)| !r.detail.contains(t.as_str())));
    }
    let allowed = rows
        .iter()
        .find(|r| r.status == 200 && r.client_id.is_some())
        .unwrap();
    assert_eq!(allowed.client_id.as_deref(), Some("hearth-test"));
}

mod oidc_tokens {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::oidc_tokens(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::oidc_tokens(Backend::Postgres).await
    }
}
