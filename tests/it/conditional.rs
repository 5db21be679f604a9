//! Conditional create (`If-None-Exist`), update (`PUT [type]?…`) and delete
//! (`DELETE [type]?…`), R4 3.1.0.6.1, 3.1.0.7.1, 3.1.0.8.1: 0, 1 and several
//! matches, unknown parameters refused, concurrent conditional creates.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestApp, json};

const MRN: &str = "urn:oid:1.2.36.146.595.217.0.1";

fn patient(mrn: &str, family: &str) -> Value {
    json!({"resourceType": "Patient",
           "identifier": [{"system": MRN, "value": mrn}],
           "name": [{"family": family}]})
}

async fn create_if_none_exist(app: &TestApp, body: &Value, condition: &str) -> (u16, Value) {
    json(
        app.client
            .post(app.url("Patient"))
            .header("content-type", "application/fhir+json")
            .header("if-none-exist", condition)
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn ids_of(app: &TestApp, query: &str) -> Vec<String> {
    let (status, bundle) = json(app.get(query).await).await;
    assert_eq!(status, 200, "{bundle}");
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn conditional_create(app: TestApp) {
    let condition = format!("identifier={MRN}|1001");
    let (status, first) = create_if_none_exist(&app, &patient("1001", "Ng"), &condition).await;
    assert_eq!(status, 201, "{first}");
    // A match: that resource, unchanged, and nothing written.
    let (status, again) = create_if_none_exist(&app, &patient("1001", "Other"), &condition).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["name"][0]["family"], "Ng");
    assert_eq!(again["meta"]["versionId"], "1");
    assert_eq!(
        ids_of(&app, &format!("Patient?identifier={MRN}|1001")).await,
        [first["id"].as_str().unwrap()]
    );
    // The header may also be written with the type.
    let (status, same) = create_if_none_exist(
        &app,
        &patient("1001", "Ng"),
        &format!("Patient?identifier={MRN}|1001"),
    )
    .await;
    assert_eq!((status, &same["id"]), (200, &first["id"]));
    // Several matches: 412, nothing written.
    app.create(&patient("1001", "Twin")).await;
    let (status, oo) = create_if_none_exist(&app, &patient("1001", "Third"), &condition).await;
    assert_eq!(status, 412, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(
        ids_of(&app, &format!("Patient?identifier={MRN}|1001"))
            .await
            .len(),
        2
    );
    // A condition with a parameter this server does not know is refused
    // rather than matching more than it says; an invalid body is refused first.
    let (status, _) = create_if_none_exist(&app, &patient("1002", "X"), "nonsense=1").await;
    assert_eq!(status, 400);
    let (status, _) = create_if_none_exist(
        &app,
        &json!({"resourceType": "Patient", "gender": "no-such-code"}),
        &format!("identifier={MRN}|1003"),
    )
    .await;
    assert!(status == 400 || status == 422, "{status}");
    assert!(
        ids_of(&app, &format!("Patient?identifier={MRN}|1002,{MRN}|1003"))
            .await
            .is_empty()
    );
}

async fn conditional_update(app: TestApp) {
    let path = format!("Patient?identifier={MRN}|2001");
    // No match, no id: created under a new id.
    let res = app.put(&path, patient("2001", "First").to_string()).await;
    assert_eq!(res.status(), 201);
    let (_, created) = json(res).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // One match: updated in place.
    let res = app.put(&path, patient("2001", "Second").to_string()).await;
    assert_eq!(res.status(), 200);
    let (_, updated) = json(res).await;
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["name"][0]["family"], "Second");
    // The body's id, when given, must be the match's.
    let mut other = patient("2001", "Third");
    other["id"] = json!("someone-else");
    let (status, oo) = json(app.put(&path, other.to_string()).await).await;
    assert_eq!(status, 400, "{oo}");
    let mut same = patient("2001", "Third");
    same["id"] = json!(id.clone());
    assert_eq!(app.put(&path, same.to_string()).await.status(), 200);
    // No match with an id: created under that id.
    let mut with_id = patient("2002", "Given");
    with_id["id"] = json!("given-id");
    let res = app
        .put(
            &format!("Patient?identifier={MRN}|2002"),
            with_id.to_string(),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(app.get("Patient/given-id").await.status(), 200);
    // Several matches: 412, nothing changed.
    app.create(&patient("2001", "Twin")).await;
    let (status, oo) = json(app.put(&path, patient("2001", "Fourth").to_string()).await).await;
    assert_eq!(status, 412, "{oo}");
    let (_, current) = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(current["meta"]["versionId"], "3");
    // A PUT without an id or a condition is refused.
    assert_eq!(
        app.put("Patient", patient("2003", "X").to_string())
            .await
            .status(),
        400
    );
}

async fn conditional_delete(backend: Backend, multiple: bool) {
    let app = TestApp::start_with(backend, |c| {
        c.fhir.conditional_delete_multiple = multiple;
        c.fhir.max_conditional_deletes = 3;
    })
    .await;
    let (_, statement) = json(app.get("metadata").await).await;
    let patient_entry = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap()
        .clone();
    assert_eq!(patient_entry["conditionalCreate"], true);
    assert_eq!(patient_entry["conditionalUpdate"], true);
    assert_eq!(
        patient_entry["conditionalDelete"],
        if multiple { "multiple" } else { "single" }
    );
    let one = app.create(&patient("3001", "Only")).await;
    let path = format!("Patient?identifier={MRN}|3001");
    let (status, oo) = json(app.delete(&path).await).await;
    assert_eq!(status, 200, "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("deleted 1")
    );
    let gone = format!("Patient/{}", one["id"].as_str().unwrap());
    assert_eq!(app.get(&gone).await.status(), 410);
    // No match: nothing to delete, still a success.
    let (status, oo) = json(app.delete(&path).await).await;
    assert_eq!(status, 200);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("nothing")
    );
    // Several matches: 412 unless several may go, and never past the bound.
    for family in ["A", "B"] {
        app.create(&patient("3002", family)).await;
    }
    let path = format!("Patient?identifier={MRN}|3002");
    let (status, _) = json(app.delete(&path).await).await;
    if multiple {
        assert_eq!(status, 200);
        assert!(ids_of(&app, &path).await.is_empty());
    } else {
        assert_eq!(status, 412);
        assert_eq!(ids_of(&app, &path).await.len(), 2);
    }
    for family in ["C", "D", "E", "F"] {
        app.create(&patient("3003", family)).await;
    }
    let path = format!("Patient?identifier={MRN}|3003");
    assert_eq!(app.delete(&path).await.status(), 412);
    assert_eq!(ids_of(&app, &path).await.len(), 4);
    // No criteria: refused, not "delete everything".
    assert_eq!(app.delete("Patient").await.status(), 400);
    assert_eq!(app.delete("Patient?bogus=1").await.status(), 400);
}

/// Conditional creates of the same patient at once: one creates, the others
/// find it.
async fn concurrent_conditional_creates(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            create_if_none_exist(
                &app,
                &patient("4001", "Same"),
                &format!("identifier={MRN}|4001"),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
    assert_eq!(
        ids_of(&app, &format!("Patient?identifier={MRN}|4001"))
            .await
            .len(),
        1
    );
}

both_backends!(conditional_create);
both_backends!(conditional_update);
both_backends!(concurrent_conditional_creates);

mod conditional_delete {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_one_at_most() {
        super::conditional_delete(Backend::Sqlite, false).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_one_at_most() {
        super::conditional_delete(Backend::Postgres, false).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_several() {
        super::conditional_delete(Backend::Sqlite, true).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_several() {
        super::conditional_delete(Backend::Postgres, true).await
    }
}
