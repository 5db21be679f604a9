//! The audit log: one row per request on every listener (who, what, when, from
//! where, outcome), appended to a per-tenant chain whose links are HMACs
//! under the tenant's audit key (wrapped by the master key, never in the
//! database). [`verify`] walks a chain and finds the first row that was
//! edited, inserted, reordered or deleted.
//!
//! Audit rows hold no resource content: the resource named by reference,
//! user names and client ids, the source address, the HTTP status and a short
//! reason.

use std::sync::Arc;

use hearth_store::Store;
use hearth_store::schema::AuditEvent;

use crate::crypto::KeyRing;
use crate::store::AnyStore;

/// Appends audit rows. Rows go to one writer task that commits whatever has
/// queued up meanwhile in one transaction (group commit): a request waits for
/// the commit that holds its row, and many requests share it.
#[derive(Clone)]
pub struct AuditLog {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

struct Pending {
    event: AuditEvent,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Rows committed together at most.
const BATCH: usize = 512;

/// What one request did, as the listener saw it.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub listener: String,
    pub request_id: String,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub source_addr: String,
    pub method: String,
    pub interaction: String,
    pub resource: Option<String>,
    pub patient: Option<String>,
    pub status: u16,
    pub detail: String,
}

impl AuditLog {
    /// Starts the writer task (on the current Tokio runtime).
    pub fn new(store: AnyStore, keys: Arc<KeyRing>) -> AuditLog {
        let (queue, rx) = tokio::sync::mpsc::channel(4 * BATCH);
        tokio::spawn(writer(store, keys, rx));
        AuditLog { queue }
    }

    /// Appends a row to the tenant's chain, returning once it is committed.
    pub async fn append(&self, tenant: &str, record: Record) -> Result<(), String> {
        let event = AuditEvent {
            tenant: tenant.to_owned(),
            seq: 0,
            recorded_at: crate::time::now_micros(),
            listener: record.listener,
            request_id: record.request_id,
            user_name: record.user_name,
            client_id: record.client_id,
            source_addr: record.source_addr,
            method: record.method,
            interaction: record.interaction,
            resource: record.resource,
            patient: record.patient,
            status: i32::from(record.status),
            detail: record.detail,
            key_id: String::new(),
            hash: Vec::new(),
        };
        let (done, committed) = tokio::sync::oneshot::channel();
        self.queue
            .send(Pending { event, done })
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?;
        committed
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?
    }
}

/// Commits queued rows, a batch per transaction, per tenant in arrival order.
async fn writer(store: AnyStore, keys: Arc<KeyRing>, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Rows of one tenant form one chain; keep each tenant's order.
        let mut tenants: Vec<String> = batch.iter().map(|p| p.event.tenant.clone()).collect();
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            let (mine, rest): (Vec<Pending>, Vec<Pending>) =
                batch.into_iter().partition(|p| p.event.tenant == tenant);
            batch = rest;
            let (events, waiting): (Vec<AuditEvent>, Vec<_>) =
                mine.into_iter().map(|p| (p.event, p.done)).unzip();
            let keys = keys.clone();
            let seal_tenant = tenant.clone();
            let result = store
                .append_audit(events, move |e, prev| {
                    keys.audit_mac(&seal_tenant, None, &e.chain_input(prev))
                        .map_err(|e| e.to_string())
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!(error = %e, rows = waiting.len(), "audit rows could not be written");
            }
            for done in waiting {
                let _ = done.send(result.clone());
            }
        }
    }
}

/// Deletes audit rows older than `retention` (keeping the chain checkable
/// from the anchor); returns how many went.
pub async fn prune(
    store: &AnyStore,
    tenant: &str,
    retention: std::time::Duration,
) -> Result<u64, String> {
    let cut =
        crate::time::now_micros() - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX / 2);
    store
        .prune_audit(tenant, cut)
        .await
        .map_err(|e| e.to_string())
}

/// The result of walking a chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every row links to the one before under a valid MAC.
    Intact { rows: u64 },
    /// The first row that does not: its sequence number and why.
    Broken { seq: i64, reason: String },
}

/// Walks the tenant's audit chain from its first row.
pub async fn verify(store: &AnyStore, keys: &KeyRing, tenant: &str) -> Result<Verdict, String> {
    const PAGE: i64 = 1000;
    // After retention, the chain starts from the last row it deleted.
    let (mut expected_seq, mut prev) = match store
        .audit_anchor(tenant)
        .await
        .map_err(|e| e.to_string())?
    {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1i64, Vec::new()),
    };
    let mut rows = 0u64;
    loop {
        let page = store
            .audit_events(tenant, expected_seq - 1, PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let full = page.len() as i64 == PAGE;
        for e in page {
            if e.seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: expected_seq,
                    reason: format!("row {expected_seq} is missing (the next is {})", e.seq),
                });
            }
            let mac = keys
                .audit_mac(tenant, Some(&e.key_id), &e.chain_input(&prev))
                .map(|(_, mac)| mac);
            match mac {
                Ok(mac)
                    if aws_lc_rs::constant_time::verify_slices_are_equal(&mac, &e.hash).is_ok() => {
                }
                Ok(_) => {
                    return Ok(Verdict::Broken {
                        seq: e.seq,
                        reason: "the row, or the one before it, was altered".into(),
                    });
                }
                Err(err) => {
                    return Ok(Verdict::Broken {
                        seq: e.seq,
                        reason: format!("its key cannot be used: {err}"),
                    });
                }
            }
            prev = e.hash;
            expected_seq += 1;
            rows += 1;
        }
        if !full {
            return Ok(Verdict::Intact { rows });
        }
    }
}

