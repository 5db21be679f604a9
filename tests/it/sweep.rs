//! Create and read a minimal valid instance of every R4 resource type. The
//! instances are built from the R4 model: each required element gets a value of
//! its first type (codes from the required value set when there is one).

use hearth::fhir::model::{TypeRef, r4};
use serde_json::{Map, Value, json};

use crate::both_backends;
use crate::support::{TestApp, json};

fn sample(primitive: &str, codes: Option<&Vec<&str>>) -> Value {
    match primitive {
        "boolean" => json!(true),
        "integer" | "positiveInt" | "unsignedInt" => json!(1),
        "decimal" => json!(1.5),
        "date" => json!("2020-01-01"),
        "dateTime" | "instant" => json!("2020-01-01T00:00:00Z"),
        "time" => json!("10:00:00"),
        "code" => json!(codes.and_then(|c| c.first()).copied().unwrap_or("x")),
        "id" => json!("a1"),
        "uri" | "url" | "canonical" => json!("http://example.org/x"),
        "oid" => json!("urn:oid:1.2.3"),
        "uuid" => json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
        "base64Binary" => json!("AAAA"),
        "xhtml" => json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"),
        _ => json!("x"),
    }
}

const SKIP: &[&str] = &[
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
];

fn minimal(owner: &str, depth: usize) -> Map<String, Value> {
    let def = r4()
        .type_def(owner)
        .unwrap_or_else(|| panic!("no definition for {owner}"));
    let mut obj = Map::new();
    let mut required: Vec<_> = def.elements.iter().filter(|e| e.min > 0).collect();
    if required.is_empty() {
        // An element must hold something: take its first plain primitive child.
        let skip: &[&str] = if depth == 0 { SKIP } else { &["id"] };
        required = def
            .elements
            .iter()
            .filter(|e| !skip.contains(&e.name) && matches!(e.types[0], TypeRef::Primitive(_)))
            .take(1)
            .collect();
    }
    for el in required {
        let t = el.types[0];
        let v = match t {
            TypeRef::Primitive(p) => sample(p, el.required_codes.as_ref()),
            TypeRef::Complex(c) if depth < 8 => Value::Object(minimal(c, depth + 1)),
            TypeRef::Complex(_) => panic!("{owner}: required structure too deep"),
            TypeRef::Resource => json!({"resourceType": "Basic", "code": {"text": "x"}}),
        };
        obj.insert(el.json_name(t), if el.repeats { json!([v]) } else { v });
    }
    obj
}

async fn every_resource_type_creates_and_reads(app: TestApp) {
    let types = r4().resource_types();
    assert_eq!(types.len(), 146);
    for t in types {
        if *t == "AuditEvent" {
            // The server's audit log: not written by clients (tests/it/audit.rs).
            continue;
        }
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!(t));
        resource.extend(minimal(t, 0));
        let resource = Value::Object(resource);
        let res = app.post(t, resource.to_string()).await;
        let status = res.status().as_u16();
        let (_, created) = json(res).await;
        assert_eq!(status, 201, "{t}: {resource} -> {created}");
        let (status, read) = json(
            app.get(&format!("{t}/{}", created["id"].as_str().unwrap()))
                .await,
        )
        .await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(read, created, "{t}");
        let mut expected = resource.clone();
        for k in ["id", "meta"] {
            expected[k] = read[k].clone();
        }
        assert_eq!(read, expected, "{t}: content changed");
    }
}
both_backends!(every_resource_type_creates_and_reads);
