//! Bulk Data export end to end (Bulk Data Access IG 2.0): kick-off with
//! `Prefer: respond-async`, polling, the manifest, NDJSON files equal to the
//! stored resources, `_type`, `_since`, `_typeFilter`, Patient and Group
//! level, cancel, and files much larger than the part held in memory.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, json};

async fn kick_off(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap()
}

/// Kicks off an export and polls it to its manifest.
async fn export(app: &TestApp, path: &str) -> Value {
    let res = kick_off(app, path).await;
    assert_eq!(res.status(), 202, "{path}");
    let status_url = res.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    for _ in 0..600 {
        let res = app.client.get(&status_url).send().await.unwrap();
        match res.status().as_u16() {
            202 => {
                assert!(res.headers().contains_key("x-progress"));
                assert!(res.headers().contains_key("retry-after"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            200 => return serde_json::from_str(&res.text().await.unwrap()).unwrap(),
            other => panic!("{path}: status {other}: {}", res.text().await.unwrap()),
        }
    }
    panic!("{path}: the export did not finish");
}

/// The resources of each output file, by type: (ids, raw size in bytes).
async fn download(app: &TestApp, manifest: &Value) -> Vec<(String, BTreeSet<String>, usize)> {
    let mut out = Vec::new();
    for f in manifest["output"].as_array().unwrap() {
        let res = app
            .client
            .get(f["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/fhir+ndjson");
        let text = res.text().await.unwrap();
        let mut ids = BTreeSet::new();
        for line in text.lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            assert_eq!(r["resourceType"], f["type"]);
            ids.insert(r["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(f["count"].as_u64().unwrap() as usize, ids.len());
        out.push((f["type"].as_str().unwrap().to_owned(), ids, text.len()));
    }
    out
}

async fn stored_ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let (_, b) = json(app.get(&format!("{query}&_count=1000")).await).await;
    b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn obs(patient: &str, code: &str, note: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "note": [{"text": note}]})
}

async fn bulk_export(backend: Backend) {
    // Parts of 512 bytes: every file below is many parts.
    let app = TestApp::start_with(backend, |c| c.fhir.export_part_bytes = 512).await;
    let mut patients = Vec::new();
    for family in ["Ames", "Baker", "Cole"] {
        let p = app
            .create(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
            .await;
        patients.push(p["id"].as_str().unwrap().to_owned());
    }
    for (i, p) in patients.iter().enumerate() {
        for k in 0..4 {
            let code = if k % 2 == 0 { "8867-4" } else { "1234-5" };
            app.create(&obs(
                p,
                code,
                &format!("reading {i}-{k} {}", "x".repeat(200)),
            ))
            .await;
        }
    }
    app.create(&json!({"resourceType": "Organization", "name": "Outside any compartment"}))
        .await;
    let group = app
        .create(
            &json!({"resourceType": "Group", "type": "person", "actual": true,
                        "member": [{"entity": {"reference": format!("Patient/{}", patients[0])}},
                                   {"entity": {"reference": format!("Patient/{}", patients[2])}}]}),
        )
        .await;

    // The kick-off needs respond-async, and known parameters.
    let res = app.get("$export").await;
    assert_eq!(res.status(), 400);
    for bad in [
        "$export?_type=Nothing",
        "$export?_outputFormat=text/csv",
        "$export?_bogus=1",
        "$export?_since=yesterday",
        "$export?_typeFilter=Observation?bogus=1",
    ] {
        assert_eq!(kick_off(&app, bad).await.status(), 400, "{bad}");
    }

    // System level, two types: the files hold exactly what is stored.
    let manifest = export(&app, "$export?_type=Patient,Observation").await;
    assert!(manifest["transactionTime"].is_string());
    assert_eq!(manifest["requiresAccessToken"], true);
    assert!(
        manifest["request"]
            .as_str()
            .unwrap()
            .ends_with("$export?_type=Patient,Observation")
    );
    let files = download(&app, &manifest).await;
    let types: Vec<&str> = files.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types, ["Observation", "Patient"]);
    assert_eq!(
        files[0].1,
        stored_ids(&app, "Observation?status=final").await
    );
    assert_eq!(files[0].1.len(), 12);
    assert_eq!(files[1].1, patients.iter().cloned().collect());
    // Far larger than the part held in memory.
    assert!(files[0].2 > 5 * 512, "{}", files[0].2);

    // _typeFilter: only the matches.
    let manifest = export(
        &app,
        "$export?_type=Observation&_typeFilter=Observation%3Fcode%3D8867-4",
    )
    .await;
    let files = download(&app, &manifest).await;
    assert_eq!(
        files[0].1,
        stored_ids(&app, "Observation?code=8867-4").await
    );
    assert_eq!(files[0].1.len(), 6);

    // _since: only what changed after it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = app.create(&obs(&patients[1], "8867-4", "late")).await;
    let stamp = time_text(since);
    let manifest = export(&app, &format!("$export?_type=Observation&_since={stamp}")).await;
    let files = download(&app, &manifest).await;
    assert_eq!(
        files[0].1,
        BTreeSet::from([late["id"].as_str().unwrap().to_owned()])
    );

    // Patient level: what is in a patient's compartment (the Group lists
    // patients as members), not the Organization.
    let manifest = export(&app, "Patient/$export").await;
    let files = download(&app, &manifest).await;
    let types: Vec<&str> = files.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types, ["Group", "Observation", "Patient"]);
    assert_eq!(files[1].1.len(), 13);
    assert_eq!(files[2].1.len(), 3);

    // Group level: the members and their observations only.
    let gid = group["id"].as_str().unwrap();
    let manifest = export(
        &app,
        &format!("Group/{gid}/$export?_type=Observation,Patient"),
    )
    .await;
    let files = download(&app, &manifest).await;
    assert_eq!(
        files[1].1,
        BTreeSet::from([patients[0].clone(), patients[2].clone()])
    );
    let member_obs: BTreeSet<String> = stored_ids(
        &app,
        &format!("Observation?subject=Patient/{}", patients[0]),
    )
    .await
    .union(
        &stored_ids(
            &app,
            &format!("Observation?subject=Patient/{}", patients[2]),
        )
        .await,
    )
    .cloned()
    .collect();
    assert_eq!(files[0].1, member_obs);
    assert_eq!(kick_off(&app, "Group/nobody/$export").await.status(), 404);

    // Cancel: the status URL and the files are gone.
    let res = kick_off(&app, "$export?_type=Observation").await;
    let status_url = res.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let res = app.client.delete(&status_url).send().await.unwrap();
    assert_eq!(res.status(), 202);
    let res = app.client.get(&status_url).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // A job still running when cancelled does not come back when it ends.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res = app.client.get(&status_url).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let file = files[0].0.clone();
    let old_url = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    assert!(old_url.contains(&file));
    let id = status_url.rsplit('/').next().unwrap();
    let res = app
        .get(&format!("$export-file/{id}/Observation.ndjson"))
        .await;
    assert_eq!(res.status(), 404);
}

/// An instant (UTC, milliseconds) as FHIR text.
fn time_text(millis: u128) -> String {
    let secs = (millis / 1000) as i64;
    let t = ::time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
        + ::time::Duration::milliseconds((millis % 1000) as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

mod bulk_export {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::bulk_export(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::bulk_export(Backend::Postgres).await
    }
}
