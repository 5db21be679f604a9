//! The JSON Admin API on a listener of kind `admin`: behind the same guard
//! and audit as the FHIR API; users are listed without secrets, added,
//! changed and locked, and a change takes effect on the FHIR listener at
//! once (the cached credentials are dropped); the audit chain is verified.

use hearth::config::{HttpConfig, ListenerKind};
use hearth_store::Store;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, admin_authorization, basic_authorization};

async fn admin_api(backend: Backend) {
    let port = TestApp::free_port();
    let app = TestApp::start_with(backend, |c| {
        c.listeners.push(HttpConfig {
            name: "admin".into(),
            kind: ListenerKind::Admin,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            base_path: "/admin".into(),
            workers: 1,
            ..HttpConfig::default()
        });
        c.security
            .roles
            .insert("user-admin".into(), vec!["admin:users".into()]);
    })
    .await;
    let base = format!("http://{}/admin", app.other("admin"));
    let client = crate::support::bare_client();
    let admin = admin_authorization();
    let call = |method: &str, path: &str, auth: Option<&str>, body: Option<Value>| {
        let mut r = client.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        async move {
            let res = r.send().await.unwrap();
            let status = res.status().as_u16();
            let text = res.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
            )
        }
    };

    // Signed in, with the right permission only; a path spelt with
    // percent-escapes is the same path to the guard as to the router.
    assert_eq!(call("GET", "/users", None, None).await.0, 401);
    let root = format!("http://{}", app.other("admin"));
    for (method, url) in [
        ("GET", format!("{root}/%61dmin/users")),
        ("PUT", format!("{root}/%61dmin/users/admin")),
        ("GET", format!("{root}/admin/%75sers")),
        ("GET", app.url("").replace("/fhir", "/%66hir/Patient")),
        ("GET", app.url("%50atient")),
    ] {
        let res = client
            .request(method.parse().unwrap(), &url)
            .header("content-type", "application/json")
            .body(r#"{"password": "Taken-over-1", "roles": ["admin"]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {url}");
    }
    let res = client
        .get(format!("{root}/%61dmin/users"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the same endpoint, signed in");
    let wrong = basic_authorization("admin", "Not-the-password-1");
    assert_eq!(call("GET", "/users", Some(&wrong), None).await.0, 401);
    let (status, body) = call(
        "PUT",
        "/users/nina",
        Some(&admin),
        Some(json!({"password": "nina-pass-1", "roles": ["reader"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["roles"], json!(["reader"]));
    assert_eq!(body["locked"], false);
    let nina = basic_authorization("nina", "nina-pass-1");
    let (status, body) = call("GET", "/users", Some(&nina), None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");

    // Listed without secrets.
    let (status, list) = call("GET", "/users", Some(&admin), None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "nina"]);
    assert!(!list.to_string().contains("argon2"), "{list}");
    assert_eq!(
        call("GET", "/users/nobody", Some(&admin), None).await.0,
        404
    );

    // Bad input: a clear 400 and nothing changed.
    for bad in [
        json!({"password": "short", "roles": []}),
        json!({"password": "nina-pass-2"}),
        json!({"password": "nina-pass-2", "roles": ["has space"]}),
        json!({"password": "nina-pass-2", "roles": [], "admin": true}),
        json!(["not", "an", "object"]),
    ] {
        let (status, body) = call("PUT", "/users/nina", Some(&admin), Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let (status, body) = call(
        "PUT",
        "/users/newbie",
        Some(&admin),
        Some(json!({"roles": ["reader"]})),
    )
    .await;
    assert_eq!(status, 400, "a new user needs a password: {body}");

    // Changes take effect on the FHIR listener at once, cached sign-in or not.
    let fhir = |auth: String| {
        let client = client.clone();
        let url = app.url("Patient");
        async move {
            client
                .get(url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(fhir(nina.clone()).await, 200);
    assert_eq!(
        call("POST", "/users/nina/lock", Some(&admin), None).await.0,
        200
    );
    assert_eq!(fhir(nina.clone()).await, 401, "locked");
    let (status, body) = call("POST", "/users/nina/unlock", Some(&admin), None).await;
    assert_eq!((status, &body["locked"]), (200, &json!(false)));
    assert_eq!(fhir(nina.clone()).await, 200);
    let (status, _) = call(
        "PUT",
        "/users/nina",
        Some(&admin),
        Some(json!({"password": "nina-pass-2", "roles": ["reader"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(fhir(nina.clone()).await, 401, "the old password");
    let nina2 = basic_authorization("nina", "nina-pass-2");
    assert_eq!(fhir(nina2.clone()).await, 200);
    let (status, body) = call(
        "PUT",
        "/users/nina",
        Some(&admin),
        Some(json!({"roles": []})),
    )
    .await;
    assert_eq!((status, &body["roles"]), (200, &json!([])), "{body}");
    assert_eq!(fhir(nina2).await, 403, "no roles left");

    // Not the FHIR API, and the FHIR listener does not serve this one.
    let (status, _) = call("GET", "/Patient", Some(&admin), None).await;
    assert_eq!(status, 404);
    let res = client
        .get(app.url("users"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(
        call("DELETE", "/users/nina", Some(&admin), None).await.0,
        405
    );

    // A user administrator who is not a superuser cannot make one, nor take
    // one over.
    let (status, _) = call(
        "PUT",
        "/users/uma",
        Some(&admin),
        Some(json!({"password": "uma-pass-12", "roles": ["user-admin"]})),
    )
    .await;
    assert_eq!(status, 201);
    let uma = basic_authorization("uma", "uma-pass-12");
    let (status, body) = call(
        "PUT",
        "/users/nina",
        Some(&uma),
        Some(json!({"roles": ["reader"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (method, path, body) in [
        (
            "PUT",
            "/users/eve",
            Some(json!({"password": "Eve-pass-123", "roles": ["admin"]})),
        ),
        (
            "PUT",
            "/users/admin",
            Some(json!({"password": "Taken-over-1", "roles": ["admin"]})),
        ),
        ("POST", "/users/admin/lock", None),
        ("GET", "/audit/verify", None),
    ] {
        let (status, body) = call(method, path, Some(&uma), body).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    assert_eq!(
        fhir(admin.clone()).await,
        200,
        "the administrator is untouched"
    );
    // Becoming an administrator takes a new password (the stricter policy).
    let (status, body) = call(
        "PUT",
        "/users/nina",
        Some(&admin),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A new password ends no lock an administrator set.
    assert_eq!(
        call("POST", "/users/nina/lock", Some(&admin), None).await.0,
        200
    );
    let (status, body) = call(
        "PUT",
        "/users/nina",
        Some(&admin),
        Some(json!({"password": "nina-pass-3", "roles": ["reader"]})),
    )
    .await;
    assert_eq!((status, &body["locked"]), (200, &json!(true)), "{body}");
    assert_eq!(
        call("POST", "/users/nina/unlock", Some(&admin), None)
            .await
            .0,
        200
    );

    // A user from a directory is managed there.
    let store = hearth::app::open_store(&app.config).unwrap();
    store
        .save_user(hearth_store::schema::User {
            tenant: "default".into(),
            name: "dora".into(),
            source: "ldap".into(),
            password_hash: None,
            external_id: Some("uid=dora,ou=people,dc=example,dc=org".into()),
            roles: "reader".into(),
            locked: false,
            locked_until: None,
            failed_logins: 0,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let (status, body) = call(
        "PUT",
        "/users/dora",
        Some(&admin),
        Some(json!({"password": "dora-pass-1", "roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        call("POST", "/users/dora/lock", Some(&admin), None).await.0,
        409
    );

    // The audit chain, checked over the API; every admin request has its row.
    let (status, body) = call("GET", "/audit/verify", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["intact"], true, "{body}");
    let rows = store.audit_events("default", 0, 1000).await.unwrap();
    let admin_rows: Vec<_> = rows.iter().filter(|r| r.listener == "admin").collect();
    assert_eq!(admin_rows.len(), 35, "{admin_rows:#?}");
    assert!(
        admin_rows
            .iter()
            .any(|r| r.interaction == "admin:users" && r.status == 403)
    );
    assert_eq!(admin_rows.last().unwrap().interaction, "admin:audit");
    // The rows name the user changed and how (never the password).
    assert!(admin_rows.iter().any(|r| r.detail == "user nina: locked"
        && r.status == 200
        && r.resource.as_deref() == Some("users/nina/lock")));
    assert!(
        admin_rows
            .iter()
            .any(|r| r.detail == "user nina: roles [reader], password set" && r.status == 200)
    );
    assert!(!format!("{rows:?}").contains("nina-pass"));
}

mod admin_api {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::admin_api(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::admin_api(Backend::Postgres).await
    }
}
