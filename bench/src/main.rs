//! `hearth-bench`: starts a Hearth server in-process (SQLite in a temporary
//! directory, or PostgreSQL with `--database-url`) and measures the REST core over
//! loopback HTTP: create, read, vread, update with If-Match, instance history,
//! signed in with HTTP Basic (the credential cache on); then the same read on a
//! second listener whose anonymous callers may read, to show what
//! authentication costs. Prints one Markdown table row per operation (p50, p95,
//! p99, throughput), and the cost of one argon2id verification (what a request
//! would pay without the cache).
//!
//! cargo run --release -p hearth-bench -- [--requests N] [--concurrency C]
//!     [--database-url postgres://…]

// A measuring tool: any failure aborts the run, loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth::config::{Config, Secret};

struct Args {
    requests: usize,
    concurrency: usize,
    database_url: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        requests: 5000,
        concurrency: 8,
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--requests" => a.requests = value().parse().unwrap_or(a.requests),
            "--concurrency" => a.concurrency = value().parse().unwrap_or(a.concurrency),
            "--database-url" => a.database_url = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

const OBSERVATION: &str = r#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}],"text":"Heart rate"},"subject":{"reference":"Patient/example"},"effectiveDateTime":"2024-05-06T07:08:09+02:00","valueQuantity":{"value":72.50,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"},"referenceRange":[{"low":{"value":60,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"},"high":{"value":100,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}]}"#;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `n` requests with `c` in flight; `make(i)` builds request i.
async fn run<F>(name: &str, n: usize, c: usize, make: F)
where
    F: Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (make, next) = (make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break times;
                }
                let t = Instant::now();
                let res = make(i).send().await.expect("request");
                let status = res.status();
                let _ = res.bytes().await;
                assert!(status.is_success(), "{status}");
                times.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "| {name} | {n} | {c} | {:.2} | {:.2} | {:.2} | {:.0} |",
        percentile(&all, 0.50),
        percentile(&all, 0.95),
        percentile(&all, 0.99),
        n as f64 / wall
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    hearth::app::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    if let Some(url) = &a.database_url {
        let key = dir.path().join("master.key");
        std::fs::write(&key, [42u8; 32]).expect("key");
        config.database.url = Some(Secret::new(url.clone()));
        config.crypto.master_key_file = Some(key);
    }
    const PASSWORD: &str = "Bench-admin-pw-1";
    config.security.bootstrap_admin_password = Some(Secret::new(PASSWORD));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let open_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open_addr = open_listener.local_addr().expect("addr");
    let open = hearth::config::HttpConfig {
        name: "open".into(),
        addr: open_addr,
        security: Vec::new(),
        anonymous: vec!["read:*".into()],
        ..hearth::config::HttpConfig::default()
    };
    let server_config = config.clone();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let state = hearth::app::build_state(&server_config)
                .await
                .expect("start");
            let open_state = hearth::app::listener_state(&state, &open).expect("state");
            let (open_server, _) =
                hearth::app::listener_server(&open, open_state, Some(open_listener))
                    .expect("listen");
            let (server, _) =
                hearth::app::http_server(&server_config, state, Some(listener)).expect("listen");
            actix_web::rt::spawn(open_server);
            server.await.expect("serve");
        });
    });
    let base = format!("http://{addr}/fhir");
    let open_base = format!("http://{open_addr}/fhir");
    let anonymous = reqwest::Client::new();
    let mut headers = reqwest::header::HeaderMap::new();
    {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {token}").parse().expect("header"),
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client");
    while client.get(format!("{base}/metadata")).send().await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (n, c) = (a.requests, a.concurrency);
    println!(
        "backend: {}, {} requests per operation, concurrency {}\n",
        if a.database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        n,
        c
    );
    println!("| operation | requests | concurrency | p50 ms | p95 ms | p99 ms | req/s |");
    println!("|---|---|---|---|---|---|---|");
    let post = {
        let (client, base) = (client.clone(), base.clone());
        move |_| {
            client
                .post(format!("{base}/Observation"))
                .header("content-type", "application/fhir+json")
                .body(OBSERVATION)
        }
    };
    run("create Observation", n, c, post).await;
    // Resources with known ids for the rest.
    let ids: Arc<Vec<String>> = Arc::new((0..n.min(1000)).map(|i| format!("bench-{i}")).collect());
    let body = |id: &str| OBSERVATION.replacen("{", &format!("{{\"id\":\"{id}\","), 1);
    {
        let (client, base, put_ids) = (client.clone(), base.clone(), ids.clone());
        let put = move |i: usize| {
            let id = &put_ids[i % put_ids.len()];
            client
                .put(format!("{base}/Observation/{id}"))
                .header("content-type", "application/fhir+json")
                .body(body(id))
        };
        run("update Observation (PUT)", ids.len(), c, put).await;
    }
    let (client2, base2, ids2) = (client.clone(), base.clone(), ids.clone());
    run("read Observation", n, c, move |i| {
        client2.get(format!("{base2}/Observation/{}", ids2[i % ids2.len()]))
    })
    .await;
    let (anon, open2, ids2) = (anonymous.clone(), open_base.clone(), ids.clone());
    run("read Observation, anonymous listener", n, c, move |i| {
        anon.get(format!("{open2}/Observation/{}", ids2[i % ids2.len()]))
    })
    .await;
    let (client2, base2, ids2) = (client.clone(), base.clone(), ids.clone());
    run("read Observation, HTTP Basic (again)", n, c, move |i| {
        client2.get(format!("{base2}/Observation/{}", ids2[i % ids2.len()]))
    })
    .await;
    let (client2, base2, ids2) = (client.clone(), base.clone(), ids.clone());
    run("vread Observation", n, c, move |i| {
        client2.get(format!(
            "{base2}/Observation/{}/_history/1",
            ids2[i % ids2.len()]
        ))
    })
    .await;
    let (client2, base2, ids2) = (client.clone(), base.clone(), ids.clone());
    run("instance history", n, c, move |i| {
        client2.get(format!(
            "{base2}/Observation/{}/_history",
            ids2[i % ids2.len()]
        ))
    })
    .await;
    let (client2, base2) = (client.clone(), base.clone());
    run("metadata", n, c, move |_| {
        client2.get(format!("{base2}/metadata"))
    })
    .await;
    // What the cache saves: one argon2id verification.
    let hash = hearth_auth_local::hash_password(PASSWORD).expect("hash");
    let started = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        assert!(hearth_auth_local::verify_password(PASSWORD, &hash));
    }
    println!(
        "\nargon2id verification (19 MiB, t=2, p=1): {:.1} ms each",
        started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds)
    );
}
