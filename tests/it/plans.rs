//! The SQL of the reference searches uses indexes on PostgreSQL: each statement
//! of every plan (each driving condition, and the walk) is `EXPLAIN`ed with
//! sequential scans priced out, and no index table or `resources` may still be
//! read by a sequential scan — which happens only when no index can serve.

use hearth::search::{plan, query};
use hearth_store::search::{
    Bind, CompartmentQuery, Driver, Placeholders, SearchQuery, compartment_sql, count_sql,
    search_sql,
};
use tokio_postgres::types::{ToSql, Type};

use crate::support::{Backend, TestApp};

fn store_query(res_type: &str, q: &str) -> SearchQuery {
    let pairs: Vec<(String, String)> = q
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let req = query::parse(res_type, &pairs).unwrap();
    let hash = |b: &[u8]| Ok(b.to_vec());
    plan::store_query(&req, None, 21, &hash).unwrap()
}

/// Every plan the store may choose for `q`.
fn drivers(q: &SearchQuery) -> Vec<Driver> {
    let mut out = vec![Driver::Walk];
    out.extend((0..q.conditions.len()).map(Driver::Condition));
    out
}

async fn explain(client: &tokio_postgres::Client, sql: &str, binds: &[Bind]) -> String {
    let types: Vec<Type> = binds
        .iter()
        .map(|b| match b {
            Bind::Text(_) => Type::TEXT,
            Bind::Int(_) => Type::INT8,
            Bind::Float(_) => Type::FLOAT8,
            Bind::Bytes(_) => Type::BYTEA,
        })
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = binds
        .iter()
        .map(|b| match b {
            Bind::Text(s) => s as &(dyn ToSql + Sync),
            Bind::Int(i) => i as &(dyn ToSql + Sync),
            Bind::Float(f) => f as &(dyn ToSql + Sync),
            Bind::Bytes(v) => v as &(dyn ToSql + Sync),
        })
        .collect();
    let statement = client
        .prepare_typed(&format!("EXPLAIN {sql}"), &types)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    let rows = client.query(&statement, &params).await.unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// No sequential scan of an index table or `resources`, and every index scan of
/// an index table is bounded by more than the tenant and type (a scan of all of
/// a type's rows through an index is a sequential scan in disguise).
fn assert_indexed(plan: &str, what: &str) {
    // Plan nodes: a header line, then its detail lines up to the next node.
    let mut nodes: Vec<Vec<&str>> = Vec::new();
    for line in plan.lines() {
        if nodes.is_empty() || line.contains("->") {
            nodes.push(vec![line]);
        } else if let Some(node) = nodes.last_mut() {
            node.push(line);
        }
    }
    for node in nodes {
        let header = node[0];
        let Some(table) = header
            .split(" on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        else {
            continue;
        };
        let watched = table.starts_with("idx_") || table == "resources";
        if !watched {
            continue;
        }
        assert!(
            !header.contains("Seq Scan"),
            "{what}: sequential scan of {table}\n{plan}"
        );
        if header.contains("Index") && table.starts_with("idx_") {
            let cond = node
                .iter()
                .find(|l| l.contains("Index Cond:"))
                .unwrap_or_else(|| panic!("{what}: unbounded index scan of {table}\n{plan}"));
            let bounded = cond
                .split("Index Cond:")
                .nth(1)
                .unwrap_or_default()
                .split(" AND ")
                .filter_map(|c| c.trim_start_matches([' ', '(']).split_whitespace().next())
                .any(|column| column != "tenant" && column != "res_type");
            assert!(bounded, "{what}: {table} scanned for a whole type\n{plan}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_searches_use_indexes_on_postgres() {
    let app = TestApp::start(Backend::Postgres).await;
    // Some data, analysed, so the planner has statistics to go on; each
    // condition of the reference searches matches a small part of it (as the
    // driving condition does when the store chooses it).
    for i in 0..40 {
        let p = format!(r#"{{"resourceType":"Patient","id":"p{i}","name":[{{"family":"F{i}"}}]}}"#);
        assert!(
            app.put(&format!("Patient/p{i}"), p)
                .await
                .status()
                .is_success()
        );
        let e = format!(
            r#"{{"resourceType":"Encounter","id":"e{i}","status":"finished","class":{{"code":"AMB"}},"subject":{{"reference":"Patient/p{i}"}}}}"#
        );
        assert!(
            app.put(&format!("Encounter/e{i}"), e)
                .await
                .status()
                .is_success()
        );
        for j in 0..5 {
            let n = i * 5 + j;
            let year = if n % 20 == 0 { 2016 } else { 2010 };
            let o = format!(
                r#"{{"resourceType":"Observation","id":"o{n}","status":"{}","code":{{"coding":[{{"system":"http://loinc.org","code":"c{}"}}]}},"subject":{{"reference":"Patient/p{i}"}},"effectiveDateTime":"{year}-01-0{}"}}"#,
                if n % 10 == 0 { "preliminary" } else { "final" },
                n % 10,
                1 + j
            );
            assert!(
                app.put(&format!("Observation/o{n}"), o)
                    .await
                    .status()
                    .is_success()
            );
        }
    }
    let url = app.database_url.clone().unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute("ANALYZE; SET enable_seqscan = off;")
        .await
        .unwrap();

    let searches = [
        ("Observation", "patient=p1&code=c1"),
        ("Observation", "code=c1&date=ge2015&_sort=-date"),
        ("Encounter", "subject.name=F1"),
        ("Patient", "_has:Observation:patient:code=c1"),
        ("Observation", "code=c1&_sort=date,-_lastUpdated"),
        ("Observation", "subject:Patient=p1&status:not=final"),
    ];
    let mut checked = 0;
    for (t, q) in searches {
        let sq = store_query(t, q);
        for driver in drivers(&sq) {
            let what = format!("{t}?{q} driven by {driver:?}");
            for (sql, binds) in search_sql("default", &sq, Placeholders::Numbered, driver) {
                assert_indexed(&explain(&client, &sql, &binds).await, &what);
                checked += 1;
            }
            let (sql, binds) = count_sql("default", &sq, Placeholders::Numbered, driver);
            assert_indexed(&explain(&client, &sql, &binds).await, &what);
        }
    }
    let everything = CompartmentQuery {
        compartment: "Patient".into(),
        id: "p1".into(),
        types: vec![],
        since: None,
        after: None,
        limit: 21,
    };
    let (sql, binds) = compartment_sql("default", &everything, Placeholders::Numbered);
    assert_indexed(&explain(&client, &sql, &binds).await, "$everything");
    assert!(checked >= 15, "{checked} statements checked");
}
