//! R4 3.1.0.1 HTTP semantics: ETag and conditional read, Prefer, content
//! negotiation, errors as OperationOutcome, and the CapabilityStatement.

use serde_json::json;

use crate::support::{Backend, TestApp, json};

async fn app() -> TestApp {
    TestApp::start(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_read_answers_304() {
    let app = app().await;
    let created = app
        .create(&json!({"resourceType": "Patient", "active": true}))
        .await;
    let url = app.url(&format!("Patient/{}", created["id"].as_str().unwrap()));
    let res = app
        .client
        .get(&url)
        .header("if-none-match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"], "W/\"1\"");
    let res = app
        .client
        .get(&url)
        .header("if-none-match", "W/\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let last_modified = res.headers()["last-modified"].to_str().unwrap().to_owned();
    let res = app
        .client
        .get(&url)
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let res = app
        .client
        .get(&url)
        .header("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_return() {
    let app = app().await;
    let body = json!({"resourceType": "Patient", "active": true}).to_string();
    let minimal = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(minimal.status(), 201);
    assert!(minimal.headers().contains_key("location") && minimal.headers().contains_key("etag"));
    assert!(minimal.text().await.unwrap().is_empty());
    let oo = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, oo) = json(oo).await;
    assert_eq!(status, 201);
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["severity"], "information");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_negotiation() {
    let app = app().await;
    let created = app
        .create(&json!({"resourceType": "Patient", "active": true}))
        .await;
    let path = format!("Patient/{}", created["id"].as_str().unwrap());
    let ct = |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().to_owned();
    let r = app
        .client
        .get(app.url(&path))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(ct(&r).starts_with("application/json"));
    let r = app
        .client
        .get(app.url(&path))
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert!(ct(&r).starts_with("application/fhir+json"));
    let r = app.get(&format!("{path}?_format=json")).await;
    assert!(ct(&r).starts_with("application/fhir+json"));
    let r = app.get(&format!("{path}?_format=application/json")).await;
    assert!(ct(&r).starts_with("application/json"));
    let r = app
        .client
        .get(app.url(&path))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert!(ct(&r).starts_with("application/fhir+xml"));
    let r = app
        .client
        .get(app.url(&path))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
    let pretty = app
        .get(&format!("{path}?_pretty=true"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        pretty.contains("\n  \"resourceType\": \"Patient\""),
        "{pretty}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pretty).unwrap(),
        created
    );
    let r = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "application/json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "application/json is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_operation_outcomes() {
    let app = TestApp::start_with(Backend::Sqlite, |c| c.http.max_body_bytes = 2048).await;
    for (res, status) in [
        (app.get("no/such/endpoint/here/at/all").await, 404),
        (
            app.client.patch(app.url("Patient")).send().await.unwrap(),
            405,
        ),
        (app.get("Observation?_sort=code-value-quantity").await, 501),
        (
            app.post(
                "Patient",
                format!(
                    "{{\"resourceType\":\"Patient\",\"id\":\"{}\"}}",
                    "a".repeat(4000)
                ),
            )
            .await,
            413,
        ),
        (
            app.client
                .put(app.url("Patient/x"))
                .header("content-type", "application/fhir+json")
                .header("if-match", "3")
                .body("{}")
                .send()
                .await
                .unwrap(),
            400,
        ),
    ] {
        let (got, oo) = json(res).await;
        assert_eq!(got, status, "{oo}");
        assert_eq!(oo["resourceType"], "OperationOutcome");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_returned_and_kept() {
    let app = app().await;
    let res = app.get("metadata").await;
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36);
    let res = app
        .client
        .get(app.url("metadata"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
    let res = app
        .client
        .get(app.url("metadata"))
        .header("x-request-id", "bad id\"with quotes")
        .send()
        .await
        .unwrap();
    assert_ne!(res.headers()["x-request-id"], "bad id\"with quotes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_statement_is_honest() {
    let app = app().await;
    let (status, cs) = json(app.get("metadata").await).await;
    assert_eq!(status, 200);
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert_eq!(cs["kind"], "instance");
    let system: Vec<&str> = cs["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        system,
        ["transaction", "batch", "search-system", "history-system"]
    );
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 146);
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let interactions: Vec<&str> = patient["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    for i in [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ] {
        assert!(interactions.contains(&i), "{i}");
    }
    assert_eq!(patient["operation"][0]["name"], "everything");
    let params: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "gender",
        "general-practitioner",
        "active",
        "name",
        "family",
        "identifier",
        "telecom",
        "birthdate",
        "death-date",
    ] {
        assert!(params.contains(&p), "{p} missing from {params:?}");
    }
    // Composite parameters are searchable through their components.
    let obs = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    let obs_params: Vec<&str> = obs["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(obs_params.contains(&"code") && obs_params.contains(&"code-value-quantity"));
}
