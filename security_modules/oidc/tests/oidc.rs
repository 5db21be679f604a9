//! `OidcValidator` against a real OpenID provider (oidc-provider on Node.js,
//! started by `support`): tokens it issues with the client_credentials
//! grant, and tokens its test endpoints sign that no provider would issue
//! (expired, other issuer, `alg: none`, HMAC keyed with the public key,
//! unknown keys, tampered payloads).
//!
//! Tests that count key-set fetches or change a key set use their own
//! namespace of the provider's `/test/ns/NAME` endpoints, so they can run in
//! parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hearth_auth_oidc::{OidcConfig, OidcValidator, TokenError, bearer_token};
use hearth_security::PrincipalKind;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use support::{
    AUD, AUD_ED, AUD_ES, AUD_PS, CLIENT, PLAIN_CLIENT, Provider, claims_for, closed_port, now,
    shared,
};

/// A validator of the provider's tokens, finding its keys through discovery.
fn discovery_validator(p: &Provider) -> OidcValidator {
    OidcValidator::new(OidcConfig::new(&p.issuer, [AUD])).unwrap()
}

/// A configuration reading the key set of namespace `ns`.
fn ns_config(p: &Provider, ns: &str) -> OidcConfig {
    OidcConfig::new(&p.issuer, [AUD]).with_jwks_uri(p.ns_jwks(ns))
}

