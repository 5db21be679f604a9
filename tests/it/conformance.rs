//! The search conformance suite: every file of `fixtures/search/` holds
//! resources and queries with the results expected, in order. Each file runs on
//! a fresh server per backend and plan (the store's choice of driving
//! condition, and walking in result order); all pages of each query are read.
//!
//! A query entry: `search` (a path and query string under the base), then
//! either `status` (the code expected) or `match` (the `Type/id` of every
//! match, in order, across pages) and optionally `include` (the included
//! resources, in any order). `count` sets `_count` to page through small pages.
//! Every result list of a type or compartment search is read forward by `next`
//! links and again backward by `previous` links from its last page; both must
//! agree.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{Backend, TestApp, fixtures, json};

fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("search"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

/// All entries of all pages of a search: (matches, includes), as `Type/id`.
async fn read_all(app: &TestApp, search: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let (mut matches, mut includes) = (Vec::new(), Vec::new());
    let (status, mut page) = json(app.get(search).await).await;
    if status != 200 {
        return Err(format!("status {status}: {page}"));
    }
    for _ in 0..1000 {
        for e in page["entry"].as_array().into_iter().flatten() {
            let r = &e["resource"];
            let key = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            );
            match e["search"]["mode"].as_str() {
                Some("include") => includes.push(key),
                _ => matches.push(key),
            }
        }
        let next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        let Some(next) = next else {
            includes.sort();
            includes.dedup();
            let back = read_back(app, page).await?;
            if back != matches {
                return Err(format!(
                    "previous links give {back:?}, next links {matches:?}"
                ));
            }
            return Ok((matches, includes));
        };
        let res = app.client.get(&next).send().await.unwrap();
        let (status, p) = json(res).await;
        if status != 200 {
            return Err(format!("next page status {status}: {p}"));
        }
        page = p;
    }
    Err("more than 1000 pages".into())
}

/// The matches of `last` and of every page before it by `previous` links, in
/// result order.
async fn read_back(app: &TestApp, last: Value) -> Result<Vec<String>, String> {
    let matches_of = |page: &Value| -> Vec<String> {
        page["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] != "include")
            .map(|e| {
                let r = &e["resource"];
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    let mut pages = vec![matches_of(&last)];
    let mut page = last;
    for _ in 0..1000 {
        let previous = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "previous")
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
        let Some(previous) = previous else {
            pages.reverse();
            return Ok(pages.concat());
        };
        let res = app.client.get(&previous).send().await.unwrap();
        let (status, p) = json(res).await;
        if status != 200 {
            return Err(format!("previous page status {status}: {p}"));
        }
        pages.push(matches_of(&p));
        page = p;
    }
    Err("more than 1000 pages back".into())
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

async fn run_suite(backend: Backend, walking: bool) {
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in files() {
        let suite: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let app = TestApp::start_with(backend, |c| {
            if walking {
                c.fhir.search_drive_below = 0;
            }
        })
        .await;
        for r in suite["resources"].as_array().unwrap() {
            let path = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            let res = app.put(&path, r.to_string()).await;
            let status = res.status();
            assert!(
                status.is_success(),
                "{name}: PUT {path}: {status} {}",
                res.text().await.unwrap_or_default()
            );
        }
        for q in suite["queries"].as_array().unwrap() {
            let mut search = q["search"].as_str().unwrap().to_owned();
            if let Some(n) = q["count"].as_u64() {
                search.push(if search.contains('?') { '&' } else { '?' });
                search.push_str(&format!("_count={n}"));
            }
            checked += 1;
            if let Some(want) = q["status"].as_u64() {
                let got = app.get(&search).await.status().as_u16();
                if u64::from(got) != want {
                    failures.push(format!("{name}: {search}: status {got}, expected {want}"));
                }
                continue;
            }
            match read_all(&app, &search).await {
                Err(e) => failures.push(format!("{name}: {search}: {e}")),
                Ok((matches, includes)) => {
                    let (want_m, mut want_i) = (strings(&q["match"]), strings(&q["include"]));
                    want_i.sort();
                    if matches != want_m {
                        failures.push(format!(
                            "{name}: {search}: matches {matches:?}, expected {want_m:?}"
                        ));
                    }
                    if includes != want_i {
                        failures.push(format!(
                            "{name}: {search}: includes {includes:?}, expected {want_i:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 100, "only {checked} queries in the suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_conformance_sqlite() {
    run_suite(Backend::Sqlite, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_conformance_postgres() {
    run_suite(Backend::Postgres, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_conformance_sqlite_walking() {
    run_suite(Backend::Sqlite, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_conformance_postgres_walking() {
    run_suite(Backend::Postgres, true).await;
}
