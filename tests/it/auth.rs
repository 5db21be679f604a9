//! Authentication and access control at the FHIR listener: HTTP Basic against
//! the local user table (argon2id), the secure default (nothing but the
//! capability statement without credentials), roles mapped to permissions,
//! reads checked on what they return (`_include`, compartments), writes and
//! Bundle entries checked before the store, the password policy and lockout.

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, basic_authorization};

async fn add_user(app: &TestApp, name: &str, password: &str, roles: &[&str]) {
    let store = hearth::app::open_store(&app.config).unwrap();
    let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
    hearth::auth::set_local_user(&store, name, password, &roles)
        .await
        .unwrap();
}

async fn as_user(
    app: &TestApp,
    auth: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut r = crate::support::bare_client().request(method, app.url(path));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/fhir+json")
            .body(b.to_string());
    }
    let res = r.send().await.unwrap();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        challenge,
    )
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut out: Vec<String> = bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn access_control(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.security.max_failed_logins = 5;
        c.security
            .roles
            .insert("obs-reader".into(), vec!["read:Observation".into()]);
        c.security
            .roles
            .insert("p1-reader".into(), vec!["read:*@Patient/p1".into()]);
        c.security.roles.insert(
            "p1-writer".into(),
            vec!["read:*@Patient/p1".into(), "write:*@Patient/p1".into()],
        );
    })
    .await;
    for p in ["p1", "p2"] {
        assert_eq!(
            app.put(
                &format!("Patient/{p}"),
                json!({"resourceType": "Patient", "id": p}).to_string()
            )
            .await
            .status(),
            201
        );
        app.create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")}}))
            .await;
    }
    app.create(&json!({"resourceType": "Organization", "name": "Clinic"}))
        .await;

    // Without credentials: the capability statement only; a challenge otherwise.
    let (status, _, _) = as_user(&app, None, reqwest::Method::GET, "metadata", None).await;
    assert_eq!(status, 200);
    for (method, path) in [
        (reqwest::Method::GET, "Patient"),
        (reqwest::Method::GET, "Patient/p1"),
        (reqwest::Method::GET, "Patient/p1/$everything"),
        (reqwest::Method::POST, ""),
        (reqwest::Method::GET, "_history"),
        (reqwest::Method::GET, "Nonsense/x/y/z"),
    ] {
        let (status, body, challenge) = as_user(&app, None, method.clone(), path, None).await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["code"], "login");
        assert!(challenge.unwrap().starts_with("Basic realm="));
    }

    // Wrong, unknown, malformed and foreign credentials: 401, never through.
    for auth in [
        basic_authorization("admin", "wrong-Password-1"),
        basic_authorization("nobody", "Some-password-1"),
        basic_authorization("admin", ""),
        "Basic !!!".to_owned(),
        "Bearer abc.def.ghi".to_owned(),
    ] {
        let (status, body, _) =
            as_user(&app, Some(&auth), reqwest::Method::GET, "Patient", None).await;
        assert_eq!(status, 401, "{auth}");
        assert_eq!(body["issue"][0]["diagnostics"], "authentication failed");
        // Even the capability statement refuses bad credentials.
        let (status, _, _) =
            as_user(&app, Some(&auth), reqwest::Method::GET, "metadata", None).await;
        assert_eq!(status, 401);
    }

    // A reader reads and searches, and may not write (alone or in a Bundle).
    add_user(&app, "rita", "reader-pw-1", &["reader"]).await;
    let rita = basic_authorization("rita", "reader-pw-1");
    let (status, body, _) = as_user(&app, Some(&rita), reqwest::Method::GET, "Patient", None).await;
    assert_eq!((status, ids(&body).len()), (200, 2));
    let new_patient = json!({"resourceType": "Patient"});
    let (status, body, _) = as_user(
        &app,
        Some(&rita),
        reqwest::Method::POST,
        "Patient",
        Some(new_patient.clone()),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["issue"][0]["code"], "forbidden");
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"resource": new_patient, "request": {"method": "POST", "url": "Patient"}}]});
    let (status, body, _) = as_user(
        &app,
        Some(&rita),
        reqwest::Method::POST,
        "",
        Some(tx.clone()),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[1]")
    );
    let mut batch = tx.clone();
    batch["type"] = json!("batch");
    let (status, body, _) =
        as_user(&app, Some(&rita), reqwest::Method::POST, "", Some(batch)).await;
    assert_eq!(status, 200);
    assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(body["entry"][1]["response"]["status"], "403");
    let (_, all, _) = as_user(&app, Some(&rita), reqwest::Method::GET, "Patient", None).await;
    assert_eq!(ids(&all).len(), 2, "nothing was written");

    // A reader may export everything it may read, and poll and fetch its files.
    let res = crate::support::bare_client()
        .get(app.url("$export?_type=Patient"))
        .header("authorization", &rita)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let status_url = res.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut manifest = Value::Null;
    for _ in 0..400 {
        let res = crate::support::bare_client()
            .get(&status_url)
            .header("authorization", &rita)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            manifest = serde_json::from_str(&res.text().await.unwrap()).unwrap();
            break;
        }
        assert_eq!(res.status(), 202);
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let file = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    let res = crate::support::bare_client()
        .get(&file)
        .header("authorization", &rita)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap().lines().count(), 2);
    // Without credentials, neither the status nor the file.
    let res = crate::support::bare_client()
        .get(&file)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A user who may read Observations only: included Patients are hidden,
    // Patients themselves refused.
    add_user(&app, "olga", "olga-pw-12", &["obs-reader"]).await;
    let olga = basic_authorization("olga", "olga-pw-12");
    let (status, body, _) = as_user(
        &app,
        Some(&olga),
        reqwest::Method::GET,
        "Observation?_include=Observation:subject",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let found = ids(&body);
    assert_eq!(found.len(), 2);
    assert!(
        found.iter().all(|i| i.starts_with("Observation/")),
        "{found:?}"
    );
    let (status, _, _) = as_user(&app, Some(&olga), reqwest::Method::GET, "Patient/p1", None).await;
    assert_eq!(status, 403);

    // A user limited to one patient's compartment sees that patient's data only.
    add_user(&app, "pia", "pia-pass-1", &["p1-reader"]).await;
    let pia = basic_authorization("pia", "pia-pass-1");
    let (status, _, _) = as_user(&app, Some(&pia), reqwest::Method::GET, "Patient/p1", None).await;
    assert_eq!(status, 200);
    let (status, _, _) = as_user(&app, Some(&pia), reqwest::Method::GET, "Patient/p2", None).await;
    assert_eq!(status, 403);
    let (status, body, _) =
        as_user(&app, Some(&pia), reqwest::Method::GET, "Observation", None).await;
    assert_eq!(status, 200);
    let obs = ids(&body);
    assert_eq!(obs.len(), 1, "{obs:?}");
    assert!(body.get("total").is_none());
    let (status, body, _) = as_user(
        &app,
        Some(&pia),
        reqwest::Method::GET,
        "Patient/p1/$everything",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(ids(&body).iter().all(|i| i != "Patient/p2"));
    // A type search is narrowed in the query: its count is exact.
    let (status, body, _) = as_user(
        &app,
        Some(&pia),
        reqwest::Method::GET,
        "Observation?_summary=count",
        None,
    )
    .await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));
    let (status, body, _) = as_user(
        &app,
        Some(&pia),
        reqwest::Method::GET,
        "Patient?_summary=count",
        None,
    )
    .await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(1)));
    // Where results are only filtered after the fact, counts would leak:
    // refused.
    let (status, _, _) = as_user(
        &app,
        Some(&pia),
        reqwest::Method::GET,
        "?_type=Observation&_summary=count",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) =
        as_user(&app, Some(&pia), reqwest::Method::GET, "Organization", None).await;
    assert_eq!(status, 403);

    // A writer limited to one patient's compartment writes there only: the
    // new content and the version it replaces are both checked.
    add_user(&app, "wes", "wes-pass-12", &["p1-writer"]).await;
    let wes = basic_authorization("wes", "wes-pass-12");
    let obs_for = |p: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "w"},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let (status, mine, _) = as_user(
        &app,
        Some(&wes),
        reqwest::Method::POST,
        "Observation",
        Some(obs_for("p1")),
    )
    .await;
    assert_eq!(status, 201, "{mine}");
    let (status, _, _) = as_user(
        &app,
        Some(&wes),
        reqwest::Method::POST,
        "Observation",
        Some(obs_for("p2")),
    )
    .await;
    assert_eq!(status, 403, "another patient's compartment");
    let mine_id = mine["id"].as_str().unwrap().to_owned();
    let mut moved = obs_for("p2");
    moved["id"] = json!(mine_id.clone());
    let (status, _, _) = as_user(
        &app,
        Some(&wes),
        reqwest::Method::PUT,
        &format!("Observation/{mine_id}"),
        Some(moved),
    )
    .await;
    assert_eq!(status, 403, "moving it out");
    let (_, all_obs) = crate::support::json(app.get("Observation?subject=Patient/p2").await).await;
    let theirs = all_obs["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut taken = obs_for("p1");
    taken["id"] = json!(theirs.clone());
    let (status, _, _) = as_user(
        &app,
        Some(&wes),
        reqwest::Method::PUT,
        &format!("Observation/{theirs}"),
        Some(taken),
    )
    .await;
    assert_eq!(status, 403, "taking over another patient's resource");
    let (status, _, _) = as_user(
        &app,
        Some(&wes),
        reqwest::Method::DELETE,
        &format!("Observation/{theirs}"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = as_user(
        &app,
        Some(&wes),
        reqwest::Method::DELETE,
        &format!("Observation/{mine_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    writes_under_limits(&app, &wes, &theirs).await;

    // The password policy (administrators need more).
    let store = hearth::app::open_store(&app.config).unwrap();
    for (name, password, roles, expected) in [
        ("u1", "short1", vec![], "at least 8"),
        ("u2", "onlyletters", vec![], "digit"),
        ("u3", "12345678", vec![], "letter"),
        ("u4", "lowercase1", vec!["admin".to_owned()], "capital"),
        ("bad name", "Good-pass-1", vec![], "user name"),
    ] {
        let e = hearth::auth::set_local_user(&store, name, password, &roles)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{name}: {e}");
    }

    // Lockout: five failures in a row lock the account, and further attempts
    // are throttled (429), even with the right password.
    add_user(&app, "lena", "lena-pass-1", &["reader"]).await;
    let wrong = basic_authorization("lena", "wrong-pass-1");
    for _ in 0..5 {
        let (status, _, _) =
            as_user(&app, Some(&wrong), reqwest::Method::GET, "Patient", None).await;
        assert_eq!(status, 401);
    }
    let lena = basic_authorization("lena", "lena-pass-1");
    let (status, body, _) = as_user(&app, Some(&lena), reqwest::Method::GET, "Patient", None).await;
    assert_eq!(status, 429, "throttled");
    assert_eq!(body["issue"][0]["code"], "throttled");
    // Others are not affected.
    let (status, _, _) = as_user(&app, Some(&rita), reqwest::Method::GET, "Patient", None).await;
    assert_eq!(status, 200);
    let row = store.user("default", "lena").await.unwrap().unwrap();
    assert!(row.locked_until.is_some());
    assert!(row.password_hash.unwrap().starts_with("$argon2id$"));
}

use hearth_store::Store;

/// Brute force from one address: past the limit, every sign-in attempt from
/// it is answered 429 with Retry-After (the right password included), and
/// the audit log records the security event.
async fn brute_force(backend: Backend) {
    let app = TestApp::start_with(backend, |c| c.security.max_failures_per_source = 4).await;
    for user in ["u1", "u2", "u3", "u4"] {
        let auth = basic_authorization(user, "Guess-word-1");
        let (status, _, _) =
            as_user(&app, Some(&auth), reqwest::Method::GET, "Patient", None).await;
        assert_eq!(status, 401);
    }
    let res = crate::support::bare_client()
        .get(app.url("Patient"))
        .header("authorization", crate::support::admin_authorization())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    let store = hearth::app::open_store(&app.config).unwrap();
    let rows = store.audit_events("default", 0, 100).await.unwrap();
    let last = rows.last().unwrap();
    assert_eq!(last.status, 429);
    assert_eq!(last.user_name.as_deref(), Some("admin"));
    assert!(last.detail.contains("security event"), "{}", last.detail);
}

/// Cached credentials follow the user table: a new password, a lock and a
/// role change made outside the server (as another node or an
/// administrator's tool would) take effect within seconds, not at the end of
/// the cache's lifetime (60 s).
async fn cached_credentials_follow_user_changes(backend: Backend) {
    let app = TestApp::start_with(backend, |c| {
        c.security.credential_cache_seconds = 600;
        c.security.roles.insert("r".into(), vec!["read:*".into()]);
        c.security
            .roles
            .insert("w".into(), vec!["read:*".into(), "write:*".into()]);
    })
    .await;
    add_user(&app, "cara", "cara-pass-1", &["r"]).await;
    let old = basic_authorization("cara", "cara-pass-1");
    let new = basic_authorization("cara", "cara-pass-2");
    let status = |auth: String, method: reqwest::Method| {
        let app = &app;
        async move {
            let body =
                (method == reqwest::Method::POST).then(|| json!({"resourceType": "Patient"}));
            as_user(app, Some(&auth), method, "Patient", body).await.0
        }
    };
    // Within a few seconds, `auth` gets `want`.
    let soon = |auth: String, method: reqwest::Method, want: u16| {
        let status = &status;
        async move {
            let mut last = 0;
            for _ in 0..40 {
                last = status(auth.clone(), method.clone()).await;
                if last == want {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("still {last}, not {want}, after 4 s");
        }
    };
    assert_eq!(status(old.clone(), reqwest::Method::GET).await, 200);
    assert_eq!(status(old.clone(), reqwest::Method::GET).await, 200);

    // A new password (`hearth user set`, the password on standard input):
    // the old one stops working.
    let (ok, out) = hearth_user(&app, &["set", "cara", "--role", "r"], Some("cara-pass-2\n"));
    assert!(ok, "{out}");
    soon(old.clone(), reqwest::Method::GET, 401).await;
    assert_eq!(status(new.clone(), reqwest::Method::GET).await, 200);
    // One that breaks the policy is refused and changes nothing.
    let (ok, out) = hearth_user(&app, &["set", "cara", "--role", "r"], Some("short\n"));
    assert!(!ok && out.contains("at least 8"), "{out}");

    // Locked by an administrator (`hearth user lock`).
    let (ok, out) = hearth_user(&app, &["lock", "cara"], None);
    assert!(ok, "{out}");
    soon(new.clone(), reqwest::Method::GET, 401).await;
    let (ok, _) = hearth_user(&app, &["unlock", "cara"], None);
    assert!(ok);
    soon(new.clone(), reqwest::Method::GET, 200).await;

    // Another role: what the cached sign-in allows changes too.
    assert_eq!(status(new.clone(), reqwest::Method::POST).await, 403);
    add_user(&app, "cara", "cara-pass-2", &["w"]).await;
    soon(new.clone(), reqwest::Method::POST, 201).await;
    let (ok, out) = hearth_user(&app, &["lock", "nobody"], None);
    assert!(!ok && out.contains("no user nobody"), "{out}");
}

/// Runs `hearth user …` against the app's database, as another process.
fn hearth_user(app: &TestApp, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HEARTH_DATA_DIR", &app.config.data_dir)
        .env("HEARTH_LOG", "error")
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = &app.database_url {
        c.env("HEARTH_DATABASE_URL", url).env(
            "HEARTH_MASTER_KEY_FILE",
            app.config.crypto.master_key_file.as_ref().unwrap(),
        );
    }
    let mut child = c.spawn().unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

mod cached_credentials_follow_user_changes {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::cached_credentials_follow_user_changes(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::cached_credentials_follow_user_changes(Backend::Postgres).await
    }
}

mod brute_force {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::brute_force(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::brute_force(Backend::Postgres).await
    }
}

mod access_control {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::access_control(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::access_control(Backend::Postgres).await
    }
}

/// PATCH, conditional and Bundle writes by a writer limited to Patient/p1's
/// compartment: each write's new content and stored version are checked.
async fn writes_under_limits(app: &TestApp, wes: &str, theirs: &str) {
    let obs_for = |p: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "w"},
               "subject": {"reference": format!("Patient/{p}")}})
    };
    let send = |method: &str, path: String, ct: &str, body: Value| {
        crate::support::bare_client()
            .request(method.parse().unwrap(), app.url(&path))
            .header("authorization", wes)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
    };
    let status_of = |path: String| async move { crate::support::json(app.get(&path).await).await };
    let (status, mine, _) = as_user(
        app,
        Some(wes),
        reqwest::Method::POST,
        "Observation",
        Some(obs_for("p1")),
    )
    .await;
    assert_eq!(status, 201);
    let mine = mine["id"].as_str().unwrap().to_owned();

    // PATCH: inside stays inside; out of the compartment, or on another
    // patient's resource, refused.
    let patch = "application/json-patch+json";
    let res = send(
        "PATCH",
        format!("Observation/{mine}"),
        patch,
        json!([{"op": "replace", "path": "/status", "value": "amended"}]),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let res = send(
        "PATCH",
        format!("Observation/{mine}"),
        patch,
        json!([{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403, "patched out of the compartment");
    let res = send(
        "PATCH",
        format!("Observation/{theirs}"),
        patch,
        json!([{"op": "replace", "path": "/status", "value": "amended"}]),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403, "another patient's resource");
    let (_, theirs_now) = status_of(format!("Observation/{theirs}")).await;
    assert_eq!(theirs_now["status"], "final");
    assert_eq!(theirs_now["meta"]["versionId"], "1");

    // Conditional update, create and delete: what the caller may not see
    // does not match, so a condition tells nothing about it.
    let fhir = "application/fhir+json";
    let res = send(
        "PUT",
        format!("Observation?_id={mine}"),
        fhir,
        obs_for("p1"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let (_, p1_before) = status_of("Observation?subject=Patient/p1&_summary=count".into()).await;
    let res = send(
        "PUT",
        format!("Observation?_id={theirs}"),
        fhir,
        obs_for("p1"),
    )
    .await
    .unwrap();
    assert_eq!(
        res.status(),
        201,
        "theirs does not match: a new one of mine"
    );
    let res = crate::support::bare_client()
        .post(app.url("Observation"))
        .header("authorization", wes)
        .header("content-type", fhir)
        .header("if-none-exist", format!("_id={theirs}"))
        .body(obs_for("p1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "theirs does not match");
    let (_, p1_after) = status_of("Observation?subject=Patient/p1&_summary=count".into()).await;
    assert_eq!(
        p1_after["total"].as_u64().unwrap(),
        p1_before["total"].as_u64().unwrap() + 2
    );
    let (status, outcome) = crate::support::json(
        send(
            "DELETE",
            format!("Observation?_id={theirs}"),
            fhir,
            json!({}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        outcome.to_string().contains("nothing was deleted"),
        "{outcome}"
    );
    assert_eq!(status_of(format!("Observation/{theirs}")).await.0, 200);
    // A condition that would search other types (a chain, `_has`) is refused.
    for condition in [
        "subject:Patient.name=x".to_owned(),
        "_has:Observation:subject:status=final".to_owned(),
    ] {
        let t = if condition.starts_with("_has") {
            "Patient"
        } else {
            "Observation"
        };
        let res = send("DELETE", format!("{t}?{condition}"), fhir, json!({}))
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{condition}");
    }
    // An If-Match naming another version fails at once.
    let res = crate::support::bare_client()
        .put(app.url(&format!("Observation/{mine}")))
        .header("authorization", wes)
        .header("content-type", fhir)
        .header("if-match", "W/\"1\"")
        .body({
            let mut o = obs_for("p1");
            o["id"] = json!(mine);
            o.to_string()
        })
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);

    // A transaction is checked entry by entry and kept whole or not at all.
    let (_, before) = status_of("Observation?subject=Patient/p1&_summary=count".into()).await;
    let tx = |second: Value| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": obs_for("p1"), "request": {"method": "POST", "url": "Observation"}},
            second]})
    };
    let res = send(
        "POST",
        String::new(),
        fhir,
        tx(json!({"request": {"method": "DELETE", "url": format!("Observation/{theirs}")}})),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    let mut taken = obs_for("p1");
    taken["id"] = json!(theirs);
    let res = send(
        "POST",
        String::new(),
        fhir,
        tx(json!({"resource": taken, "request": {"method": "PUT", "url": format!("Observation/{theirs}")}})),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 403);
    let (_, after) = status_of("Observation?subject=Patient/p1&_summary=count".into()).await;
    assert_eq!(before["total"], after["total"], "nothing of them was kept");
    let res = send(
        "POST",
        String::new(),
        fhir,
        tx(json!({"request": {"method": "DELETE", "url": format!("Observation/{mine}")}})),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    // A batch: each entry on its own.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": obs_for("p1"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": format!("Observation/{theirs}")}}]});
    let (status, body) =
        crate::support::json(send("POST", String::new(), fhir, batch).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["entry"][0]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("201")
    );
    assert!(
        body["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("403")
    );
    assert_eq!(status_of(format!("Observation/{theirs}")).await.0, 200);
}
