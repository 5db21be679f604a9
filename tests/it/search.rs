//! R4 3.1.1 search, the parameter types indexed so far (tokens of codes,
//! references, dates, `_id`, `_lastUpdated`): values, prefixes, OR and AND,
//! `:not`, `:missing`, `:[type]`, paging, unknown parameters, `_search` by POST,
//! and index maintenance on update and delete.

use serde_json::{Value, json};

use crate::support::{TestApp, json};
use crate::{both_backends, every_plan};

async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let (status, bundle) = json(app.get(query).await).await;
    assert_eq!(status, 200, "{query}: {bundle}");
    assert_eq!(bundle["type"], "searchset");
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn obs(id: &str, code: &str, patient: &str, date: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "effectiveDateTime": date})
}

async fn seed(app: &TestApp) {
    for (id, gender) in [("p1", "female"), ("p2", "male")] {
        let p = json!({"resourceType": "Patient", "id": id, "gender": gender});
        assert!(
            app.put(&format!("Patient/{id}"), p.to_string())
                .await
                .status()
                .is_success()
        );
    }
    for o in [
        obs("o1", "8867-4", "p1", "2015-03-04T10:00:00Z"),
        obs("o2", "1234-5", "p2", "2014-12-31"),
        obs("o3", "8867-4", "p2", "2016"),
    ] {
        let id = o["id"].as_str().unwrap().to_owned();
        assert!(
            app.put(&format!("Observation/{id}"), o.to_string())
                .await
                .status()
                .is_success()
        );
    }
}

