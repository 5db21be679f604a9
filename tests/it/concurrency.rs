//! R4 3.1.0.6 (managing resource contention): version-aware updates never lose
//! an update, and history has no gaps.

use serde_json::json;

use crate::both_backends;
use crate::support::{TestApp, entry_versions, json};

async fn twenty_puts_with_the_same_if_match(app: TestApp) {
    let body = json!({"resourceType": "Patient", "id": "contended", "active": true});
    assert_eq!(
        app.put("Patient/contended", body.to_string())
            .await
            .status(),
        201
    );
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = app.client.clone();
        let url = app.url("Patient/contended");
        let body = json!({"resourceType": "Patient", "id": "contended", "gender": if i % 2 == 0 { "male" } else { "female" }});
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"1\"")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        19,
        "{statuses:?}"
    );
    let (_, h) = json(app.get("Patient/contended/_history").await).await;
    let versions: Vec<&str> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2", "1"]);
    // A stale If-Match after that is refused too.
    let res = app
        .client
        .put(app.url("Patient/contended"))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412);
    let (_, oo) = json(res).await;
    assert_eq!(oo["resourceType"], "OperationOutcome");
}
both_backends!(twenty_puts_with_the_same_if_match);

async fn twenty_unconditional_puts_leave_no_gaps(app: TestApp) {
    let body = json!({"resourceType": "Patient", "id": "busy", "active": true});
    assert_eq!(
        app.put("Patient/busy", body.to_string()).await.status(),
        201
    );
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url("Patient/busy");
        let body = body.to_string();
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .header("content-type", "application/fhir+json")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        let status = t.await.unwrap();
        // PostgreSQL may answer a lost race with 409; nothing else is acceptable.
        assert!(status == 200 || status == 409, "{status}");
    }
    let (_, h) = json(app.get("Patient/busy/_history?_count=100").await).await;
    let mut versions = entry_versions(&h);
    versions.reverse();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(versions, expected, "history has gaps or duplicates");
    assert!(versions.len() > 1);
}
both_backends!(twenty_unconditional_puts_leave_no_gaps);
