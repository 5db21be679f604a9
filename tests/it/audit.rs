//! The audit log: every request (allowed, refused, unauthenticated, malformed,
//! unknown) leaves exactly one row with its caller, source, interaction and
//! status; the rows form an HMAC chain that `hearth audit verify` checks, and
//! an edited or deleted row is found.

use std::process::Command;

use hearth_store::Store;
use serde_json::json;

use crate::support::{Backend, TestApp, basic_authorization};

/// Who (an `Authorization`), method, URL, body, content type, expected status.
type Step<'a> = (
    Option<&'a str>,
    &'a str,
    String,
    Option<String>,
    &'a str,
    u16,
);

fn verify(app: &TestApp) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HEARTH_DATA_DIR", &app.config.data_dir)
        .env("HEARTH_LOG", "error")
        .args(["audit", "verify"]);
    if let Some(url) = &app.database_url {
        c.env("HEARTH_DATABASE_URL", url).env(
            "HEARTH_MASTER_KEY_FILE",
            app.config.crypto.master_key_file.as_ref().unwrap(),
        );
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn audit_log(backend: Backend) {
    let app = TestApp::start(backend).await;
    let store = hearth::app::open_store(&app.config).unwrap();
    hearth::auth::set_local_user(&store, "rita", "reader-pw-1", &["reader".into()])
        .await
        .unwrap();
    let admin = crate::support::admin_authorization();
    let rita = basic_authorization("rita", "reader-pw-1");
    let wrong = basic_authorization("admin", "Not-the-password-1");
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Audit"}]}).to_string();
    let forbidden_tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]})
    .to_string();
    let root = app.base.trim_end_matches("/fhir").to_owned();

    let client = crate::support::bare_client();
    let send = |auth: Option<&str>, method: &str, url: String, body: Option<String>, ct: &str| {
        let mut r = client.request(method.parse().unwrap(), url);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some(b) = body {
            r = r.header("content-type", ct).body(b);
        }
        r.send()
    };
    let json_ct = "application/fhir+json";
    // (who, method, url, body, content type, expected status)
    let created = send(
        Some(&admin),
        "POST",
        app.url("Patient"),
        Some(patient.clone()),
        json_ct,
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let id = location.split('/').rev().nth(2).unwrap().to_owned();
    let steps: Vec<Step> = vec![
        (None, "GET", app.url("metadata"), None, json_ct, 200),
        (None, "GET", app.url("Patient"), None, json_ct, 401),
        (Some(&wrong), "GET", app.url("Patient"), None, json_ct, 401),
        (
            Some(&admin),
            "POST",
            app.url("Patient"),
            Some("{not json".into()),
            json_ct,
            400,
        ),
        (
            Some(&admin),
            "GET",
            app.url("Patient/nobody"),
            None,
            json_ct,
            404,
        ),
        (
            Some(&rita),
            "POST",
            app.url("Patient"),
            Some(patient.clone()),
            json_ct,
            403,
        ),
        (
            Some(&rita),
            "GET",
            app.url(&format!("Patient/{id}")),
            None,
            json_ct,
            200,
        ),
        (
            Some(&rita),
            "POST",
            app.url(""),
            Some(forbidden_tx),
            json_ct,
            403,
        ),
        (
            Some(&admin),
            "GET",
            app.url("Nonsense/x/y/z"),
            None,
            json_ct,
            404,
        ),
        (
            Some(&admin),
            "PUT",
            app.url("Patient/x1"),
            Some("<Patient xmlns=\"http://hl7.org/fhir\"><id value=\"x1\"></Patient>".into()),
            "application/fhir+xml",
            400,
        ),
        (Some(&admin), "GET", app.url("_history"), None, json_ct, 200),
        (
            Some(&admin),
            "GET",
            format!("{root}/elsewhere"),
            None,
            json_ct,
            404,
        ),
        (
            Some(&admin),
            "DELETE",
            app.url(&format!("Patient/{id}")),
            None,
            json_ct,
            204,
        ),
    ];
    // Writes leave a pending row in their own transaction; the request's
    // row replaces it (a batch's entries each write, one row in the end).
    let two_posts = |kind: &str| {
        json!({"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]})
        .to_string()
    };
    let steps: Vec<Step> = steps
        .into_iter()
        .chain([
            (
                Some(admin.as_str()),
                "POST",
                app.url(""),
                Some(two_posts("transaction")),
                json_ct,
                200,
            ),
            (
                Some(admin.as_str()),
                "POST",
                app.url(""),
                Some(two_posts("batch")),
                json_ct,
                200,
            ),
        ])
        .collect();
    let n = steps.len() + 1; // and the create above
    for (auth, method, url, body, ct, expected) in &steps {
        let res = send(*auth, method, url.clone(), body.clone(), ct)
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), *expected, "{method} {url}");
    }

    let rows = store.audit_events("default", 0, 1000).await.unwrap();
    assert_eq!(rows.len(), n, "one row per request");
    assert_eq!(app.count_rows("audit_pending").await, 0);
    let statuses: Vec<u16> = rows.iter().map(|r| r.status as u16).collect();
    let mut expected: Vec<u16> = vec![201];
    expected.extend(steps.iter().map(|s| s.5));
    assert_eq!(statuses, expected);
    assert!(rows.iter().all(|r| r.source_addr == "127.0.0.1"));
    assert!(rows.iter().all(|r| !r.request_id.is_empty()));
    let mut ids: Vec<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "request ids are distinct");
    assert_eq!(rows[0].user_name.as_deref(), Some("admin"));
    assert_eq!(rows[0].interaction, "create");
    assert_eq!(
        rows[0].resource.as_deref(),
        Some(format!("Patient/{id}/_history/1").as_str())
    );
    assert_eq!(rows[1].interaction, "capabilities");
    assert_eq!(rows[2].user_name, None);
    assert_eq!(
        rows[3].user_name.as_deref(),
        Some("admin"),
        "the claimed name"
    );
    assert!(rows[3].detail.contains("authentication refused"));
    assert_eq!(rows[6].user_name.as_deref(), Some("rita"));
    assert!(rows[6].detail.contains("access denied"));
    assert_eq!(rows[7].patient.as_deref(), Some(id.as_str()));
    assert_eq!(rows[8].interaction, "transaction");
    assert_eq!(rows[12].interaction, "unclassified");
    assert_eq!(rows[13].interaction, "delete");
    // No resource content in any row.
    for r in &rows {
        assert!(!format!("{r:?}").contains("Audit\""), "{r:?}");
    }

    let (ok, out) = verify(&app);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("intact: {n} rows")), "{out}");

    // The log as FHIR AuditEvents (IHE BALP): for auditors only.
    let (status, _) = crate::support::json(
        send(Some(&rita), "GET", app.url("AuditEvent"), None, json_ct)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, page) = crate::support::json(app.get("AuditEvent?_count=5").await).await;
    assert_eq!(status, 200);
    let entries = page["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    let first = &entries[0]["resource"];
    assert_eq!(first["resourceType"], "AuditEvent");
    assert_eq!(first["id"], "1");
    assert_eq!(first["action"], "C");
    assert_eq!(first["outcome"], "0");
    assert_eq!(first["subtype"][0]["code"], "create");
    assert_eq!(first["agent"][0]["who"]["identifier"]["value"], "admin");
    assert_eq!(first["agent"][0]["network"]["address"], "127.0.0.1");
    assert_eq!(
        first["entity"][0]["what"]["reference"],
        format!("Patient/{id}/_history/1")
    );
    let next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, page2) = crate::support::json(app.client.get(&next).send().await.unwrap()).await;
    assert_eq!(page2["entry"][0]["resource"]["id"], "6");
    let (_, ritas) = crate::support::json(app.get("AuditEvent?altid=rita").await).await;
    let outcomes: Vec<&str> = ritas["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["4", "0", "4", "4"],
        "refused, read, refused tx, refused log read"
    );
    let (status, one) = crate::support::json(app.get("AuditEvent/2").await).await;
    assert_eq!((status, one["id"].as_str()), (200, Some("2")));
    // The shape is valid R4.
    let res = app.post("AuditEvent/$validate", one.to_string()).await;
    let (status, outcome) = crate::support::json(res).await;
    assert_eq!(status, 200, "{outcome}");
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["severity"] != "error"),
        "{outcome}"
    );
    // Written by the server only; and reading it is audited too.
    let res = app.post("AuditEvent", one.to_string()).await;
    assert_eq!(res.status(), 405);
    let (_, reads) =
        crate::support::json(app.get("AuditEvent?altid=admin&_count=1000").await).await;
    let last = reads["entry"].as_array().unwrap().last().unwrap()["resource"].clone();
    assert!(
        last["outcomeDesc"]
            .as_str()
            .unwrap()
            .contains("admin:audit"),
        "{last}"
    );
    assert!(verify(&app).0);

    // Retention: rows older than the cut go, the chain is checked from the
    // last deleted row, and a row missing after the cut is still found.
    let before = store
        .audit_events("default", 0, 10_000)
        .await
        .unwrap()
        .len();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let pruned = hearth::audit::prune(&store, "default", std::time::Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(pruned as usize, before);
    assert_eq!(
        store.audit_anchor("default").await.unwrap().unwrap().0,
        before as i64
    );
    let (ok, out) = verify(&app);
    assert!(ok, "{out}");
    assert!(out.contains("intact: 0 rows"), "{out}");
    for _ in 0..6 {
        assert_eq!(app.get("metadata").await.status(), 200);
    }
    let (ok, out) = verify(&app);
    assert!(ok && out.contains("intact: 6 rows"), "{out}");
    let first = before + 1;

    // An edited row is found, and the chain is whole again once it is put back.
    let row = first + 2;
    app.execute_sql(&format!(
        "UPDATE audit_events SET status = 500 WHERE seq = {row}"
    ))
    .await;
    let (ok, out) = verify(&app);
    assert!(!ok);
    assert!(out.contains(&format!("broken at row {row}")), "{out}");
    app.execute_sql(&format!(
        "UPDATE audit_events SET status = 200 WHERE seq = {row}"
    ))
    .await;
    assert!(verify(&app).0);
    // So is a deleted one, the first after the anchor included.
    app.execute_sql(&format!("DELETE FROM audit_events WHERE seq = {first}"))
        .await;
    let (ok, out) = verify(&app);
    assert!(!ok);
    assert!(
        out.contains(&format!("broken at row {first}")) && out.contains("missing"),
        "{out}"
    );
}

