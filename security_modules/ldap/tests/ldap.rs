//! `LdapSource` against a real OpenLDAP server (see `support`): binds in both
//! modes, the refusals of `CredentialSource::verify` (never fail open), group
//! membership and roles, escaping of hostile user names, unreachable and
//! silent directories, and TLS (ldaps:// and StartTLS) over rustls.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use hearth_auth_ldap::escape::DnKey;
use hearth_auth_ldap::{BindMode, LdapConfig, LdapSource};
use hearth_security::{CredentialError, CredentialSource, VerifiedUser};
use support::*;

fn template_mode() -> BindMode {
    BindMode::DnTemplate(TEMPLATE.to_owned())
}

fn search_mode(filter: &str) -> BindMode {
    BindMode::Search {
        base_dn: PEOPLE_DN.to_owned(),
        filter: filter.to_owned(),
        service_dn: SERVICE_DN.to_owned(),
        service_password: SERVICE_PASSWORD.to_owned(),
    }
}

/// fhir-users is required; fhir-users → clinician, fhir-admins → admin.
fn with_groups(mut config: LdapConfig) -> LdapConfig {
    config.required_group = Some(USERS_GROUP.to_owned());
    config.group_roles = vec![
        (USERS_GROUP.to_owned(), "clinician".to_owned()),
        // Written differently from the directory's form on purpose.
        (
            "CN=FHIR-Admins, ou=groups,dc=example,dc=org".to_owned(),
            "admin".to_owned(),
        ),
        // Two groups giving one role: listed once.
        (ADMINS_GROUP.to_owned(), "clinician".to_owned()),
    ];
    config.group_base_dn = Some(GROUPS_DN.to_owned());
    config
}

fn source(config: LdapConfig) -> LdapSource {
    LdapSource::new(config).unwrap()
}

fn plain(bind: BindMode) -> LdapConfig {
    LdapConfig::new(&shared().ldap_url, bind)
}

fn user_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE_DN}")
}

fn roles(user: &VerifiedUser) -> Vec<&str> {
    user.roles.iter().map(String::as_str).collect()
}

