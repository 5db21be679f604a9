//! The FHIR interactions on resources, independent of HTTP: validate, seal, store,
//! open. Every call takes the tenant first.

use std::sync::{Arc, Mutex};

use hearth_store::{
    HistoryQuery, HistoryScope, Precondition, SealedBody, Store, StoreError, StoredVersion,
    WriteIntent, WriteKind, WriteOutcome,
};

use hearth_store::search::{Cursor, SearchQuery};

use crate::crypto::{BodyAad, CryptoError, KeyRing};
use crate::error::{ApiError, ErrorKind, IssueType, OutcomeIssue};
use crate::fhir::{self, Expect};
use crate::json::Json;
use crate::search::extract::extract;
use crate::search::plan;
use crate::store::AnyStore;
use crate::time::{format_instant, now_micros};

/// One version of a resource, decrypted: `body` is the stored JSON, byte for byte.
#[derive(Clone, Debug)]
pub struct ResourceVersion {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub body: Vec<u8>,
}

/// A history entry; `body` is `None` for a delete.
#[derive(Clone, Debug)]
pub struct HistoryItem {
    pub seq: i64,
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub body: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteResult {
    Deleted { version: i64 },
    AlreadyDeleted,
}

#[derive(Clone)]
pub struct Service {
    store: AnyStore,
    keys: Arc<KeyRing>,
    /// One reindex pass at a time.
    reindexing: Arc<tokio::sync::Mutex<()>>,
    /// The public base URL: absolute references under it are local.
    local_base: Option<String>,
    /// See `SearchQuery::drive_below` (`fhir.search_drive_below`).
    search_drive_below: u32,
    /// Conditional writes (a search, then a write on what it found) with the
    /// same condition run one at a time in this process: the condition's hash
    /// picks one of these.
    conditional: Arc<Vec<tokio::sync::Mutex<()>>>,
}

/// How many locks conditional writes are spread over.
const CONDITIONAL_LOCKS: usize = 64;

/// The kind of a PATCH document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 6902 (`application/json-patch+json`).
    Json,
    /// A `Parameters` resource of FHIRPath Patch operations.
    FhirPath,
}

/// How often a PATCH without `If-Match` is applied again when another write
/// came between its read and its write.
const PATCH_ATTEMPTS: usize = 10;

/// What a conditional delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionalDelete {
    /// How many resources matched (and were deleted).
    pub deleted: usize,
}

fn crypto_error(e: CryptoError) -> ApiError {
    match e {
        CryptoError::Store(s) => s.into(),
        CryptoError::Integrity(what) => {
            let mut err = ApiError::internal(CryptoError::Integrity(what.clone()));
            err.issues[0].diagnostics = format!(
                "the stored data of {what} failed its integrity check (altered or misplaced ciphertext) and is not served"
            );
            err
        }
        other => ApiError::internal(other),
    }
}

impl Service {
    pub fn new(store: AnyStore, keys: Arc<KeyRing>, local_base: Option<String>) -> Self {
        Service {
            store,
            keys,
            reindexing: Arc::default(),
            local_base,
            search_drive_below: hearth_store::search::DEFAULT_DRIVE_BELOW,
            conditional: Arc::new(
                (0..CONDITIONAL_LOCKS)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            ),
        }
    }

    /// Sets `fhir.search_drive_below` for the searches the service runs.
    pub fn with_search_drive_below(mut self, n: u32) -> Self {
        self.search_drive_below = n;
        self
    }

    /// Runs searches for `tenant` (conditional interactions, Bundle entries,
    /// the REST search).
    pub fn searcher<'a>(&'a self, tenant: &'a str) -> crate::search::run::Searcher<'a> {
        crate::search::run::Searcher {
            service: self,
            tenant,
            drive_below: self.search_drive_below,
        }
    }