/// A write's row is committed with the write, before any response: a
/// process that stops after the commit leaves it pending, and it is linked
/// into the chain as it is; a write that fails leaves none; a request's own
/// row replaces its pending rows.
async fn write_rows(backend: Backend) {
    use hearth::audit::{AuditLog, Record, RequestAudit, recover_pending};
    use std::time::Duration;
    let app = TestApp::start(backend).await;
    let store = hearth::app::open_store(&app.config).unwrap();
    let keys = std::sync::Arc::new(hearth::crypto::KeyRing::new(
        hearth::app::master_key(&app.config).unwrap(),
    ));
    keys.load_tenant(&store, "default").await.unwrap();
    let service = hearth::service::Service::new(store.clone(), keys.clone(), None);
    let patient = json!({"resourceType": "Patient", "active": true}).to_string();

    let before = store.audit_events("default", 0, 1000).await.unwrap().len();
    let request = RequestAudit::new("fhir", "req-stopped", "10.1.2.3", "POST");
    request.note(Some("admin"), None, "create", None);
    let created = request
        .scope(hearth::limits::trusted(service.create(
            "default",
            "Patient",
            patient.as_bytes(),
        )))
        .await
        .unwrap();
    let written = format!("Patient/{}/_history/1", created.id);
    assert_eq!(
        app.count_rows(&format!(
            "audit_pending WHERE resource = '{written}' AND status = 201 \
             AND user_name = 'admin' AND source_addr = '10.1.2.3'"
        ))
        .await,
        1,
        "committed with the write"
    );
    // A write that fails (a stale If-Match) leaves nothing pending.
    let stale = RequestAudit::new("fhir", "req-stale", "10.1.2.3", "PUT");
    let body = json!({"resourceType": "Patient", "id": created.id}).to_string();
    let e = stale
        .scope(hearth::limits::trusted(service.update(
            "default",
            "Patient",
            &created.id,
            body.as_bytes(),
            Some(7),
        )))
        .await
        .unwrap_err();
    assert_eq!(e.kind, hearth::error::ErrorKind::PreconditionFailed);
    assert_eq!(app.count_rows("audit_pending").await, 1);
    // Outside a request (an import) nothing is pending.
    hearth::limits::trusted(service.create("default", "Patient", patient.as_bytes()))
        .await
        .unwrap();
    // And a write outside both is refused.
    let e = service
        .create("default", "Patient", patient.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.status(), 500);
    assert_eq!(app.count_rows("audit_pending").await, 1);

    // A fresh pending row belongs to a request still running: left alone.
    recover_pending(&store, &keys, "default", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(app.count_rows("audit_pending").await, 1);
    // However old, it is left alone while its request runs here.
    recover_pending(&store, &keys, "default", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(app.count_rows("audit_pending").await, 1);
    // Once its request is gone and the row old enough, the process that
    // wrote it is taken as stopped.
    drop(request);
    recover_pending(&store, &keys, "default", Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(app.count_rows("audit_pending").await, 0);
    let rows = store.audit_events("default", 0, 1000).await.unwrap();
    let last = rows.last().unwrap();
    assert_eq!(rows.len(), before + 1);
    assert_eq!(last.request_id, "req-stopped");
    assert_eq!(last.resource.as_deref(), Some(written.as_str()));
    assert_eq!((last.status, last.interaction.as_str()), (201, "create"));
    assert_eq!(last.user_name.as_deref(), Some("admin"));
    let (ok, out) = verify(&app);
    assert!(ok, "{out}");

    // A request that finishes: its own row replaces what its writes left.
    let finished = RequestAudit::new("fhir", "req-done", "10.1.2.3", "DELETE");
    finished.note(Some("admin"), None, "delete", None);
    finished
        .scope(hearth::limits::trusted(service.delete(
            "default",
            "Patient",
            &created.id,
        )))
        .await
        .unwrap();
    assert_eq!(
        app.count_rows(&format!(
            "audit_pending WHERE status = 204 AND resource = 'Patient/{}/_history/2'",
            created.id
        ))
        .await,
        1
    );
    let log = AuditLog::new(store.clone(), keys.clone());
    let record = Record {
        listener: "fhir".into(),
        request_id: "req-done".into(),
        user_name: Some("admin".into()),
        source_addr: "10.1.2.3".into(),
        method: "DELETE".into(),
        interaction: "delete".into(),
        status: 204,
        ..Record::default()
    };
    log.append("default", record, finished.replaces())
        .await
        .unwrap();
    assert_eq!(app.count_rows("audit_pending").await, 0);
    let rows = store.audit_events("default", 0, 1000).await.unwrap();
    assert_eq!(rows.len(), before + 2);
    assert_eq!(rows.last().unwrap().status, 204);
    assert!(verify(&app).0);
}

mod write_rows {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::write_rows(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::write_rows(Backend::Postgres).await
    }
}

mod audit_log {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::audit_log(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::audit_log(Backend::Postgres).await
    }
}
