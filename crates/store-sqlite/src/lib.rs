//! The embedded store: one SQLite file in WAL mode, one writer connection and a
//! few reader connections. Every call runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel::sqlite::SqliteConnection;
use hearth_store::schema::{
    AuditEvent, CountRow, EstimateRow, ExportJob, ExportPart, ImportedFile, IndexChanges, KeyRow,
    NewReindexJob, NewVersion, PENDING_AUDIT_COLUMNS, PendingAudit, ReindexJobRow, ReindexProgress,
    SearchRow, User, UserChange, VersionRow, WriteSet, audit_anchors, audit_events, audit_pending,
    data_keys, export_jobs, export_parts, hearth_migrations, history_version_columns,
    imported_files, reindex_jobs, resource_history, resources, text_prefix_inserts, users,
};
use hearth_store::search::{
    CommonConditions, CompartmentQuery, Driver, DriverChoice, Placeholders, SearchHit, SearchQuery,
    bound_query, compartment_sql, count_sql, search_sql,
};
use hearth_store::{
    AuditAppend, HistoryEntry, HistoryQuery, HistoryScope, IndexRow, MIGRATIONS_TABLE_SQL,
    Migration, ReindexJob, Reindexed, SealFn, StoreError, StoreResult, StoredVersion, WrappedKey,
    WriteAllError, WriteIntent, WriteKind, WriteOutcome, WritePlan, pending_migrations, plan_write,
};

/// Migrations of this backend, in order. Every file of `schema/sqlite/` is listed.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_init",
        sql: include_str!("../../../schema/sqlite/0001_init.sql"),
    },
    Migration {
        name: "0002_search_index",
        sql: include_str!("../../../schema/sqlite/0002_search_index.sql"),
    },
    Migration {
        name: "0003_keyed_string_index",
        sql: include_str!("../../../schema/sqlite/0003_keyed_string_index.sql"),
    },
    Migration {
        name: "0004_number_quantity_uri_index",
        sql: include_str!("../../../schema/sqlite/0004_number_quantity_uri_index.sql"),
    },
    Migration {
        name: "0005_sort_keys",
        sql: include_str!("../../../schema/sqlite/0005_sort_keys.sql"),
    },
    Migration {
        name: "0006_compartment_index",
        sql: include_str!("../../../schema/sqlite/0006_compartment_index.sql"),
    },
    Migration {
        name: "0007_covering_indexes",
        sql: include_str!("../../../schema/sqlite/0007_covering_indexes.sql"),
    },
    Migration {
        name: "0008_birth_years",
        sql: include_str!("../../../schema/sqlite/0008_birth_years.sql"),
    },
    Migration {
        name: "0009_text_search_hashes",
        sql: include_str!("../../../schema/sqlite/0009_text_search_hashes.sql"),
    },
    Migration {
        name: "0010_imported_files",
        sql: include_str!("../../../schema/sqlite/0010_imported_files.sql"),
    },
    Migration {
        name: "0011_fewer_prefix_hashes",
        sql: include_str!("../../../schema/sqlite/0011_fewer_prefix_hashes.sql"),
    },
    Migration {
        name: "0012_text_sort_keys",
        sql: include_str!("../../../schema/sqlite/0012_text_sort_keys.sql"),
    },
    Migration {
        name: "0013_text_dictionary",
        sql: include_str!("../../../schema/sqlite/0013_text_dictionary.sql"),
    },
    Migration {
        name: "0014_ucum_base_units",
        sql: include_str!("../../../schema/sqlite/0014_ucum_base_units.sql"),
    },
    Migration {
        name: "0015_bulk_export",
        sql: include_str!("../../../schema/sqlite/0015_bulk_export.sql"),
    },
    Migration {
        name: "0016_users",
        sql: include_str!("../../../schema/sqlite/0016_users.sql"),
    },
    Migration {
        name: "0017_audit",
        sql: include_str!("../../../schema/sqlite/0017_audit.sql"),
    },
    Migration {
        name: "0018_audit_anchors",
        sql: include_str!("../../../schema/sqlite/0018_audit_anchors.sql"),
    },
    Migration {
        name: "0019_audit_pending",
        sql: include_str!("../../../schema/sqlite/0019_audit_pending.sql"),
    },
    Migration {
        name: "0020_users_updated",
        sql: include_str!("../../../schema/sqlite/0020_users_updated.sql"),
    },
];

