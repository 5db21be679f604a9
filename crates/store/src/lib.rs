//! The storage interface of Hearth.
//!
//! A store keeps, per tenant, the current version of every resource and its full
//! version history. Bodies arrive here already sealed (AES-256-GCM ciphertext with
//! its key id and nonce): a store never sees plaintext and never sees a key.
//!
//! Every call takes the tenant first; there is no call that spans tenants.
//! Two implementations pass the same behavioural suite: `hearth-store-sqlite`
//! (embedded default) and `hearth-store-postgres` (production).

use std::future::Future;

pub mod schema;

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// A body as it is kept at rest: ciphertext plus what is needed to open it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBody {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBody")
            .field("key_id", &self.key_id)
            .field("len", &self.ciphertext.len())
            .finish()
    }
}

/// One version of one resource as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: Micros,
    /// `true` for the version written by a delete; such a version has no body.
    pub deleted: bool,
    pub body: Option<SealedBody>,
}

/// A history entry: a version plus its position in the tenant's global write order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub seq: i64,
    pub version: StoredVersion,
}

/// What must hold about the current version for a write to go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No condition: create the resource or add a version on top of whatever is there.
    None,
    /// The current version must be exactly this one (HTTP `If-Match`).
    VersionIs(i64),
    /// The resource must not exist yet (server-assigned ids on create).
    Absent,
    /// The current version must be this one, a deletion (a write checked
    /// against what was deleted, so nothing recreated meanwhile is replaced).
    DeletedAt(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Put,
    Delete,
}

/// A write of one resource.
#[derive(Clone, Debug)]
pub struct WriteIntent<'a> {
    pub res_type: &'a str,
    pub id: &'a str,
    pub precondition: Precondition,
    pub kind: WriteKind,
    pub last_updated: Micros,
    /// The search index rows of the new version (replacing the old ones; a delete
    /// removes them whatever this holds).
    pub index: &'a [IndexRow],
}

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new version was written; `created` when no live version existed before.
    Written { version: i64, created: bool },
    /// A delete of something already deleted: nothing was written.
    AlreadyDeleted { version: i64 },
    /// A delete of something that never existed: nothing was written.
    NotFound,
}

/// Which history to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryScope<'a> {
    System,
    Type(&'a str),
    Instance(&'a str, &'a str),
}

/// A search index row of one resource. Only values that are not identifying are
/// kept in clear (see docs/adr/0005).
#[derive(Clone, Debug, PartialEq)]
pub enum IndexRow {
    /// A coded value; `system` and `code` are empty strings when absent.
    Token {
        param: String,
        system: String,
        code: String,
    },
    /// A reference; type and id are empty when the reference is not `Type/id`.
    Reference {
        param: String,
        target_type: String,
        target_id: String,
        url: String,
    },
    /// A time range in microseconds, `low` inclusive, `high` exclusive.
    Date {
        param: String,
        low: Micros,
        high: Micros,
    },
    /// A keyed hash of an identifying string value (or of one of its prefixes).
    StringHash {
        param: String,
        hash: Vec<u8>,
    },
    /// A number with its implicit range.
    Number {
        param: String,
        value: f64,
        low: f64,
        high: f64,
    },
    /// A quantity with its implicit range; absent parts are empty strings.
    /// `base`: the value in the base unit of its kind (UCUM), kept under the
    /// parameter's name plus [`BASE_UNIT_SUFFIX`] beside the value as written;
    /// a resource's sort key for the parameter comes from these rows when it
    /// has any, so that `5000 mg` sorts after `4 g`.
    Quantity {
        param: String,
        value: f64,
        low: f64,
        high: f64,
        system: String,
        code: String,
        unit: String,
        base: bool,
    },
    Uri {
        param: String,
        value: String,
    },
    /// Membership of the compartment `compartment`/`id` (through a reference the
    /// compartment definition names).
    Compartment {
        compartment: String,
        id: String,
    },
    /// An entry of the tenant's text dictionary: a display text (keyed hash
    /// `text`) has a word or value starting with the prefix hashed as
    /// `prefix`. Shared by every resource holding the same text, so it is
    /// kept once and never removed with a resource.
    TextPrefix {
        prefix: Vec<u8>,
        text: Vec<u8>,
    },
}