    /// Which of the `conditional` locks a condition takes.
    fn conditional_stripe(tenant: &str, res_type: &str, criteria: &[(String, String)]) -> usize {
        use std::hash::{Hash, Hasher};
        let mut sorted: Vec<&(String, String)> = criteria.iter().collect();
        sorted.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tenant, res_type, sorted).hash(&mut h);
        usize::try_from(h.finish() % CONDITIONAL_LOCKS as u64).unwrap_or(0)
    }

    /// The lock of conditional writes under `criteria` (see `conditional`).
    pub(crate) async fn conditional_lock(
        &self,
        tenant: &str,
        res_type: &str,
        criteria: &[(String, String)],
    ) -> tokio::sync::MutexGuard<'_, ()> {
        self.conditional[Self::conditional_stripe(tenant, res_type, criteria)]
            .lock()
            .await
    }

    /// The locks of several conditions (a Bundle's), taken in one order so
    /// that two Bundles never wait on each other.
    pub(crate) async fn conditional_locks(
        &self,
        tenant: &str,
        conditions: &[(String, Vec<(String, String)>)],
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = conditions
            .iter()
            .map(|(t, c)| Self::conditional_stripe(tenant, t, c))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.conditional[i].lock().await);
        }
        guards
    }

    /// `POST [type]` with `If-None-Exist` (R4 3.1.0.8.1): without a match the
    /// resource is created (`true`); with one, that resource is the answer and
    /// nothing is written (`false`); with more, 412.
    pub async fn create_unless_exists(
        &self,
        tenant: &str,
        res_type: &str,
        body: &[u8],
        criteria: &[(String, String)],
    ) -> Result<(ResourceVersion, bool), ApiError> {
        let obj = fhir::parse_resource(body, Expect::Create { res_type })?;
        let _one_at_a_time = self.conditional_lock(tenant, res_type, criteria).await;
        let mut found = self
            .searcher(tenant)
            .matching(res_type, criteria, 2)
            .await?;
        match found.len() {
            0 => {
                let id = new_id()?;
                self.put(tenant, res_type, &id, obj, Precondition::Absent)
                    .await
            }
            // Under limits, the search only finds what the caller may see.
            1 => Ok((found.remove(0), false)),
            _ => Err(several_match(res_type)),
        }
    }

    /// `PUT [type]?criteria` (R4 3.1.0.6.1): without a match the resource is
    /// created (under the body's id if it has one); with one match, that
    /// resource is updated (a different id in the body is a 400); with more,
    /// 412. Returns the version and whether it was created.
    pub async fn conditional_update(
        &self,
        tenant: &str,
        res_type: &str,
        body: &[u8],
        criteria: &[(String, String)],
        if_match: Option<i64>,
    ) -> Result<(ResourceVersion, bool), ApiError> {
        let obj = fhir::parse_resource(body, Expect::ConditionalUpdate { res_type })?;
        let body_id = obj.get("id").and_then(Json::as_str).map(str::to_owned);
        let _one_at_a_time = self.conditional_lock(tenant, res_type, criteria).await;
        let found = self
            .searcher(tenant)
            .matching(res_type, criteria, 2)
            .await?;
        let precondition = if_match.map_or(Precondition::None, Precondition::VersionIs);
        let id = match (found.as_slice(), body_id) {
            ([], Some(id)) => id,
            ([], None) => new_id()?,
            ([one], Some(id)) if id != one.id => {
                return Err(ApiError::invalid_at(
                    format!("{res_type}.id"),
                    "the id in the body differs from the resource the condition matches",
                ));
            }
            ([one], _) => one.id.clone(),
            _ => return Err(several_match(res_type)),
        };
        self.put(tenant, res_type, &id, obj, precondition).await
    }

    /// `DELETE [type]?criteria` (R4 3.1.0.7.1): deletes the match; several
    /// matches are all deleted (together) when `multiple` allows, up to
    /// `max`, else 412. No match deletes nothing.
    pub async fn conditional_delete(
        &self,
        tenant: &str,
        res_type: &str,
        criteria: &[(String, String)],
        multiple: bool,
        max: u32,
    ) -> Result<ConditionalDelete, ApiError> {
        let _one_at_a_time = self.conditional_lock(tenant, res_type, criteria).await;
        let limit = if multiple { max.saturating_add(1) } else { 2 };
        let found = self
            .searcher(tenant)
            .matching(res_type, criteria, limit)
            .await?;
        if found.len() > 1 && !multiple {
            return Err(several_match(res_type));
        }
        if found.len() > max as usize {
            return Err(ApiError::new(
                crate::error::ErrorKind::PreconditionFailed,
                format!(
                    "the condition matches more than {max} {res_type} resources \
                     (fhir.max_conditional_deletes); narrow it"
                ),
            ));
        }
        let mut preconditions = Vec::with_capacity(found.len());
        for r in &found {
            let limits = crate::limits::current().ok_or_else(crate::limits::unscoped)?;
            preconditions.push(limits.check_write(
                res_type,
                &r.id,
                None,
                crate::limits::Stored::Live(&r.body, r.version),
                Precondition::None,
            )?);
        }
        let last_updated = now_micros();
        let writes = found
            .iter()
            .zip(preconditions)
            .map(|(r, precondition)| {
                (
                    WriteIntent {
                        res_type,
                        id: &r.id,
                        precondition,
                        kind: WriteKind::Delete,
                        last_updated,
                        index: &[],
                    },
                    no_body(),
                )
            })
            .collect();
        let outcomes = self
            .write_all(tenant, writes, None)
            .await
            .map_err(|e| ApiError::from(e.error))?;
        for (r, outcome) in found.iter().zip(outcomes) {
            Self::finish_delete(res_type, &r.id, outcome)?;
        }
        Ok(ConditionalDelete {
            deleted: found.len(),
        })
    }

    /// `PATCH [type]/[id]`: the document applied to the current version and
    /// the result written as its next version, validated like any update.
    /// The write is conditional on the version patched: with `If-Match` a
    /// version that moved on is a 412; without, the patch is applied again
    /// to the newer version (a few times).
    pub async fn patch(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        kind: PatchKind,
        document: &[u8],
        if_match: Option<i64>,
    ) -> Result<ResourceVersion, ApiError> {
        let document = crate::json::parse(document)
            .map_err(|e| ApiError::invalid(format!("the patch is not valid JSON: {e}")))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (obj, version) = self
                .patched(tenant, res_type, id, kind, &document, if_match)
                .await?;
            match self
                .put(tenant, res_type, id, obj, Precondition::VersionIs(version))
                .await
            {
                Err(e)
                    if e.kind == crate::error::ErrorKind::PreconditionFailed
                        && if_match.is_none()
                        && attempt < PATCH_ATTEMPTS => {}
                other => return other.map(|(rv, _)| rv),
            }
        }
    }

    /// The current version of a resource with a patch applied, validated as
    /// an update, and the version it was applied to (`If-Match`: that
    /// version or a 412).
    pub(crate) async fn patched(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        kind: PatchKind,
        document: &Json,
        if_match: Option<i64>,
    ) -> Result<(crate::json::Object, i64), ApiError> {
        let current = self.read(tenant, res_type, id).await?;
        if let Some(v) = if_match
            && v != current.version
        {
            return Err(ApiError::new(
                crate::error::ErrorKind::PreconditionFailed,
                format!("{res_type}/{id} is at version {}, not {v}", current.version),
            ));
        }
        let mut resource = crate::json::parse(&current.body)
            .map_err(|_| ApiError::internal(format!("a stored {res_type} is not JSON")))?;
        match kind {
            PatchKind::Json => fhir::patch::json_patch(&mut resource, document)?,
            PatchKind::FhirPath => fhir::patch::fhirpath_patch(&mut resource, document)?,
        }
        let obj = fhir::parse_resource(&resource.to_bytes(), Expect::Update { res_type, id })?;
        Ok((obj, current.version))
    }

    /// `POST [type]`: a new resource with a server-assigned id.
    pub async fn create(
        &self,
        tenant: &str,
        res_type: &str,
        body: &[u8],
    ) -> Result<ResourceVersion, ApiError> {
        let obj = fhir::parse_resource(body, Expect::Create { res_type })?;
        let id = new_id()?;
        self.put(tenant, res_type, &id, obj, Precondition::Absent)
            .await
            .map(|(rv, _)| rv)
    }

    /// `PUT [type]/[id]`: a new version, or the first one (update as create).
    /// Returns the version and whether it created the resource.
    pub async fn update(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        body: &[u8],
        if_match: Option<i64>,
    ) -> Result<(ResourceVersion, bool), ApiError> {
        let obj = fhir::parse_resource(body, Expect::Update { res_type, id })?;
        let precondition = if_match.map_or(Precondition::None, Precondition::VersionIs);
        self.put(tenant, res_type, id, obj, precondition).await
    }

    pub(crate) async fn put(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        obj: crate::json::Object,
        precondition: Precondition,
    ) -> Result<(ResourceVersion, bool), ApiError> {
        let precondition = self
            .limit_write(tenant, res_type, id, Some(&obj), precondition)
            .await?;
        let mut prepared = self.prepare_put(tenant, res_type, id, obj, precondition)?;
        let seal = prepared.take_seal()?;
        crate::limits::assert_checked([(res_type, id)])?;
        let outcome = self
            .store
            .write(
                tenant,
                &prepared.intent(),
                seal,
                crate::audit::for_write(tenant),
            )
            .await?;
        self.finish_put(tenant, prepared, outcome).await
    }

    /// Everything of a put before the store: validation is done by the
    /// caller; here the index rows are computed and the body is set up to
    /// be finished and sealed inside the write transaction, once the version
    /// is known.
    pub(crate) fn prepare_put(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        obj: crate::json::Object,
        precondition: Precondition,
    ) -> Result<PreparedPut, ApiError> {
        let last_updated = now_micros();
        let definition = if res_type == "SearchParameter" {
            crate::search::custom::definition(&obj)?
        } else {
            None
        };
        let resource = Json::Object(obj);
        let index = self.index_rows(tenant, res_type, &resource)?;
        let Json::Object(obj) = resource else {
            return Err(ApiError::internal("resource is not an object"));
        };
        // The plaintext comes back through this slot for the response.
        let slot: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let seal = {
            let (slot, keys) = (slot.clone(), self.keys.clone());
            let (tenant, res_type, id) = (tenant.to_owned(), res_type.to_owned(), id.to_owned());
            Box::new(move |version: i64| -> Result<SealedBody, StoreError> {
                let bytes =
                    fhir::stored_form(obj, &res_type, &id, version, &format_instant(last_updated));
                let aad = BodyAad {
                    tenant: &tenant,
                    res_type: &res_type,
                    id: &id,
                    version,
                };
                let sealed = keys
                    .seal(aad, bytes.clone())
                    .map_err(|e| StoreError::Seal(Box::new(e)))?;
                if let Ok(mut s) = slot.lock() {
                    *s = Some(bytes);
                }
                Ok(sealed)
            })
        };
        Ok(PreparedPut {
            res_type: res_type.to_owned(),
            id: id.to_owned(),
            precondition,
            last_updated,
            index,
            definition,
            slot,
            seal: Some(seal),
        })
    }

    /// After the store kept a put: what follows a SearchParameter write, and
    /// the version as stored.
    pub(crate) async fn finish_put(
        &self,
        tenant: &str,
        prepared: PreparedPut,
        outcome: WriteOutcome,
    ) -> Result<(ResourceVersion, bool), ApiError> {
        let WriteOutcome::Written { version, created } = outcome else {
            return Err(ApiError::internal("a put reported no write"));
        };
        if prepared.res_type == "SearchParameter" {
            self.search_parameter_written(tenant, &prepared.id, version, prepared.definition)
                .await?;
        }
        let body = prepared
            .slot
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .ok_or_else(|| ApiError::internal("sealed body missing after write"))?;
        Ok((
            ResourceVersion {
                res_type: prepared.res_type,
                id: prepared.id,
                version,
                last_updated: prepared.last_updated,
                body,
            },
            created,
        ))
    }

    /// After the store kept a delete.
    pub(crate) fn finish_delete(
        res_type: &str,
        id: &str,
        outcome: WriteOutcome,
    ) -> Result<DeleteResult, ApiError> {
        if res_type == "SearchParameter" {
            crate::fhir::search_params::unregister_custom(id);
        }
        match outcome {
            WriteOutcome::Written { version, .. } => Ok(DeleteResult::Deleted { version }),
            WriteOutcome::AlreadyDeleted { .. } => Ok(DeleteResult::AlreadyDeleted),
            WriteOutcome::NotFound => Err(not_found(res_type, id)),
        }
    }

    /// Several writes kept together or not at all (see `Store::write_all`).
    pub(crate) async fn write_all(
        &self,
        tenant: &str,
        writes: Vec<(WriteIntent<'_>, hearth_store::SealFn)>,
        imported: Option<hearth_store::schema::ImportedFile>,
    ) -> Result<Vec<WriteOutcome>, hearth_store::WriteAllError> {
        crate::limits::assert_checked(writes.iter().map(|(w, _)| (w.res_type, w.id))).map_err(
            |e| hearth_store::WriteAllError {
                entry: None,
                error: hearth_store::StoreError::Internal(e.to_string().into()),
            },
        )?;
        self.store
            .write_all(tenant, writes, imported, crate::audit::for_write(tenant))
            .await
    }

    /// Under the request's write limits ([`crate::limits`]): the write of
    /// `res_type/id` (a delete when `new` is `None`) decided for the caller
    /// on the new content and the stored version. Returns the precondition to
    /// write with (only over the version checked); without limits,
    /// `precondition` as it is.
    pub(crate) async fn limit_write(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        new: Option<&crate::json::Object>,
        precondition: Precondition,
    ) -> Result<Precondition, ApiError> {
        use crate::limits::Stored;
        let Some(limits) = crate::limits::current() else {
            return Err(crate::limits::unscoped());
        };
        if !limits.limited() {
            return limits.check_write(res_type, id, None, Stored::Absent, precondition);
        }
        let new = new.map(|o| Json::Object(o.clone()));
        // One read: what is checked is what the precondition names.
        let current = match self.store.read_current(tenant, res_type, id).await? {
            None => None,
            Some(v) if v.deleted => Some(Err(v.version)),
            Some(v) => Some(Ok(self.open(tenant, v).await?)),
        };
        let stored = match &current {
            None => Stored::Absent,
            Some(Err(deleted_at)) => Stored::Deleted(*deleted_at),
            Some(Ok(rv)) => Stored::Live(&rv.body, rv.version),
        };
        limits.check_write(res_type, id, new.as_ref(), stored, precondition)
    }

    /// The store, for the bulk import's bookkeeping.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.clone()
    }

    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    async fn open(&self, tenant: &str, v: StoredVersion) -> Result<ResourceVersion, ApiError> {
        let Some(sealed) = &v.body else {
            return Err(gone(&v.res_type, &v.id));
        };
        let aad = BodyAad {
            tenant,
            res_type: &v.res_type,
            id: &v.id,
            version: v.version,
        };
        let body = self
            .keys
            .open(&self.store, aad, sealed)
            .await
            .map_err(crypto_error)?;
        Ok(ResourceVersion {
            res_type: v.res_type,
            id: v.id,
            version: v.version,
            last_updated: v.last_updated,
            body,
        })
    }

    /// The search index rows of a resource of `res_type` (the same on every
    /// write and on reindexing).
    fn index_rows(
        &self,
        tenant: &str,
        res_type: &str,
        resource: &Json,
    ) -> Result<Vec<hearth_store::IndexRow>, ApiError> {
        plan::index_rows(
            res_type,
            &extract(resource),
            &|input| self.search_hash(tenant, input),
            self.local_base.as_deref(),
        )
    }

    /// Runs the unfinished reindex jobs of a tenant to their end: each batch of
    /// live resources is opened, its index rows extracted again and written in
    /// one transaction with the job's new position, so a stopped job resumes
    /// where it was. Returns the number of resources reindexed.
    pub async fn run_reindex_jobs(&self, tenant: &str) -> Result<u64, ApiError> {
        const BATCH: u32 = 500;
        let mut total = 0u64;
        let pending: Vec<_> = self
            .store
            .reindex_jobs()
            .await?
            .into_iter()
            .filter(|j| !j.done && j.tenant == tenant)
            .collect();
        // Every job rebuilds all index rows from its position on, so one pass
        // from the earliest position serves them all: the job furthest behind
        // drives it, and the others are marked done with it.
        let Some(mut job) = pending.iter().min_by(|a, b| a.after.cmp(&b.after)).cloned() else {
            return Ok(0);
        };
        let others: Vec<_> = pending.into_iter().filter(|j| j.name != job.name).collect();
        tracing::info!(job = %job.name, reason = %job.reason, "reindex job started");
        loop {
            let versions = self
                .store
                .reindex_batch(tenant, (&job.after.0, &job.after.1), BATCH)
                .await?;
            let finished = versions.len() < BATCH as usize;
            let mut batch = Vec::with_capacity(versions.len());
            for v in versions {
                let opened = self.open(tenant, v).await?;
                let resource = crate::json::parse(&opened.body).map_err(|_| {
                    ApiError::internal(format!(
                        "stored body of {}/{} is not JSON",
                        opened.res_type, opened.id
                    ))
                })?;
                let index = self.index_rows(tenant, &opened.res_type, &resource)?;
                batch.push(hearth_store::Reindexed {
                    res_type: opened.res_type,
                    id: opened.id,
                    version: opened.version,
                    last_updated: opened.last_updated,
                    index,
                });
            }
            let n = batch.len() as u64;
            let last = batch.last().map(|r| (r.res_type.clone(), r.id.clone()));
            self.store.reindex_apply(&job, batch, finished).await?;
            total += n;
            job.processed += n as i64;
            if let Some(last) = last {
                job.after = last;
            }
            if finished {
                break;
            }
            tracing::info!(job = %job.name, processed = job.processed, "reindexing");
        }
        tracing::info!(job = %job.name, processed = job.processed, "reindex job finished");
        for other in others {
            self.store.reindex_apply(&other, Vec::new(), true).await?;
            tracing::info!(job = %other.name, by = %job.name, "reindex job done by the same pass");
        }
        Ok(total)
    }

    /// After a SearchParameter is written: its definition replaces the one
    /// before (not searchable yet), a reindex job is queued, and a background
    /// pass runs it. Without a usable definition, the old one is dropped.
    async fn search_parameter_written(
        &self,
        tenant: &str,
        id: &str,
        version: i64,
        definition: Option<crate::search::custom::Definition>,
    ) -> Result<(), ApiError> {
        let Some(d) = definition else {
            crate::fhir::search_params::unregister_custom(id);
            return Ok(());
        };
        d.register(id);
        let job = crate::search::custom::job_name(id, version);
        self.store
            .add_reindex_job(tenant, &job, &format!("search parameter {}", d.code))
            .await?;
        let (service, tenant) = (self.clone(), tenant.to_owned());
        tokio::spawn(async move { service.reindex_in_background(&tenant).await });
        Ok(())
    }

    /// Runs the pending reindex jobs (one pass at a time), then makes the
    /// added parameters whose jobs are done searchable. Failures are logged:
    /// the jobs stay pending and run again on the next pass or start.
    pub async fn reindex_in_background(&self, tenant: &str) {
        let _pass = self.reindexing.lock().await;
        if let Err(e) = self.run_reindex_jobs(tenant).await {
            tracing::error!(error = %e, "reindex pass failed; its jobs stay pending");
        }
        if let Err(e) = self.refresh_custom_readiness().await {
            tracing::error!(error = %e, "reading reindex jobs failed");
        }
    }

    /// Added parameters are searchable once no job of theirs is pending.
    pub async fn refresh_custom_readiness(&self) -> Result<(), ApiError> {
        let jobs = self.store.reindex_jobs().await?;
        // Ready once this store has indexed it: a finished job and none
        // pending. (Not merely "no job pending here": the registry is
        // process-wide, and a store that never had the parameter has no job.)
        let ready: Vec<String> = crate::fhir::search_params::custom_ids()
            .into_iter()
            .filter(|id| {
                let prefix = format!("{id}:");
                let mine = jobs.iter().filter(|j| j.name.starts_with(&prefix));
                let (mut done, mut pending) = (false, false);
                for j in mine {
                    if j.done {
                        done = true;
                    } else {
                        pending = true;
                    }
                }
                done && !pending
            })
            .collect();
        crate::fhir::search_params::set_custom_ready(&ready);
        Ok(())
    }

    /// Registers the active SearchParameters stored for a tenant (at start-up,
    /// before pending reindex jobs run).
    pub async fn load_search_parameters(&self, tenant: &str) -> Result<usize, ApiError> {
        let mut after = None;
        let mut n = 0;
        loop {
            let q = SearchQuery {
                res_type: "SearchParameter".to_owned(),
                conditions: Vec::new(),
                sort: Vec::new(),
                after: after.clone(),
                limit: 500,
                drive_below: 0,
            };
            let page = self.search(tenant, &q).await?;
            let full = page.len() == 500;
            for (rv, cursor) in page {
                after = Some(cursor);
                let Ok(Json::Object(sp)) = crate::json::parse(&rv.body) else {
                    continue;
                };
                // A definition that cannot be used here is skipped, not fatal.
                if let Ok(Some(d)) = crate::search::custom::definition(&sp) {
                    d.register(&rv.id);
                    n += 1;
                }
            }
            if !full {
                return Ok(n);
            }
        }
    }

    /// Every reindex job, for the status operation.
    pub async fn reindex_jobs(&self) -> Result<Vec<hearth_store::ReindexJob>, ApiError> {
        Ok(self.store.reindex_jobs().await?)
    }

    /// `GET [type]/[id]`: 404 when unknown, 410 when deleted.
    pub async fn read(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
    ) -> Result<ResourceVersion, ApiError> {
        match self.store.read_current(tenant, res_type, id).await? {
            None => Err(not_found(res_type, id)),
            Some(v) => self.open(tenant, v).await,
        }
    }

    /// The current version number and time, without decrypting (for conditional reads).
    pub async fn current_version(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
    ) -> Result<(i64, i64), ApiError> {
        match self.store.read_current(tenant, res_type, id).await? {
            None => Err(not_found(res_type, id)),
            Some(v) if v.deleted => Err(gone(res_type, id)),
            Some(v) => Ok((v.version, v.last_updated)),
        }
    }

    /// Whether the resource has any version (deleted or not).
    pub async fn exists(&self, tenant: &str, res_type: &str, id: &str) -> Result<bool, ApiError> {
        Ok(self
            .store
            .read_current(tenant, res_type, id)
            .await?
            .is_some())
    }

    /// `GET [type]/[id]/_history/[vid]`.
    pub async fn vread(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        version: i64,
    ) -> Result<ResourceVersion, ApiError> {
        match self
            .store
            .read_version(tenant, res_type, id, version)
            .await?
        {
            Some(v) => self.open(tenant, v).await,
            None => Err(ApiError::not_found(format!(
                "{res_type}/{id} has no version {version}"
            ))),
        }
    }

    /// `DELETE [type]/[id]`.
    pub async fn delete(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
    ) -> Result<DeleteResult, ApiError> {
        let precondition = self
            .limit_write(tenant, res_type, id, None, Precondition::None)
            .await?;
        crate::limits::assert_checked([(res_type, id)])?;
        let intent = WriteIntent {
            res_type,
            id,
            precondition,
            kind: WriteKind::Delete,
            last_updated: now_micros(),
            index: &[],
        };
        let outcome = self
            .store
            .write(tenant, &intent, no_body(), crate::audit::for_write(tenant))
            .await?;
        Self::finish_delete(res_type, id, outcome)
    }

    /// A page position that holds values from resources (sort values of
    /// identifying parameters), sealed for a `_page` link: URL-safe text
    /// that reveals nothing and that only this tenant's keys open.
    pub fn seal_page(&self, tenant: &str, position: &str) -> Result<String, ApiError> {
        use base64::Engine;
        let sealed = self
            .keys
            .seal_token(tenant, "page", position.as_bytes().to_vec())
            .map_err(ApiError::internal)?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Data sealed under the tenant's data key for `purpose` (see
    /// `KeyRing::seal_token`): export parts.
    pub fn seal_for(
        &self,
        tenant: &str,
        purpose: &str,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, ApiError> {
        self.keys
            .seal_token(tenant, purpose, data)
            .map_err(ApiError::internal)
    }

    /// What [`Service::seal_for`] sealed, if it was sealed for this purpose.
    pub fn open_sealed(&self, tenant: &str, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.keys.open_token(tenant, purpose, sealed)
    }

    /// The position of a [`Service::seal_page`] text, if it is one.
    pub fn open_page(&self, tenant: &str, sealed: &str) -> Option<String> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed)
            .ok()?;
        String::from_utf8(self.keys.open_token(tenant, "page", &raw)?).ok()
    }

    /// The keyed hash of an identifying index value (see `search::plan`).
    pub fn search_hash(&self, tenant: &str, input: &[u8]) -> Result<Vec<u8>, ApiError> {
        self.keys
            .search_hash(tenant, input)
            .map_err(ApiError::internal)
    }

    /// One page of a compartment's live members in (type, id) order, each with
    /// its position (the type as the cursor's key).
    pub async fn compartment_page(
        &self,
        tenant: &str,
        query: &hearth_store::search::CompartmentQuery,
    ) -> Result<Vec<(ResourceVersion, Cursor)>, ApiError> {
        let found = self.store.compartment_page(tenant, query).await?;
        let mut out = Vec::with_capacity(found.len());
        for v in found {
            let cursor = Cursor {
                keys: vec![v.version.res_type.as_bytes().to_vec()],
                id: v.version.id.clone(),
                backward: false,
            };
            out.push((self.open(tenant, v.version).await?, cursor));
        }
        Ok(out)
    }

    /// `GET [type]?…`: one page of current resources matching `query`, by id.
    pub async fn search(
        &self,
        tenant: &str,
        query: &SearchQuery,
    ) -> Result<Vec<(ResourceVersion, Cursor)>, ApiError> {
        let found = self.store.search(tenant, query).await?;
        let mut out = Vec::with_capacity(found.len());
        for v in found {
            out.push((self.open(tenant, v.version).await?, v.cursor));
        }
        Ok(out)
    }

    /// How many resources match (`_total`, `_summary=count`).
    pub async fn count(&self, tenant: &str, query: &SearchQuery) -> Result<u64, ApiError> {
        Ok(self.store.count(tenant, query).await?)
    }

    /// History, newest first, decrypted.
    pub async fn history(
        &self,
        tenant: &str,
        query: &HistoryQuery<'_>,
    ) -> Result<Vec<HistoryItem>, ApiError> {
        let entries = self.store.history(tenant, query).await?;
        let mut items = Vec::with_capacity(entries.len());
        for e in entries {
            let v = e.version;
            let body = match &v.body {
                None => None,
                Some(sealed) => {
                    let aad = BodyAad {
                        tenant,
                        res_type: &v.res_type,
                        id: &v.id,
                        version: v.version,
                    };
                    Some(
                        self.keys
                            .open(&self.store, aad, sealed)
                            .await
                            .map_err(crypto_error)?,
                    )
                }
            };
            items.push(HistoryItem {
                seq: e.seq,
                res_type: v.res_type,
                id: v.id,
                version: v.version,
                last_updated: v.last_updated,
                body,
            });
        }
        Ok(items)
    }

    pub fn history_scope<'a>(res_type: Option<&'a str>, id: Option<&'a str>) -> HistoryScope<'a> {
        match (res_type, id) {
            (Some(t), Some(id)) => HistoryScope::Instance(t, id),
            (Some(t), None) => HistoryScope::Type(t),
            _ => HistoryScope::System,
        }
    }
}