const MAX_READERS: usize = 8;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<SqliteConnection>,
    readers: Mutex<Vec<SqliteConnection>>,
    /// Writes since the planner's statistics were last refreshed.
    writes: std::sync::atomic::AtomicU64,
    /// Conditions recently found common, so searches skip counting them.
    common: Arc<CommonConditions>,
}

/// How many writes pass between refreshes of the planner's statistics.
const OPTIMIZE_EVERY: u64 = 5_000;

/// Refreshes the planner's statistics where tables changed enough (SQLite's
/// `PRAGMA optimize`: all tables, including those never analysed; it bounds the
/// rows it reads). Without statistics SQLite may walk a whole type's index rows
/// to find a handful; search plans rely on them (docs/adr/0006).
fn optimize(c: &mut SqliteConnection) -> StoreResult<()> {
    c.batch_execute("PRAGMA optimize = 0x10012;")
        .map_err(StoreError::from)
}

fn open(path: &Path) -> StoreResult<SqliteConnection> {
    let url = path
        .to_str()
        .ok_or_else(|| StoreError::Unavailable("database path is not UTF-8".into()))?;
    let mut c = SqliteConnection::establish(url).map_err(StoreError::unavailable)?;
    c.batch_execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 10000; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;",
    )
    .map_err(StoreError::from)?;
    Ok(c)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: impl Into<PathBuf>) -> StoreResult<Self> {
        let path = path.into();
        let writer = open(&path)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                writes: std::sync::atomic::AtomicU64::new(0),
                common: Arc::default(),
            }),
        })
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConnection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner
                .writer
                .lock()
                .map_err(|_| StoreError::Internal("writer connection poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(StoreError::internal)?
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SqliteConnection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut r| r.pop());
            let mut conn = match pooled {
                Some(c) => c,
                None => open(&inner.path)?,
            };
            let result = f(&mut conn);
            if let Ok(mut r) = inner.readers.lock()
                && r.len() < MAX_READERS
            {
                r.push(conn);
            }
            result
        })
        .await
        .map_err(StoreError::internal)?
    }
}

fn migrate(c: &mut SqliteConnection, now: i64) -> StoreResult<Vec<String>> {
    c.batch_execute(MIGRATIONS_TABLE_SQL)
        .map_err(StoreError::from)?;
    let applied: Vec<(String, String)> = hearth_migrations::table
        .select((hearth_migrations::name, hearth_migrations::checksum))
        .load(c)
        .map_err(StoreError::from)?;
    let mut ran = Vec::new();
    for (m, sum) in pending_migrations(&applied, MIGRATIONS)? {
        c.immediate_transaction(|c| {
            c.batch_execute(m.sql)?;
            diesel::insert_into(hearth_migrations::table)
                .values((
                    hearth_migrations::name.eq(m.name),
                    hearth_migrations::checksum.eq(&sum),
                    hearth_migrations::applied_at.eq(now),
                ))
                .execute(c)
        })
        .map_err(StoreError::from)?;
        ran.push(m.name.to_owned());
    }
    Ok(ran)
}