pub mod search;

/// The suffix of the parameter name under which quantities are kept in their
/// base unit (see `IndexRow::Quantity`).
pub const BASE_UNIT_SUFFIX: &str = ":base";

/// A job rebuilding the index rows of a tenant's live resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReindexJob {
    pub tenant: String,
    pub name: String,
    pub reason: String,
    pub done: bool,
    /// The last (type, id) done; empty strings before the first.
    pub after: (String, String),
    pub processed: i64,
}

/// New index rows for one resource, valid only while it is still at `version`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reindexed {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: Micros,
    pub index: Vec<IndexRow>,
}

/// A page request over history, newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryQuery<'a> {
    pub scope: HistoryScope<'a>,
    /// Only versions with `last_updated >= since`.
    pub since: Option<Micros>,
    /// Only entries older than this position (keyset paging).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// A data-encryption key as stored: wrapped under a master key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    /// Identifies the master key that wrapped it (a fingerprint, never the key).
    pub master_key_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: Micros,
    pub active: bool,
    /// `data` (encrypts bodies) or `search` (keys index hashes).
    pub purpose: String,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("key_id", &self.key_id)
            .field("master_key_id", &self.master_key_id)
            .field("active", &self.active)
            .finish()
    }
}

/// Errors a store reports. Messages never contain SQL, values or bodies; the
/// source is kept for the server log only.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The precondition did not hold; carries the current version if there is one.
    #[error("precondition failed")]
    PreconditionFailed { current: Option<i64> },
    /// A concurrent write won the race for the same version.
    #[error("conflicting concurrent write")]
    Conflict,
    /// The database cannot be reached or refused the connection.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Sealing the body failed (raised by the caller's seal function).
    #[error("sealing failed")]
    Seal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else; logged, never shown.
    #[error("database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Internal(Box::new(e))
    }
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Why a set of writes (see [`Store::write_all`]) was not kept: the error, and
/// the position of the write it came from when it came from one.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct WriteAllError {
    pub entry: Option<usize>,
    #[source]
    pub error: StoreError,
}

impl From<StoreError> for WriteAllError {
    fn from(error: StoreError) -> Self {
        WriteAllError { entry: None, error }
    }
}

impl From<diesel::result::Error> for WriteAllError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// Produces the sealed body of the version about to be written, given its number.
/// Called inside the write transaction, at most once per write.
pub type SealFn = Box<dyn FnOnce(i64) -> StoreResult<SealedBody> + Send>;

