//! Stored bytes are served as stored: decimals keep their exact text, Unicode
//! survives, and `_pretty` only re-indents.

use serde_json::Value;

use crate::both_backends;
use crate::support::{TestApp, fixtures, json};

async fn decimals_round_trip_byte_exact(app: TestApp) {
    let body = std::fs::read(fixtures().join("valid/decimals.json")).unwrap();
    let res = app.post("Observation", body).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    for text in [
        app.client
            .get(&location)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        {
            let id = location.split('/').rev().nth(2).unwrap();
            app.get(&format!("Observation/{id}?_pretty=true"))
                .await
                .text()
                .await
                .unwrap()
        },
    ] {
        for exact in [
            "1.50",
            "0.00001230",
            "-0.5",
            "12345678901234567890.123456789",
        ] {
            let token_found = text.match_indices(exact).any(|(i, _)| {
                let before = text[..i].trim_end();
                let after = &text[i + exact.len()..];
                before.ends_with(':')
                    && (after.starts_with(',') || after.starts_with('}') || after.starts_with('\n'))
            });
            assert!(token_found, "{exact} not served exactly in {text}");
        }
    }
}
both_backends!(decimals_round_trip_byte_exact);

async fn unicode_round_trips(app: TestApp) {
    let body = std::fs::read(fixtures().join("valid/unicode.json")).unwrap();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let created = app.create(&sent).await;
    let (status, read) = json(
        app.get(&format!("Patient/{}", created["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(read["name"], sent["name"]);
    assert!(read.to_string().contains("Zyxwvutsrq-Ñáéíóú"));
}
both_backends!(unicode_round_trips);
