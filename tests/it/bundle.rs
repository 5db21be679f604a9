//! `batch` and `transaction` Bundles at the base (R4 3.1.0.11): placeholder
//! resolution, all-or-nothing transactions, independent batch entries,
//! ordering, limits, and concurrent transactions on one resource.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestApp, entry_versions, json};

fn entry(full_url: &str, method: &str, url: &str, resource: Value) -> Value {
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": method, "url": url}})
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}]})
}

fn observation(subject: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": subject}})
}

fn bundle(kind: &str, entries: Vec<Value>) -> String {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries}).to_string()
}

async fn total(app: &TestApp, query: &str) -> u64 {
    let (status, b) = json(app.get(&format!("{query}&_summary=count")).await).await;
    assert_eq!(status, 200, "{b}");
    b["total"].as_u64().unwrap()
}

async fn transaction_resolves_placeholders(app: TestApp) {
    let text = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:11111111-1111-4111-8111-111111111111\">the patient</a></div>";
    let mut obs = observation("urn:uuid:11111111-1111-4111-8111-111111111111", "8867-4");
    obs["encounter"] = json!({"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"});
    obs["text"] = json!({"status": "generated", "div": text});
    let body = bundle(
        "transaction",
        vec![
            // Referenced before the entry that defines it.
            entry(
                "urn:uuid:33333333-3333-4333-8333-333333333333",
                "POST",
                "Observation",
                obs,
            ),
            entry(
                "urn:uuid:11111111-1111-4111-8111-111111111111",
                "POST",
                "Patient",
                patient("Placeholder"),
            ),
            entry(
                "urn:uuid:22222222-2222-4222-8222-222222222222",
                "POST",
                "Encounter",
                json!({"resourceType": "Encounter", "status": "finished",
                       "class": {"code": "AMB"},
                       "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}}),
            ),
            entry(
                "urn:uuid:44444444-4444-4444-8444-444444444444",
                "PUT",
                "Patient/fixed-id",
                {
                    let mut p = patient("Fixed");
                    p["id"] = json!("fixed-id");
                    p["link"] = json!([{"other": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}, "type": "seealso"}]);
                    p
                },
            ),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["type"], "transaction-response");
    let entries = res["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    for e in &entries[..4] {
        assert_eq!(e["response"]["status"], "201 Created", "{e}");
        assert_eq!(e["response"]["etag"], "W/\"1\"");
        assert!(e["response"]["lastModified"].is_string());
    }
    let location = |i: usize| {
        entries[i]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let patient_id = location(1).split('/').nth(1).unwrap().to_owned();
    let encounter_id = location(2).split('/').nth(1).unwrap().to_owned();
    assert_eq!(location(3), "Patient/fixed-id/_history/1");
    assert_eq!(
        location(0),
        format!(
            "Observation/{}/_history/1",
            entries[0]["resource"]["id"].as_str().unwrap()
        )
    );
    // The stored resources carry the server ids, in references and narrative.
    let (_, obs) = json(
        app.get(location(0).split("/_history").next().unwrap())
            .await,
    )
    .await;
    assert_eq!(obs["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(
        obs["encounter"]["reference"],
        format!("Encounter/{encounter_id}")
    );
    assert!(
        obs["text"]["div"]
            .as_str()
            .unwrap()
            .contains(&format!("href=\"Patient/{patient_id}\""))
    );
    let (_, fixed) = json(app.get("Patient/fixed-id").await).await;
    assert_eq!(
        fixed["link"][0]["other"]["reference"],
        format!("Patient/{patient_id}")
    );
    // And the index rows were written with them.
    assert_eq!(
        total(&app, &format!("Observation?patient={patient_id}")).await,
        1
    );
    assert_eq!(
        total(&app, &format!("Encounter?subject=Patient/{patient_id}")).await,
        1
    );
    // A placeholder that no entry defines is refused.
    let body = bundle(
        "transaction",
        vec![entry(
            "urn:uuid:55555555-5555-4555-8555-555555555555",
            "POST",
            "Observation",
            observation("urn:uuid:66666666-6666-4666-8666-666666666666", "1-8"),
        )],
    );
    let (status, oo) = json(app.post("", body).await).await;
    assert_eq!(status, 400, "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[0]")
    );
}
both_backends!(transaction_resolves_placeholders);

/// Ten entries; the seventh fails. Nothing of the other nine is kept.
async fn transaction_is_all_or_nothing(app: TestApp) {
    let existing = app.create(&patient("Existing")).await;
    let existing_id = existing["id"].as_str().unwrap();
    let attempt = |seventh: Value| {
        let mut entries: Vec<Value> = (0..10)
            .map(|i| {
                entry(
                    &format!("urn:uuid:00000000-0000-4000-8000-00000000000{i}"),
                    "POST",
                    "Patient",
                    patient(&format!("Rollback{i}")),
                )
            })
            .collect();
        entries[6] = seventh;
        // Writes of every kind before the failing one.
        entries[2] = json!({"resource": {"resourceType": "Patient", "id": existing_id, "name": [{"family": "Changed"}]},
                            "request": {"method": "PUT", "url": format!("Patient/{existing_id}")}});
        entries[3] = json!({"request": {"method": "DELETE", "url": "Patient/never-there"}});
        bundle("transaction", entries)
    };
    // Invalid content (found before anything is written): 422.
    let invalid = entry(
        "urn:uuid:x",
        "POST",
        "Patient",
        json!({"resourceType": "Patient", "gender": "sometimes"}),
    );
    let (status, oo) = json(app.post("", attempt(invalid)).await).await;
    assert!(status == 400 || status == 422, "{status} {oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[6]"),
        "{oo}"
    );
    // A failed precondition found by the store after the other writes ran: 412.
    let stale = json!({"resource": {"resourceType": "Patient", "id": "p7", "name": [{"family": "Stale"}]},
                       "request": {"method": "PUT", "url": "Patient/p7", "ifMatch": "W/\"5\""}});
    let (status, oo) = json(app.post("", attempt(stale)).await).await;
    assert_eq!(status, 412, "{oo}");
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[6]"),
        "{oo}"
    );
    // Nothing kept: no resources, no index rows, no new version.
    for i in 0..10 {
        assert_eq!(total(&app, &format!("Patient?family=Rollback{i}")).await, 0);
    }
    assert_eq!(total(&app, "Patient?family=Changed").await, 0);
    assert_eq!(total(&app, "Patient?_id=p7").await, 0);
    let (_, read) = json(app.get(&format!("Patient/{existing_id}")).await).await;
    assert_eq!(read["meta"]["versionId"], "1");
    let (_, history) = json(app.get(&format!("Patient/{existing_id}/_history")).await).await;
    assert_eq!(history["entry"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(total(&app, "Patient?_id=never-there").await, 0);
    let (_, all) = json(app.get("Patient?_summary=count").await).await;
    assert_eq!(all["total"], 1);
}
both_backends!(transaction_is_all_or_nothing);

/// DELETE runs before POST, PUT and GET; GET sees the writes; the response
/// keeps the request order.
async fn transaction_order_and_reads(app: TestApp) {
    let old = app.create(&patient("Old")).await;
    let old_id = old["id"].as_str().unwrap();
    let body = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "GET", "url": "Patient/kept"}}),
            entry("urn:uuid:k", "PUT", "Patient/kept", {
                let mut p = patient("Kept");
                p["id"] = json!("kept");
                p
            }),
            json!({"request": {"method": "DELETE", "url": format!("Patient/{old_id}")}}),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    let e = res["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "200 OK");
    assert_eq!(e[0]["resource"]["name"][0]["family"], "Kept");
    assert_eq!(e[1]["response"]["status"], "201 Created");
    assert_eq!(e[2]["response"]["status"], "204 No Content");
    assert_eq!(app.get(&format!("Patient/{old_id}")).await.status(), 410);
    // The same resource written twice in one transaction is refused.
    let twice = bundle(
        "transaction",
        vec![
            json!({"request": {"method": "DELETE", "url": "Patient/kept"}}),
            json!({"request": {"method": "DELETE", "url": "Patient/kept"}}),
        ],
    );
    assert_eq!(app.post("", twice).await.status(), 400);
    assert_eq!(app.get("Patient/kept").await.status(), 200);
}
both_backends!(transaction_order_and_reads);

async fn batch_entries_fail_on_their_own(app: TestApp) {
    let body = bundle(
        "batch",
        vec![
            entry("urn:uuid:a", "POST", "Patient", patient("BatchOne")),
            entry(
                "urn:uuid:b",
                "POST",
                "Patient",
                json!({"resourceType": "Patient", "gender": "sometimes"}),
            ),
            json!({"request": {"method": "GET", "url": "Patient/nowhere"}}),
            json!({"request": {"method": "GET", "url": "Patient?name=x&_include=Patient:organization"}}),
            json!({"request": {"method": "FETCH", "url": "Patient"}}),
            entry(
                "urn:uuid:c",
                "POST",
                "Observation",
                observation("urn:uuid:a", "8867-4"),
            ),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["type"], "batch-response");
    let e = res["entry"].as_array().unwrap();
    let statuses: Vec<&str> = e
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["201 Created", "422", "404", "501", "400", "201 Created"],
        "{res}"
    );
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert!(
        e[4]["response"]["outcome"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[4]")
    );
    assert_eq!(total(&app, "Patient?family=BatchOne").await, 1);
    // References between batch entries resolve too.
    let patient_id = e[0]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap();
    assert_eq!(
        total(&app, &format!("Observation?subject=Patient/{patient_id}")).await,
        1
    );
    // Not a batch or transaction; not a Bundle.
    let (status, _) = json(
        app.post(
            "",
            json!({"resourceType": "Bundle", "type": "collection"}).to_string(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = json(app.post("", patient("x").to_string()).await).await;
    assert_eq!(status, 400);
}
both_backends!(batch_entries_fail_on_their_own);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_count_limit() {
    let app = TestApp::start_with(Backend::Sqlite, |c| c.fhir.max_bundle_entries = 3).await;
    let entries = (0..4)
        .map(|i| {
            entry(
                &format!("urn:uuid:{i}"),
                "POST",
                "Patient",
                patient("Limit"),
            )
        })
        .collect();
    let (status, oo) = json(app.post("", bundle("transaction", entries)).await).await;
    assert_eq!(status, 413);
    assert!(
        oo["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("fhir.max_bundle_entries")
    );
    assert_eq!(total(&app, "Patient?family=Limit").await, 0);
}

/// Concurrent transactions updating the same resource: every one is kept,
/// as its own version, none lost.
async fn concurrent_transactions_keep_every_update(app: TestApp) {
    let mut p = patient("Shared");
    p["id"] = json!("shared");
    assert_eq!(app.put("Patient/shared", p.to_string()).await.status(), 201);
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut p = patient(&format!("Shared{i}"));
            p["id"] = json!("shared");
            let body = bundle(
                "transaction",
                vec![
                    entry("urn:uuid:s", "PUT", "Patient/shared", p),
                    entry(
                        "urn:uuid:o",
                        "POST",
                        "Observation",
                        observation("urn:uuid:s", &format!("c{i}")),
                    ),
                ],
            );
            app.post("", body).await.status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let (_, history) = json(app.get("Patient/shared/_history?_count=50").await).await;
    let mut versions = entry_versions(&history);
    versions.sort_unstable();
    assert_eq!(versions, (1..=11).collect::<Vec<_>>());
    let families: std::collections::BTreeSet<String> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["name"][0]["family"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(families.len(), 11, "every update is in the history");
    assert_eq!(total(&app, "Observation?subject=Patient/shared").await, 10);
}
both_backends!(concurrent_transactions_keep_every_update);

fn with_mrn(family: &str, mrn: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}],
           "identifier": [{"system": "urn:mrn", "value": mrn}]})
}

fn statuses(res: &Value) -> Vec<String> {
    res["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect()
}

/// `ifNoneExist`, `PUT`/`DELETE [type]?…` entries and conditional references
/// (`Patient?identifier=…`), with 0, 1 and 2 matches.
async fn conditional_entries_and_references(app: TestApp) {
    let load = |mrn: &str| {
        bundle(
            "transaction",
            vec![
                json!({"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                       "resource": with_mrn("Feed", mrn),
                       "request": {"method": "POST", "url": "Patient",
                                   "ifNoneExist": format!("identifier=urn:mrn|{mrn}")}}),
                entry(
                    "urn:uuid:33333333-3333-4333-8333-333333333333",
                    "POST",
                    "Observation",
                    observation("urn:uuid:22222222-2222-4222-8222-222222222222", "8867-4"),
                ),
            ],
        )
    };
    // First time: the patient is created; the second time it is found, and
    // the new observation points at it.
    let (status, first) = json(app.post("", load("m-1")).await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(statuses(&first), ["201 Created", "201 Created"]);
    let (status, second) = json(app.post("", load("m-1")).await).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(statuses(&second), ["200 OK", "201 Created"]);
    let patient_url = first["entry"][0]["fullUrl"].as_str().unwrap().to_owned();
    assert_eq!(second["entry"][0]["fullUrl"], patient_url.as_str());
    let patient_id = patient_url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(total(&app, "Patient?identifier=urn:mrn|m-1").await, 1);
    assert_eq!(
        total(&app, &format!("Observation?subject=Patient/{patient_id}")).await,
        2
    );
    // A conditional reference to exactly one match is rewritten to it.
    let referring = bundle(
        "transaction",
        vec![entry(
            "urn:uuid:44444444-4444-4444-8444-444444444444",
            "POST",
            "Observation",
            observation("Patient?identifier=urn:mrn|m-1", "1234-5"),
        )],
    );
    let (status, res) = json(app.post("", referring).await).await;
    assert_eq!(status, 200, "{res}");
    let obs_url = res["entry"][0]["fullUrl"].as_str().unwrap();
    let (_, obs) = json(app.get(obs_url.split("/fhir/").nth(1).unwrap()).await).await;
    assert_eq!(
        obs["subject"]["reference"],
        format!("Patient/{patient_id}").as_str()
    );
    // No match, or two: the transaction fails with 412 and keeps nothing.
    for mrn in ["m-none", "m-2"] {
        if mrn == "m-2" {
            app.create(&with_mrn("A", "m-2")).await;
            app.create(&with_mrn("B", "m-2")).await;
        }
        let before = total(&app, "Observation?code=1234-5").await;
        let body = bundle(
            "transaction",
            vec![
                entry(
                    "urn:uuid:55555555-5555-4555-8555-555555555555",
                    "POST",
                    "Observation",
                    observation("Patient?identifier=urn:mrn|m-1", "1234-5"),
                ),
                entry(
                    "urn:uuid:66666666-6666-4666-8666-666666666666",
                    "POST",
                    "Observation",
                    observation(&format!("Patient?identifier=urn:mrn|{mrn}"), "1234-5"),
                ),
            ],
        );
        let (status, oo) = json(app.post("", body).await).await;
        assert_eq!(status, 412, "{oo}");
        assert!(
            oo["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("Bundle.entry[1]"),
            "{oo}"
        );
        assert_eq!(total(&app, "Observation?code=1234-5").await, before);
    }
    // In a batch only the entry with the unresolved reference fails.
    let body = bundle(
        "batch",
        vec![
            entry(
                "urn:uuid:77777777-7777-4777-8777-777777777777",
                "POST",
                "Observation",
                observation("Patient?identifier=urn:mrn|m-2", "1234-5"),
            ),
            entry(
                "urn:uuid:88888888-8888-4888-8888-888888888888",
                "POST",
                "Observation",
                observation("Patient?identifier=urn:mrn|m-1", "1234-5"),
            ),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(statuses(&res), ["412", "201 Created"]);
    // Conditional update and delete entries.
    let body = bundle(
        "transaction",
        vec![
            json!({"resource": with_mrn("Renamed", "m-1"),
                   "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|m-1"}}),
            json!({"resource": with_mrn("Fresh", "m-3"),
                   "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|m-3"}}),
            json!({"request": {"method": "DELETE", "url": "Patient?identifier=urn:mrn|m-none"}}),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(statuses(&res), ["200 OK", "201 Created", "204 No Content"]);
    let (_, renamed) = json(app.get(&format!("Patient/{patient_id}")).await).await;
    assert_eq!(renamed["name"][0]["family"], "Renamed");
    assert_eq!(renamed["meta"]["versionId"], "2");
    let body = bundle(
        "transaction",
        vec![json!({"request": {"method": "DELETE", "url": "Patient?identifier=urn:mrn|m-3"}})],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(
        (status, statuses(&res)),
        (200, vec!["204 No Content".to_owned()])
    );
    assert_eq!(total(&app, "Patient?identifier=urn:mrn|m-3").await, 0);
    // A conditional update or delete matching two: 412.
    for request in [
        json!({"resource": with_mrn("X", "m-2"), "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|m-2"}}),
        json!({"request": {"method": "DELETE", "url": "Patient?identifier=urn:mrn|m-2"}}),
    ] {
        let (status, oo) = json(app.post("", bundle("transaction", vec![request])).await).await;
        assert_eq!(status, 412, "{oo}");
    }
    assert_eq!(total(&app, "Patient?identifier=urn:mrn|m-2").await, 2);
}
both_backends!(conditional_entries_and_references);

/// `GET [type]?…` entries: a searchset Bundle of the first page as the entry's
/// resource, in a batch and in a transaction (after its writes).
async fn search_entries(app: TestApp) {
    let body = bundle(
        "transaction",
        vec![
            entry(
                "urn:uuid:99999999-9999-4999-8999-999999999999",
                "POST",
                "Patient",
                with_mrn("Searched", "s-1"),
            ),
            json!({"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|s-1"}}),
            json!({"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|nobody&_count=5"}}),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(statuses(&res), ["201 Created", "200 OK", "200 OK"]);
    let found = &res["entry"][1]["resource"];
    assert_eq!(found["resourceType"], "Bundle");
    assert_eq!(found["type"], "searchset");
    assert_eq!(
        found["entry"][0]["resource"]["name"][0]["family"],
        "Searched"
    );
    assert_eq!(found["entry"][0]["search"]["mode"], "match");
    assert!(
        res["entry"][2]["resource"]["entry"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    // Unknown parameters are refused in an entry (400), on their own in a batch.
    let body = bundle(
        "batch",
        vec![
            json!({"request": {"method": "GET", "url": "Patient?bogus=1"}}),
            json!({"request": {"method": "GET", "url": "Patient?identifier=urn:mrn|s-1"}}),
        ],
    );
    let (status, res) = json(app.post("", body).await).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(statuses(&res), ["400", "200 OK"]);
}
both_backends!(search_entries);