/// The store interface. Every call names its tenant first.
pub trait Store: Send + Sync {
    /// Apply the embedded migrations that are not applied yet; returns their names.
    fn migrate(&self) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// The current version (possibly a deleted marker), without touching history.
    fn read_current(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredVersion>>> + Send;

    fn read_version(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        version: i64,
    ) -> impl Future<Output = StoreResult<Option<StoredVersion>>> + Send;

    /// Write a new version atomically: check the precondition against the current
    /// version, call `seal` with the new version number, append to history and
    /// replace the current row, all in one transaction.
    /// `audit`, when given, is the request's pending audit row
    /// ([`schema::PendingAudit::for_writes`]), inserted in the same transaction
    /// when the write keeps something.
    fn write(
        &self,
        tenant: &str,
        intent: &WriteIntent<'_>,
        seal: SealFn,
        audit: Option<schema::PendingAudit>,
    ) -> impl Future<Output = StoreResult<WriteOutcome>> + Send;

    /// Several writes in one transaction, in order: all are kept or none
    /// (a transaction bundle, a bulk import). Each is checked and sealed as
    /// [`Store::write`] does; a later write of the same resource sees the
    /// earlier one. `imported`, when given, is recorded in the same
    /// transaction (a file of the bulk import), and so is `audit` (as
    /// [`Store::write`] does).
    fn write_all(
        &self,
        tenant: &str,
        writes: Vec<(WriteIntent<'_>, SealFn)>,
        imported: Option<schema::ImportedFile>,
        audit: Option<schema::PendingAudit>,
    ) -> impl Future<Output = Result<Vec<WriteOutcome>, WriteAllError>> + Send;

    /// Whether a file with this content digest was imported for the tenant.
    fn is_imported(
        &self,
        tenant: &str,
        digest: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records an imported file (one not loaded in a single transaction).
    fn record_import(
        &self,
        file: schema::ImportedFile,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Inserts or replaces a Bulk Data export job. A cancelled job stays
    /// cancelled: saving over it changes nothing.
    fn save_export(&self, job: schema::ExportJob) -> impl Future<Output = StoreResult<()>> + Send;

    fn export_job(
        &self,
        tenant: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<schema::ExportJob>>> + Send;

    /// Adds a part of an export's output file.
    fn add_export_part(
        &self,
        part: schema::ExportPart,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The data of part `part` of an export's file, if there is one.
    fn export_part(
        &self,
        tenant: &str,
        job_id: &str,
        file: &str,
        part: i64,
    ) -> impl Future<Output = StoreResult<Option<Vec<u8>>>> + Send;

    /// Appends audit rows, in order, to one tenant's chain in one transaction
    /// (many requests share a commit): under a lock, the store numbers them
    /// after the last row (or the retention anchor) and calls `seal` with each
    /// row and the hash of the one before it (empty for the very first),
    /// which gives `(key_id, hash)`. Appends never interleave, so the chain
    /// has no forks. In the same transaction the pending rows the events
    /// replace are deleted, and pending rows left from before
    /// `recover_before` are linked first, as they are (see [`AuditAppend`]).
    /// Returns the last sequence number.
    fn append_audit(
        &self,
        append: AuditAppend,
        seal: impl Fn(&schema::AuditEvent, &[u8]) -> Result<(String, Vec<u8>), String> + Send + 'static,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    /// Audit rows of a tenant with `seq > after`, in order, at most `limit`.
    fn audit_events(
        &self,
        tenant: &str,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<schema::AuditEvent>>> + Send;

    /// Deletes the tenant's audit rows recorded before `before` (microseconds),
    /// keeping the last deleted row's `(seq, hash)` as the chain's anchor.
    /// Returns how many rows went.
    fn prune_audit(
        &self,
        tenant: &str,
        before: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// The anchor retention left: the last deleted row's `(seq, hash)`.
    fn audit_anchor(
        &self,
        tenant: &str,
    ) -> impl Future<Output = StoreResult<Option<(i64, Vec<u8>)>>> + Send;

    /// A user by name.
    fn user(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<schema::User>>> + Send;

    /// Every user of a tenant, by name.
    fn users(&self, tenant: &str) -> impl Future<Output = StoreResult<Vec<schema::User>>> + Send;

    /// Names of the tenant's users changed (`updated_at`) at or after `since`.
    fn users_changed_since(
        &self,
        tenant: &str,
        since: i64,
    ) -> impl Future<Output = StoreResult<Vec<String>>> + Send;

    /// Changes some columns of a local user (`source` = `local`); false when
    /// there is no such user.
    fn change_user(
        &self,
        tenant: &str,
        name: &str,
        change: schema::UserChange,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Inserts or replaces a user.
    fn save_user(&self, user: schema::User) -> impl Future<Output = StoreResult<()>> + Send;

    /// Counts a failed sign-in; the `max_failures`th in a row locks the account
    /// until `now + lock_micros` and starts the count again.
    fn record_login_failure(
        &self,
        tenant: &str,
        name: &str,
        now: i64,
        max_failures: i32,
        lock_micros: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Clears the failure count after a successful sign-in.
    fn record_login_success(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Removes an export's output (and, with `job`, the job too).
    fn delete_export(
        &self,
        tenant: &str,
        id: &str,
        job: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn history(
        &self,
        tenant: &str,
        query: &HistoryQuery<'_>,
    ) -> impl Future<Output = StoreResult<Vec<HistoryEntry>>> + Send;

    /// How many current, live resources match (ignores paging).
    fn count(
        &self,
        tenant: &str,
        query: &search::SearchQuery,
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Current, live resources matching every condition, by id, after `after_id`.
    fn search(
        &self,
        tenant: &str,
        query: &search::SearchQuery,
    ) -> impl Future<Output = StoreResult<Vec<search::SearchHit>>> + Send;

    /// Every reindex job, finished or not, oldest first.
    fn reindex_jobs(&self) -> impl Future<Output = StoreResult<Vec<ReindexJob>>> + Send;

    /// Queues a reindex job for a tenant (nothing if one of that name exists).
    fn add_reindex_job(
        &self,
        tenant: &str,
        name: &str,
        reason: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The next live resources of a tenant after `after` (type, id), in that order.
    fn reindex_batch(
        &self,
        tenant: &str,
        after: (&str, &str),
        limit: u32,
    ) -> impl Future<Output = StoreResult<Vec<StoredVersion>>> + Send;

    /// In one transaction: replaces the index rows of each resource of `batch`
    /// still at the version it was read at, and moves the job past the batch.
    fn reindex_apply(
        &self,
        job: &ReindexJob,
        batch: Vec<Reindexed>,
        finished: bool,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Live members of a compartment, in (type, id) order (`Patient/$everything`).
    fn compartment_page(
        &self,
        tenant: &str,
        q: &search::CompartmentQuery,
    ) -> impl Future<Output = StoreResult<Vec<search::SearchHit>>> + Send;

    /// All data keys of a tenant, oldest first.
    fn data_keys(&self, tenant: &str) -> impl Future<Output = StoreResult<Vec<WrappedKey>>> + Send;

    /// Add a key; when it is active, every other key of the tenant with the same
    /// purpose stops being active.
    fn add_data_key(
        &self,
        tenant: &str,
        key: &WrappedKey,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// What one audit commit appends to a tenant's chain.
#[derive(Clone, Debug, Default)]
pub struct AuditAppend {
    pub tenant: String,
    /// New rows, in order (their tenant is `tenant`).
    pub events: Vec<schema::AuditEvent>,
    /// Tokens of the requests whose pending rows these events replace.
    pub replaces: Vec<String>,
    /// Pending rows recorded before this time (microseconds) belong to no
    /// running request: they are linked, oldest first, before `events`...
    pub recover_before: Option<i64>,
    /// ... except those of these tokens (requests still running here).
    pub keep: Vec<String>,
}

/// The rows of one append, in chain order: recovered pending rows first,
/// then the new events. Both backends call it inside their append
/// transaction, after loading `recovered`.
pub fn audit_rows_in_order(
    recovered: Vec<schema::PendingAudit>,
    events: Vec<schema::AuditEvent>,
) -> Vec<schema::AuditEvent> {
    let mut rows: Vec<schema::AuditEvent> = recovered
        .into_iter()
        .map(schema::PendingAudit::into_event)
        .collect();
    rows.extend(events);
    rows
}

/// A migration embedded in the binary: a name and its SQL.
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// A stable checksum of a migration's text (FNV-1a 64), stored so that an edited,
/// already-applied migration is detected instead of silently skipped.
/// Links audit rows to a chain whose last row is `last` (`(seq, hash)`, or
/// None for an empty chain): numbers them in order and asks `seal` for each
/// row's `(key_id, hash)` given the hash before it. Both backends call it
/// inside their append transaction. Returns the last sequence number.
pub fn link_audit_rows(
    events: &mut [schema::AuditEvent],
    last: Option<(i64, Vec<u8>)>,
    seal: impl Fn(&schema::AuditEvent, &[u8]) -> Result<(String, Vec<u8>), String>,
) -> StoreResult<i64> {
    let (mut seq, mut prev) = last.unwrap_or((0, Vec::new()));
    for event in events {
        seq += 1;
        event.seq = seq;
        let (key_id, hash) = seal(event, &prev).map_err(|e| StoreError::Seal(e.into()))?;
        event.key_id = key_id;
        event.hash = hash.clone();
        prev = hash;
    }
    Ok(seq)
}

pub fn migration_checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Test support: fails unless every `.sql` file of `dir` is listed, in order.
pub fn assert_migrations_listed(dir: &str, listed: &[Migration]) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".sql").map(str::to_owned))
        .collect();
    files.sort();
    let listed: Vec<&str> = listed.iter().map(|m| m.name).collect();
    assert_eq!(
        files, listed,
        "migrations in {dir} and the embedded list differ"
    );
}

/// The bookkeeping table of applied migrations (same SQL on both backends).
pub const MIGRATIONS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS hearth_migrations \
     (name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// The migrations of `all` not applied yet, each with its checksum. Fails when an
/// applied migration (`applied`: name and recorded checksum) was edited since.
pub fn pending_migrations<'m>(
    applied: &[(String, String)],
    all: &'m [Migration],
) -> StoreResult<Vec<(&'m Migration, String)>> {
    let mut pending = Vec::new();
    for m in all {
        let sum = migration_checksum(m.sql);
        match applied.iter().find(|(n, _)| n == m.name) {
            Some((_, recorded)) if *recorded != sum => {
                return Err(StoreError::internal(MigrationDrift(m.name.to_owned())));
            }
            Some(_) => {}
            None => pending.push((m, sum)),
        }
    }
    Ok(pending)
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Raised when an applied migration's text no longer matches the binary's copy.
#[derive(Debug, thiserror::Error)]
#[error("migration {0} was edited after it was applied")]
pub struct MigrationDrift(pub String);

/// What a write will do, decided from the current row alone. Both backends call
/// this inside their transaction so the rules live in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePlan {
    /// Write this version number.
    Write { version: i64, created: bool },
    /// Write nothing and report this outcome.
    Skip(WriteOutcome),
}

/// `current` is the `(version, deleted)` of the current row, if any.
pub fn plan_write(
    current: Option<(i64, bool)>,
    intent: &WriteIntent<'_>,
) -> StoreResult<WritePlan> {
    let live = current.filter(|(_, deleted)| !deleted).map(|(v, _)| v);
    match intent.precondition {
        Precondition::None => {}
        Precondition::VersionIs(expected) => {
            if live != Some(expected) {
                return Err(StoreError::PreconditionFailed { current: live });
            }
        }
        Precondition::Absent => {
            if current.is_some() {
                return Err(StoreError::Conflict);
            }
        }
        Precondition::DeletedAt(expected) => {
            if current != Some((expected, true)) {
                return Err(StoreError::PreconditionFailed { current: live });
            }
        }
    }
    if intent.kind == WriteKind::Delete {
        match current {
            None => return Ok(WritePlan::Skip(WriteOutcome::NotFound)),
            Some((version, true)) => {
                return Ok(WritePlan::Skip(WriteOutcome::AlreadyDeleted { version }));
            }
            Some(_) => {}
        }
    }
    Ok(WritePlan::Write {
        version: current.map_or(1, |(v, _)| v + 1),
        created: live.is_none(),
    })
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match e {
            E::DatabaseError(K::UniqueViolation | K::SerializationFailure, _) => {
                StoreError::Conflict
            }
            E::DatabaseError(K::ClosedConnection, _) => StoreError::unavailable(e),
            E::DatabaseError(K::Unknown, ref info)
                if info.message().contains("database is locked")
                    || info.message().contains("database is busy") =>
            {
                StoreError::unavailable(e)
            }
            other => StoreError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(precondition: Precondition, kind: WriteKind) -> WriteIntent<'static> {
        WriteIntent {
            res_type: "Patient",
            id: "a",
            precondition,
            kind,
            last_updated: 0,
            index: &[],
        }
    }

    #[test]
    fn plans_follow_the_current_row() {
        use Precondition as P;
        use WriteKind as K;
        type Case = (Option<(i64, bool)>, P, K, Result<WritePlan, &'static str>);
        let cases: &[Case] = &[
            (
                None,
                P::None,
                K::Put,
                Ok(WritePlan::Write {
                    version: 1,
                    created: true,
                }),
            ),
            (
                Some((3, false)),
                P::None,
                K::Put,
                Ok(WritePlan::Write {
                    version: 4,
                    created: false,
                }),
            ),
            (
                Some((3, true)),
                P::None,
                K::Put,
                Ok(WritePlan::Write {
                    version: 4,
                    created: true,
                }),
            ),
            (
                Some((3, false)),
                P::VersionIs(3),
                K::Put,
                Ok(WritePlan::Write {
                    version: 4,
                    created: false,
                }),
            ),
            (
                Some((3, false)),
                P::VersionIs(2),
                K::Put,
                Err("precondition"),
            ),
            (
                Some((3, true)),
                P::VersionIs(3),
                K::Put,
                Err("precondition"),
            ),
            (None, P::VersionIs(1), K::Put, Err("precondition")),
            (
                None,
                P::Absent,
                K::Put,
                Ok(WritePlan::Write {
                    version: 1,
                    created: true,
                }),
            ),
            (Some((1, false)), P::Absent, K::Put, Err("conflict")),
            (
                None,
                P::None,
                K::Delete,
                Ok(WritePlan::Skip(WriteOutcome::NotFound)),
            ),
            (
                Some((2, true)),
                P::None,
                K::Delete,
                Ok(WritePlan::Skip(WriteOutcome::AlreadyDeleted { version: 2 })),
            ),
            (
                Some((2, false)),
                P::None,
                K::Delete,
                Ok(WritePlan::Write {
                    version: 3,
                    created: false,
                }),
            ),
        ];
        for (current, p, k, expected) in cases {
            let got = plan_write(*current, &intent(*p, *k));
            match (got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, *e, "{current:?} {p:?} {k:?}"),
                (Err(StoreError::PreconditionFailed { .. }), Err("precondition")) => {}
                (Err(StoreError::Conflict), Err("conflict")) => {}
                (g, e) => panic!("{current:?} {p:?} {k:?}: got {g:?}, expected {e:?}"),
            }
        }
    }

    #[test]
    fn edited_migrations_are_detected() {
        let all = [
            Migration {
                name: "0001_a",
                sql: "CREATE TABLE a (x INT);",
            },
            Migration {
                name: "0002_b",
                sql: "CREATE TABLE b (x INT);",
            },
        ];
        let applied = vec![("0001_a".to_owned(), migration_checksum(all[0].sql))];
        let pending = pending_migrations(&applied, &all).unwrap();
        assert_eq!(
            pending.iter().map(|(m, _)| m.name).collect::<Vec<_>>(),
            ["0002_b"]
        );
        let edited = vec![(
            "0001_a".to_owned(),
            migration_checksum("CREATE TABLE a (y INT);"),
        )];
        assert!(pending_migrations(&edited, &all).is_err());
    }

    #[test]
    fn checksum_is_stable() {
        assert_eq!(migration_checksum(""), "cbf29ce484222325");
        assert_ne!(migration_checksum("a"), migration_checksum("b"));
    }
}