/// The writes of [`Store::write_all`], inside the caller's transaction.
fn write_all_tx(
    c: &mut SqliteConnection,
    tenant: &str,
    writes: Vec<(WriteIntent<'_>, SealFn)>,
) -> Result<Vec<WriteOutcome>, WriteAllError> {
    let mut set = WriteSet::default();
    for (i, (intent, seal)) in writes.into_iter().enumerate() {
        let at = |e: StoreError| WriteAllError {
            entry: Some(i),
            error: e,
        };
        let current = match set.written(intent.res_type, intent.id) {
            Some(c) => Some(c),
            None => resources::table
                .find((tenant, intent.res_type, intent.id))
                .select((resources::version, resources::deleted))
                .first(c)
                .optional()
                .map_err(|e| at(e.into()))?,
        };
        let (version, created) = match plan_write(current, &intent).map_err(at)? {
            WritePlan::Skip(outcome) => {
                set.outcomes.push(outcome);
                continue;
            }
            WritePlan::Write { version, created } => (version, created),
        };
        let sealed = match intent.kind {
            WriteKind::Put => Some(seal(version).map_err(at)?),
            WriteKind::Delete => None,
        };
        let row = NewVersion::new(tenant, &intent, version, sealed.as_ref());
        diesel::insert_into(resource_history::table)
            .values(row.history())
            .execute(c)
            .map_err(|e| at(e.into()))?;
        diesel::insert_into(resources::table)
            .values(&row)
            .on_conflict((resources::tenant, resources::res_type, resources::id))
            .do_update()
            .set(&row)
            .execute(c)
            .map_err(|e| at(e.into()))?;
        // A second write of the same resource replaces the rows of the first.
        if set.index.touches(intent.res_type, intent.id) {
            apply_index(c, tenant, std::mem::take(&mut set.index))?;
        }
        set.wrote(tenant, &intent, current.is_some(), version, created);
    }
    apply_index(c, tenant, set.index)?;
    Ok(set.outcomes)
}

fn apply_index(c: &mut SqliteConnection, tenant: &str, changes: IndexChanges) -> StoreResult<()> {
    let mut changes = changes;
    let prefixes = std::mem::take(&mut changes.inserts.text_prefixes);
    hearth_store::apply_index_changes!(c, tenant, changes)?;
    for (sql, binds) in text_prefix_inserts(tenant, prefixes, Placeholders::Question) {
        bound_query::<diesel::sqlite::Sqlite>(sql, binds).execute(c)?;
    }
    Ok(())
}

/// A write moved onto the writer thread.
struct OwnedWrite {
    res_type: String,
    id: String,
    precondition: hearth_store::Precondition,
    kind: WriteKind,
    last_updated: hearth_store::Micros,
    index: Vec<IndexRow>,
}

/// Which condition drives a search, from capped counts of each.
fn driver(
    c: &mut SqliteConnection,
    common: &CommonConditions,
    tenant: &str,
    q: &SearchQuery,
) -> StoreResult<Driver> {
    let mut choice = DriverChoice::new(tenant, q, Placeholders::Question, common);
    while let Some((sql, binds)) = choice.next_statement() {
        let rows: Vec<EstimateRow> = bound_query::<diesel::sqlite::Sqlite>(sql, binds).load(c)?;
        choice.counted(rows.iter().map(EstimateRow::pair).collect());
    }
    Ok(choice.driver())
}

impl hearth_store::Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<Vec<String>> {
        self.with_writer(|c| {
            let ran = migrate(c, hearth_store::now_micros())?;
            optimize(c)?;
            Ok(ran)
        })
        .await
    }

    async fn read_current(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
    ) -> StoreResult<Option<StoredVersion>> {
        let key = (tenant.to_owned(), res_type.to_owned(), id.to_owned());
        self.with_reader(move |c| {
            resources::table
                .find((&key.0, &key.1, &key.2))
                .select(VersionRow::as_select())
                .first(c)
                .optional()
                .map(|r| r.map(StoredVersion::from))
                .map_err(StoreError::from)
        })
        .await
    }

    async fn read_version(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredVersion>> {
        let key = (tenant.to_owned(), res_type.to_owned(), id.to_owned());
        self.with_reader(move |c| {
            resource_history::table
                .filter(resource_history::tenant.eq(&key.0))
                .filter(resource_history::res_type.eq(&key.1))
                .filter(resource_history::id.eq(&key.2))
                .filter(resource_history::version.eq(version))
                .select(history_version_columns())
                .first::<VersionRow>(c)
                .optional()
                .map(|r| r.map(StoredVersion::from))
                .map_err(StoreError::from)
        })
        .await
    }

    async fn write(
        &self,
        tenant: &str,
        intent: &WriteIntent<'_>,
        seal: SealFn,
        audit: Option<PendingAudit>,
    ) -> StoreResult<WriteOutcome> {
        let mut outcomes = self
            .write_all(tenant, vec![(intent.clone(), seal)], None, audit)
            .await
            .map_err(|e| e.error)?;
        outcomes
            .pop()
            .ok_or_else(|| StoreError::Internal("a write reported no outcome".into()))
    }

    async fn write_all(
        &self,
        tenant: &str,
        writes: Vec<(WriteIntent<'_>, SealFn)>,
        imported: Option<ImportedFile>,
        audit: Option<PendingAudit>,
    ) -> Result<Vec<WriteOutcome>, WriteAllError> {
        let tenant = tenant.to_owned();
        let one = match writes.as_slice() {
            [(w, _)] => Some((w.res_type.to_owned(), w.id.to_owned(), w.kind)),
            _ => None,
        };
        let (owned, seals): (Vec<OwnedWrite>, Vec<SealFn>) = writes
            .into_iter()
            .map(|(w, seal)| {
                let owned = OwnedWrite {
                    res_type: w.res_type.to_owned(),
                    id: w.id.to_owned(),
                    precondition: w.precondition,
                    kind: w.kind,
                    last_updated: w.last_updated,
                    index: w.index.to_vec(),
                };
                (owned, seal)
            })
            .unzip();
        let n = owned.len() as u64;
        let inner = self.inner.clone();
        self.with_writer(move |c| {
            let writes = owned
                .iter()
                .map(|w| WriteIntent {
                    res_type: &w.res_type,
                    id: &w.id,
                    precondition: w.precondition,
                    kind: w.kind,
                    last_updated: w.last_updated,
                    index: &w.index,
                })
                .zip(seals)
                .collect();
            let mut outcome = None;
            let tx = c.immediate_transaction(|c| {
                outcome = Some(write_all_tx(c, &tenant, writes).and_then(|o| {
                    if let Some(file) = &imported {
                        diesel::insert_into(imported_files::table)
                            .values(file)
                            .execute(c)?;
                    }
                    let one = one
                        .as_ref()
                        .map(|(t, id, kind)| (t.as_str(), id.as_str(), *kind));
                    if let Some(row) = audit.as_ref().and_then(|a| a.for_writes(one, &o)) {
                        diesel::insert_into(audit_pending::table)
                            .values(&row)
                            .execute(c)?;
                    }
                    Ok(o)
                }));
                match &outcome {
                    Some(Ok(_)) => Ok(()),
                    _ => Err(DieselError::RollbackTransaction),
                }
            });
            let result = match (tx, outcome) {
                (_, Some(Err(e))) => Err(e),
                (Err(e), _) => Err(WriteAllError::from(e)),
                (Ok(()), Some(Ok(o))) => Ok(o),
                (Ok(()), None) => Err(StoreError::Internal("write did not run".into()).into()),
            };
            let writes = &inner.writes;
            if result.is_ok() && writes.fetch_add(n, Ordering::Relaxed) + n >= OPTIMIZE_EVERY {
                writes.store(0, Ordering::Relaxed);
                // Statistics are a hint: a failure to refresh them fails no write.
                if let Err(e) = optimize(c) {
                    tracing::warn!(error = %e, "refreshing the planner's statistics failed");
                }
            }
            Ok(result)
        })
        .await?
    }

    async fn is_imported(&self, tenant: &str, digest: &str) -> StoreResult<bool> {
        let (tenant, digest) = (tenant.to_owned(), digest.to_owned());
        self.with_reader(move |c| {
            let n: i64 = imported_files::table
                .filter(imported_files::tenant.eq(&tenant))
                .filter(imported_files::digest.eq(&digest))
                .count()
                .get_result(c)?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_import(&self, file: ImportedFile) -> StoreResult<()> {
        self.with_writer(move |c| {
            diesel::insert_into(imported_files::table)
                .values(&file)
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn save_export(&self, job: ExportJob) -> StoreResult<()> {
        self.with_writer(move |c| {
            // ON CONFLICT … DO UPDATE … WHERE: a cancelled job is not revived.
            use diesel::query_dsl::methods::FilterDsl as _;
            diesel::insert_into(export_jobs::table)
                .values(&job)
                .on_conflict((export_jobs::tenant, export_jobs::id))
                .do_update()
                .set(&job)
                .filter(export_jobs::status.ne("cancelled"))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn export_job(&self, tenant: &str, id: &str) -> StoreResult<Option<ExportJob>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.with_reader(move |c| {
            Ok(export_jobs::table
                .find((&tenant, &id))
                .first::<ExportJob>(c)
                .optional()?)
        })
        .await
    }

    async fn add_export_part(&self, part: ExportPart) -> StoreResult<()> {
        self.with_writer(move |c| {
            diesel::insert_into(export_parts::table)
                .values(&part)
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn export_part(
        &self,
        tenant: &str,
        job_id: &str,
        file: &str,
        part: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let (tenant, job_id, file) = (tenant.to_owned(), job_id.to_owned(), file.to_owned());
        self.with_reader(move |c| {
            Ok(export_parts::table
                .find((&tenant, &job_id, &file, part))
                .select(export_parts::data)
                .first::<Vec<u8>>(c)
                .optional()?)
        })
        .await
    }

    async fn append_audit(
        &self,
        append: AuditAppend,
        seal: impl Fn(&AuditEvent, &[u8]) -> Result<(String, Vec<u8>), String> + Send + 'static,
    ) -> StoreResult<i64> {
        let AuditAppend {
            tenant,
            events,
            replaces,
            recover_before,
            keep,
        } = append;
        self.with_writer(move |c| {
            // IMMEDIATE: the write lock is taken before the last row is read,
            // so another process appending cannot fork the chain.
            c.immediate_transaction::<_, StoreError, _>(|c| {
                let recovered: Vec<PendingAudit> = match recover_before {
                    Some(before) => {
                        let rows = audit_pending::table
                            .filter(audit_pending::tenant.eq(&tenant))
                            .filter(audit_pending::recorded_at.lt(before))
                            .order(audit_pending::id.asc())
                            .select((audit_pending::id, PENDING_AUDIT_COLUMNS))
                            .load::<(i64, PendingAudit)>(c)?;
                        let rows: Vec<(i64, PendingAudit)> = rows
                            .into_iter()
                            .filter(|(_, r)| !keep.contains(&r.token))
                            .collect();
                        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
                        for chunk in ids.chunks(500) {
                            diesel::delete(
                                audit_pending::table.filter(audit_pending::id.eq_any(chunk)),
                            )
                            .execute(c)?;
                        }
                        rows.into_iter().map(|(_, r)| r).collect()
                    }
                    None => Vec::new(),
                };
                for chunk in replaces.chunks(500) {
                    diesel::delete(
                        audit_pending::table
                            .filter(audit_pending::tenant.eq(&tenant))
                            .filter(audit_pending::token.eq_any(chunk)),
                    )
                    .execute(c)?;
                }
                let mut events = hearth_store::audit_rows_in_order(recovered, events);
                if events.is_empty() {
                    return Ok(0);
                }
                let last: Option<(i64, Vec<u8>)> = audit_events::table
                    .filter(audit_events::tenant.eq(&tenant))
                    .order(audit_events::seq.desc())
                    .select((audit_events::seq, audit_events::hash))
                    .first(c)
                    .optional()?;
                // An empty table after retention continues from the anchor.
                let last = match last {
                    Some(l) => Some(l),
                    None => audit_anchors::table
                        .find(&tenant)
                        .select((audit_anchors::seq, audit_anchors::hash))
                        .first(c)
                        .optional()?,
                };
                let seq = hearth_store::link_audit_rows(&mut events, last, seal)?;
                for chunk in events.chunks(500) {
                    diesel::insert_into(audit_events::table)
                        .values(chunk)
                        .execute(c)?;
                }
                Ok(seq)
            })
        })
        .await
    }

    async fn audit_events(
        &self,
        tenant: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let tenant = tenant.to_owned();
        self.with_reader(move |c| {
            Ok(audit_events::table
                .filter(audit_events::tenant.eq(&tenant))
                .filter(audit_events::seq.gt(after))
                .order(audit_events::seq.asc())
                .limit(limit)
                .load(c)?)
        })
        .await
    }

    async fn prune_audit(&self, tenant: &str, before: i64) -> StoreResult<u64> {
        let tenant = tenant.to_owned();
        self.with_writer(move |c| {
            c.immediate_transaction::<_, StoreError, _>(|c| {
                let last: Option<(i64, Vec<u8>)> = audit_events::table
                    .filter(audit_events::tenant.eq(&tenant))
                    .filter(audit_events::recorded_at.lt(before))
                    .order(audit_events::seq.desc())
                    .select((audit_events::seq, audit_events::hash))
                    .first(c)
                    .optional()?;
                let Some((seq, hash)) = last else {
                    return Ok(0);
                };
                diesel::insert_into(audit_anchors::table)
                    .values((
                        audit_anchors::tenant.eq(&tenant),
                        audit_anchors::seq.eq(seq),
                        audit_anchors::hash.eq(&hash),
                    ))
                    .on_conflict(audit_anchors::tenant)
                    .do_update()
                    .set((audit_anchors::seq.eq(seq), audit_anchors::hash.eq(&hash)))
                    .execute(c)?;
                let n = diesel::delete(
                    audit_events::table
                        .filter(audit_events::tenant.eq(&tenant))
                        .filter(audit_events::seq.le(seq)),
                )
                .execute(c)?;
                Ok(n as u64)
            })
        })
        .await
    }

    async fn audit_anchor(&self, tenant: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let tenant = tenant.to_owned();
        self.with_reader(move |c| {
            Ok(audit_anchors::table
                .find(&tenant)
                .select((audit_anchors::seq, audit_anchors::hash))
                .first(c)
                .optional()?)
        })
        .await
    }

    async fn user(&self, tenant: &str, name: &str) -> StoreResult<Option<User>> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.with_reader(move |c| {
            Ok(users::table
                .find((&tenant, &name))
                .first::<User>(c)
                .optional()?)
        })
        .await
    }

    async fn users(&self, tenant: &str) -> StoreResult<Vec<User>> {
        let tenant = tenant.to_owned();
        self.with_reader(move |c| {
            Ok(users::table
                .filter(users::tenant.eq(&tenant))
                .order(users::name.asc())
                .load(c)?)
        })
        .await
    }

    async fn users_changed_since(&self, tenant: &str, since: i64) -> StoreResult<Vec<String>> {
        let tenant = tenant.to_owned();
        self.with_reader(move |c| {
            Ok(users::table
                .filter(users::tenant.eq(&tenant))
                .filter(users::updated_at.ge(since))
                .select(users::name)
                .load(c)?)
        })
        .await
    }

    async fn change_user(&self, tenant: &str, name: &str, change: UserChange) -> StoreResult<bool> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.with_writer(move |c| {
            let n = diesel::update(
                users::table
                    .find((&tenant, &name))
                    .filter(users::source.eq("local")),
            )
            .set(&change)
            .execute(c)?;
            Ok(n > 0)
        })
        .await
    }

    async fn save_user(&self, user: User) -> StoreResult<()> {
        self.with_writer(move |c| {
            diesel::insert_into(users::table)
                .values(&user)
                .on_conflict((users::tenant, users::name))
                .do_update()
                .set(&user)
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn record_login_failure(
        &self,
        tenant: &str,
        name: &str,
        now: i64,
        max_failures: i32,
        lock_micros: i64,
    ) -> StoreResult<()> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.with_writer(move |c| {
            let row = users::table.find((&tenant, &name));
            diesel::update(row)
                .set((
                    users::failed_logins.eq(users::failed_logins + 1),
                    users::updated_at.eq(now),
                ))
                .execute(c)?;
            diesel::update(row.filter(users::failed_logins.ge(max_failures)))
                .set((
                    users::failed_logins.eq(0),
                    users::locked_until.eq(now + lock_micros),
                ))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn record_login_success(&self, tenant: &str, name: &str) -> StoreResult<()> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.with_writer(move |c| {
            diesel::update(users::table.find((&tenant, &name)))
                .set(users::failed_logins.eq(0))
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn delete_export(&self, tenant: &str, id: &str, job: bool) -> StoreResult<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.with_writer(move |c| {
            diesel::delete(
                export_parts::table
                    .filter(export_parts::tenant.eq(&tenant))
                    .filter(export_parts::job_id.eq(&id)),
            )
            .execute(c)?;
            if job {
                diesel::delete(export_jobs::table.find((&tenant, &id))).execute(c)?;
            }
            Ok(())
        })
        .await
    }

    async fn history(&self, tenant: &str, q: &HistoryQuery<'_>) -> StoreResult<Vec<HistoryEntry>> {
        let tenant = tenant.to_owned();
        let scope = match q.scope {
            HistoryScope::System => (None, None),
            HistoryScope::Type(t) => (Some(t.to_owned()), None),
            HistoryScope::Instance(t, id) => (Some(t.to_owned()), Some(id.to_owned())),
        };
        let (since, before, limit) = (q.since, q.before_seq, i64::from(q.limit));
        self.with_reader(move |c| {
            let mut query = resource_history::table
                .filter(resource_history::tenant.eq(tenant))
                .into_boxed();
            if let Some(t) = scope.0 {
                query = query.filter(resource_history::res_type.eq(t));
            }
            let instance = scope.1.is_some();
            if let Some(id) = scope.1 {
                query = query.filter(resource_history::id.eq(id));
            }
            if let Some(s) = since {
                query = query.filter(resource_history::last_updated.ge(s));
            }
            if let Some(b) = before {
                query = query.filter(resource_history::seq.lt(b));
            }
            // Within one resource, versions follow write order: ordering by version
            // lets the (tenant, type, id, version) key serve the whole query.
            query = if instance {
                query.order(resource_history::version.desc())
            } else {
                query.order(resource_history::seq.desc())
            };
            let rows: Vec<(i64, VersionRow)> = query
                .limit(limit)
                .select((resource_history::seq, history_version_columns()))
                .load(c)
                .map_err(StoreError::from)?;
            Ok(rows
                .into_iter()
                .map(|(seq, r)| HistoryEntry {
                    seq,
                    version: r.into(),
                })
                .collect())
        })
        .await
    }

    async fn search(&self, tenant: &str, q: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let (tenant, q) = (tenant.to_owned(), q.clone());
        let common = self.inner.common.clone();
        self.with_reader(move |c| {
            // One read transaction: every statement sees the same snapshot.
            c.transaction(|c| {
                let driver = driver(c, &common, &tenant, &q)?;
                let mut hits = Vec::new();
                for (sql, binds) in search_sql(&tenant, &q, Placeholders::Question, driver) {
                    if hits.len() >= q.limit as usize {
                        break;
                    }
                    let rows: Vec<SearchRow> =
                        bound_query::<diesel::sqlite::Sqlite>(sql, binds).load(c)?;
                    hits.extend(rows.into_iter().map(SearchHit::from));
                }
                hits.truncate(q.limit as usize);
                Ok(hits)
            })
        })
        .await
    }

    async fn compartment_page(
        &self,
        tenant: &str,
        q: &CompartmentQuery,
    ) -> StoreResult<Vec<SearchHit>> {
        let (sql, binds) = compartment_sql(tenant, q, Placeholders::Question);
        self.with_reader(move |c| {
            let rows: Vec<SearchRow> = bound_query::<diesel::sqlite::Sqlite>(sql, binds).load(c)?;
            Ok(rows.into_iter().map(SearchHit::from).collect())
        })
        .await
    }

    async fn add_reindex_job(&self, tenant: &str, name: &str, reason: &str) -> StoreResult<()> {
        let (tenant, name, reason) = (tenant.to_owned(), name.to_owned(), reason.to_owned());
        self.with_writer(move |c| {
            diesel::insert_into(reindex_jobs::table)
                .values(NewReindexJob::new(&tenant, &name, &reason))
                .on_conflict_do_nothing()
                .execute(c)?;
            Ok(())
        })
        .await
    }

    async fn reindex_jobs(&self) -> StoreResult<Vec<ReindexJob>> {
        self.with_reader(|c| {
            let rows: Vec<ReindexJobRow> = reindex_jobs::table
                .select(ReindexJobRow::as_select())
                .order((reindex_jobs::created_at, reindex_jobs::name))
                .load(c)?;
            Ok(rows.into_iter().map(ReindexJob::from).collect())
        })
        .await
    }

    async fn reindex_batch(
        &self,
        tenant: &str,
        after: (&str, &str),
        limit: u32,
    ) -> StoreResult<Vec<StoredVersion>> {
        let (tenant, t, id) = (tenant.to_owned(), after.0.to_owned(), after.1.to_owned());
        self.with_reader(move |c| {
            let rows: Vec<VersionRow> = resources::table
                .filter(resources::tenant.eq(&tenant))
                .filter(resources::deleted.eq(false))
                .filter(
                    resources::res_type
                        .gt(&t)
                        .or(resources::res_type.eq(&t).and(resources::id.gt(&id))),
                )
                .order((resources::res_type, resources::id))
                .limit(i64::from(limit))
                .select(VersionRow::as_select())
                .load(c)?;
            Ok(rows.into_iter().map(StoredVersion::from).collect())
        })
        .await
    }

    async fn reindex_apply(
        &self,
        job: &ReindexJob,
        batch: Vec<Reindexed>,
        finished: bool,
    ) -> StoreResult<()> {
        let job = job.clone();
        self.with_writer(move |c| {
            c.immediate_transaction::<_, StoreError, _>(|c| {
                let mut index = IndexChanges::default();
                for r in &batch {
                    // Only if no write came since the version was read: a newer
                    // version already has index rows of its own.
                    let current: Option<(i64, bool)> = resources::table
                        .find((&job.tenant, &r.res_type, &r.id))
                        .select((resources::version, resources::deleted))
                        .first(c)
                        .optional()?;
                    if current == Some((r.version, false)) {
                        index.delete(&r.res_type, &r.id);
                        index.insert(&job.tenant, &r.res_type, &r.id, &r.index, r.last_updated);
                    }
                }
                apply_index(c, &job.tenant, index)?;
                diesel::update(reindex_jobs::table.find((&job.tenant, &job.name)))
                    .set(ReindexProgress::after(&job, &batch, finished))
                    .execute(c)?;
                Ok(())
            })?;
            if finished {
                optimize(c)?;
            }
            Ok(())
        })
        .await
    }

    async fn count(&self, tenant: &str, q: &SearchQuery) -> StoreResult<u64> {
        let (tenant, q) = (tenant.to_owned(), q.clone());
        let common = self.inner.common.clone();
        self.with_reader(move |c| {
            let driver = driver(c, &common, &tenant, &q)?;
            let (sql, binds) = count_sql(&tenant, &q, Placeholders::Question, driver);
            let row: CountRow = bound_query::<diesel::sqlite::Sqlite>(sql, binds).get_result(c)?;
            Ok(u64::try_from(row.n).unwrap_or(0))
        })
        .await
    }

    async fn data_keys(&self, tenant: &str) -> StoreResult<Vec<WrappedKey>> {
        let tenant = tenant.to_owned();
        self.with_reader(move |c| {
            data_keys::table
                .filter(data_keys::tenant.eq(tenant))
                .order(data_keys::created_at.asc())
                .select(KeyRow::as_select())
                .load(c)
                .map(|rows| rows.into_iter().map(WrappedKey::from).collect())
                .map_err(StoreError::from)
        })
        .await
    }

    async fn add_data_key(&self, tenant: &str, key: &WrappedKey) -> StoreResult<()> {
        let row = KeyRow::new(tenant, key);
        self.with_writer(move |c| {
            c.immediate_transaction(|c| {
                if row.active {
                    diesel::update(
                        data_keys::table
                            .filter(data_keys::tenant.eq(&row.tenant))
                            .filter(data_keys::purpose.eq(&row.purpose)),
                    )
                    .set(data_keys::active.eq(false))
                    .execute(c)?;
                }
                diesel::insert_into(data_keys::table)
                    .values(&row)
                    .execute(c)
            })
            .map(|_| ())
            .map_err(StoreError::from)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_listed() {
        hearth_store::assert_migrations_listed(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/sqlite"),
            super::MIGRATIONS,
        );
    }
}