async fn tokens_references_dates(app: TestApp) {
    seed(&app).await;
    assert_eq!(ids(&app, "Observation?code=8867-4").await, ["o1", "o3"]);
    assert_eq!(
        ids(&app, "Observation?code=http://loinc.org|1234-5").await,
        ["o2"]
    );
    assert_eq!(
        ids(&app, "Observation?code=http://other|1234-5").await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&app, "Observation?code=http://loinc.org|").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(
        ids(&app, "Observation?code=1234-5,8867-4").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(ids(&app, "Observation?code:not=8867-4").await, ["o2"]);
    assert_eq!(
        ids(&app, "Observation?patient=Patient/p2").await,
        ["o2", "o3"]
    );
    assert_eq!(ids(&app, "Observation?subject=p1").await, ["o1"]);
    assert_eq!(ids(&app, "Observation?subject:Patient=p1").await, ["o1"]);
    assert_eq!(
        ids(&app, "Observation?patient=p2&code=8867-4").await,
        ["o3"]
    );
    assert_eq!(ids(&app, "Observation?date=ge2015").await, ["o1", "o3"]);
    assert_eq!(ids(&app, "Observation?date=lt2015").await, ["o2"]);
    assert_eq!(ids(&app, "Observation?date=2015-03").await, ["o1"]);
    assert_eq!(
        ids(&app, "Observation?date=ge2015&date=lt2016").await,
        ["o1"]
    );
    assert_eq!(ids(&app, "Observation?date=sa2015-06").await, ["o3"]);
    assert_eq!(ids(&app, "Observation?_id=o1,o2").await, ["o1", "o2"]);
    assert_eq!(
        ids(&app, "Observation?encounter:missing=true").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(
        ids(&app, "Observation?subject:missing=false").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(ids(&app, "Patient?gender=female").await, ["p1"]);
    assert_eq!(
        ids(&app, "Observation?_lastUpdated=gt2000-01-01").await,
        ["o1", "o2", "o3"]
    );
    assert_eq!(
        ids(&app, "Observation?_lastUpdated=lt2000-01-01").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&app, "Observation").await, ["o1", "o2", "o3"]);
}
every_plan!(tokens_references_dates);

async fn index_follows_updates_and_deletes(app: TestApp) {
    seed(&app).await;
    assert!(
        app.put(
            "Observation/o1",
            obs("o1", "9999-9", "p1", "2015").to_string()
        )
        .await
        .status()
        .is_success()
    );
    assert_eq!(ids(&app, "Observation?code=8867-4").await, ["o3"]);
    assert_eq!(ids(&app, "Observation?code=9999-9").await, ["o1"]);
    assert_eq!(app.delete("Observation/o3").await.status(), 204);
    assert_eq!(
        ids(&app, "Observation?code=8867-4").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&app, "Observation").await, ["o1", "o2"]);
}
every_plan!(index_follows_updates_and_deletes);

async fn paging_links_and_parameters(app: TestApp) {
    seed(&app).await;
    let (_, first) = json(
        app.get("Observation?code=8867-4,1234-5&unknown-thing=1&_count=2")
            .await,
    )
    .await;
    let links = first["link"].as_array().unwrap();
    let url = |rel: &str| {
        links
            .iter()
            .find(|l| l["relation"] == rel)
            .map(|l| l["url"].as_str().unwrap().to_owned())
    };
    let this = url("self").unwrap();
    assert!(!this.contains("unknown-thing"), "{this}");
    assert!(
        this.contains("code=8867-4,1234-5") && this.contains("_count=2"),
        "{this}"
    );
    assert_eq!(first["entry"].as_array().unwrap().len(), 2);
    assert_eq!(first["entry"][0]["search"]["mode"], "match");
    // A write between pages does not shift the next page.
    assert!(
        app.put(
            "Observation/o0",
            obs("o0", "8867-4", "p1", "2020").to_string()
        )
        .await
        .status()
        .is_success()
    );
    let (_, second) = json(app.client.get(url("next").unwrap()).send().await.unwrap()).await;
    let ids: Vec<&str> = second["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["o3"]);
    assert!(
        second["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next")
    );
    // Strict handling refuses unknown parameters.
    let res = app
        .client
        .get(app.url("Observation?unknown-thing=1"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Parameters that cannot be answered (a composite has no order) are refused.
    assert_eq!(
        app.get("Observation?_sort=code-value-quantity")
            .await
            .status(),
        501
    );
    assert_eq!(app.get("Observation?date=notadate").await.status(), 400);
    // POST _search with a form body.
    let res = app
        .client
        .post(app.url("Observation/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("code=1234-5")
        .send()
        .await
        .unwrap();
    let (status, bundle) = json(res).await;
    assert_eq!(status, 200);
    assert_eq!(bundle["entry"][0]["resource"]["id"], "o2");
}
every_plan!(paging_links_and_parameters);

async fn strings_through_keyed_hashes(app: TestApp) {
    for (id, family, given) in [
        ("a", "Zyxwvutsrq-Ñáéíóú", "Ann"),
        ("b", "Smith", "Peter James"),
        ("c", "Smithers", "Ann"),
    ] {
        let p = json!({"resourceType": "Patient", "id": id, "name": [{"family": family, "given": [given]}]});
        assert!(
            app.put(&format!("Patient/{id}"), p.to_string())
                .await
                .status()
                .is_success()
        );
    }
    assert_eq!(ids(&app, "Patient?family=smith").await, ["b", "c"]);
    assert_eq!(ids(&app, "Patient?family=SMITHERS").await, ["c"]);
    assert_eq!(
        ids(&app, "Patient?family=zyxwvutsrq-naeiou").await,
        ["a"],
        "accents and case fold"
    );
    assert_eq!(ids(&app, "Patient?family=Zyxw").await, ["a"]);
    assert_eq!(ids(&app, "Patient?family:exact=Smith").await, ["b"]);
    assert_eq!(
        ids(&app, "Patient?family:exact=smith").await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&app, "Patient?name=james").await,
        ["b"],
        "each word of a value matches by prefix"
    );
    assert_eq!(ids(&app, "Patient?given=ann&family=smi").await, ["c"]);
    assert_eq!(ids(&app, "Patient?name=peter,zyx").await, ["a", "b"]);
    assert_eq!(
        ids(&app, "Patient?name=mith").await,
        Vec::<String>::new(),
        "not a substring match"
    );
}
every_plan!(strings_through_keyed_hashes);

async fn identifiers_and_telecom_through_keyed_hashes(app: TestApp) {
    let patients = [
        (
            "a",
            json!([{"system": "urn:mrn", "value": "12345"}]),
            json!([{"system": "phone", "value": "555-0100"}]),
        ),
        (
            "b",
            json!([{"system": "urn:ssn", "value": "12345"}]),
            json!([{"system": "email", "value": "b@example.org"}]),
        ),
        (
            "c",
            json!([{"value": "777"}]),
            json!([{"system": "phone", "value": "555-0199"}]),
        ),
    ];
    for (id, identifier, telecom) in patients {
        let p = json!({"resourceType": "Patient", "id": id, "identifier": identifier, "telecom": telecom});
        assert!(
            app.put(&format!("Patient/{id}"), p.to_string())
                .await
                .status()
                .is_success()
        );
    }
    assert_eq!(ids(&app, "Patient?identifier=urn:mrn|12345").await, ["a"]);
    assert_eq!(ids(&app, "Patient?identifier=12345").await, ["a", "b"]);
    assert_eq!(ids(&app, "Patient?identifier=urn:ssn|").await, ["b"]);
    assert_eq!(ids(&app, "Patient?identifier=|777").await, ["c"]);
    assert_eq!(
        ids(&app, "Patient?identifier=urn:mrn|777").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&app, "Patient?phone=555-0199").await, ["c"]);
    assert_eq!(ids(&app, "Patient?email=b@example.org").await, ["b"]);
    assert_eq!(ids(&app, "Patient?telecom=phone|555-0100").await, ["a"]);
    // :not on a protected token: without a match, including without a value.
    let d = json!({"resourceType": "Patient", "id": "d", "gender": "other"});
    assert!(
        app.put("Patient/d", d.to_string())
            .await
            .status()
            .is_success()
    );
    assert_eq!(ids(&app, "Patient?identifier:not=12345").await, ["c", "d"]);
    assert_eq!(
        ids(
            &app,
            "Patient?identifier:not=urn:mrn|12345&telecom:not=phone|555-0199"
        )
        .await,
        ["b", "d"]
    );
}
every_plan!(identifiers_and_telecom_through_keyed_hashes);

async fn numbers_quantities_uris(app: TestApp) {
    let quantities = [
        ("q1", "72", "/min", "beats/minute"),
        ("q2", "72.50", "/min", "beats/minute"),
        ("q3", "5.4", "mg", "mg"),
    ];
    for (id, value, code, unit) in quantities {
        let body = format!(
            r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"text":"x"}},"valueQuantity":{{"value":{value},"unit":"{unit}","system":"http://unitsofmeasure.org","code":"{code}"}}}}"#
        );
        assert!(
            app.put(&format!("Observation/{id}"), body)
                .await
                .status()
                .is_success()
        );
    }
    assert_eq!(
        ids(&app, "Observation?value-quantity=72").await,
        ["q1"],
        "72 means [71.5, 72.5)"
    );
    assert_eq!(ids(&app, "Observation?value-quantity=72.5").await, ["q2"]);
    assert_eq!(ids(&app, "Observation?value-quantity=gt72").await, ["q2"]);
    assert_eq!(
        ids(&app, "Observation?value-quantity=ge72").await,
        ["q1", "q2"]
    );
    assert_eq!(
        ids(
            &app,
            "Observation?value-quantity=lt10|http://unitsofmeasure.org|mg"
        )
        .await,
        ["q3"]
    );
    assert_eq!(
        ids(&app, "Observation?value-quantity=lt100||beats/minute").await,
        ["q1", "q2"],
        "no system: code or unit"
    );
    assert_eq!(
        ids(&app, "Observation?value-quantity=ap70").await,
        ["q1", "q2"]
    );
    let risk = json!({"resourceType": "RiskAssessment", "id": "r1", "status": "final", "subject": {"reference": "Patient/p"},
                      "prediction": [{"probabilityDecimal": 0.25}]});
    assert!(
        app.put("RiskAssessment/r1", risk.to_string())
            .await
            .status()
            .is_success()
    );
    assert_eq!(ids(&app, "RiskAssessment?probability=gt0.2").await, ["r1"]);
    assert_eq!(
        ids(&app, "RiskAssessment?probability=lt0.2").await,
        Vec::<String>::new()
    );
    for (id, url) in [
        ("v1", "http://example.org/fhir/ValueSet/a"),
        ("v2", "http://example.org/fhir/ValueSet/a/b"),
        ("v3", "http://other.org/x"),
    ] {
        let vs = json!({"resourceType": "ValueSet", "id": id, "status": "active", "url": url});
        assert!(
            app.put(&format!("ValueSet/{id}"), vs.to_string())
                .await
                .status()
                .is_success()
        );
    }
    assert_eq!(
        ids(&app, "ValueSet?url=http://example.org/fhir/ValueSet/a").await,
        ["v1"]
    );
    assert_eq!(
        ids(&app, "ValueSet?url:below=http://example.org/fhir/").await,
        ["v1", "v2"]
    );
    assert_eq!(
        ids(
            &app,
            "ValueSet?url:below=http://example.org/fhir/ValueSet/a%25"
        )
        .await,
        Vec::<String>::new(),
        "no wildcards"
    );
    assert_eq!(
        ids(
            &app,
            "ValueSet?url:above=http://example.org/fhir/ValueSet/a/b/_history/2"
        )
        .await,
        ["v1", "v2"]
    );
    assert_eq!(
        ids(
            &app,
            "ValueSet?url:above=http://example.org/fhir/ValueSet/a"
        )
        .await,
        ["v1"]
    );
}
every_plan!(numbers_quantities_uris);

