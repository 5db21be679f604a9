//! `$validate` (R4 operation-resource-validate): type and instance level, the
//! resource as the body or in Parameters, `mode` create/update/delete; 200
//! with an OperationOutcome either way, and nothing stored.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{TestApp, json};

async fn validate(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    json(app.post(path, body.to_string()).await).await
}

fn errors(oo: &Value) -> Vec<String> {
    oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["severity"] == "error")
        .map(|i| i["diagnostics"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn validate_operation(app: TestApp) {
    let good = json!({"resourceType": "Patient", "gender": "female"});
    let (status, oo) = validate(&app, "Patient/$validate", &good).await;
    assert_eq!(status, 200, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert!(errors(&oo).is_empty(), "{oo}");
    // A required binding (Patient.gender) and a structure error: reported,
    // with where, and still 200.
    let bad = json!({"resourceType": "Patient", "gender": "sometimes", "birthDate": "yesterday"});
    let (status, oo) = validate(&app, "Patient/$validate", &bad).await;
    assert_eq!(status, 200, "{oo}");
    assert!(!errors(&oo).is_empty(), "{oo}");
    let expressions: Vec<&str> = oo["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    assert!(expressions.contains(&"Patient.gender"), "{oo}");
    // Nothing was stored.
    let (_, found) = json(app.get("Patient?gender=female").await).await;
    assert!(found["entry"].as_array().is_none_or(Vec::is_empty));
    // In Parameters, with a mode.
    let params = json!({"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": bad},
        {"name": "mode", "valueCode": "create"}]});
    let (status, oo) = validate(&app, "Patient/$validate", &params).await;
    assert_eq!(status, 200);
    assert!(!errors(&oo).is_empty());
    // mode=update at instance level: the id must be the instance's.
    let p = app.create(&good).await;
    let id = p["id"].as_str().unwrap();
    let mut update = good.clone();
    update["id"] = json!(id);
    let (status, oo) = validate(
        &app,
        &format!("Patient/{id}/$validate?mode=update"),
        &update,
    )
    .await;
    assert_eq!(status, 200);
    assert!(errors(&oo).is_empty(), "{oo}");
    update["id"] = json!("other");
    let (_, oo) = validate(
        &app,
        &format!("Patient/{id}/$validate?mode=update"),
        &update,
    )
    .await;
    assert!(!errors(&oo).is_empty(), "{oo}");
    // mode=delete: the instance must exist.
    let delete = json!({"resourceType": "Parameters", "parameter": [{"name": "mode", "valueCode": "delete"}]});
    let (status, oo) = validate(&app, &format!("Patient/{id}/$validate"), &delete).await;
    assert_eq!(status, 200, "{oo}");
    assert!(errors(&oo).is_empty());
    let (status, _) = validate(&app, "Patient/nobody/$validate", &delete).await;
    assert_eq!(status, 404);
    // Not a mode: 400. Invalid JSON: reported as an error issue.
    let (status, _) = validate(&app, "Patient/$validate?mode=destroy", &good).await;
    assert_eq!(status, 400);
    let (status, oo) = json(app.post("Patient/$validate", "{\"resourceType\":").await).await;
    assert_eq!(status, 200);
    assert!(!errors(&oo).is_empty());
    // The CapabilityStatement lists the operation.
    let (_, statement) = json(app.get("metadata").await).await;
    let obs = statement["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap()
        .clone();
    assert_eq!(obs["operation"][0]["name"], "validate");
}

both_backends!(validate_operation);