/// 412: a condition that must name one resource matches several.
fn several_match(res_type: &str) -> ApiError {
    ApiError::new(
        crate::error::ErrorKind::PreconditionFailed,
        format!("the condition matches more than one {res_type}; make it more selective"),
    )
}

fn not_found(res_type: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("{res_type}/{id} is not known"))
}

fn gone(res_type: &str, id: &str) -> ApiError {
    ApiError::with_issues(
        ErrorKind::Gone,
        vec![OutcomeIssue::error(
            IssueType::Deleted,
            format!("{res_type}/{id} was deleted"),
        )],
    )
}

/// The seal function of a delete, which has no body (never called).
pub(crate) fn no_body() -> hearth_store::SealFn {
    Box::new(|_| Err(StoreError::Internal("a delete has no body to seal".into())))
}

/// A put made ready for the store by [`Service::prepare_put`].
pub(crate) struct PreparedPut {
    pub res_type: String,
    pub id: String,
    precondition: Precondition,
    pub last_updated: i64,
    index: Vec<hearth_store::IndexRow>,
    definition: Option<crate::search::custom::Definition>,
    slot: Arc<Mutex<Option<Vec<u8>>>>,
    seal: Option<hearth_store::SealFn>,
}

impl PreparedPut {
    pub fn intent(&self) -> WriteIntent<'_> {
        WriteIntent {
            res_type: &self.res_type,
            id: &self.id,
            precondition: self.precondition,
            kind: WriteKind::Put,
            last_updated: self.last_updated,
            index: &self.index,
        }
    }

    /// The seal function, once.
    pub fn take_seal(&mut self) -> Result<hearth_store::SealFn, ApiError> {
        self.seal
            .take()
            .ok_or_else(|| ApiError::internal("a put was sealed twice"))
    }
}

/// A random version-4 UUID as a resource id.
pub fn new_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| ApiError::internal("the system random generator failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}