fn assert_unavailable(outcome: Result<VerifiedUser, CredentialError>, secrets: &[&str]) -> String {
    match outcome {
        Err(CredentialError::Unavailable(why)) => {
            for secret in secrets {
                assert!(!why.contains(secret), "the reason holds a password: {why}");
            }
            why
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ---- DN-template mode ----

#[tokio::test]
async fn template_bind_accepts_alice() {
    let ldap = source(plain(template_mode()));
    let user = ldap.verify("alice", ALICE_PASSWORD).await.unwrap();
    assert_eq!(
        user,
        VerifiedUser {
            name: "alice".to_owned(),
            roles: Vec::new(),
            source: "ldap",
            external_id: Some(user_dn("alice")),
        }
    );
}

#[tokio::test]
async fn template_wrong_password_is_bad_credentials() {
    let ldap = source(with_groups(plain(template_mode())));
    assert_eq!(
        ldap.verify("alice", BOB_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
    assert_eq!(
        ldap.verify("alice", &format!("{ALICE_PASSWORD}x")).await,
        Err(CredentialError::BadCredentials)
    );
}

#[tokio::test]
async fn template_unknown_user_is_bad_credentials() {
    let ldap = source(with_groups(plain(template_mode())));
    assert_eq!(
        ldap.verify("mallory", ALICE_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
}

#[tokio::test]
async fn empty_password_is_refused_before_any_bind() {
    // Against the live directory, where an unauthenticated bind would succeed…
    for bind in [template_mode(), search_mode("(uid={user})")] {
        let ldap = source(with_groups(plain(bind)));
        for user in ["alice", "mallory", ""] {
            assert_eq!(
                ldap.verify(user, "").await,
                Err(CredentialError::EmptyPassword)
            );
        }
    }
    // …and against no directory at all: not Unavailable, so nothing was tried.
    let gone = source(LdapConfig::new(
        format!("ldap://127.0.0.1:{}", closed_port()),
        template_mode(),
    ));
    assert_eq!(
        gone.verify("alice", "").await,
        Err(CredentialError::EmptyPassword)
    );
}

#[tokio::test]
async fn user_outside_the_required_group_is_refused() {
    for bind in [template_mode(), search_mode("(uid={user})")] {
        let ldap = source(with_groups(plain(bind)));
        assert_eq!(
            ldap.verify("carol", CAROL_PASSWORD).await,
            Err(CredentialError::MissingGroup)
        );
        // The password is checked first: a wrong one says nothing about groups.
        assert_eq!(
            ldap.verify("carol", ALICE_PASSWORD).await,
            Err(CredentialError::BadCredentials)
        );
    }
}

#[tokio::test]
async fn groups_map_to_sorted_distinct_roles() {
    let ldap = source(with_groups(plain(template_mode())));
    let alice = ldap.verify("alice", ALICE_PASSWORD).await.unwrap();
    assert_eq!(roles(&alice), ["admin", "clinician"]);
    let bob = ldap.verify("bob", BOB_PASSWORD).await.unwrap();
    assert_eq!(roles(&bob), ["clinician"]);
    assert_eq!(bob.external_id.as_deref(), Some(user_dn("bob").as_str()));
}

#[tokio::test]
async fn roles_without_a_required_group() {
    let mut config = with_groups(plain(template_mode()));
    config.required_group = None;
    let ldap = source(config);
    let carol = ldap.verify("carol", CAROL_PASSWORD).await.unwrap();
    assert!(carol.roles.is_empty());
    let alice = ldap.verify("alice", ALICE_PASSWORD).await.unwrap();
    assert_eq!(roles(&alice), ["admin", "clinician"]);
}

#[tokio::test]
async fn the_membership_attribute_is_configurable() {
    // fhir-auditors is a groupOfUniqueNames: only `uniqueMember` finds it.
    let mut config = plain(template_mode());
    config.group_roles = vec![
        (AUDITORS_GROUP.to_owned(), "auditor".to_owned()),
        (USERS_GROUP.to_owned(), "clinician".to_owned()),
    ];
    config.group_base_dn = Some(GROUPS_DN.to_owned());
    let by_member = source(config.clone());
    let bob = by_member.verify("bob", BOB_PASSWORD).await.unwrap();
    assert_eq!(roles(&bob), ["clinician"]);

    config.membership_attribute = "uniqueMember".to_owned();
    let by_unique_member = source(config.clone());
    let bob = by_unique_member.verify("bob", BOB_PASSWORD).await.unwrap();
    assert_eq!(roles(&bob), ["auditor"]);
    let alice = by_unique_member
        .verify("alice", ALICE_PASSWORD)
        .await
        .unwrap();
    assert!(alice.roles.is_empty());

    // Reading the wrong attribute finds no group: a refusal, not an acceptance.
    config.required_group = Some(USERS_GROUP.to_owned());
    assert_eq!(
        source(config).verify("alice", ALICE_PASSWORD).await,
        Err(CredentialError::MissingGroup)
    );
}

// ---- search-then-bind mode ----

#[tokio::test]
async fn search_bind_accepts_alice_with_roles() {
    let ldap = source(with_groups(plain(search_mode("(uid={user})"))));
    let user = ldap.verify("alice", ALICE_PASSWORD).await.unwrap();
    assert_eq!(user.name, "alice");
    assert_eq!(user.source, "ldap");
    assert_eq!(roles(&user), ["admin", "clinician"]);
    assert_eq!(user.external_id.as_deref(), Some(user_dn("alice").as_str()));
}

#[tokio::test]
async fn search_wrong_password_and_unknown_user_look_the_same() {
    let ldap = source(with_groups(plain(search_mode("(uid={user})"))));
    assert_eq!(
        ldap.verify("alice", BOB_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
    assert_eq!(
        ldap.verify("mallory", ALICE_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
}

#[tokio::test]
async fn search_matching_several_entries_is_refused() {
    // bob and carol share a description: ambiguous, refused even with bob's password.
    let ldap = source(plain(search_mode("(description={user})")));
    assert_eq!(
        ldap.verify(SHARED_DESCRIPTION, BOB_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
    // More than two (the server stops at the size limit the source asks for).
    let ldap = source(plain(search_mode(
        "(|(uid={user})(objectClass=inetOrgPerson))",
    )));
    assert_eq!(
        ldap.verify("alice", ALICE_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
}

#[tokio::test]
async fn a_refused_service_account_is_unavailable() {
    let mut bind = search_mode("(uid={user})");
    if let BindMode::Search {
        service_password, ..
    } = &mut bind
    {
        *service_password = "wrong-service-password".to_owned();
    }
    let ldap = source(plain(bind));
    let why = assert_unavailable(
        ldap.verify("alice", ALICE_PASSWORD).await,
        &["wrong-service-password", ALICE_PASSWORD],
    );
    assert!(why.contains("service account"), "{why}");
}

// ---- hostile and odd user names ----

#[tokio::test]
async fn filter_injection_is_bad_credentials() {
    // Unescaped, `al*` would find alice alone, and her password would let
    // `al*` in; `*` and the rest would widen or rewrite the filter.
    let hostile = [
        "al*",
        "*",
        "a*e",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice)(|(objectClass=*)",
        "\\2a",
    ];
    for bind in [template_mode(), search_mode("(uid={user})")] {
        let ldap = source(plain(bind));
        for user in hostile {
            assert_eq!(
                ldap.verify(user, ALICE_PASSWORD).await,
                Err(CredentialError::BadCredentials),
                "{user:?}"
            );
        }
    }
}

#[tokio::test]
async fn dn_injection_is_bad_credentials() {
    // Unescaped, these would make the template DN name another entry.
    let ldap = source(plain(template_mode()));
    for user in [
        "alice,ou=people,dc=example,dc=org",
        "x,uid=alice",
        "alice+cn=alice",
        "cn=hearth-service,dc=example,dc=org#",
    ] {
        assert_eq!(
            ldap.verify(user, ALICE_PASSWORD).await,
            Err(CredentialError::BadCredentials),
            "{user:?}"
        );
    }
}

#[tokio::test]
async fn a_name_with_every_special_character_binds_in_both_modes() {
    // The DN template, the search filter and the user's DN inside the group
    // filter all hold the escaped name; membership proves the last one.
    for bind in [template_mode(), search_mode("(uid={user})")] {
        let ldap = source(with_groups(plain(bind)));
        let user = ldap.verify(ODD_USER, ODD_PASSWORD).await.unwrap();
        assert_eq!(user.name, ODD_USER);
        assert_eq!(roles(&user), ["clinician"]);
        let dn = user.external_id.unwrap();
        let key = DnKey::parse(&dn).unwrap();
        let expected = DnKey::parse(&format!(
            "uid={},{PEOPLE_DN}",
            hearth_auth_ldap::escape::dn_value(ODD_USER)
        ));
        assert_eq!(Some(key), expected, "{dn}");
        assert_eq!(
            ldap.verify(ODD_USER, ALICE_PASSWORD).await,
            Err(CredentialError::BadCredentials)
        );
    }
}

#[tokio::test]
async fn concurrent_verifications_keep_their_own_connections() {
    let ldap = std::sync::Arc::new(source(with_groups(plain(search_mode("(uid={user})")))));
    let cases = [
        ("alice", ALICE_PASSWORD, Ok(vec!["admin", "clinician"])),
        ("bob", BOB_PASSWORD, Ok(vec!["clinician"])),
        ("carol", CAROL_PASSWORD, Err(CredentialError::MissingGroup)),
        ("bob", ALICE_PASSWORD, Err(CredentialError::BadCredentials)),
    ];
    let mut tasks = Vec::new();
    for round in 0..6 {
        for (user, password, expected) in cases.clone() {
            let ldap = ldap.clone();
            tasks.push(tokio::spawn(async move {
                let got = ldap.verify(user, password).await;
                let got = got.map(|u| {
                    assert_eq!(u.name, user);
                    u.roles
                });
                let expected = expected.map(|r| r.iter().map(|s| s.to_string()).collect());
                assert_eq!(got, expected, "{user} in round {round}");
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
}

// ---- an absent or silent directory ----

#[tokio::test]
async fn a_closed_port_is_unavailable_within_the_timeout() {
    let mut config = LdapConfig::new(
        format!("ldap://127.0.0.1:{}", closed_port()),
        template_mode(),
    );
    config.timeout = Duration::from_secs(2);
    let ldap = source(config);
    let started = Instant::now();
    assert_unavailable(
        ldap.verify("alice", ALICE_PASSWORD).await,
        &[ALICE_PASSWORD],
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_silent_directory_times_out_as_unavailable() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    for bind in [template_mode(), search_mode("(uid={user})")] {
        let mut config = LdapConfig::new(format!("ldap://127.0.0.1:{port}"), bind);
        config.timeout = Duration::from_millis(300);
        let ldap = source(config);
        let started = Instant::now();
        let why = assert_unavailable(
            ldap.verify("alice", ALICE_PASSWORD).await,
            &[ALICE_PASSWORD, SERVICE_PASSWORD],
        );
        let elapsed = started.elapsed();
        assert!(why.contains("300 ms"), "{why}");
        assert!(
            elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
    }
}

// ---- TLS over rustls ----

fn tls_config(url: &str, starttls: bool, ca_file: &std::path::Path) -> LdapConfig {
    let mut config = with_groups(LdapConfig::new(url, search_mode("(uid={user})")));
    config.starttls = starttls;
    config.ca_file = Some(ca_file.to_owned());
    config
}

#[tokio::test]
async fn starttls_with_the_private_ca() {
    let slapd = shared();
    let ldap = source(tls_config(&slapd.ldap_url, true, &slapd.ca_file));
    let user = ldap.verify("alice", ALICE_PASSWORD).await.unwrap();
    assert_eq!(roles(&user), ["admin", "clinician"]);
    assert_eq!(
        ldap.verify("alice", BOB_PASSWORD).await,
        Err(CredentialError::BadCredentials)
    );
}

#[tokio::test]
async fn ldaps_with_the_private_ca() {
    let slapd = shared();
    for url in [
        slapd.ldaps_url.clone(),
        slapd.ldaps_url.replace("127.0.0.1", "localhost"),
    ] {
        let ldap = source(tls_config(&url, false, &slapd.ca_file));
        let user = ldap.verify("bob", BOB_PASSWORD).await.unwrap();
        assert_eq!(roles(&user), ["clinician"], "{url}");
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_unavailable() {
    let slapd = shared();
    for (url, starttls) in [(&slapd.ldaps_url, false), (&slapd.ldap_url, true)] {
        let ldap = source(tls_config(url, starttls, &slapd.untrusted_ca_file));
        let why = assert_unavailable(
            ldap.verify("alice", ALICE_PASSWORD).await,
            &[ALICE_PASSWORD, SERVICE_PASSWORD],
        );
        assert!(why.contains("UnknownIssuer"), "{url}: {why}");
    }
}

#[tokio::test]
async fn a_certificate_for_another_name_is_unavailable() {
    // The server certificate names 127.0.0.1 and localhost; slapd also
    // listens on 127.0.0.2 (loopback too, on Linux), which it does not name.
    let slapd = shared();
    let url = slapd.ldaps_url.replace("127.0.0.1", "127.0.0.2");
    let ldap = source(tls_config(&url, false, &slapd.ca_file));
    let why = assert_unavailable(
        ldap.verify("alice", ALICE_PASSWORD).await,
        &[ALICE_PASSWORD],
    );
    assert!(why.contains("not valid for name"), "{why}");
}
