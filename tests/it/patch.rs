//! PATCH (R4 3.1.0.6.2): JSON Patch and FHIRPath Patch, `If-Match`, failures
//! that change nothing, the index following the patched version, and
//! concurrent patches that lose nothing.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{TestApp, json};

async fn patch(app: &TestApp, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
    patch_with(app, path, content_type, body, None).await
}

async fn patch_with(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: &Value,
    if_match: Option<&str>,
) -> (u16, Value) {
    let mut req = app
        .client
        .patch(app.url(path))
        .header("content-type", content_type)
        .body(body.to_string());
    if let Some(v) = if_match {
        req = req.header("if-match", v);
    }
    json(req.send().await.unwrap()).await
}

const JSON_PATCH: &str = "application/json-patch+json";
const FHIR: &str = "application/fhir+json";

fn operation(parts: Value) -> Value {
    json!({"name": "operation", "part": parts})
}

fn parameters(ops: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": ops})
}

async fn version_of(app: &TestApp, path: &str) -> String {
    let (_, r) = json(app.get(path).await).await;
    r["meta"]["versionId"].as_str().unwrap().to_owned()
}

async fn json_patch(app: TestApp) {
    let p = app
        .create(
            &json!({"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Ada"]}],
                        "gender": "female"}),
        )
        .await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    let (status, patched) = patch(
        &app,
        &path,
        JSON_PATCH,
        &json!([{"op": "replace", "path": "/name/0/family", "value": "Mbeki"},
                {"op": "add", "path": "/name/0/given/-", "value": "Ngozi"},
                {"op": "test", "path": "/gender", "value": "female"}]),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(patched["name"][0]["family"], "Mbeki");
    assert_eq!(patched["name"][0]["given"], json!(["Ada", "Ngozi"]));
    // The index follows the patched version.
    let (_, found) = json(app.get("Patient?family=mbeki").await).await;
    assert_eq!(found["entry"].as_array().map_or(0, Vec::len), 1);
    let (_, old) = json(app.get("Patient?family=okafor").await).await;
    assert!(old["entry"].as_array().is_none_or(Vec::is_empty));
    // If-Match: the current version applies, another one is a 412.
    let replace = json!([{"op": "replace", "path": "/gender", "value": "other"}]);
    let (status, _) = patch_with(&app, &path, JSON_PATCH, &replace, Some("W/\"1\"")).await;
    assert_eq!(status, 412);
    let (status, _) = patch_with(&app, &path, JSON_PATCH, &replace, Some("W/\"2\"")).await;
    assert_eq!(status, 200);
    // Failures change nothing: a failed test, a path that is not there, a
    // result that is not a valid Patient, a changed id, a bad document.
    for (body, want) in [
        (
            json!([{"op": "test", "path": "/gender", "value": "male"}]),
            422,
        ),
        (json!([{"op": "remove", "path": "/telecom"}]), 422),
        (
            json!([{"op": "replace", "path": "/gender", "value": "sometimes"}]),
            422,
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "another"}]),
            400,
        ),
        (json!({"op": "add"}), 400),
        (json!([{"op": "teleport", "path": "/x"}]), 400),
    ] {
        let (status, oo) = patch(&app, &path, JSON_PATCH, &body).await;
        assert_eq!(status, want, "{body}: {oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
    assert_eq!(version_of(&app, &path).await, "3");
    let res = app
        .client
        .patch(app.url(&path))
        .header("content-type", JSON_PATCH)
        .body("[{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .patch(app.url(&path))
        .header("content-type", "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
    // Nothing to patch: 404, and 410 once deleted.
    let (status, _) = patch(&app, "Patient/nobody", JSON_PATCH, &replace).await;
    assert_eq!(status, 404);
    assert!(app.delete(&path).await.status().is_success());
    let (status, _) = patch(&app, &path, JSON_PATCH, &replace).await;
    assert_eq!(status, 410);
}

async fn fhirpath_patch(app: TestApp) {
    let p = app
        .create(
            &json!({"resourceType": "Patient", "birthDate": "1970-01-01",
                        "name": [{"family": "Lindqvist", "given": ["Eva"]}]}),
        )
        .await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    let body = parameters(vec![
        operation(json!([{"name": "type", "valueCode": "replace"},
                         {"name": "path", "valueString": "Patient.birthDate"},
                         {"name": "value", "valueDate": "1971-02-03"}])),
        operation(json!([{"name": "type", "valueCode": "add"},
                         {"name": "path", "valueString": "Patient"},
                         {"name": "name", "valueString": "deceased"},
                         {"name": "value", "valueBoolean": false}])),
        operation(json!([{"name": "type", "valueCode": "insert"},
                         {"name": "path", "valueString": "Patient.identifier"},
                         {"name": "index", "valueInteger": 0},
                         {"name": "value", "valueIdentifier": {"system": "urn:mrn", "value": "77"}}])),
        operation(json!([{"name": "type", "valueCode": "delete"},
                         {"name": "path", "valueString": "Patient.name[0].given[0]"}])),
    ]);
    let (status, patched) = patch(&app, &path, FHIR, &body).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["birthDate"], "1971-02-03");
    assert_eq!(patched["deceasedBoolean"], false);
    assert_eq!(patched["identifier"][0]["value"], "77");
    assert!(patched["name"][0].get("given").is_none(), "{patched}");
    let (_, found) = json(
        app.get("Patient?identifier=urn:mrn|77&birthdate=1971-02-03")
            .await,
    )
    .await;
    assert_eq!(found["entry"].as_array().map_or(0, Vec::len), 1);
    // A path that selects nothing, or several, is a 422; a document that is
    // not a FHIRPath Patch a 400; nothing changes.
    for (body, want) in [
        (
            parameters(vec![operation(
                json!([{"name": "type", "valueCode": "replace"},
                                             {"name": "path", "valueString": "Patient.gender"},
                                             {"name": "value", "valueCode": "male"}]),
            )]),
            422,
        ),
        (
            parameters(vec![operation(
                json!([{"name": "type", "valueCode": "replace"},
                                             {"name": "path", "valueString": "Patient.name.family | Patient.birthDate"},
                                             {"name": "value", "valueString": "x"}]),
            )]),
            422,
        ),
        (json!({"resourceType": "Patient"}), 400),
        (
            parameters(vec![operation(
                json!([{"name": "type", "valueCode": "shred"},
                                          {"name": "path", "valueString": "Patient"}]),
            )]),
            400,
        ),
    ] {
        let (status, oo) = patch(&app, &path, FHIR, &body).await;
        assert_eq!(status, want, "{body}: {oo}");
    }
    assert_eq!(version_of(&app, &path).await, "2");
}

/// Patches racing on one resource (no If-Match): each is applied to the
/// version it finally writes after, so none is lost.
async fn concurrent_patches_lose_nothing(app: TestApp) {
    let p = app
        .create(
            &json!({"resourceType": "Patient", "name": [{"family": "Race", "given": ["start"]}]}),
        )
        .await;
    let path = format!("Patient/{}", p["id"].as_str().unwrap());
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (app, path) = (app.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            patch(
                &app,
                &path,
                JSON_PATCH,
                &json!([{"op": "add", "path": "/name/0/given/-", "value": format!("g{i}")}]),
            )
            .await
            .0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, r) = json(app.get(&path).await).await;
    assert_eq!(r["meta"]["versionId"], "6");
    let mut given: Vec<String> = r["name"][0]["given"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    given.sort();
    assert_eq!(given, ["g0", "g1", "g2", "g3", "g4", "start"]);
}

both_backends!(json_patch);
both_backends!(fhirpath_patch);
both_backends!(concurrent_patches_lose_nothing);

/// PATCH entries in Bundles: a JSON Patch in a Binary and a FHIRPath Patch in
/// a Parameters, in a transaction (with If-Match) and in a batch.
async fn patch_entries(app: TestApp) {
    use base64::Engine;
    let p = app
        .create(
            &json!({"resourceType": "Patient", "active": false, "name": [{"family": "Bundled"}]}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let json_patch = base64::engine::general_purpose::STANDARD
        .encode(br#"[{"op":"replace","path":"/active","value":true}]"#);
    let body = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Binary", "contentType": JSON_PATCH, "data": json_patch},
         "request": {"method": "PATCH", "url": format!("Patient/{id}"), "ifMatch": "W/\"1\""}}]});
    let (status, res) = json(app.post("", body.to_string()).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["entry"][0]["response"]["status"], "200 OK");
    let (_, now) = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(
        (now["active"].as_bool(), now["meta"]["versionId"].as_str()),
        (Some(true), Some("2"))
    );
    // The same If-Match again: the transaction fails, nothing changes.
    let (status, _) = json(app.post("", body.to_string()).await).await;
    assert_eq!(status, 412);
    // A FHIRPath Patch in a batch, beside an entry that fails on its own.
    let fp = parameters(vec![operation(
        json!([{"name": "type", "valueCode": "replace"},
                                              {"name": "path", "valueString": "Patient.name[0].family"},
                                              {"name": "value", "valueString": "Batched"}]),
    )]);
    let body = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": fp, "request": {"method": "PATCH", "url": format!("Patient/{id}")}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": format!("Patient/{id}")}}]});
    let (status, res) = json(app.post("", body.to_string()).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(res["entry"][1]["response"]["status"], "400");
    let (_, now) = json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(now["name"][0]["family"], "Batched");
    assert_eq!(now["meta"]["versionId"], "3");
}

both_backends!(patch_entries);