/// `token` with its header replaced by `header` (the payload and signature
/// kept).
fn with_header(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

/// `token` with its payload changed by `edit` (the header and signature kept).
fn with_payload(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test]
async fn a_valid_token_from_the_provider_is_accepted_and_mapped() {
    let p = shared();
    let mut config = OidcConfig::new(&p.issuer, [AUD]);
    config.user_claim = "preferred_username".into();
    config.roles_claim = Some("realm_access.roles".into());
    let validator = OidcValidator::new(config).unwrap();
    assert_eq!(validator.issuer(), p.issuer);

    let token = p
        .token(CLIENT, AUD, "system/Patient.rs launch/patient")
        .await;
    assert_eq!(header_of(&token)["typ"], "at+jwt");
    let authorization = format!("Bearer {token}");
    let t = validator
        .validate(bearer_token(&authorization).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e}; provider log:\n{}", p.log()));
    assert_eq!(t.subject, "hearth-test");
    assert_eq!(t.user, "svc-reporting");
    assert_eq!(t.issuer, p.issuer);
    assert_eq!(t.client_id.as_deref(), Some("hearth-test"));
    assert_eq!(t.roles, ["clinician", "auditor"]);
    assert_eq!(t.scopes, ["system/Patient.rs", "launch/patient"]);
    assert_eq!(t.fhir_user.as_deref(), Some("Practitioner/77"));
    assert_eq!(t.patient.as_deref(), Some("123"));
    assert!(t.token_id.as_deref().is_some_and(|jti| !jti.is_empty()));
    let left = t
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(left > Duration::from_secs(200) && left <= Duration::from_secs(301));
    assert!(t.is_client());

    let (principal, refused) = t.principal();
    assert_eq!(principal.kind(), PrincipalKind::Client);
    assert_eq!(principal.describe(), "client hearth-test");
    assert_eq!(
        principal.roles(),
        ["clinician".to_owned(), "auditor".to_owned()]
    );
    assert_eq!(principal.scopes().map(<[_]>::len), Some(2));
    assert_eq!(principal.launch_patient(), Some("123"));
    assert!(refused.is_empty());
}

#[tokio::test]
async fn claim_mapping_follows_the_configuration() {
    let p = shared();
    // Roles as one space-separated string; the user from `sub`.
    let mut config = OidcConfig::new(&p.issuer, [AUD]);
    config.roles_claim = Some("groups".into());
    let validator = OidcValidator::new(config).unwrap();
    let t = validator
        .validate(&p.token(CLIENT, AUD, "").await)
        .await
        .unwrap();
    assert_eq!(t.user, "hearth-test");
    assert_eq!(t.roles, ["night-shift", "ward-7"]);
    assert!(t.scopes.is_empty());

    // A token with only what oidc-provider puts in: no roles, no SMART
    // claims, no scopes (none asked for).
    let plain = p.token(PLAIN_CLIENT, AUD, "").await;
    let t = validator.validate(&plain).await.unwrap();
    assert_eq!(t.user, "hearth-plain");
    assert_eq!(t.client_id.as_deref(), Some("hearth-plain"));
    assert!(t.roles.is_empty() && t.scopes.is_empty());
    assert_eq!((t.fhir_user, t.patient), (None, None));

    // A user claim the token lacks is a refusal, not a fallback to `sub`.
    let mut config = OidcConfig::new(&p.issuer, [AUD]);
    config.user_claim = "preferred_username".into();
    let validator = OidcValidator::new(config).unwrap();
    assert_eq!(
        validator.validate(&plain).await,
        Err(TokenError::MissingClaim("preferred_username".into()))
    );
}

#[tokio::test]
async fn every_signature_family_the_provider_issues_is_accepted() {
    let p = shared();
    let validator =
        OidcValidator::new(OidcConfig::new(&p.issuer, [AUD, AUD_PS, AUD_ES, AUD_ED])).unwrap();
    for (audience, alg) in [
        (AUD, "RS256"),
        (AUD_PS, "PS256"),
        (AUD_ES, "ES256"),
        (AUD_ED, "EdDSA"),
    ] {
        let token = p.token(CLIENT, audience, "system/Observation.rs").await;
        assert_eq!(header_of(&token)["alg"], alg);
        let t = validator
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(t.scopes, ["system/Observation.rs"], "{alg}");
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let p = shared();
    let validator = discovery_validator(p);
    let expired = p
        .sign(
            "rs-1",
            json!({}),
            &p.claims(json!({"iat": now() - 600, "exp": now() - 120})),
        )
        .await;
    assert_eq!(validator.validate(&expired).await, Err(TokenError::Expired));
    // Within the leeway (60 s by default) it still passes.
    let just = p
        .sign("rs-1", json!({}), &p.claims(json!({"exp": now() - 20})))
        .await;
    assert!(validator.validate(&just).await.is_ok());
}

#[tokio::test]
async fn nbf_and_iat_are_enforced() {
    let p = shared();
    let validator = discovery_validator(p);
    let later = now() + 600;
    let not_yet = p
        .sign("rs-1", json!({}), &p.claims(json!({"nbf": later})))
        .await;
    assert_eq!(
        validator.validate(&not_yet).await,
        Err(TokenError::NotYetValid)
    );
    let future = p
        .sign(
            "rs-1",
            json!({}),
            &p.claims(json!({"iat": later, "exp": later + 60})),
        )
        .await;
    assert_eq!(
        validator.validate(&future).await,
        Err(TokenError::IssuedInFuture)
    );

    let mut config = OidcConfig::new(&p.issuer, [AUD]);
    config.max_token_age = Some(Duration::from_secs(300));
    let bounded = OidcValidator::new(config).unwrap();
    let old = p
        .sign("rs-1", json!({}), &p.claims(json!({"iat": now() - 900})))
        .await;
    assert_eq!(bounded.validate(&old).await, Err(TokenError::TooOld));
    assert!(validator.validate(&old).await.is_ok());
    let no_iat = p
        .sign("rs-1", json!({}), &p.claims(json!({"iat": null})))
        .await;
    assert_eq!(
        bounded.validate(&no_iat).await,
        Err(TokenError::MissingClaim("iat".into()))
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let p = shared();
    let validator = discovery_validator(p);
    // A real token, for another resource server of the same provider.
    let elsewhere = p.token(CLIENT, AUD_ES, "system/Patient.rs").await;
    assert_eq!(
        validator.validate(&elsewhere).await,
        Err(TokenError::WrongAudience)
    );
    let listed = p
        .sign("rs-1", json!({}), &p.claims(json!({"aud": ["a", "b"]})))
        .await;
    assert_eq!(
        validator.validate(&listed).await,
        Err(TokenError::WrongAudience)
    );
    let among = p
        .sign("rs-1", json!({}), &p.claims(json!({"aud": ["a", AUD]})))
        .await;
    assert!(validator.validate(&among).await.is_ok());
    let none = p
        .sign("rs-1", json!({}), &p.claims(json!({"aud": null})))
        .await;
    assert_eq!(
        validator.validate(&none).await,
        Err(TokenError::MissingClaim("aud".into()))
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let p = shared();
    let validator = discovery_validator(p);
    // Signed with the provider's own key, but naming another issuer.
    let other = p
        .sign(
            "rs-1",
            json!({}),
            &claims_for("https://idp.example.org", json!({})),
        )
        .await;
    assert_eq!(
        validator.validate(&other).await,
        Err(TokenError::WrongIssuer)
    );

    // The issuer is compared byte for byte: a trailing slash is another one.
    let slash = OidcValidator::new(
        OidcConfig::new(format!("{}/", p.issuer), [AUD]).with_jwks_uri(p.jwks_uri()),
    )
    .unwrap();
    let real = p.token(CLIENT, AUD, "").await;
    assert_eq!(slash.validate(&real).await, Err(TokenError::WrongIssuer));
}

#[tokio::test]
async fn alg_none_is_refused_without_looking_at_keys() {
    let p = shared();
    let ns = "alg-none";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let validator = OidcValidator::new(ns_config(p, ns)).unwrap();
    let real = p.sign("rs-1", json!({}), &p.claims(json!({}))).await;
    assert!(discovery_validator(p).validate(&real).await.is_ok());

    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "rs-1"});
        let forged = with_header(&real, &header);
        let unsigned = format!("{}.", &forged[..forged.rfind('.').unwrap()]);
        for token in [&forged, &unsigned] {
            assert_eq!(
                validator.validate(token).await,
                Err(TokenError::UnsupportedAlgorithm("none")),
                "{alg}"
            );
        }
    }
    assert_eq!(p.jwks_hits(ns).await, 0, "refused before any key set fetch");
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    let p = shared();
    // The key set also holds a symmetric key whose secret is the public key
    // (PEM): a validator that used it would accept the forgery.
    let ns = "key-confusion";
    p.configure(ns, json!({"keys": ["rs-1"], "junk": true}))
        .await;
    let validator = OidcValidator::new(ns_config(p, ns)).unwrap();
    let claims = p.claims(json!({"scope": "system/*.cruds"}));
    for kid in ["rs-1", "oct-1"] {
        let forged = p
            .sign("hmac-with-public-key", json!({"kid": kid}), &claims)
            .await;
        assert_eq!(header_of(&forged)["alg"], "HS256");
        assert_eq!(
            validator.validate(&forged).await,
            Err(TokenError::UnsupportedAlgorithm("HS256")),
            "{kid}"
        );
    }
    assert_eq!(p.jwks_hits(ns).await, 0, "refused before any key set fetch");
    // And the key set's symmetric key is never loaded.
    assert_eq!(validator.refresh().await, Ok(1));

    // Nor can HS* be allowed by configuration.
    let mut config = ns_config(p, ns);
    config.algorithms = vec!["RS256".into(), "HS256".into()];
    assert_eq!(OidcValidator::new(config).unwrap_err().field, "algorithms");
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() {
    let p = shared();
    let ns = "rate-limit";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let mut config = ns_config(p, ns);
    config.jwks_refresh_min_interval = Duration::from_millis(1500);
    let validator = Arc::new(OidcValidator::new(config).unwrap());

    let claims = p.claims(json!({}));
    let good = p.sign("rs-1", json!({}), &claims).await;
    let stranger = p.sign("stranger", json!({}), &claims).await;
    let other = p.sign("rs-2", json!({}), &claims).await;

    assert_eq!(validator.refresh().await, Ok(1));
    assert_eq!(p.jwks_hits(ns).await, 1);
    // Right after a fetch, an unknown kid does not fetch again.
    assert_eq!(
        validator.validate(&stranger).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(p.jwks_hits(ns).await, 1);

    // Once the interval has passed, an unknown kid fetches once…
    sleep_ms(1600).await;
    assert_eq!(
        validator.validate(&stranger).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(p.jwks_hits(ns).await, 2);
    // …and a second unknown kid within the interval does not.
    assert_eq!(
        validator.validate(&other).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(
        validator.validate(&stranger).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(p.jwks_hits(ns).await, 2);
    assert!(validator.validate(&good).await.is_ok());

    // Concurrent validations with unknown kids share one fetch: the key set
    // answers slowly, and 16 validations start together.
    p.configure(ns, json!({"keys": ["rs-1"], "delay_ms": 300}))
        .await;
    sleep_ms(1600).await;
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let validator = validator.clone();
        let token = if i % 2 == 0 {
            stranger.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move { validator.validate(&token).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), Err(TokenError::UnknownKey));
    }
    assert_eq!(p.jwks_hits(ns).await, 3, "one fetch for 16 validations");
}

#[tokio::test]
async fn concurrent_validations_share_one_fetch() {
    let p = shared();
    let ns = "single-flight";
    // The key set answers slower than the refetch interval: only sharing the
    // fetch under way (not the rate limit) keeps the waiters from fetching.
    p.configure(ns, json!({"keys": ["rs-1"], "delay_ms": 300}))
        .await;
    let mut config = ns_config(p, ns);
    config.jwks_refresh_min_interval = Duration::from_millis(100);
    let validator = Arc::new(OidcValidator::new(config).unwrap());
    let claims = p.claims(json!({}));
    let good = p.sign("rs-1", json!({}), &claims).await;
    let unknown = p.sign("rs-2", json!({}), &claims).await;

    let run_all = |token: String| {
        let mut tasks = JoinSet::new();
        for _ in 0..16 {
            let (validator, token) = (validator.clone(), token.clone());
            tasks.spawn(async move { validator.validate(&token).await });
        }
        tasks
    };
    // First use: 16 validations, one fetch.
    let mut tasks = run_all(good);
    while let Some(outcome) = tasks.join_next().await {
        assert!(outcome.unwrap().is_ok());
    }
    assert_eq!(p.jwks_hits(ns).await, 1);

    // An unknown key, once the interval has passed: 16 validations, one fetch.
    sleep_ms(150).await;
    let mut tasks = run_all(unknown);
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.unwrap(), Err(TokenError::UnknownKey));
    }
    assert_eq!(p.jwks_hits(ns).await, 2);
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let p = shared();
    let validator = discovery_validator(p);
    let real = p.token(CLIENT, AUD, "system/Patient.rs").await;
    assert!(validator.validate(&real).await.is_ok());

    let escalated = with_payload(&real, |claims| {
        claims["scope"] = json!("system/*.cruds");
    });
    assert_eq!(
        validator.validate(&escalated).await,
        Err(TokenError::BadSignature)
    );
    let other_subject = with_payload(&real, |claims| claims["sub"] = json!("admin"));
    assert_eq!(
        validator.validate(&other_subject).await,
        Err(TokenError::BadSignature)
    );
    let extended = with_payload(&real, |claims| claims["exp"] = json!(now() + 86_400));
    assert_eq!(
        validator.validate(&extended).await,
        Err(TokenError::BadSignature)
    );

    // Signed by a key the issuer never published, claiming the issuer's kid.
    let impostor = p
        .sign("stranger", json!({"kid": "rs-1"}), &p.claims(json!({})))
        .await;
    assert_eq!(
        validator.validate(&impostor).await,
        Err(TokenError::BadSignature)
    );

    // A signature with one character changed, or borrowed from another token.
    let mut corrupted = real.clone().into_bytes();
    let at = corrupted.len() - 20;
    corrupted[at] = if corrupted[at] == b'A' { b'B' } else { b'A' };
    let corrupted = String::from_utf8(corrupted).unwrap();
    assert_eq!(
        validator.validate(&corrupted).await,
        Err(TokenError::BadSignature)
    );
    let another = p.token(CLIENT, AUD, "").await;
    let borrowed = format!(
        "{}{}",
        &real[..real.rfind('.').unwrap()],
        &another[another.rfind('.').unwrap()..]
    );
    assert_eq!(
        validator.validate(&borrowed).await,
        Err(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn the_key_type_must_fit_the_algorithm() {
    let p = shared();
    let validator = OidcValidator::new(OidcConfig::new(&p.issuer, [AUD, AUD_ES])).unwrap();
    let es = p.token(CLIENT, AUD_ES, "").await;
    assert!(validator.validate(&es).await.is_ok());
    // An EC key for an RSA algorithm: no key fits.
    let relabelled = with_header(&es, &json!({"alg": "RS256", "kid": "es-1"}));
    assert_eq!(
        validator.validate(&relabelled).await,
        Err(TokenError::UnknownKey)
    );

    // An algorithm outside the allow-list is refused whatever the key.
    let mut config = OidcConfig::new(&p.issuer, [AUD, AUD_ES]);
    config.algorithms = vec!["RS256".into()];
    let rs_only = OidcValidator::new(config).unwrap();
    assert_eq!(
        rs_only.validate(&es).await,
        Err(TokenError::UnsupportedAlgorithm("ES256"))
    );
}

#[tokio::test]
async fn keys_the_validator_must_ignore() {
    let p = shared();
    let ns = "ignored-keys";
    p.configure(ns, json!({"keys": ["rs-1"], "junk": true}))
        .await;
    let validator = OidcValidator::new(ns_config(p, ns)).unwrap();
    // Broken and foreign entries do not spoil the set: one key is usable.
    assert_eq!(validator.refresh().await, Ok(1));
    let claims = p.claims(json!({}));
    assert!(
        validator
            .validate(&p.sign("rs-1", json!({}), &claims).await)
            .await
            .is_ok()
    );
    // rs-1's material under kid `enc-1`, published with `use: enc`.
    let enc = p.sign("rs-1", json!({"kid": "enc-1"}), &claims).await;
    assert_eq!(validator.validate(&enc).await, Err(TokenError::UnknownKey));
    // An RSA signature naming the symmetric key.
    let oct = p.sign("rs-1", json!({"kid": "oct-1"}), &claims).await;
    assert_eq!(validator.validate(&oct).await, Err(TokenError::UnknownKey));
    // PS256 with rs-1, whose published `alg` is RS256.
    let ps = p.sign("rs-1", json!({"alg": "PS256"}), &claims).await;
    assert_eq!(validator.validate(&ps).await, Err(TokenError::UnknownKey));
    // A token without kid is checked against every key of the right type.
    let no_kid = p.sign("rs-1", json!({"kid": null}), &claims).await;
    assert!(validator.validate(&no_kid).await.is_ok());
    let no_kid_stranger = p.sign("stranger", json!({"kid": null}), &claims).await;
    assert_eq!(
        validator.validate(&no_kid_stranger).await,
        Err(TokenError::BadSignature)
    );
    assert_eq!(p.jwks_hits(ns).await, 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let p = shared();
    let token = p.sign("rs-1", json!({}), &p.claims(json!({}))).await;
    let port = closed_port();
    let by_discovery =
        OidcValidator::new(OidcConfig::new(format!("http://127.0.0.1:{port}"), [AUD])).unwrap();
    let by_jwks_uri = OidcValidator::new(
        OidcConfig::new(&p.issuer, [AUD]).with_jwks_uri(format!("http://127.0.0.1:{port}/jwks")),
    )
    .unwrap();
    for validator in [&by_discovery, &by_jwks_uri] {
        match validator.validate(&token).await {
            Err(e @ TokenError::Unavailable(_)) => {
                assert!(e.is_unavailable());
                assert!(e.to_string().contains(&port.to_string()), "{e}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // Asked again within the interval: still refused, never let through.
        assert!(matches!(
            validator.validate(&token).await,
            Err(TokenError::Unavailable(_))
        ));
        assert!(matches!(
            validator.refresh().await,
            Err(TokenError::Unavailable(_))
        ));
    }
}

#[tokio::test]
async fn a_key_set_that_cannot_be_read_is_unavailable() {
    let p = shared();
    let token = p.sign("rs-1", json!({}), &p.claims(json!({}))).await;
    let cases = [
        ("ks-500", json!({"status": 500, "body": "oops"}), "500"),
        ("ks-redirect", json!({"status": 302, "body": ""}), "302"),
        ("ks-text", json!({"body": "not json"}), "not JSON"),
        (
            "ks-shape",
            json!({"body": "{\"nokeys\": []}"}),
            "not a JWK set",
        ),
        (
            "ks-slow",
            json!({"keys": ["rs-1"], "delay_ms": 2500}),
            "timed out",
        ),
    ];
    for (ns, config, reason) in cases {
        p.configure(ns, config).await;
        let mut config = ns_config(p, ns);
        config.timeout = Duration::from_millis(800);
        let validator = OidcValidator::new(config).unwrap();
        match validator.validate(&token).await {
            Err(TokenError::Unavailable(why)) => assert!(why.contains(reason), "{ns}: {why}"),
            other => panic!("{ns}: expected Unavailable, got {other:?}"),
        }
        // A failed fetch is not retried within the interval.
        assert!(matches!(
            validator.validate(&token).await,
            Err(TokenError::Unavailable(_))
        ));
        assert_eq!(p.jwks_hits(ns).await, 1, "{ns}");
    }
}

#[tokio::test]
async fn discovery_finds_the_key_set_and_checks_the_issuer() {
    let p = shared();
    let ns = "discovery";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let issuer = p.ns(ns);
    let validator = OidcValidator::new(OidcConfig::new(&issuer, [AUD])).unwrap();
    let token = p
        .sign("rs-1", json!({}), &claims_for(&issuer, json!({})))
        .await;
    assert!(validator.validate(&token).await.is_ok());
    assert!(validator.validate(&token).await.is_ok());
    assert_eq!(p.discovery_hits(ns).await, 1);
    assert_eq!(p.jwks_hits(ns).await, 1);

    // A discovery document naming another issuer is not trusted.
    let ns = "discovery-other-issuer";
    p.configure(
        ns,
        json!({"keys": ["rs-1"], "discovery_issuer": "https://idp.example.org"}),
    )
    .await;
    let issuer = p.ns(ns);
    let validator = OidcValidator::new(OidcConfig::new(&issuer, [AUD])).unwrap();
    let token = p
        .sign("rs-1", json!({}), &claims_for(&issuer, json!({})))
        .await;
    match validator.validate(&token).await {
        Err(TokenError::Unavailable(why)) => assert!(why.contains("another issuer"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(p.jwks_hits(ns).await, 0);

    // No discovery document at all.
    let missing =
        OidcValidator::new(OidcConfig::new(format!("{}/nowhere", p.issuer), [AUD])).unwrap();
    assert!(matches!(
        missing.refresh().await,
        Err(TokenError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_rotated_key_validates_after_the_refresh() {
    let p = shared();
    let ns = "rotation";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let mut config = ns_config(p, ns);
    config.jwks_refresh_min_interval = Duration::from_millis(1000);
    let validator = OidcValidator::new(config).unwrap();
    let claims = p.claims(json!({}));
    let old = p.sign("rs-1", json!({}), &claims).await;
    let new = p.sign("rs-2", json!({}), &claims).await;

    assert!(validator.validate(&old).await.is_ok());
    assert_eq!(validator.validate(&new).await, Err(TokenError::UnknownKey));
    assert_eq!(p.jwks_hits(ns).await, 1);

    // The issuer publishes the new key; within the interval the validator
    // does not look yet, after it the new key is found.
    p.configure(ns, json!({"keys": ["rs-1", "rs-2"]})).await;
    assert_eq!(validator.validate(&new).await, Err(TokenError::UnknownKey));
    assert_eq!(p.jwks_hits(ns).await, 1);
    sleep_ms(1100).await;
    let t = validator.validate(&new).await.unwrap();
    assert_eq!(t.subject, "alice");
    assert_eq!(p.jwks_hits(ns).await, 2);
    assert!(validator.validate(&old).await.is_ok());
    assert_eq!(p.jwks_hits(ns).await, 2);
}

#[tokio::test]
async fn a_removed_key_stops_validating_after_the_maximum_age() {
    let p = shared();
    let ns = "removal";
    p.configure(ns, json!({"keys": ["rs-1", "rs-2"]})).await;
    let mut config = ns_config(p, ns);
    config.jwks_refresh_min_interval = Duration::from_millis(100);
    config.jwks_max_age = Duration::from_millis(1000);
    let validator = OidcValidator::new(config).unwrap();
    let retired = p.sign("rs-2", json!({}), &p.claims(json!({}))).await;
    assert!(validator.validate(&retired).await.is_ok());

    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    assert!(
        validator.validate(&retired).await.is_ok(),
        "cached set still fresh"
    );
    sleep_ms(1100).await;
    assert_eq!(
        validator.validate(&retired).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(p.jwks_hits(ns).await, 2);
}

#[tokio::test]
async fn a_stale_key_set_keeps_serving_while_the_issuer_is_down() {
    let p = shared();
    let ns = "outage";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let mut config = ns_config(p, ns);
    config.jwks_refresh_min_interval = Duration::from_millis(100);
    config.jwks_max_age = Duration::from_millis(200);
    let validator = OidcValidator::new(config).unwrap();
    let claims = p.claims(json!({}));
    let good = p.sign("rs-1", json!({}), &claims).await;
    let unknown = p.sign("rs-2", json!({}), &claims).await;
    assert!(validator.validate(&good).await.is_ok());

    p.configure(ns, json!({"status": 503, "body": "down"}))
        .await;
    sleep_ms(250).await;
    // The stale set is fetched again, that fails, and the old keys serve.
    assert!(validator.validate(&good).await.is_ok());
    assert_eq!(p.jwks_hits(ns).await, 2);
    // A key the cached set lacks cannot be looked up: unavailable, not unknown.
    sleep_ms(150).await;
    assert!(matches!(
        validator.validate(&unknown).await,
        Err(TokenError::Unavailable(_))
    ));
}

#[tokio::test]
async fn https_key_sets_are_verified_against_the_configured_ca() {
    let p = shared();
    let ns = "tls";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let jwks_uri = format!("{}/test/ns/{ns}/jwks", p.tls_base);
    let token = p.sign("rs-1", json!({}), &p.claims(json!({}))).await;

    let mut config = OidcConfig::new(&p.issuer, [AUD]).with_jwks_uri(&jwks_uri);
    config.ca_file = Some(p.ca_file.clone());
    let trusted = OidcValidator::new(config.clone()).unwrap();
    assert!(trusted.validate(&token).await.is_ok());

    config.ca_file = Some(p.untrusted_ca_file.clone());
    let untrusted = OidcValidator::new(config.clone()).unwrap();
    match untrusted.validate(&token).await {
        Err(TokenError::Unavailable(why)) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // The system trust store does not hold the test CA either (or is empty,
    // which a configuration with an https:// URL refuses).
    config.ca_file = None;
    match OidcValidator::new(config.clone()) {
        Ok(system) => assert!(matches!(
            system.validate(&token).await,
            Err(TokenError::Unavailable(_))
        )),
        Err(e) => assert_eq!(e.field, "ca_file"),
    }

    config.ca_file = Some(p.ca_file.with_file_name("no-such-ca.pem"));
    assert_eq!(
        OidcValidator::new(config.clone()).unwrap_err().field,
        "ca_file"
    );
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate").unwrap();
    config.ca_file = Some(not_pem.path().to_owned());
    assert_eq!(OidcValidator::new(config).unwrap_err().field, "ca_file");
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_fetching() {
    let p = shared();
    let ns = "malformed";
    p.configure(ns, json!({"keys": ["rs-1"]})).await;
    let validator = OidcValidator::new(ns_config(p, ns)).unwrap();
    let real = p.sign("rs-1", json!({}), &p.claims(json!({}))).await;
    let parts: Vec<&str> = real.split('.').collect();
    let jwe = format!("{}.a.b.c.d", parts[0]);
    let padded = format!("{real}==");
    let too_long = format!("{real}{}", "A".repeat(hearth_auth_oidc::MAX_TOKEN_BYTES));
    for token in ["", "abc", &parts[..2].join("."), &jwe, &padded, &too_long] {
        assert!(
            matches!(
                validator.validate(token).await,
                Err(TokenError::Malformed(_))
            ),
            "{token:.30}"
        );
    }
    assert_eq!(p.jwks_hits(ns).await, 0);
}

#[test]
fn errors_are_short_and_never_quote_the_token() {
    let cases = [
        TokenError::Malformed("not three parts"),
        TokenError::UnsupportedAlgorithm("HS256"),
        TokenError::UnknownKey,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::TooOld,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::MissingClaim("sub".into()),
        TokenError::InvalidClaim("exp".into()),
        TokenError::Unavailable("http://127.0.0.1:1/jwks: connection refused".into()),
    ];
    for e in cases {
        let text = e.to_string();
        assert!(!text.is_empty() && text.len() < 100, "{text}");
        assert_eq!(e.is_unavailable(), matches!(e, TokenError::Unavailable(_)));
    }
}

#[test]
fn the_validator_can_be_shared_across_tasks() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let validator = OidcValidator::new(OidcConfig::new("http://127.0.0.1:9", [AUD])).unwrap();
    send_sync(&validator);
    let future = validator.validate("x");
    send(&future);
}
