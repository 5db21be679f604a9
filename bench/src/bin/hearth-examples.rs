//! `hearth-examples DIR`: runs write validation and search extraction over every
//! resource file in DIR (the official R4 examples: see `bench/r4-examples.sh`) and
//! reports how many validate, what the refusals point at, how many index entries
//! extraction produced, whether each resource survives JSON → XML → JSON
//! unchanged, and how long it took.

// A measuring tool: any failure aborts the run, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hearth::fhir::{Expect, parse_resource};
use hearth::json::{Json, parse};
use hearth::search::extract::extract;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: hearth-examples DIR");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(['.', 'p'])
        })
        .collect();
    files.sort();
    let (mut resources, mut valid, mut entries) = (0usize, 0usize, 0usize);
    let (mut t_validate, mut t_extract, mut t_xml) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut xml_ok = 0usize;
    let mut xml_failures: Vec<String> = Vec::new();
    let mut refusals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let Ok(json) = parse(&bytes) else { continue };
        let Some(t) = hearth::fhir::fhirpath::resource_type(&json).map(str::to_owned) else {
            continue;
        };
        if !hearth::fhir::model::r4().is_resource_type(&t) {
            continue;
        }
        resources += 1;
        let started = Instant::now();
        match parse_resource(&bytes, Expect::Create { res_type: &t }) {
            Ok(_) => valid += 1,
            Err(e) => {
                let issue = &e.issues[0];
                // Group by the element path without indexes.
                let at: String = issue
                    .expression
                    .clone()
                    .unwrap_or_default()
                    .split('[')
                    .map(|p| p.split_once(']').map_or(p, |(_, rest)| rest))
                    .collect();
                refusals
                    .entry(format!("{} {}: {}", e.status(), at, issue.diagnostics))
                    .or_default()
                    .push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        t_validate += started.elapsed();
        let started = Instant::now();
        entries += extract(&json).len();
        t_extract += started.elapsed();
        let started = Instant::now();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match hearth::fhir::xml::write(&json, true) {
            Ok(xml) => match hearth::fhir::xml::parse(&xml) {
                Ok(back) if sorted(&back) == sorted(&json) => xml_ok += 1,
                Ok(_) => xml_failures.push(format!("{name}: differs after the round trip")),
                Err(e) => xml_failures.push(format!("{name}: reading the XML: {e}")),
            },
            Err(e) => xml_failures.push(format!("{name}: writing XML: {e}")),
        }
        t_xml += started.elapsed();
    }
    println!(
        "files read: {}, resources of R4 types: {resources}",
        files.len()
    );
    println!("valid on write: {valid}, refused: {}", resources - valid);
    println!("index entries extracted: {entries}");
    println!(
        "validation: {:.1} µs per resource; extraction: {:.1} µs per resource",
        t_validate.as_secs_f64() * 1e6 / resources.max(1) as f64,
        t_extract.as_secs_f64() * 1e6 / resources.max(1) as f64
    );
    println!(
        "JSON -> XML -> JSON unchanged: {xml_ok} of {resources} ({:.1} µs per resource)",
        t_xml.as_secs_f64() * 1e6 / resources.max(1) as f64
    );
    for f in xml_failures.iter().take(40) {
        println!("  XML round trip failed: {f}");
    }
    let mut reasons: Vec<_> = refusals.into_iter().collect();
    reasons.sort_by_key(|(_, files)| std::cmp::Reverse(files.len()));
    println!("\nrefusals by first issue (count, reason, example):");
    for (reason, files) in reasons.iter().take(40) {
        println!("{:5}  {reason}  ({})", files.len(), files[0]);
    }
}

/// The tree with every object's members sorted by name (member order is not
/// content: XML follows the definitions, JSON files may not).
fn sorted(json: &Json) -> Json {
    match json {
        Json::Object(o) => {
            let mut members: Vec<(String, Json)> =
                o.0.iter().map(|(k, v)| (k.clone(), sorted(v))).collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(hearth::json::Object(members))
        }
        Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