/// An audit row as a FHIR `AuditEvent` in the shape of IHE Basic Audit Log
/// Patterns (BALP): a RESTful event with its interaction as subtype, the user
/// (and client) as the requesting agent with the network address, the server
/// as source, and the resource, the patient and the request id as entities.
pub fn to_fhir(row: &AuditEvent) -> crate::json::Json {
    use crate::json::{Json, Object};
    fn coding(system: &str, code: &str) -> Json {
        let mut c = Object::default();
        c.push("system", Json::string(system));
        c.push("code", Json::string(code));
        Json::Object(c)
    }
    fn object(members: Vec<(&str, Json)>) -> Json {
        let mut o = Object::default();
        for (k, v) in members {
            o.push(k, v);
        }
        Json::Object(o)
    }
    let restful = row.interaction.split(':').next().unwrap_or("");
    let (action, profile) = match restful {
        "create" => ("C", "Create"),
        "update" | "update-conditional" | "patch" => ("U", "Update"),
        "delete" | "delete-conditional" => ("D", "Delete"),
        "search-type" | "search-system" | "search-compartment" => ("E", "Query"),
        "operation" | "transaction" | "batch" | "unclassified" => ("E", ""),
        _ => ("R", "Read"),
    };
    let subtype = match restful {
        "search-compartment" => "search-type",
        "update-conditional" => "update",
        "delete-conditional" => "delete",
        "smart-configuration" | "unclassified" | "admin" => "",
        other => other,
    };
    let outcome = match row.status {
        s if s < 400 => "0",
        s if s < 500 => "4",
        _ => "8",
    };
    let mut e = Object::default();
    e.push("resourceType", Json::string("AuditEvent"));
    e.push("id", Json::string(row.seq.to_string()));
    if !profile.is_empty() {
        e.push(
            "meta",
            object(vec![(
                "profile",
                Json::Array(vec![Json::string(format!(
                    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.{profile}"
                ))]),
            )]),
        );
    }
    e.push(
        "type",
        coding(
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
        ),
    );
    if !subtype.is_empty() {
        e.push(
            "subtype",
            Json::Array(vec![coding(
                "http://hl7.org/fhir/restful-interaction",
                subtype,
            )]),
        );
    }
    e.push("action", Json::string(action));
    e.push(
        "recorded",
        Json::string(crate::time::format_instant(row.recorded_at)),
    );
    e.push("outcome", Json::string(outcome));
    let mut desc = format!("{} {}", row.status, row.interaction);
    if !row.detail.is_empty() {
        desc.push_str(": ");
        desc.push_str(&row.detail);
    }
    e.push("outcomeDesc", Json::string(desc));
    let mut agents = Vec::new();
    let network = object(vec![
        ("address", Json::string(row.source_addr.clone())),
        ("type", Json::string("2")),
    ]);
    let who = match (&row.user_name, &row.client_id) {
        (Some(u), _) => object(vec![(
            "identifier",
            object(vec![("value", Json::string(u.clone()))]),
        )]),
        (None, Some(c)) => object(vec![(
            "identifier",
            object(vec![("value", Json::string(c.clone()))]),
        )]),
        (None, None) => object(vec![("display", Json::string("anonymous"))]),
    };
    agents.push(object(vec![
        (
            "type",
            object(vec![(
                "coding",
                Json::Array(vec![coding(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "IRCP",
                )]),
            )]),
        ),
        ("who", who),
        ("requestor", Json::Bool(true)),
        ("network", network),
    ]));
    if let (Some(_), Some(client)) = (&row.user_name, &row.client_id) {
        agents.push(object(vec![
            (
                "who",
                object(vec![(
                    "identifier",
                    object(vec![("value", Json::string(client.clone()))]),
                )]),
            ),
            ("requestor", Json::Bool(false)),
        ]));
    }
    agents.push(object(vec![
        (
            "type",
            object(vec![(
                "coding",
                Json::Array(vec![coding(
                    "http://dicom.nema.org/resources/ontology/DCM",
                    "110153",
                )]),
            )]),
        ),
        ("who", object(vec![("display", Json::string("Hearth"))])),
        ("requestor", Json::Bool(false)),
    ]));
    e.push("agent", Json::Array(agents));
    e.push(
        "source",
        object(vec![
            ("site", Json::string(row.listener.clone())),
            (
                "observer",
                object(vec![("display", Json::string("Hearth"))]),
            ),
            (
                "type",
                Json::Array(vec![coding(
                    "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "4",
                )]),
            ),
        ]),
    );
    let mut entities = Vec::new();
    if let Some(p) = &row.patient {
        entities.push(object(vec![
            (
                "what",
                object(vec![("reference", Json::string(format!("Patient/{p}")))]),
            ),
            (
                "role",
                coding("http://terminology.hl7.org/CodeSystem/object-role", "1"),
            ),
        ]));
    }
    if let Some(r) = &row.resource
        && r.contains('/')
    {
        entities.push(object(vec![
            ("what", object(vec![("reference", Json::string(r.clone()))])),
            (
                "role",
                coding("http://terminology.hl7.org/CodeSystem/object-role", "4"),
            ),
        ]));
    }
    entities.push(object(vec![
        (
            "what",
            object(vec![(
                "identifier",
                object(vec![("value", Json::string(row.request_id.clone()))]),
            )]),
        ),
        (
            "type",
            coding(
                "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
                "XrequestId",
            ),
        ),
    ]));
    e.push("entity", Json::Array(entities));
    Json::Object(e)
}
