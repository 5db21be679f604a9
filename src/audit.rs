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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hearth_store::schema::{AuditEvent, PendingAudit};
use hearth_store::{AuditAppend, Store};

use crate::crypto::KeyRing;
use crate::store::{AnyStore, DEFAULT_TENANT};

/// Appends audit rows. Rows go to one writer task that commits whatever has
/// queued up meanwhile in one transaction (group commit): a request waits for
/// the commit that holds its row, and many requests share it.
///
/// A write's row is also kept in the write's own transaction, as a pending
/// row ([`for_write`]); the request's final row replaces it in the commit
/// that links the final row into the chain. A pending row left by a process
/// that stopped in between is linked as it is once it is older than
/// [`RECOVERY_GRACE`] (checked when the writer starts and every minute),
/// unless a request of this process still runs with it.
#[derive(Clone)]
pub struct AuditLog {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

struct Pending {
    event: AuditEvent,
    /// The request's token when a write of it left a pending row.
    replaces: Option<String>,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// Rows committed together at most.
const BATCH: usize = 512;

/// How old a pending row must be before it is taken for one whose request
/// will not finish (its process stopped): far longer than a response takes
/// to leave after its write commits.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(300);

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

/// The request being served, as far as its audit row goes: set up by the
/// audit middleware around the request ([`RequestAudit::scope`]), completed
/// by the guard ([`RequestAudit::note`]), and read by the store calls of
/// [`crate::service::Service`] that write ([`for_write`]).
pub struct RequestAudit {
    token: String,
    row: std::sync::Mutex<PendingAudit>,
    wrote: AtomicBool,
}

tokio::task_local! {
    static REQUEST: Arc<RequestAudit>;
}

/// A token no other request of any process has: a random value of this
/// process and a counter (never anything a caller chose).
fn next_token() -> String {
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        let mut bytes = [0u8; 12];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            // Without randomness, the process id and start time.
            bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
            bytes[4..].copy_from_slice(&crate::time::now_micros().to_be_bytes());
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    format!("{process}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Tokens of the requests this process is serving: their pending rows are
/// never taken for left-overs, however long they run.
fn running() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static RUNNING: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

impl Drop for RequestAudit {
    fn drop(&mut self) {
        if let Ok(mut running) = running().lock() {
            running.remove(&self.token);
        }
    }
}

impl RequestAudit {
    pub fn new(listener: &str, request_id: &str, source_addr: &str, method: &str) -> Arc<Self> {
        let token = next_token();
        if let Ok(mut running) = running().lock() {
            running.insert(token.clone());
        }
        Arc::new(RequestAudit {
            token: token.clone(),
            row: std::sync::Mutex::new(PendingAudit {
                tenant: String::new(),
                token,
                recorded_at: 0,
                listener: listener.to_owned(),
                request_id: request_id.to_owned(),
                user_name: None,
                client_id: None,
                source_addr: source_addr.to_owned(),
                method: method.to_owned(),
                interaction: String::new(),
                resource: None,
                patient: None,
                status: 0,
                detail: "written; the response was not recorded".to_owned(),
            }),
            wrote: AtomicBool::new(false),
        })
    }

    /// Runs `f` (the rest of the request) with this as its audit context.
    pub async fn scope<F: std::future::Future>(self: &Arc<Self>, f: F) -> F::Output {
        REQUEST.scope(self.clone(), f).await
    }

    /// Who the caller is and what the request is, once the guard knows.
    pub fn note(
        &self,
        user: Option<&str>,
        client: Option<&str>,
        interaction: &str,
        patient: Option<&str>,
    ) {
        if let Ok(mut row) = self.row.lock() {
            row.user_name = user.map(str::to_owned);
            row.client_id = client.map(str::to_owned);
            row.interaction = interaction.to_owned();
            row.patient = patient.map(str::to_owned);
        }
    }

    /// The token whose pending rows the request's final row replaces, when a
    /// write of the request may have left one.
    pub fn replaces(&self) -> Option<String> {
        self.wrote
            .load(Ordering::Acquire)
            .then(|| self.token.clone())
    }
}

/// Notes what the guard learnt in the current request's audit context (none
/// outside a request).
pub fn note_request(
    user: Option<&str>,
    client: Option<&str>,
    interaction: &str,
    patient: Option<&str>,
) {
    let _ = REQUEST.try_with(|r| r.note(user, client, interaction, patient));
}

/// The pending audit row for a write of `tenant` made while serving a
/// request, for the store to insert in the write's transaction; `None` outside
/// a request (an import from the command line, a background job).
pub fn for_write(tenant: &str) -> Option<PendingAudit> {
    REQUEST
        .try_with(|r| {
            r.wrote.store(true, Ordering::Release);
            let mut row = r.row.lock().ok()?.clone();
            row.tenant = tenant.to_owned();
            row.recorded_at = crate::time::now_micros();
            Some(row)
        })
        .ok()
        .flatten()
}

impl AuditLog {
    /// Starts the writer task (on the current Tokio runtime).
    pub fn new(store: AnyStore, keys: Arc<KeyRing>) -> AuditLog {
        let (queue, rx) = tokio::sync::mpsc::channel(4 * BATCH);
        tokio::spawn(writer(store, keys, rx));
        AuditLog { queue }
    }

    /// Appends a row to the tenant's chain, returning once it is committed.
    /// `replaces` names the request whose pending rows the row replaces.
    pub async fn append(
        &self,
        tenant: &str,
        record: Record,
        replaces: Option<String>,
    ) -> Result<(), String> {
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
            .send(Pending {
                event,
                replaces,
                done,
            })
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?;
        committed
            .await
            .map_err(|_| "the audit writer has stopped".to_owned())?
    }
}

/// One commit of the tenant's chain.
async fn commit(store: &AnyStore, keys: &Arc<KeyRing>, append: AuditAppend) -> Result<i64, String> {
    let keys = keys.clone();
    let tenant = append.tenant.clone();
    store
        .append_audit(append, move |e, prev| {
            keys.audit_mac(&tenant, None, &e.chain_input(prev))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
}

/// Links the pending rows of a tenant that no running request will replace.
pub async fn recover_pending(
    store: &AnyStore,
    keys: &Arc<KeyRing>,
    tenant: &str,
    grace: Duration,
) -> Result<(), String> {
    let grace = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX / 2);
    let keep = running()
        .lock()
        .map(|r| r.iter().cloned().collect())
        .unwrap_or_default();
    let append = AuditAppend {
        tenant: tenant.to_owned(),
        recover_before: Some(crate::time::now_micros() - grace),
        keep,
        ..AuditAppend::default()
    };
    commit(store, keys, append).await.map(|_| ())
}

/// Commits queued rows, a batch per transaction, per tenant in arrival order;
/// every minute, links pending rows left by a process that stopped.
async fn writer(store: AnyStore, keys: Arc<KeyRing>, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tenants_seen = vec![DEFAULT_TENANT.to_owned()];
    loop {
        let first = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = tick.tick() => {
                for tenant in &tenants_seen {
                    if let Err(e) = recover_pending(&store, &keys, tenant, RECOVERY_GRACE).await {
                        tracing::error!(error = %e, "pending audit rows could not be linked");
                    }
                }
                continue;
            }
        };
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
            if !tenants_seen.contains(&tenant) {
                tenants_seen.push(tenant.clone());
            }
            let (mine, rest): (Vec<Pending>, Vec<Pending>) =
                batch.into_iter().partition(|p| p.event.tenant == tenant);
            batch = rest;
            let mut append = AuditAppend {
                tenant: tenant.clone(),
                ..AuditAppend::default()
            };
            let mut waiting = Vec::with_capacity(mine.len());
            for p in mine {
                append.events.push(p.event);
                append.replaces.extend(p.replaces);
                waiting.push(p.done);
            }
            let result = commit(&store, &keys, append).await.map(|_| ());
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