async fn totals_and_compartments(app: TestApp) {
    seed(&app).await;
    let (_, b) = json(
        app.get("Observation?code=8867-4&_total=accurate&_count=1")
            .await,
    )
    .await;
    assert_eq!(b["total"], 2);
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    let (_, b) = json(app.get("Observation?_summary=count").await).await;
    assert_eq!(b["total"], 3);
    assert!(b.get("entry").is_none());
    let (_, b) = json(app.get("Observation?code=8867-4").await).await;
    assert!(b.get("total").is_none(), "no count unless asked for");
    // Compartment search: what the Patient compartment links to p2.
    assert_eq!(ids(&app, "Patient/p2/Observation").await, ["o2", "o3"]);
    assert_eq!(
        ids(&app, "Patient/p2/Observation?code=8867-4").await,
        ["o3"]
    );
    assert_eq!(
        ids(&app, "Patient/p1/Patient").await,
        Vec::<String>::new(),
        "Patient/Patient links through `link` only"
    );
    let (status, _) = json(app.get("Patient/p2/Organization").await).await;
    assert_eq!(
        status, 404,
        "Organization is not in the Patient compartment"
    );
    let (_, b) = json(app.get("Patient/p2/Observation?_count=1").await).await;
    let next = b["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("/Patient/p2/Observation?"), "{next}");
}
every_plan!(totals_and_compartments);

async fn includes_and_revincludes(app: TestApp) {
    seed(&app).await;
    let entries = |b: &Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = b["entry"]
            .as_array()
            .map(|e| {
                e.iter()
                    .map(|e| {
                        let r = &e["resource"];
                        (
                            format!(
                                "{}/{}",
                                r["resourceType"].as_str().unwrap(),
                                r["id"].as_str().unwrap()
                            ),
                            e["search"]["mode"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let (_, b) = json(
        app.get("Observation?code=8867-4&_include=Observation:subject")
            .await,
    )
    .await;
    assert_eq!(
        entries(&b),
        [
            ("Observation/o1", "match"),
            ("Observation/o3", "match"),
            ("Patient/p1", "include"),
            ("Patient/p2", "include")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let (_, b) = json(
        app.get("Observation?_id=o2&_include=Observation:subject:Practitioner")
            .await,
    )
    .await;
    assert_eq!(entries(&b).len(), 1, "target type filter");
    let (_, b) = json(
        app.get("Patient?_id=p2&_revinclude=Observation:subject")
            .await,
    )
    .await;
    assert_eq!(
        entries(&b),
        [
            ("Observation/o2", "include"),
            ("Observation/o3", "include"),
            ("Patient/p2", "match")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let (_, b) = json(app.get("Observation?_id=o1&_include=Observation:*").await).await;
    assert!(entries(&b).contains(&("Patient/p1".to_owned(), "include".to_owned())));
    // :iterate applies to what was included; a plain include only to matches.
    let d1 = json!({"resourceType": "Practitioner", "id": "d1", "active": true});
    assert!(
        app.put("Practitioner/d1", d1.to_string())
            .await
            .status()
            .is_success()
    );
    let p1 = json!({"resourceType": "Patient", "id": "p1", "gender": "female",
                    "generalPractitioner": [{"reference": "Practitioner/d1"}]});
    assert!(
        app.put("Patient/p1", p1.to_string())
            .await
            .status()
            .is_success()
    );
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    let (_, b) = json(
        app.get("Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:general-practitioner")
            .await,
    )
    .await;
    assert_eq!(
        entries(&b),
        pairs(&[
            ("Observation/o1", "match"),
            ("Patient/p1", "include"),
            ("Practitioner/d1", "include")
        ])
    );
    let (_, b) = json(
        app.get(
            "Observation?_id=o1&_include=Observation:subject&_include=Patient:general-practitioner",
        )
        .await,
    )
    .await;
    assert_eq!(
        entries(&b),
        pairs(&[("Observation/o1", "match"), ("Patient/p1", "include")])
    );
    let (_, b) = json(
        app.get("Practitioner?_id=d1&_revinclude:iterate=Patient:general-practitioner&_revinclude:iterate=Observation:subject")
            .await,
    )
    .await;
    assert_eq!(
        entries(&b),
        pairs(&[
            ("Observation/o1", "include"),
            ("Patient/p1", "include"),
            ("Practitioner/d1", "match")
        ])
    );
    assert_eq!(
        app.get("Observation?_include=Observation:status")
            .await
            .status(),
        400,
        "not a reference parameter"
    );
}
every_plan!(includes_and_revincludes);

async fn chains_and_has(app: TestApp) {
    seed(&app).await;
    let org = json!({"resourceType": "Organization", "id": "org1", "name": "Acme Hospital", "active": true});
    assert!(
        app.put("Organization/org1", org.to_string())
            .await
            .status()
            .is_success()
    );
    let p3 = json!({"resourceType": "Patient", "id": "p3", "gender": "male", "name": [{"family": "Chalmers"}],
                    "managingOrganization": {"reference": "Organization/org1"}});
    assert!(
        app.put("Patient/p3", p3.to_string())
            .await
            .status()
            .is_success()
    );
    assert!(
        app.put(
            "Observation/o4",
            obs("o4", "1234-5", "p3", "2017").to_string()
        )
        .await
        .status()
        .is_success()
    );
    assert!(
        app.put(
            "Encounter/e1",
            json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
        "class": {"code": "AMB"}, "subject": {"reference": "Patient/p3"}})
            .to_string()
        )
        .await
        .status()
        .is_success()
    );
    // Chains, through tokens, keyed strings and two links.
    assert_eq!(
        ids(&app, "Observation?subject:Patient.gender=female").await,
        ["o1"]
    );
    assert_eq!(
        ids(&app, "Observation?patient.gender=male").await,
        ["o2", "o3", "o4"]
    );
    assert_eq!(ids(&app, "Encounter?subject.name=chal").await, ["e1"]);
    assert_eq!(
        ids(&app, "Encounter?subject:Patient.name=zzz").await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&app, "Observation?patient.organization.name=acme").await,
        ["o4"]
    );
    // Reverse chains, nested.
    assert_eq!(
        ids(&app, "Patient?_has:Observation:patient:code=1234-5").await,
        ["p2", "p3"]
    );
    assert_eq!(
        ids(
            &app,
            "Patient?_has:Observation:patient:code=8867-4&gender=female"
        )
        .await,
        ["p1"]
    );
    assert_eq!(
        ids(
            &app,
            "Organization?_has:Patient:organization:_has:Encounter:patient:status=finished"
        )
        .await,
        ["org1"]
    );
    assert_eq!(
        ids(&app, "Patient?_has:Observation:patient:date=ge2017").await,
        ["p3"]
    );
    // Conditions on the source's own row, and negated ones, inside `_has`.
    assert_eq!(
        ids(
            &app,
            "Patient?_has:Observation:patient:_lastUpdated=gt2000-01-01"
        )
        .await,
        ["p1", "p2", "p3"]
    );
    assert!(
        ids(
            &app,
            "Patient?_has:Observation:patient:_lastUpdated=lt2000-01-01"
        )
        .await
        .is_empty()
    );
    assert_eq!(
        ids(&app, "Patient?_has:Observation:patient:code:not=8867-4").await,
        ["p2", "p3"]
    );
    // A deleted referrer no longer counts.
    assert_eq!(app.delete("Observation/o4").await.status(), 204);
    assert_eq!(
        ids(&app, "Patient?_has:Observation:patient:code=1234-5").await,
        ["p2"]
    );
}
every_plan!(chains_and_has);

/// Follows `next` links from `query`, collecting ids in order.
async fn walk(app: &TestApp, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (status, mut page) = json(app.get(query).await).await;
    assert_eq!(status, 200, "{query}: {page}");
    loop {
        if let Some(entries) = page["entry"].as_array() {
            out.extend(
                entries
                    .iter()
                    .map(|e| e["resource"]["id"].as_str().unwrap().to_owned()),
            );
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        let Some(next) = next else { return out };
        let (status, p) = json(app.client.get(&next).send().await.unwrap()).await;
        assert_eq!(status, 200, "{next}: {p}");
        page = p;
    }
}

async fn sorting_with_keyset_pages(app: TestApp) {
    seed(&app).await;
    // o4 has no date: it sorts last both ways.
    let no_date = json!({"resourceType": "Observation", "id": "o4", "status": "final", "code": {"text": "x"}});
    assert!(
        app.put("Observation/o4", no_date.to_string())
            .await
            .status()
            .is_success()
    );
    assert_eq!(
        walk(&app, "Observation?_sort=date&_count=1").await,
        ["o2", "o1", "o3", "o4"]
    );
    assert_eq!(
        walk(&app, "Observation?_sort=-date&_count=1").await,
        ["o3", "o1", "o2", "o4"]
    );
    assert_eq!(
        walk(&app, "Observation?_sort=-date&_count=2&code=8867-4").await,
        ["o3", "o1"]
    );
    assert_eq!(
        walk(&app, "Observation?_sort=-_lastUpdated&_count=3")
            .await
            .first()
            .map(String::as_str),
        Some("o4")
    );
    for (id, v) in [("q1", "5"), ("q2", "1.5"), ("q3", "30")] {
        let body = format!(
            r#"{{"resourceType":"Observation","id":"{id}","status":"final","code":{{"text":"q"}},"valueQuantity":{{"value":{v}}}}}"#
        );
        assert!(
            app.put(&format!("Observation/{id}"), body)
                .await
                .status()
                .is_success()
        );
    }
    assert_eq!(
        walk(
            &app,
            "Observation?_sort=value-quantity&_count=1&_id=q1,q2,q3"
        )
        .await,
        ["q2", "q1", "q3"]
    );
    // Several keys: q4 has q1's value and was written after it.
    let q4 = r#"{"resourceType":"Observation","id":"q4","status":"final","code":{"text":"q"},"valueQuantity":{"value":5.0}}"#;
    assert!(app.put("Observation/q4", q4).await.status().is_success());
    assert_eq!(
        walk(
            &app,
            "Observation?_sort=value-quantity,-_lastUpdated&_count=2&_id=q1,q2,q3,q4,o1"
        )
        .await,
        ["q2", "q4", "q1", "q3", "o1"]
    );
    assert_eq!(
        walk(
            &app,
            "Observation?_sort=value-quantity,_lastUpdated&_count=3&_id=q1,q2,q3,q4,o1"
        )
        .await,
        ["q2", "q1", "q4", "q3", "o1"]
    );
    assert_eq!(
        walk(&app, "Observation?_sort=-date,value-quantity&_count=2").await,
        ["o3", "o1", "o2", "q2", "q1", "q4", "q3", "o4"]
    );
    assert_eq!(
        app.get("Observation?_sort=code-value-quantity")
            .await
            .status(),
        501
    );
    assert_eq!(
        app.get("Observation?_sort=date,code-value-quantity")
            .await
            .status(),
        501
    );
    assert_eq!(
        app.get("Observation?_page=i12~o1").await.status(),
        400,
        "a sorted position on an unsorted search"
    );
    assert_eq!(
        app.get("Observation?_sort=date&_page=o1").await.status(),
        400,
        "an id position on a sorted search"
    );
    assert_eq!(
        app.get("Observation?_sort=date&_page=x1~o1").await.status(),
        400
    );
}
every_plan!(sorting_with_keyset_pages);

/// A reindex job left by a migration runs at start-up, from its recorded
/// position: resources before it are not touched, those after it get their
/// index rows (here, sort keys) back, and the job is marked done.
async fn reindex_job_resumes_from_its_position(app: TestApp) {
    seed(&app).await;
    app.execute_sql(
        "DELETE FROM idx_sort; \
         INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at) \
         VALUES ('default', 'test', 'a test', FALSE, 'Observation', 'o1', 0, 0, 0);",
    )
    .await;
    // Without sort keys, every resource sorts last, by id.
    assert_eq!(
        walk(&app, "Observation?_sort=-date").await,
        ["o1", "o2", "o3"]
    );
    let config = app.config.clone();
    let again = TestApp::start_with(app.backend, |c| *c = config.clone()).await;
    // o2 and o3 (after the position) have keys again; o1 (before it) not.
    assert_eq!(
        walk(&again, "Observation?_sort=-date").await,
        ["o3", "o2", "o1"]
    );
    assert_eq!(
        walk(&again, "Patient?_sort=-_lastUpdated").await,
        ["p2", "p1"],
        "Patients come after Observation/o1: reindexed"
    );
    // Done: a third start leaves the job alone (o1 still has no key).
    let third = TestApp::start_with(app.backend, |c| *c = config.clone()).await;
    assert_eq!(
        walk(&third, "Observation?_sort=-date").await,
        ["o3", "o2", "o1"]
    );
}
every_plan!(reindex_job_resumes_from_its_position);

/// `Patient/[id]/$everything`: the patient, then its compartment in (type, id)
/// order, paged; `_type`, `_since`; deletes leave it.
async fn patient_everything(app: TestApp) {
    seed(&app).await;
    let enc = json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                     "class": {"code": "AMB"}, "subject": {"reference": "Patient/p2"}});
    assert!(
        app.put("Encounter/e1", enc.to_string())
            .await
            .status()
            .is_success()
    );
    // Not in p2's compartment: an Organization, and p1's observation.
    let org = json!({"resourceType": "Organization", "id": "org1", "name": "Clinic"});
    assert!(
        app.put("Organization/org1", org.to_string())
            .await
            .status()
            .is_success()
    );
    assert_eq!(
        walk(&app, "Patient/p2/$everything").await,
        ["p2", "e1", "o2", "o3"]
    );
    assert_eq!(
        walk(&app, "Patient/p2/$everything?_count=1").await,
        ["p2", "e1", "o2", "o3"]
    );
    assert_eq!(
        walk(
            &app,
            "Patient/p2/$everything?_type=Observation,Patient&_count=2"
        )
        .await,
        ["p2", "o2", "o3"]
    );
    assert_eq!(walk(&app, "Patient/p1/$everything").await, ["p1", "o1"]);
    assert!(
        walk(&app, "Patient/p2/$everything?_since=2999-01-01T00:00:00Z")
            .await
            .is_empty()
    );
    assert!(app.delete("Observation/o3").await.status().is_success());
    assert_eq!(
        walk(&app, "Patient/p2/$everything").await,
        ["p2", "e1", "o2"]
    );
    assert_eq!(app.get("Patient/nobody/$everything").await.status(), 404);
    assert_eq!(
        app.get("Patient/p2/$everything?_page=zz~x").await.status(),
        400
    );
}
every_plan!(patient_everything);

/// `_summary=true|text|data|false` and `_elements` shape the matches (tagged
/// SUBSETTED); includes are found from the whole resources.
async fn summaries_and_elements(app: TestApp) {
    seed(&app).await;
    let first = |b: &Value| b["entry"][0]["resource"].clone();
    let (_, b) = json(app.get("Observation?_id=o1&_summary=true").await).await;
    let o = first(&b);
    assert_eq!(o["status"], "final");
    assert_eq!(o["meta"]["tag"][0]["code"], "SUBSETTED");
    let (_, b) = json(
        app.get("Observation?_id=o1&_elements=status&_include=Observation:subject")
            .await,
    )
    .await;
    let o = first(&b);
    assert_eq!(o["status"], "final");
    assert!(o.get("code").is_none() && o.get("subject").is_none(), "{o}");
    assert_eq!(
        b["entry"][1]["resource"]["id"], "p1",
        "include found through the whole resource"
    );
    let (_, b) = json(app.get("Observation?_id=o1&_elements=effective").await).await;
    assert_eq!(first(&b)["effectiveDateTime"], "2015-03-04T10:00:00Z");
    let (_, b) = json(app.get("Observation?_id=o1&_summary=false").await).await;
    assert!(first(&b)["meta"].get("tag").is_none());
    assert!(first(&b).get("code").is_some());
    let (_, b) = json(app.get("Observation?_id=o1&_summary=text").await).await;
    let o = first(&b);
    assert!(
        o.get("code").is_some() && o.get("effectiveDateTime").is_none(),
        "{o}"
    );
}
every_plan!(summaries_and_elements);

/// Search across types: `GET [base]?_type=…`, `POST [base]/_search`, by type
/// then id, paged; `_total`; parameters common to all types.
async fn across_types(app: TestApp) {
    seed(&app).await;
    assert_eq!(
        walk(&app, "?_type=Observation,Patient&_count=2").await,
        ["o1", "o2", "o3", "p1", "p2"]
    );
    assert_eq!(
        walk(&app, "?_type=Patient,Observation&_id=p2,o3&_count=1").await,
        ["o3", "p2"]
    );
    let (status, b) = json(app.get("?_id=p1,o2&_total=accurate").await).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["total"], 2);
    let res = app
        .client
        .post(app.url("_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("_type=Patient&_id=p1")
        .send()
        .await
        .unwrap();
    let (status, b) = json(res).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["entry"].as_array().unwrap().len(), 1);
    assert_eq!(app.get("?_type=Nope").await.status(), 400);
    assert_eq!(app.get("?_type=Patient&_sort=_id").await.status(), 501);
}
every_plan!(across_types);

/// An absolute reference under the configured public base is local; one to
/// another server is matched by its URL only.
async fn absolute_references(app: TestApp) {
    for (id, reference) in [
        ("a1", "https://fhir.example.org/fhir/Patient/p1"),
        ("a2", "https://elsewhere.example/fhir/Patient/p1"),
        ("a3", "Patient/p1"),
    ] {
        let o = json!({"resourceType": "Observation", "id": id, "status": "final",
                       "code": {"text": "x"}, "subject": {"reference": reference}});
        assert!(
            app.put(&format!("Observation/{id}"), o.to_string())
                .await
                .status()
                .is_success()
        );
    }
    assert_eq!(
        ids(&app, "Observation?subject=Patient/p1").await,
        ["a1", "a3"]
    );
    assert_eq!(
        ids(
            &app,
            "Observation?subject=https://elsewhere.example/fhir/Patient/p1"
        )
        .await,
        ["a2"]
    );
}

mod absolute_references {
    use crate::support::{Backend, TestApp};
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = TestApp::start_with(Backend::Sqlite, |c| {
            c.http.public_url = Some("https://fhir.example.org/fhir".into());
        })
        .await;
        super::absolute_references(app).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let app = TestApp::start_with(Backend::Postgres, |c| {
            c.http.public_url = Some("https://fhir.example.org/fhir".into());
        })
        .await;
        super::absolute_references(app).await;
    }
}

/// Several pending reindex jobs are served by one pass from the earliest
/// position among them.
async fn pending_reindex_jobs_share_one_pass(app: TestApp) {
    seed(&app).await;
    app.execute_sql(
        "DELETE FROM idx_sort; \
         INSERT INTO reindex_jobs (tenant, name, reason, done, after_type, after_id, processed, created_at, updated_at) \
         VALUES ('default', 'late', 'a test', FALSE, 'Observation', 'o2', 0, 0, 0), \
                ('default', 'early', 'a test', FALSE, '', '', 0, 0, 0);",
    )
    .await;
    let config = app.config.clone();
    let again = TestApp::start_with(app.backend, |c| *c = config.clone()).await;
    assert_eq!(
        walk(&again, "Observation?_sort=-date").await,
        ["o3", "o1", "o2"]
    );
    assert_eq!(
        walk(&again, "Patient?_sort=-_lastUpdated").await,
        ["p2", "p1"]
    );
}
every_plan!(pending_reindex_jobs_share_one_pass);

/// A SearchParameter resource adds a search parameter: resources stored before
/// it are indexed by a background reindex job (its state at `$reindex`), later
/// writes as they happen; it survives a restart and goes with a delete.
async fn added_search_parameters(app: TestApp) {
    // Parameters are registered process-wide: a code of this run's own.
    let code = format!(
        "eye-colour-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    // So is the SearchParameter's id (the registry is keyed by it).
    let sp_id = format!("sp-{}", &code[11..]);
    let ext = "http://example.org/eye-colour";
    for (id, colour) in [("p1", "blue"), ("p2", "brown")] {
        let p = json!({"resourceType": "Patient", "id": id,
                       "extension": [{"url": ext, "valueCode": colour}]});
        assert!(
            app.put(&format!("Patient/{id}"), p.to_string())
                .await
                .status()
                .is_success()
        );
    }
    let sp = |status: &str, expression: &str| {
        json!({"resourceType": "SearchParameter", "id": sp_id, "url": "http://example.org/sp/eye-colour",
               "name": "EyeColour", "status": status, "description": "Eye colour", "code": code,
               "base": ["Patient"], "type": "token", "expression": expression})
    };
    let bad = sp("active", "Patient.name.select(given)");
    assert_eq!(
        app.put(&format!("SearchParameter/{sp_id}"), bad.to_string())
            .await
            .status(),
        422
    );
    let good = sp("active", &format!("Patient.extension('{ext}').value"));
    assert!(
        app.put(&format!("SearchParameter/{sp_id}"), good.to_string())
            .await
            .status()
            .is_success()
    );
    // The job runs in the background; the parameter answers once it is done.
    let query = format!("Patient?{code}=blue");
    let mut found = Vec::new();
    // (Up to a minute: the whole suite shares two cores.)
    for _ in 0..1200 {
        let res = app.get(&query).await;
        if res.status() == 200 {
            let (_, b) = json(res).await;
            found = b["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect();
            break;
        }
        assert_eq!(res.status(), 501, "not searchable until indexed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(found, ["p1"]);
    // The CapabilityStatement lists it now, without a restart.
    let listed = async |app: &TestApp| {
        let (_, statement) = json(app.get("metadata").await).await;
        statement["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Patient")
            .unwrap()["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == code.as_str())
    };
    assert!(listed(&app).await, "{code} not in the CapabilityStatement");
    let (status, jobs) = json(app.get("$reindex").await).await;
    assert_eq!(status, 200);
    let job = jobs["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["part"][0]["valueString"] == format!("custom:{sp_id}:v1"))
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(job["part"][2]["valueBoolean"], true);
    // Later writes are indexed as they happen.
    let p3 = json!({"resourceType": "Patient", "id": "p3", "extension": [{"url": ext, "valueCode": "blue"}]});
    assert!(
        app.put("Patient/p3", p3.to_string())
            .await
            .status()
            .is_success()
    );
    assert_eq!(ids(&app, &query).await, ["p1", "p3"]);
    // A restart registers it again from the store.
    let config = app.config.clone();
    let again = TestApp::start_with(app.backend, |c| *c = config.clone()).await;
    assert_eq!(ids(&again, &query).await, ["p1", "p3"]);
    // Deleted, it is an unknown parameter again.
    assert_eq!(
        again
            .delete(&format!("SearchParameter/{sp_id}"))
            .await
            .status(),
        204
    );
    assert!(
        !listed(&again).await,
        "{code} still in the CapabilityStatement"
    );
    let res = again
        .client
        .get(again.url(&query))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}
both_backends!(added_search_parameters);

/// `_sort` on a protected value (a family name): the page links hold the
/// position sealed (no name, in clear or as hex, in any link), a link taken to
/// another search or altered is refused, and a search matching more than
/// `fhir.max_sorted_in_memory` is refused as too costly rather than cut short.
async fn sorted_in_memory(backend: crate::support::Backend) {
    let app = TestApp::start_with(backend, |c| c.fhir.max_sorted_in_memory = 4).await;
    for (id, family) in [
        ("m1", "Quixotewood"),
        ("m2", "Brightwater"),
        ("m3", "Amberfield"),
        ("m4", "Cobblestone"),
    ] {
        let p = json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]});
        assert!(
            app.put(&format!("Patient/{id}"), p.to_string())
                .await
                .status()
                .is_success()
        );
    }
    let (status, page) = json(app.get("Patient?_sort=family&_count=2").await).await;
    assert_eq!(status, 200, "{page}");
    let order: Vec<&str> = page["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["m3", "m2"]);
    let next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_owned();
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    for name in ["brightwater", "Brightwater", "amberfield"] {
        assert!(!next.contains(name), "{next}");
        assert!(!next.contains(&hex(name)), "{next}");
    }
    let path = next.split("/fhir/").nth(1).unwrap();
    let (status, second) = json(app.get(path).await).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["entry"][0]["resource"]["id"], "m4");
    // The position belongs to this sort: another search refuses it.
    let position = path.split("_page=").nth(1).unwrap();
    let (status, _) = json(
        app.get(&format!("Patient?_sort=family,given&_page={position}"))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let mut altered = position.to_owned();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, _) = json(
        app.get(&format!("Patient?_sort=family&_page={altered}"))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    // One more match than the bound: refused, saying why.
    let p = json!({"resourceType": "Patient", "id": "m5", "name": [{"family": "Dunmore"}]});
    assert!(
        app.put("Patient/m5", p.to_string())
            .await
            .status()
            .is_success()
    );
    let (status, outcome) = json(app.get("Patient?_sort=family").await).await;
    assert_eq!(status, 400, "{outcome}");
    assert_eq!(outcome["issue"][0]["code"], "too-costly");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("fhir.max_sorted_in_memory")
    );
    // Narrowed under the bound, it sorts again; sorts the index keeps in
    // order are not bounded.
    assert_eq!(
        ids(&app, "Patient?_sort=-family&_id=m1,m5").await,
        ["m1", "m5"]
    );
    let (status, _) = json(app.get("Patient?_sort=_lastUpdated").await).await;
    assert_eq!(status, 200);
}

mod sorted_in_memory {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::sorted_in_memory(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::sorted_in_memory(Backend::Postgres).await
    }
}
