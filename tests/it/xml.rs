//! FHIR XML over HTTP (R4 XML format, `application/fhir+xml`): every fixture
//! pair in `fixtures/xml` written as XML and read back as JSON and as XML;
//! searches, transactions, history, PATCH, `$validate` and errors in XML;
//! hostile XML (DTDs, external entities, entity expansion, deep nesting)
//! refused with an OperationOutcome and nothing stored.

use serde_json::Value;

use crate::support::{Backend, TestApp, fixtures, json};

const XML: &str = "application/fhir+xml";

async fn send_xml(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .header("content-type", XML)
        .header("accept", XML)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get_xml(app: &TestApp, path: &str) -> (u16, String, String) {
    let res = app
        .client
        .get(app.url(path))
        .header("accept", XML)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, res.text().await.unwrap())
}

/// The pretty XML of a stored resource without its server-owned `meta`.
fn without_meta(xml: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in xml.lines() {
        if line == "  <meta>" {
            skipping = true;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
        if line == "  </meta>" {
            skipping = false;
        }
    }
    out
}

async fn xml_format(backend: Backend) {
    let app = TestApp::start(backend).await;
    let dir = fixtures().join("xml");
    let mut pairs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".xml") && !n.ends_with(".in.xml") && !n.contains("bundle")
        })
        .collect();
    pairs.sort();
    assert!(pairs.len() >= 6);
    for path in &pairs {
        let xml = std::fs::read_to_string(path).unwrap();
        let expected: Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        let t = expected["resourceType"].as_str().unwrap();
        let id = expected["id"].as_str().unwrap();
        let name = path.display();

        // Written as XML, answered in XML.
        let res = send_xml(
            &app,
            reqwest::Method::PUT,
            &format!("{t}/{id}"),
            xml.clone(),
        )
        .await;
        assert_eq!(res.status(), 201, "{name}: {}", res.text().await.unwrap());
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(XML)
        );
        let body = res.text().await.unwrap();
        assert!(
            body.starts_with(&format!("<{t} xmlns=\"http://hl7.org/fhir\">")),
            "{body}"
        );

        // Read as JSON: the fixture's content, decimals to the digit.
        let res = app.get(&format!("{t}/{id}")).await;
        let text = res.text().await.unwrap();
        let mut stored: Value = serde_json::from_str(&text).unwrap();
        stored.as_object_mut().unwrap().remove("meta");
        assert_eq!(stored, expected, "{name}");
        for digits in [
            "1.50",
            "0.00001230",
            "12345678901234567890.123456789",
            "36.60",
        ] {
            if std::fs::read_to_string(path.with_extension("json"))
                .unwrap()
                .contains(digits)
            {
                assert!(text.contains(digits), "{name}: {digits} in {text}");
            }
        }

        // Read as XML: exactly the fixture, apart from the server's meta.
        let (status, ct, body) = get_xml(&app, &format!("{t}/{id}?_pretty=true")).await;
        assert_eq!((status, ct.starts_with(XML)), (200, true));
        assert!(
            body.contains("<meta>\n    <versionId value=\"1\"/>"),
            "{body}"
        );
        assert_eq!(without_meta(&body), xml, "{name}");
    }

    // _format chooses XML too; application/xml is answered as asked.
    let (status, ct, body) = get_xml(&app, "Binary/xml-6?_format=xml").await;
    assert_eq!((status, ct.starts_with(XML)), (200, true));
    assert!(body.contains("<data value=\"SGVsbG8sIFdvcmxkIQ==\"/>"));
    let res = app
        .client
        .get(app.url("Binary/xml-6"))
        .header("accept", "application/xml")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/xml")
    );

    // Input-only forms (prefixes, comments, character references) are read.
    let variants = std::fs::read(dir.join("08-input-variants.in.xml")).unwrap();
    let res = send_xml(&app, reqwest::Method::PUT, "Basic/xml-8", variants).await;
    assert_eq!(res.status(), 201);
    let (_, stored) = json(app.get("Basic/xml-8").await).await;
    assert_eq!(stored["code"]["text"], "tab\tnewline\nquote\"apos'gt>lt<");
    assert_eq!(stored["code"]["coding"][0]["code"], "a b");

    // A search answers a searchset Bundle in XML, resources nested by type.
    let (status, _, body) = get_xml(&app, "Patient?_id=xml-1,xml-7&_sort=_lastUpdated").await;
    assert_eq!(status, 200);
    assert!(body.contains("<type value=\"searchset\"/>"), "{body}");
    let first = body.find("<id value=\"xml-1\"/>").unwrap();
    let second = body.find("<id value=\"xml-7\"/>").unwrap();
    assert!(first < second);
    assert!(
        body.contains("<resource><Patient><id value=\"xml-1\"/>"),
        "{body}"
    );
    let (_, _, body) = get_xml(&app, "Patient?_summary=count").await;
    assert!(body.contains("<total value=\"2\"/>"), "{body}");

    // History in XML.
    let (status, _, body) = get_xml(&app, "Patient/xml-1/_history").await;
    assert_eq!(status, 200);
    assert!(body.contains("<type value=\"history\"/>"));

    // A transaction in XML: placeholders resolved, the response in XML.
    let tx = std::fs::read(dir.join("03-bundle-transaction.xml")).unwrap();
    let res = send_xml(&app, reqwest::Method::POST, "", tx).await;
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("<type value=\"transaction-response\"/>"),
        "{body}"
    );
    assert_eq!(body.matches("<status value=\"201 Created\"/>").count(), 2);
    let at = body.find("<location value=\"Observation/").unwrap() + "<location value=\"".len();
    let location = &body[at..at + body[at..].find('"').unwrap()];
    let (_, obs) = json(app.get(location).await).await;
    let subject = obs["subject"]["reference"].as_str().unwrap();
    assert!(subject.starts_with("Patient/") && !subject.contains("urn:uuid"));

    // FHIRPath Patch as an XML Parameters.
    let patch = r#"<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/><part><name value="type"/><valueCode value="replace"/></part><part><name value="path"/><valueString value="Patient.active"/></part><part><name value="value"/><valueBoolean value="false"/></part></parameter></Parameters>"#;
    let res = send_xml(&app, reqwest::Method::PATCH, "Patient/xml-1", patch).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("<active value=\"false\"/>")
    );

    // $validate in XML answers an OperationOutcome in XML.
    let res = send_xml(
        &app,
        reqwest::Method::POST,
        "Patient/$validate",
        r#"<Patient xmlns="http://hl7.org/fhir"><gender value="man"/></Patient>"#,
    )
    .await;
    let body = res.text().await.unwrap();
    assert!(
        body.starts_with("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"),
        "{body}"
    );
    assert!(
        body.contains("<expression value=\"Patient.gender\"/>"),
        "{body}"
    );

    // Errors are OperationOutcomes in XML for XML clients.
    let (status, ct, body) = get_xml(&app, "Patient/nobody").await;
    assert_eq!((status, ct.starts_with(XML)), (404, true));
    assert!(body.starts_with("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"));

    // Hostile and broken XML: a 400 that says why, never the input, nothing stored.
    let scratch = tempfile::tempdir().unwrap();
    let secret = scratch.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-CONTENT").unwrap();
    let cases = [
        (
            format!(
                r#"<?xml version="1.0"?><!DOCTYPE Patient [<!ENTITY x SYSTEM "file://{}">]><Patient xmlns="http://hl7.org/fhir"><id value="evil-1"/><name><family value="&x;"/></name></Patient>"#,
                secret.display()
            ),
            "DTD",
        ),
        (
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><Patient xmlns="http://hl7.org/fhir"><id value="evil-2"/><name><family value="&lol3;"/></name></Patient>"#.to_owned(),
            "DTD",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="evil-3"/><name><family value="&x;"/></name></Patient>"#.to_owned(),
            "well-formed",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="evil-4"/><name><family value="a"></name></Patient>"#.to_owned(),
            "well-formed",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="evil-5"/><nickname value="a"/></Patient>"#.to_owned(),
            "unknown element nickname",
        ),
        (
            format!(
                r#"<Patient xmlns="http://hl7.org/fhir"><id value="evil-6"/>{}</Patient>"#,
                "<extension url=\"u\">".repeat(150) + &"</extension>".repeat(150)
            ),
            "nested",
        ),
        (
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="evil-7"/><text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div></text></Patient>"#.to_owned(),
            "excludes",
        ),
    ];
    for (i, (body, expected)) in cases.into_iter().enumerate() {
        let id = format!("evil-{}", i + 1);
        let res = send_xml(&app, reqwest::Method::PUT, &format!("Patient/{id}"), body).await;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert!(status == 400 || status == 422, "{id}: {status} {text}");
        assert!(text.contains(expected), "{id}: {text}");
        assert!(
            !text.contains("TOP-SECRET") && !text.contains("lollol"),
            "{id}: {text}"
        );
        assert_eq!(
            app.get(&format!("Patient/{id}")).await.status(),
            404,
            "{id}"
        );
    }

    // Declared as something else: 415 as before.
    let res = app
        .client
        .post(app.url("Patient"))
        .header("content-type", "text/html")
        .body("<Patient/>")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
}

mod xml_format {
    use crate::support::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::xml_format(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::xml_format(Backend::Postgres).await
    }
}
