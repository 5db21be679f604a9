//! Encryption at rest: bodies are stored only as AES-256-GCM ciphertext bound to
//! their row; the master key never reaches the database.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestApp, json, postgres};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Everything the database holds, as bytes: the SQLite files, or a pg_dump.
fn dump(app: &TestApp) -> Vec<u8> {
    match app.backend {
        Backend::Sqlite => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(app.data_dir()).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("hearth.db") {
                    all.extend(std::fs::read(&path).unwrap());
                }
            }
            all
        }
        Backend::Postgres => postgres::dump(app.database_url.as_deref().unwrap()),
    }
}

fn master_key_file(app: &TestApp) -> std::path::PathBuf {
    app.config
        .crypto
        .master_key_file
        .clone()
        .unwrap_or_else(|| app.data_dir().join("master.key"))
}

async fn dump_holds_no_plaintext(app: TestApp) {
    let created = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Zyxwvutsrq", "given": ["Qwertyuiop"]}],
            "identifier": [{"system": "urn:mrn", "value": "MRN-8675309"}], "telecom": [{"system": "phone", "value": "555-867-5309"}]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let mut updated = created.clone();
    updated["birthDate"] = json!("1931-07-08");
    assert_eq!(
        app.put(&format!("Patient/{id}"), updated.to_string())
            .await
            .status(),
        200
    );
    // A Bulk Data export of it is stored too (sealed, like the bodies).
    let res = app
        .client
        .get(app.url("$export?_type=Patient"))
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let status_url = res.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut manifest = String::new();
    for _ in 0..600 {
        let res = app.client.get(&status_url).send().await.unwrap();
        if res.status() == 200 {
            manifest = res.text().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(manifest.contains("\"count\":1"), "{manifest}");
    let dump = dump(&app);
    // The dump covers the rows (ids are stored in clear, for lookups)...
    assert!(
        contains(&dump, id.as_bytes()),
        "the dump does not cover the resource rows"
    );
    // ...but no body content, in the current row or in history.
    for secret in [
        &b"Zyxwvutsrq"[..],
        b"Qwertyuiop",
        b"1931-07-08",
        b"8675309",
        b"zyxwvutsrq",
        b"qwertyuiop",
    ] {
        assert!(
            !contains(&dump, secret),
            "plaintext {} found in the database",
            String::from_utf8_lossy(secret)
        );
    }
    // Neither the master key, raw or as written in its file.
    use base64::Engine;
    let key_file = std::fs::read(master_key_file(&app)).unwrap();
    let raw = match key_file.len() {
        32 => key_file.clone(),
        _ => base64::engine::general_purpose::STANDARD
            .decode(key_file.trim_ascii())
            .unwrap(),
    };
    assert_eq!(raw.len(), 32);
    assert!(
        !contains(&dump, key_file.trim_ascii()),
        "master key file content found in the database"
    );
    assert!(
        !contains(&dump, &raw),
        "raw master key found in the database"
    );
}
both_backends!(dump_holds_no_plaintext);

async fn ciphertext_moved_to_another_row_fails_to_decrypt(app: TestApp) {
    let a = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Alphaname"}]}))
        .await;
    let b = app
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Betaname"}]}))
        .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let sql = format!(
        "UPDATE resources SET key_id = (SELECT key_id FROM resources WHERE id = '{a}'), \
         nonce = (SELECT nonce FROM resources WHERE id = '{a}'), \
         body = (SELECT body FROM resources WHERE id = '{a}') WHERE id = '{b}'"
    );
    app.execute_sql(&sql).await;
    let (status, oo) = json(app.get(&format!("Patient/{b}")).await).await;
    assert_eq!(status, 500);
    let text = oo.to_string();
    assert!(text.contains("integrity check"), "{text}");
    assert!(
        !text.contains("Alphaname") && !text.contains("Betaname"),
        "{text}"
    );
    // The untouched row still reads.
    let (status, read) = json(app.get(&format!("Patient/{a}")).await).await;
    assert_eq!(status, 200);
    assert_eq!(read["name"][0]["family"], "Alphaname");
}
both_backends!(ciphertext_moved_to_another_row_fails_to_decrypt);
