//! `hearth-fhirpath-suite TESTS.json INPUTS_DIR`: runs the FHIRPath R4 test suite
//! (converted to JSON by `bench/fhirpath-suite-to-json.py`) against Hearth's
//! FHIRPath evaluator — the subset that search expressions use — and reports
//! how many tests pass, per group. Tests whose input exists only as XML are
//! counted apart (the evaluator reads JSON).
//!
//! ./bench/fhirpath-suite.sh

// A measuring tool: any failure aborts the run, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use hearth::fhir::fhirpath::{self, Ty, Value};
use hearth::json::Json;

/// A result item as (type, value) for comparison with the suite's outputs.
fn item(v: &Value<'_>) -> (String, String) {
    let scalar = |j: &Json| match j {
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        _ => String::new(),
    };
    match v {
        Value::Node(j, Ty::Primitive(t)) => ((*t).to_owned(), scalar(j)),
        Value::Node(_, Ty::Complex(t)) => ((*t).to_owned(), String::new()),
        Value::Node(_, Ty::Resource(t)) => ((*t).to_owned(), String::new()),
        Value::Bool(b) => ("boolean".to_owned(), b.to_string()),
        Value::Str(s) => ("string".to_owned(), s.clone()),
        Value::Number(n) => ("decimal".to_owned(), n.clone()),
        Value::Reference(t) => (t.clone(), String::new()),
    }
}

fn same(got: &(String, String), want_type: &str, want_value: &str) -> bool {
    let stringish = |t: &str| {
        matches!(
            t,
            "string" | "code" | "id" | "uri" | "url" | "canonical" | "markdown" | "oid" | "uuid"
        )
    };
    let numeric = |t: &str| matches!(t, "integer" | "decimal" | "positiveInt" | "unsignedInt");
    let want_value = want_value.trim_start_matches('@');
    let types_agree = got.0 == want_type
        || (stringish(&got.0) && stringish(want_type))
        || (numeric(&got.0) && numeric(want_type));
    if !types_agree {
        return false;
    }
    if numeric(want_type) {
        return got.1.parse::<f64>().ok() == want_value.parse::<f64>().ok();
    }
    got.1 == want_value
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tests_path = args
        .next()
        .expect("usage: hearth-fhirpath-suite TESTS.json INPUTS_DIR");
    let inputs = args
        .next()
        .expect("usage: hearth-fhirpath-suite TESTS.json INPUTS_DIR");
    let tests: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tests_path).unwrap()).unwrap();
    let mut resources: BTreeMap<String, Option<Json>> = BTreeMap::new();
    let (mut passed, mut failed_compile, mut failed_result, mut xml_only) = (0, 0, 0, 0);
    let mut groups: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let tests = tests.as_array().unwrap();
    for t in tests {
        let group = t["group"].as_str().unwrap_or_default().to_owned();
        let input = t["input"].as_str().unwrap_or_default();
        let json_name = input.replace(".xml", ".json");
        let resource = resources
            .entry(json_name.clone())
            .or_insert_with(|| {
                let path = Path::new(&inputs).join(&json_name);
                std::fs::read(&path)
                    .ok()
                    .map(|b| hearth::json::parse(&b).expect("input JSON"))
            })
            .clone();
        let Some(resource) = resource else {
            xml_only += 1;
            continue;
        };
        let entry = groups.entry(group).or_default();
        entry.1 += 1;
        let expr = t["expression"].as_str().unwrap_or_default();
        let invalid = t["invalid"].as_bool().unwrap_or(false);
        let ok = match fhirpath::compile(expr) {
            Err(_) if invalid => true,
            Err(_) => {
                failed_compile += 1;
                false
            }
            Ok(_) if invalid => {
                failed_result += 1;
                false
            }
            Ok(e) => {
                let got: Vec<(String, String)> = fhirpath::evaluate_resource(&e, &resource)
                    .iter()
                    .map(item)
                    .collect();
                let want = t["outputs"].as_array().cloned().unwrap_or_default();
                let ok = got.len() == want.len()
                    && got.iter().zip(&want).all(|(g, w)| {
                        same(
                            g,
                            w["type"].as_str().unwrap_or_default(),
                            w["value"].as_str().unwrap_or_default(),
                        )
                    });
                if !ok {
                    failed_result += 1;
                }
                ok
            }
        };
        if ok {
            passed += 1;
            entry.0 += 1;
        }
    }
    let run = tests.len() - xml_only;
    println!(
        "tests: {}; run (JSON input): {run}; passed: {passed}; not compiled (outside the subset): {failed_compile}; wrong or missing result: {failed_result}; XML input only: {xml_only}",
        tests.len()
    );
    println!("\n| group | passed / run |\n|---|---|");
    for (g, (p, n)) in &groups {
        if *p > 0 {
            println!("| {g} | {p} / {n} |");
        }
    }
    let none: Vec<&str> = groups
        .iter()
        .filter(|(_, (p, _))| *p == 0)
        .map(|(g, _)| g.as_str())
        .collect();
    println!("\ngroups with no test passing: {}", none.join(", "));
}
