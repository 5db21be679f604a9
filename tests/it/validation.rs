//! R4 validation on write: every fixture in `fixtures/invalid/` is refused with
//! its status and an OperationOutcome pointing at the element, and nothing is stored.

use std::path::Path;

use crate::both_backends;
use crate::support::{TestApp, fixtures, json};

pub struct Case {
    name: String,
    method: String,
    path: String,
    status: u16,
    expression: Option<String>,
    body: Vec<u8>,
}

fn load(path: &Path) -> Case {
    let raw = std::fs::read(path).unwrap();
    let split = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("blank line after the headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 2..].to_vec();
    let mut lines = head.lines();
    let (method, target) = lines.next().unwrap().split_once(' ').unwrap();
    let mut case = Case {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        method: method.to_owned(),
        path: target.trim().to_owned(),
        status: 0,
        expression: None,
        body,
    };
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        match k.trim() {
            "status" => case.status = v.trim().parse().unwrap(),
            "expression" => case.expression = Some(v.trim().to_owned()),
            "description" => {}
            other => panic!("{}: unknown header {other}", case.name),
        }
    }
    case
}

pub fn invalid_cases() -> Vec<Case> {
    let mut paths: Vec<_> = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "http"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

async fn invalid_inputs_are_refused_and_not_stored(app: TestApp) {
    let cases = invalid_cases();
    assert!(cases.len() >= 30, "only {} invalid fixtures", cases.len());
    for case in &cases {
        let req = match case.method.as_str() {
            "POST" => app.client.post(app.url(&case.path)),
            "PUT" => app.client.put(app.url(&case.path)),
            m => panic!("{}: method {m}", case.name),
        };
        let res = req
            .header("content-type", "application/fhir+json")
            .body(case.body.clone())
            .send()
            .await
            .unwrap();
        let (status, oo) = json(res).await;
        assert_eq!(status, case.status, "{}: {oo}", case.name);
        assert_eq!(oo["resourceType"], "OperationOutcome", "{}", case.name);
        let issues = oo["issue"].as_array().unwrap();
        assert!(
            issues.iter().all(|i| i["severity"] == "error"),
            "{}",
            case.name
        );
        if let Some(expected) = &case.expression {
            let found = issues
                .iter()
                .filter_map(|i| i["expression"].as_array())
                .flatten()
                .any(|e| e.as_str() == Some(expected));
            assert!(found, "{}: no issue at {expected}: {oo}", case.name);
        }
        let text = oo.to_string();
        assert!(
            !text.contains("panicked") && !text.contains("SELECT") && !text.contains("src/"),
            "{}",
            case.name
        );
    }
    // Nothing was stored: system history is empty.
    let (_, h) = json(app.get("_history").await).await;
    assert!(
        h.get("entry")
            .is_none_or(|e| e.as_array().unwrap().is_empty()),
        "{h}"
    );
}
both_backends!(invalid_inputs_are_refused_and_not_stored);
