//! `hearth-search-bench DIR`: loads the Synthea transaction bundles of DIR
//! (`*.json.gz`) into an in-process server through the REST API (each entry a
//! PUT with its `urn:uuid` turned into the resource id and every reference
//! rewritten), then measures the reference search queries of the search issue.
//!
//! cargo run --release -p hearth-bench --bin hearth-search-bench -- ../shared/data/synthea
//!     [--bundles N] [--runs N] [--database-url postgres://…] [--data-dir DIR]
//!
//! With `--data-dir DIR`, the store is `DIR/data` (on PostgreSQL the master key
//! is `DIR/master.key`, 32 bytes of 42) and is kept; when `DIR/loaded` exists
//! the load is skipped and only the queries run. A store filled faster by
//! `HEARTH_DATA_DIR=DIR/data hearth import …` is measured the same way once
//! `DIR/loaded` is written.

// A measuring tool: any failure aborts the run, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearth::config::{Config, Secret};
use serde_json::Value;

fn rewrite(v: &mut Value, refs: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(r) = refs.get(s.as_str()) {
                *s = r.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite(i, refs)),
        Value::Object(o) => o.values_mut().for_each(|i| rewrite(i, refs)),
        _ => {}
    }
}

/// The entries of one bundle as (type, id, body), references rewritten.
fn entries(path: &std::path::Path) -> Vec<(String, String, String)> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let bundle: Value = serde_json::from_str(&text).unwrap();
    let list = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut refs = HashMap::new();
    for e in &list {
        let full = e["fullUrl"].as_str().unwrap_or_default();
        let t = e["resource"]["resourceType"].as_str().unwrap_or_default();
        if let Some(uuid) = full.strip_prefix("urn:uuid:") {
            refs.insert(full.to_owned(), format!("{t}/{uuid}"));
        }
    }
    list.into_iter()
        .filter_map(|e| {
            let uuid = e["fullUrl"].as_str()?.strip_prefix("urn:uuid:")?.to_owned();
            let mut r = e["resource"].clone();
            rewrite(&mut r, &refs);
            r["id"] = Value::String(uuid.clone());
            Some((r["resourceType"].as_str()?.to_owned(), uuid, r.to_string()))
        })
        .collect()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let bytes = client.get(url).send().await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: hearth-search-bench DIR [--bundles N] [--runs N] [--database-url URL] [--data-dir DIR]");
    let (mut max_bundles, mut runs, mut database_url, mut data_dir) =
        (usize::MAX, 100usize, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().expect("flag value");
        match flag.as_str() {
            "--bundles" => max_bundles = value.parse().unwrap(),
            "--runs" => runs = value.parse().unwrap(),
            "--database-url" => database_url = Some(value),
            "--data-dir" => data_dir = Some(std::path::PathBuf::from(value)),
            other => panic!("unknown flag {other}"),
        }
    }
    hearth::app::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let root = data_dir.unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&root).unwrap();
    let loaded_marker = root.join("loaded");
    let mut config = Config {
        data_dir: root.join("data"),
        ..Config::default()
    };
    if let Some(url) = &database_url {
        let key = root.join("master.key");
        std::fs::write(&key, [42u8; 32]).unwrap();
        config.database.url = Some(Secret::new(url.clone()));
        config.crypto.master_key_file = Some(key);
    }
    let start = Instant::now();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server_config = config.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let state = hearth::app::build_state(&server_config)
                .await
                .expect("start");
            let (server, _) =
                hearth::app::http_server(&server_config, state, Some(listener)).expect("listen");
            server.await.expect("serve");
        });
    });
    let base = format!("http://{addr}/fhir");
    let anonymous = reqwest::Client::new();
    while anonymous
        .get(format!("{base}/metadata"))
        .send()
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server wants credentials: a bench administrator, (re)set each run.
    const PASSWORD: &str = "Bench-pass-1";
    let store = hearth::app::open_store(&config).unwrap();
    hearth::auth::set_local_user(&store, "bench", PASSWORD, &["admin".to_owned()])
        .await
        .unwrap();
    let client = {
        use base64::Engine;
        let mut headers = reqwest::header::HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("bench:{PASSWORD}"));
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    };
    println!(
        "start-up (migrations, reindex jobs): {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json.gz"))
        .collect();
    files.sort();
    files.truncate(max_bundles);
    if loaded_marker.exists() {
        files.clear();
    }
    let files = Arc::new(files);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (files, next, client, base) =
            (files.clone(), next.clone(), client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0usize, HashMap::<String, usize>::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else {
                    break (ok, failed);
                };
                let path = path.clone();
                let list = tokio::task::spawn_blocking(move || entries(&path))
                    .await
                    .unwrap();
                for (t, id, body) in list {
                    let res = client
                        .put(format!("{base}/{t}/{id}"))
                        .header("content-type", "application/fhir+json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    if res.status().is_success() {
                        ok += 1;
                    } else {
                        let status = res.status().as_u16();
                        let oo: Value =
                            serde_json::from_slice(&res.bytes().await.unwrap_or_default())
                                .unwrap_or_default();
                        let why = format!(
                            "{status} {t} {}",
                            oo["issue"][0]["diagnostics"].as_str().unwrap_or("")
                        );
                        *failed.entry(why).or_default() += 1;
                    }
                }
            }
        }));
    }
    let (mut loaded, mut failures) = (0usize, HashMap::<String, usize>::new());
    for t in tasks {
        let (ok, failed) = t.await.unwrap();
        loaded += ok;
        for (k, v) in failed {
            *failures.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if !loaded_marker.exists() {
        std::fs::write(&loaded_marker, loaded.to_string()).unwrap();
    }
    println!(
        "backend: {}; bundles: {}; resources stored: {loaded}; refused: {}; load: {secs:.0} s ({:.0} resources/s)",
        if database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        files.len(),
        failures.values().sum::<usize>(),
        loaded as f64 / secs
    );
    let mut failures: Vec<_> = failures.into_iter().collect();
    failures.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (why, n) in failures.iter().take(10) {
        println!("  refused {n:6}: {why}");
    }

    // Query parameters taken from the data: of the codes among the first 1,000
    // Observations (by id: a random sample, ids being assigned by the server),
    // the most common one, and up to PATIENTS patients of the sample with
    // observations of it (with their family names). The runs take the patients in turn, so a
    // result does not hang on one patient's record.
    const PATIENTS: usize = 20;
    let first: Value = get_json(&client, &format!("{base}/Observation?_count=1000")).await;
    let mut codes: std::collections::HashSet<String> = Default::default();
    let mut subjects: Vec<(String, String)> = Vec::new();
    for e in first["entry"].as_array().cloned().unwrap_or_default() {
        let code = e["resource"]["code"]["coding"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let subject = e["resource"]["subject"]["reference"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("Patient/")
            .to_owned();
        codes.insert(code.clone());
        subjects.push((code, subject));
    }
    // Of the sample's codes, the one most Observations have (counted by the
    // server, so the choice depends on the data, not on the sample); ties go
    // to the least code.
    let mut totals = Vec::new();
    for c in codes {
        let counted: Value = get_json(
            &client,
            &format!("{base}/Observation?code={c}&_summary=count"),
        )
        .await;
        totals.push((counted["total"].as_u64().unwrap_or(0), c));
    }
    let code = totals
        .into_iter()
        .max_by(|(n, a), (m, b)| n.cmp(m).then_with(|| b.cmp(a)))
        .map(|(_, c)| c)
        .unwrap();
    let mut patients: Vec<String> = Vec::new();
    for (c, subject) in subjects {
        if c == code && !patients.contains(&subject) && patients.len() < PATIENTS {
            patients.push(subject);
        }
    }
    let mut families = Vec::new();
    for patient in &patients {
        let p: Value = get_json(&client, &format!("{base}/Patient/{patient}")).await;
        families.push(p["name"][0]["family"].as_str().unwrap_or("x").to_owned());
    }
    type Query = Box<dyn Fn(usize) -> String>;
    let (ps, fs, c) = (patients.clone(), families.clone(), code.clone());
    let (ps2, c2, c3) = (patients.clone(), code.clone(), code.clone());
    let queries: [(&str, Query); 5] = [
        (
            "Observation?patient=X&code=Y",
            Box::new(move |i| format!("Observation?patient={}&code={c}", ps[i % ps.len()])),
        ),
        (
            "Observation?code=Y&date=ge2015&_sort=-date",
            Box::new(move |_| format!("Observation?code={c2}&date=ge2015&_sort=-date")),
        ),
        (
            "Encounter?subject.name=Z",
            Box::new(move |i| format!("Encounter?subject.name={}", fs[i % fs.len()])),
        ),
        (
            "Patient?_has:Observation:patient:code=Y",
            Box::new(move |_| format!("Patient?_has:Observation:patient:code={c3}")),
        ),
        (
            "Patient/X/$everything",
            Box::new(move |i| format!("Patient/{}/$everything", ps2[i % ps2.len()])),
        ),
    ];
    println!("\nY = {code}; X, Z: {} patients in turn", patients.len());
    println!("\n| query | results (first page, median) | p50 ms | p95 ms | first run ms |");
    println!("|---|---|---|---|---|");
    for (shown, q) in queries {
        let mut times = Vec::with_capacity(runs);
        let mut counts = Vec::with_capacity(runs);
        for i in 0..runs {
            let q = q(i);
            let t = Instant::now();
            let res = client.get(format!("{base}/{q}")).send().await.unwrap();
            assert!(res.status().is_success(), "{q}: {}", res.status());
            let b: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
            times.push(t.elapsed());
            counts.push(b["entry"].as_array().map_or(0, Vec::len));
        }
        // The first run pays for what later runs find remembered (the counts
        // of common conditions, see `CommonConditions`).
        let first = times.first().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        times.sort();
        counts.sort();
        let n = counts[counts.len() / 2];
        println!(
            "| `{shown}` | {n} | {:.2} | {:.2} | {first:.2} |",
            percentile(&times, 0.5),
            percentile(&times, 0.95)
        );
    }
}
