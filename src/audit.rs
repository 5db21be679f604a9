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

/// Appends audit rows.
#[derive(Clone)]
pub struct AuditLog {
    store: AnyStore,
    keys: Arc<KeyRing>,
}

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
    pub fn new(store: AnyStore, keys: Arc<KeyRing>) -> AuditLog {
        AuditLog { store, keys }
    }

    /// Appends a row to the tenant's chain; returns its sequence number.
    pub async fn append(&self, tenant: &str, record: Record) -> Result<i64, String> {
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
        let keys = self.keys.clone();
        let tenant = tenant.to_owned();
        self.store
            .append_audit(event, move |e, prev| {
                keys.audit_mac(&tenant, None, &e.chain_input(prev))
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
    }
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
    let mut prev: Vec<u8> = Vec::new();
    let mut expected_seq = 1i64;
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
