//! R4 3.1.0: create, read, vread, update, delete and history for Patient,
//! Observation and Encounter.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{TestApp, json};

fn samples() -> Vec<Value> {
    vec![
        json!({"resourceType": "Patient", "name": [{"family": "Example", "given": ["Pat"]}], "gender": "female", "birthDate": "1970-03-04"}),
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": "Patient/example"},
               "effectiveDateTime": "2024-05-06T07:08:09+02:00",
               "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
               "subject": {"reference": "Patient/example"},
               "period": {"start": "2024-05-06T07:00:00Z", "end": "2024-05-06T08:00:00Z"}}),
    ]
}

async fn lifecycle(app: TestApp) {
    for sample in samples() {
        let t = sample["resourceType"].as_str().unwrap().to_owned();
        // create
        let res = app.post(&t, sample.to_string()).await;
        assert_eq!(res.status(), 201);
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(res.headers()["etag"], "W/\"1\"");
        let (_, created) = json(res).await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(location, app.url(&format!("{t}/{id}/_history/1")));
        assert_eq!(created["meta"]["versionId"], "1");
        // read
        let (status, read) = json(app.get(&format!("{t}/{id}")).await).await;
        assert_eq!(status, 200);
        assert_eq!(read, created);
        // update
        let mut changed = read.clone();
        changed["meta"] = json!({"versionId": "99", "lastUpdated": "2000-01-01T00:00:00Z"});
        changed["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">v2</div>"});
        let res = app.put(&format!("{t}/{id}"), changed.to_string()).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["etag"], "W/\"2\"");
        let (_, updated) = json(res).await;
        assert_eq!(
            updated["meta"]["versionId"], "2",
            "versionId is server-owned"
        );
        assert_ne!(
            updated["meta"]["lastUpdated"], "2000-01-01T00:00:00Z",
            "lastUpdated is server-owned"
        );
        assert_eq!(updated["text"]["div"], changed["text"]["div"]);
        // vread both versions
        let (status, v1) = json(app.get(&format!("{t}/{id}/_history/1")).await).await;
        assert_eq!((status, &v1), (200, &created));
        let (status, v2) = json(app.get(&format!("{t}/{id}/_history/2")).await).await;
        assert_eq!((status, &v2), (200, &updated));
        assert_eq!(app.get(&format!("{t}/{id}/_history/3")).await.status(), 404);
        // delete, then read is 410 and vread still works
        let res = app.delete(&format!("{t}/{id}")).await;
        assert_eq!(res.status(), 204);
        let (status, oo) = json(app.get(&format!("{t}/{id}")).await).await;
        assert_eq!(status, 410);
        assert_eq!(oo["issue"][0]["code"], "deleted");
        assert_eq!(app.get(&format!("{t}/{id}/_history/2")).await.status(), 200);
        assert_eq!(
            app.delete(&format!("{t}/{id}")).await.status(),
            204,
            "delete is idempotent"
        );
        // instance history, newest first, with the delete
        let (status, h) = json(app.get(&format!("{t}/{id}/_history")).await).await;
        assert_eq!(status, 200);
        assert_eq!(h["type"], "history");
        let entries = h["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0]["request"]["method"], "DELETE");
        assert!(entries[0].get("resource").is_none());
        assert_eq!(entries[1]["resource"], updated);
        assert_eq!(entries[2]["resource"], created);
        assert_eq!(entries[2]["request"]["method"], "POST");
        // update after delete brings it back as a new version
        let res = app.put(&format!("{t}/{id}"), changed.to_string()).await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["etag"], "W/\"4\"");
    }
    // type and system history see everything
    let (_, h) = json(app.get("Patient/_history").await).await;
    assert_eq!(h["entry"].as_array().unwrap().len(), 4);
    assert!(
        h["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["fullUrl"].as_str().unwrap().contains("/Patient/"))
    );
    let (_, h) = json(app.get("_history").await).await;
    assert_eq!(h["entry"].as_array().unwrap().len(), 12);
}
both_backends!(lifecycle);

async fn update_creates_with_client_id(app: TestApp) {
    let body = json!({"resourceType": "Patient", "id": "client-chosen.1", "active": true});
    let res = app.put("Patient/client-chosen.1", body.to_string()).await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        app.url("Patient/client-chosen.1/_history/1")
    );
    let (status, read) = json(app.get("Patient/client-chosen.1").await).await;
    assert_eq!(status, 200);
    assert_eq!(read["active"], true);
    assert_eq!(app.get("Patient/unknown-id").await.status(), 404);
    assert_eq!(app.get("Patient/unknown-id/_history").await.status(), 404);
    assert_eq!(app.delete("Patient/unknown-id").await.status(), 404);
    assert_eq!(app.get("Patient/bad_id").await.status(), 400);
    assert_eq!(app.get("NotAType/1").await.status(), 404);
}
both_backends!(update_creates_with_client_id);

async fn history_pages_and_since(app: TestApp) {
    let body = json!({"resourceType": "Patient", "id": "paged", "active": true});
    for _ in 0..5 {
        assert!(
            app.put("Patient/paged", body.to_string())
                .await
                .status()
                .is_success()
        );
    }
    let (_, first) = json(app.get("Patient/paged/_history?_count=2").await).await;
    let versions = |b: &Value| -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(versions(&first), ["5", "4"]);
    let mut seen = versions(&first);
    let mut page = first;
    loop {
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        let Some(next) = next else { break };
        // A write between pages must not shift what the next page holds.
        assert!(
            app.put(
                "Patient/other",
                json!({"resourceType": "Patient", "id": "other"}).to_string()
            )
            .await
            .status()
            .is_success()
        );
        let (status, p) = json(app.client.get(&next).send().await.unwrap()).await;
        assert_eq!(status, 200);
        seen.extend(versions(&p));
        page = p;
    }
    assert_eq!(seen, ["5", "4", "3", "2", "1"]);
    // _since keeps versions written at or after the instant
    let (_, all) = json(app.get("Patient/paged/_history").await).await;
    let v3_time = all["entry"][2]["resource"]["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = v3_time.replace('+', "%2B");
    let (_, recent) = json(
        app.get(&format!("Patient/paged/_history?_since={since}"))
            .await,
    )
    .await;
    let got = versions(&recent);
    assert!(
        got.starts_with(&["5".to_owned(), "4".to_owned(), "3".to_owned()]),
        "{got:?}"
    );
    assert_eq!(
        app.get("Patient/paged/_history?_since=yesterday")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.get("Patient/paged/_history?_count=-1").await.status(),
        400
    );
}
both_backends!(history_pages_and_since);
