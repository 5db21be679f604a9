//! The store chosen at start-up: PostgreSQL or the embedded SQLite file.

use hearth_store::schema::{ExportJob, ExportPart, ImportedFile};
use hearth_store::{
    HistoryEntry, HistoryQuery, SealFn, Store, StoreResult, StoredVersion, WrappedKey, WriteIntent,
    WriteOutcome,
};
use hearth_store_postgres::PgStore;
use hearth_store_sqlite::SqliteStore;

/// The default tenant; every call names a tenant, and for now there is this one.
pub const DEFAULT_TENANT: &str = "default";

#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e.await,
            AnyStore::Postgres($s) => $e.await,
        }
    };
}

impl AnyStore {
    pub fn backend_name(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

impl Store for AnyStore {
    async fn migrate(&self) -> StoreResult<Vec<String>> {
        delegate!(self, s => s.migrate())
    }

    async fn read_current(
        &self,
        tenant: &str,
        t: &str,
        id: &str,
    ) -> StoreResult<Option<StoredVersion>> {
        delegate!(self, s => s.read_current(tenant, t, id))
    }

    async fn read_version(
        &self,
        tenant: &str,
        t: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredVersion>> {
        delegate!(self, s => s.read_version(tenant, t, id, version))
    }

    async fn write(
        &self,
        tenant: &str,
        intent: &WriteIntent<'_>,
        seal: SealFn,
        audit: Option<hearth_store::schema::PendingAudit>,
    ) -> StoreResult<WriteOutcome> {
        delegate!(self, s => s.write(tenant, intent, seal, audit))
    }

    async fn write_all(
        &self,
        tenant: &str,
        writes: Vec<(WriteIntent<'_>, SealFn)>,
        imported: Option<ImportedFile>,
        audit: Option<hearth_store::schema::PendingAudit>,
    ) -> Result<Vec<WriteOutcome>, hearth_store::WriteAllError> {
        delegate!(self, s => s.write_all(tenant, writes, imported, audit))
    }

    async fn is_imported(&self, tenant: &str, digest: &str) -> StoreResult<bool> {
        delegate!(self, s => s.is_imported(tenant, digest))
    }

    async fn record_import(&self, file: ImportedFile) -> StoreResult<()> {
        delegate!(self, s => s.record_import(file))
    }

    async fn save_export(&self, job: ExportJob) -> StoreResult<()> {
        delegate!(self, s => s.save_export(job))
    }

    async fn export_job(&self, tenant: &str, id: &str) -> StoreResult<Option<ExportJob>> {
        delegate!(self, s => s.export_job(tenant, id))
    }

    async fn add_export_part(&self, part: ExportPart) -> StoreResult<()> {
        delegate!(self, s => s.add_export_part(part))
    }

    async fn export_part(
        &self,
        tenant: &str,
        job_id: &str,
        file: &str,
        part: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        delegate!(self, s => s.export_part(tenant, job_id, file, part))
    }

    async fn append_audit(
        &self,
        append: hearth_store::AuditAppend,
        seal: impl Fn(&hearth_store::schema::AuditEvent, &[u8]) -> Result<(String, Vec<u8>), String>
        + Send
        + 'static,
    ) -> StoreResult<i64> {
        delegate!(self, s => s.append_audit(append, seal))
    }

    async fn audit_events(
        &self,
        tenant: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<hearth_store::schema::AuditEvent>> {
        delegate!(self, s => s.audit_events(tenant, after, limit))
    }

    async fn prune_audit(&self, tenant: &str, before: i64) -> StoreResult<u64> {
        delegate!(self, s => s.prune_audit(tenant, before))
    }

    async fn audit_anchor(&self, tenant: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        delegate!(self, s => s.audit_anchor(tenant))
    }

    async fn user(
        &self,
        tenant: &str,
        name: &str,
    ) -> StoreResult<Option<hearth_store::schema::User>> {
        delegate!(self, s => s.user(tenant, name))
    }

    async fn users(&self, tenant: &str) -> StoreResult<Vec<hearth_store::schema::User>> {
        delegate!(self, s => s.users(tenant))
    }

    async fn users_changed_since(&self, tenant: &str, since: i64) -> StoreResult<Vec<String>> {
        delegate!(self, s => s.users_changed_since(tenant, since))
    }

    async fn change_user(
        &self,
        tenant: &str,
        name: &str,
        change: hearth_store::schema::UserChange,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.change_user(tenant, name, change))
    }

    async fn save_user(&self, user: hearth_store::schema::User) -> StoreResult<()> {
        delegate!(self, s => s.save_user(user))
    }

    async fn record_login_failure(
        &self,
        tenant: &str,
        name: &str,
        now: i64,
        max_failures: i32,
        lock_micros: i64,
    ) -> StoreResult<()> {
        delegate!(self, s => s.record_login_failure(tenant, name, now, max_failures, lock_micros))
    }

    async fn record_login_success(&self, tenant: &str, name: &str) -> StoreResult<()> {
        delegate!(self, s => s.record_login_success(tenant, name))
    }

    async fn delete_export(&self, tenant: &str, id: &str, job: bool) -> StoreResult<()> {
        delegate!(self, s => s.delete_export(tenant, id, job))
    }

    async fn history(&self, tenant: &str, q: &HistoryQuery<'_>) -> StoreResult<Vec<HistoryEntry>> {
        delegate!(self, s => s.history(tenant, q))
    }

    async fn compartment_page(
        &self,
        tenant: &str,
        q: &hearth_store::search::CompartmentQuery,
    ) -> StoreResult<Vec<hearth_store::search::SearchHit>> {
        delegate!(self, s => s.compartment_page(tenant, q))
    }

    async fn add_reindex_job(&self, tenant: &str, name: &str, reason: &str) -> StoreResult<()> {
        delegate!(self, s => s.add_reindex_job(tenant, name, reason))
    }

    async fn reindex_jobs(&self) -> StoreResult<Vec<hearth_store::ReindexJob>> {
        delegate!(self, s => s.reindex_jobs())
    }

    async fn reindex_batch(
        &self,
        tenant: &str,
        after: (&str, &str),
        limit: u32,
    ) -> StoreResult<Vec<StoredVersion>> {
        delegate!(self, s => s.reindex_batch(tenant, after, limit))
    }

    async fn reindex_apply(
        &self,
        job: &hearth_store::ReindexJob,
        batch: Vec<hearth_store::Reindexed>,
        finished: bool,
    ) -> StoreResult<()> {
        delegate!(self, s => s.reindex_apply(job, batch, finished))
    }

    async fn search(
        &self,
        tenant: &str,
        q: &hearth_store::search::SearchQuery,
    ) -> StoreResult<Vec<hearth_store::search::SearchHit>> {
        delegate!(self, s => s.search(tenant, q))
    }

    async fn count(&self, tenant: &str, q: &hearth_store::search::SearchQuery) -> StoreResult<u64> {
        delegate!(self, s => s.count(tenant, q))
    }

    async fn data_keys(&self, tenant: &str) -> StoreResult<Vec<WrappedKey>> {
        delegate!(self, s => s.data_keys(tenant))
    }

    async fn add_data_key(&self, tenant: &str, key: &WrappedKey) -> StoreResult<()> {
        delegate!(self, s => s.add_data_key(tenant, key))
    }
}
