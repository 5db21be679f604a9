//! The production store: PostgreSQL through diesel-async on tokio-postgres, pooled
//! with deadpool, TLS through rustls (`sslmode=disable|require|verify-full`).

mod prepared;
mod tls;

use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use futures_util::FutureExt;
use hearth_store::schema::{
    AuditEvent, CountRow, EstimateRow, ExportJob, ExportPart, ImportedFile, IndexChanges, KeyRow,
    NewReindexJob, NewVersion, PENDING_AUDIT_COLUMNS, PendingAudit, ReindexJobRow, ReindexProgress,
    SearchRow, User, UserChange, VersionRow, WriteSet, audit_anchors, audit_events, audit_pending,
    data_keys, export_jobs, export_parts, hearth_migrations, history_version_columns,
    imported_files, reindex_jobs, resource_history, resources, text_prefix_inserts, users,
};
use hearth_store::search::{
    CommonConditions, CompartmentQuery, Driver, DriverChoice, Placeholders, SearchHit, SearchQuery,
    compartment_sql, count_sql, search_sql,
};
use hearth_store::{
    AuditAppend, HistoryEntry, HistoryQuery, HistoryScope, MIGRATIONS_TABLE_SQL, Migration,
    ReindexJob, Reindexed, SealFn, StoreError, StoreResult, StoredVersion, WrappedKey,
    WriteAllError, WriteIntent, WriteKind, WriteOutcome, WritePlan, pending_migrations, plan_write,
};

use prepared::PreparedSql;
pub use tls::{ConnectOptions, SslMode, UrlError};

/// Migrations of this backend, in order. Every file of `schema/postgres/` is listed.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_init",
        sql: include_str!("../../../schema/postgres/0001_init.sql"),
    },
    Migration {
        name: "0002_search_index",
        sql: include_str!("../../../schema/postgres/0002_search_index.sql"),
    },
    Migration {
        name: "0003_keyed_string_index",
        sql: include_str!("../../../schema/postgres/0003_keyed_string_index.sql"),
    },
    Migration {
        name: "0004_number_quantity_uri_index",
        sql: include_str!("../../../schema/postgres/0004_number_quantity_uri_index.sql"),
    },
    Migration {
        name: "0005_sort_keys",
        sql: include_str!("../../../schema/postgres/0005_sort_keys.sql"),
    },
    Migration {
        name: "0006_compartment_index",
        sql: include_str!("../../../schema/postgres/0006_compartment_index.sql"),
    },
    Migration {
        name: "0007_covering_indexes",
        sql: include_str!("../../../schema/postgres/0007_covering_indexes.sql"),
    },
    Migration {
        name: "0008_birth_years",
        sql: include_str!("../../../schema/postgres/0008_birth_years.sql"),
    },
    Migration {
        name: "0009_text_search_hashes",
        sql: include_str!("../../../schema/postgres/0009_text_search_hashes.sql"),
    },
    Migration {
        name: "0010_imported_files",
        sql: include_str!("../../../schema/postgres/0010_imported_files.sql"),
    },
    Migration {
        name: "0011_fewer_prefix_hashes",
        sql: include_str!("../../../schema/postgres/0011_fewer_prefix_hashes.sql"),
    },
    Migration {
        name: "0012_text_sort_keys",
        sql: include_str!("../../../schema/postgres/0012_text_sort_keys.sql"),
    },
    Migration {
        name: "0013_text_dictionary",
        sql: include_str!("../../../schema/postgres/0013_text_dictionary.sql"),
    },
    Migration {
        name: "0014_ucum_base_units",
        sql: include_str!("../../../schema/postgres/0014_ucum_base_units.sql"),
    },
    Migration {
        name: "0015_bulk_export",
        sql: include_str!("../../../schema/postgres/0015_bulk_export.sql"),
    },
    Migration {
        name: "0016_users",
        sql: include_str!("../../../schema/postgres/0016_users.sql"),
    },
    Migration {
        name: "0017_audit",
        sql: include_str!("../../../schema/postgres/0017_audit.sql"),
    },
    Migration {
        name: "0018_audit_anchors",
        sql: include_str!("../../../schema/postgres/0018_audit_anchors.sql"),
    },
    Migration {
        name: "0019_audit_pending",
        sql: include_str!("../../../schema/postgres/0019_audit_pending.sql"),
    },
    Migration {
        name: "0020_users_updated",
        sql: include_str!("../../../schema/postgres/0020_users_updated.sql"),
    },
];

/// Serialises concurrent migrators (several nodes starting at once).
const MIGRATION_LOCK: i64 = 0x4845_4152_5448; // "HEARTH"

#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    /// Writes since the planner's statistics were last refreshed.
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Conditions recently found common, so searches skip counting them.
    common: std::sync::Arc<CommonConditions>,
}

/// How many writes pass between refreshes of the planner's statistics.
const ANALYZE_EVERY: u64 = 5_000;

/// The tables whose statistics search plans depend on (docs/adr/0006).
const ANALYZED_TABLES: &str = "resources, idx_token, idx_reference, idx_date, idx_string_hash, \
     idx_number, idx_quantity, idx_uri, idx_sort, idx_compartment";

impl PgStore {
    /// Builds the pool; connections are opened lazily. `url` is a `postgres://` URL
    /// that may carry `sslmode` and `sslrootcert`.
    pub fn connect(url: &str, max_connections: usize) -> Result<Self, UrlError> {
        let options = ConnectOptions::parse(url)?;
        let mut config = ManagerConfig::default();
        // No test query on every checkout (a round trip per request): a
        // connection the server closed is known broken and replaced.
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(move |_url| {
            let options = options.clone();
            async move { options.establish().await }.boxed()
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .build()
            .map_err(|e| UrlError(format!("connection pool: {e}")))?;
        Ok(PgStore {
            pool,
            writes: std::sync::Arc::default(),
            common: std::sync::Arc::default(),
        })
    }

    /// Refreshes the planner's statistics of the search tables, in the
    /// background: autovacuum may be off, or not yet caught up after a bulk
    /// load, and without statistics PostgreSQL may scan a whole type's index
    /// rows to find a handful.
    fn analyze_soon(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let result = async {
                let mut c = store.conn().await?;
                c.batch_execute(&format!("ANALYZE {ANALYZED_TABLES}"))
                    .await
                    .map_err(StoreError::from)
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "refreshing the planner's statistics failed");
            }
        });
    }

    /// Counts writes; every [`ANALYZE_EVERY`] writes, refreshes statistics.
    fn count_writes(&self, n: u64) {
        use std::sync::atomic::Ordering;
        if self.writes.fetch_add(n, Ordering::Relaxed) + n >= ANALYZE_EVERY {
            self.writes.store(0, Ordering::Relaxed);
            self.analyze_soon();
        }
    }

    async fn conn(&self) -> StoreResult<Object<AsyncPgConnection>> {
        self.pool.get().await.map_err(StoreError::unavailable)
    }
}

/// Advisory lock keys of the audit chains (one per tenant, mixed with a hash
/// of its name), apart from the migration lock.
const AUDIT_LOCK_BASE: i64 = 0x4845_4152_5448_0000;

/// FNV-1a, 32 bits: a stable small hash of a tenant name for its lock key.
fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

async fn migrate(c: &mut AsyncPgConnection) -> StoreResult<Vec<String>> {
    c.transaction::<_, StoreError, _>(async |c| {
        diesel::sql_query(format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .execute(c)
            .await
            .map_err(StoreError::from)?;
        c.batch_execute(MIGRATIONS_TABLE_SQL)
            .await
            .map_err(StoreError::from)?;
        let applied: Vec<(String, String)> = hearth_migrations::table
            .select((hearth_migrations::name, hearth_migrations::checksum))
            .load(c)
            .await
            .map_err(StoreError::from)?;
        let mut ran = Vec::new();
        for (m, sum) in pending_migrations(&applied, MIGRATIONS)? {
            c.batch_execute(m.sql).await.map_err(StoreError::from)?;
            diesel::insert_into(hearth_migrations::table)
                .values((
                    hearth_migrations::name.eq(m.name),
                    hearth_migrations::checksum.eq(&sum),
                    hearth_migrations::applied_at.eq(hearth_store::now_micros()),
                ))
                .execute(c)
                .await
                .map_err(StoreError::from)?;
            ran.push(m.name.to_owned());
        }
        Ok(ran)
    })
    .await
}

/// The writes of [`Store::write_all`], inside the caller's transaction.
async fn write_all_tx(
    c: &mut AsyncPgConnection,
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
                .for_update()
                .first(c)
                .await
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
            .await
            .map_err(|e| at(e.into()))?;
        diesel::insert_into(resources::table)
            .values(&row)
            .on_conflict((resources::tenant, resources::res_type, resources::id))
            .do_update()
            .set(&row)
            .execute(c)
            .await
            .map_err(|e| at(e.into()))?;
        // A second write of the same resource replaces the rows of the first.
        if set.index.touches(intent.res_type, intent.id) {
            apply_index(c, tenant, std::mem::take(&mut set.index)).await?;
        }
        set.wrote(tenant, &intent, current.is_some(), version, created);
    }
    apply_index(c, tenant, set.index).await?;
    Ok(set.outcomes)
}

async fn apply_index(
    c: &mut AsyncPgConnection,
    tenant: &str,
    changes: IndexChanges,
) -> StoreResult<()> {
    let mut changes = changes;
    let prefixes = std::mem::take(&mut changes.inserts.text_prefixes);
    hearth_store::apply_index_changes!(c, tenant, changes, await)?;
    for (sql, binds) in text_prefix_inserts(tenant, prefixes, Placeholders::Numbered) {
        PreparedSql::new(sql, binds).execute(c).await?;
    }
    Ok(())
}

/// Which condition drives a search, from capped counts of each.
async fn driver(
    c: &mut AsyncPgConnection,
    common: &CommonConditions,
    tenant: &str,
    q: &SearchQuery,
) -> StoreResult<Driver> {
    let mut choice = DriverChoice::new(tenant, q, Placeholders::Numbered, common);
    while let Some((sql, binds)) = choice.next_statement() {
        let rows: Vec<EstimateRow> = PreparedSql::new(sql, binds).load(c).await?;
        choice.counted(rows.iter().map(EstimateRow::pair).collect());
    }
    Ok(choice.driver())
}

impl hearth_store::Store for PgStore {
    async fn migrate(&self) -> StoreResult<Vec<String>> {
        let mut c = self.conn().await?;
        let ran = migrate(&mut c).await?;
        // Statistics for what is there already (an upgrade, a restored dump).
        self.analyze_soon();
        Ok(ran)
    }

    async fn read_current(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
    ) -> StoreResult<Option<StoredVersion>> {
        let mut c = self.conn().await?;
        resources::table
            .find((tenant, res_type, id))
            .select(VersionRow::as_select())
            .first(&mut c)
            .await
            .optional()
            .map(|r| r.map(StoredVersion::from))
            .map_err(StoreError::from)
    }

    async fn read_version(
        &self,
        tenant: &str,
        res_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredVersion>> {
        let mut c = self.conn().await?;
        resource_history::table
            .filter(resource_history::tenant.eq(tenant))
            .filter(resource_history::res_type.eq(res_type))
            .filter(resource_history::id.eq(id))
            .filter(resource_history::version.eq(version))
            .select(history_version_columns())
            .first::<VersionRow>(&mut c)
            .await
            .optional()
            .map(|r| r.map(StoredVersion::from))
            .map_err(StoreError::from)
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
        let n = writes.len() as u64;
        let one = match writes.as_slice() {
            [(w, _)] => Some((w.res_type.to_owned(), w.id.to_owned(), w.kind)),
            _ => None,
        };
        let mut c = self.conn().await?;
        let c: &mut AsyncPgConnection = &mut c;
        let outcomes = c
            .transaction::<_, WriteAllError, _>(async |c| {
                let outcomes = write_all_tx(c, tenant, writes).await?;
                if let Some(file) = imported {
                    diesel::insert_into(imported_files::table)
                        .values(&file)
                        .execute(c)
                        .await?;
                }
                let one = one
                    .as_ref()
                    .map(|(t, id, kind)| (t.as_str(), id.as_str(), *kind));
                if let Some(row) = audit.as_ref().and_then(|a| a.for_writes(one, &outcomes)) {
                    diesel::insert_into(audit_pending::table)
                        .values(&row)
                        .execute(c)
                        .await?;
                }
                Ok(outcomes)
            })
            .await;
        if outcomes.is_ok() {
            self.count_writes(n);
        }
        outcomes
    }

    async fn is_imported(&self, tenant: &str, digest: &str) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let n: i64 = imported_files::table
            .filter(imported_files::tenant.eq(tenant))
            .filter(imported_files::digest.eq(digest))
            .count()
            .get_result(&mut c)
            .await?;
        Ok(n > 0)
    }

    async fn record_import(&self, file: ImportedFile) -> StoreResult<()> {
        let mut c = self.conn().await?;
        diesel::insert_into(imported_files::table)
            .values(&file)
            .on_conflict_do_nothing()
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn save_export(&self, job: ExportJob) -> StoreResult<()> {
        // ON CONFLICT … DO UPDATE … WHERE: a cancelled job is not revived.
        use diesel::query_dsl::methods::FilterDsl as _;
        let mut c = self.conn().await?;
        diesel::insert_into(export_jobs::table)
            .values(&job)
            .on_conflict((export_jobs::tenant, export_jobs::id))
            .do_update()
            .set(&job)
            .filter(export_jobs::status.ne("cancelled"))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn export_job(&self, tenant: &str, id: &str) -> StoreResult<Option<ExportJob>> {
        let mut c = self.conn().await?;
        Ok(export_jobs::table
            .find((tenant, id))
            .first::<ExportJob>(&mut c)
            .await
            .optional()?)
    }

    async fn add_export_part(&self, part: ExportPart) -> StoreResult<()> {
        let mut c = self.conn().await?;
        diesel::insert_into(export_parts::table)
            .values(&part)
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn export_part(
        &self,
        tenant: &str,
        job_id: &str,
        file: &str,
        part: i64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let mut c = self.conn().await?;
        Ok(export_parts::table
            .find((tenant, job_id, file, part))
            .select(export_parts::data)
            .first::<Vec<u8>>(&mut c)
            .await
            .optional()?)
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
        let mut c = self.conn().await?;
        // One lock per tenant's chain, held to the end of the transaction.
        let lock = AUDIT_LOCK_BASE ^ i64::from(fnv32(tenant.as_bytes()));
        c.transaction::<_, StoreError, _>(async move |c| {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({lock})"))
                .execute(c)
                .await?;
            let recovered: Vec<PendingAudit> = match recover_before {
                Some(before) => {
                    let rows = audit_pending::table
                        .filter(audit_pending::tenant.eq(&tenant))
                        .filter(audit_pending::recorded_at.lt(before))
                        .order(audit_pending::id.asc())
                        .select((audit_pending::id, PENDING_AUDIT_COLUMNS))
                        .load::<(i64, PendingAudit)>(c)
                        .await?;
                    let rows: Vec<(i64, PendingAudit)> = rows
                        .into_iter()
                        .filter(|(_, r)| !keep.contains(&r.token))
                        .collect();
                    let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
                    for chunk in ids.chunks(500) {
                        diesel::delete(
                            audit_pending::table.filter(audit_pending::id.eq_any(chunk)),
                        )
                        .execute(c)
                        .await?;
                    }
                    rows.into_iter().map(|(_, r)| r).collect()
                }
                None => Vec::new(),
            };
            if !replaces.is_empty() {
                diesel::delete(
                    audit_pending::table
                        .filter(audit_pending::tenant.eq(&tenant))
                        .filter(audit_pending::token.eq_any(&replaces)),
                )
                .execute(c)
                .await?;
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
                .await
                .optional()?;
            // An empty table after retention continues from the anchor.
            let last = match last {
                Some(l) => Some(l),
                None => audit_anchors::table
                    .find(&tenant)
                    .select((audit_anchors::seq, audit_anchors::hash))
                    .first(c)
                    .await
                    .optional()?,
            };
            let seq = hearth_store::link_audit_rows(&mut events, last, seal)?;
            for chunk in events.chunks(500) {
                diesel::insert_into(audit_events::table)
                    .values(chunk)
                    .execute(c)
                    .await?;
            }
            Ok(seq)
        })
        .await
    }

    async fn audit_events(
        &self,
        tenant: &str,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        let mut c = self.conn().await?;
        Ok(audit_events::table
            .filter(audit_events::tenant.eq(tenant))
            .filter(audit_events::seq.gt(after))
            .order(audit_events::seq.asc())
            .limit(limit)
            .load(&mut c)
            .await?)
    }

    async fn prune_audit(&self, tenant: &str, before: i64) -> StoreResult<u64> {
        let mut c = self.conn().await?;
        let lock = AUDIT_LOCK_BASE ^ i64::from(fnv32(tenant.as_bytes()));
        let tenant = tenant.to_owned();
        c.transaction::<_, StoreError, _>(async move |c| {
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({lock})"))
                .execute(c)
                .await?;
            let last: Option<(i64, Vec<u8>)> = audit_events::table
                .filter(audit_events::tenant.eq(&tenant))
                .filter(audit_events::recorded_at.lt(before))
                .order(audit_events::seq.desc())
                .select((audit_events::seq, audit_events::hash))
                .first(c)
                .await
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
                .execute(c)
                .await?;
            let n = diesel::delete(
                audit_events::table
                    .filter(audit_events::tenant.eq(&tenant))
                    .filter(audit_events::seq.le(seq)),
            )
            .execute(c)
            .await?;
            Ok(n as u64)
        })
        .await
    }

    async fn audit_anchor(&self, tenant: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let mut c = self.conn().await?;
        Ok(audit_anchors::table
            .find(tenant)
            .select((audit_anchors::seq, audit_anchors::hash))
            .first(&mut c)
            .await
            .optional()?)
    }

    async fn user(&self, tenant: &str, name: &str) -> StoreResult<Option<User>> {
        let mut c = self.conn().await?;
        Ok(users::table
            .find((tenant, name))
            .first::<User>(&mut c)
            .await
            .optional()?)
    }

    async fn users(&self, tenant: &str) -> StoreResult<Vec<User>> {
        let mut c = self.conn().await?;
        Ok(users::table
            .filter(users::tenant.eq(tenant))
            .order(users::name.asc())
            .load(&mut c)
            .await?)
    }

    async fn users_changed_since(&self, tenant: &str, since: i64) -> StoreResult<Vec<String>> {
        let mut c = self.conn().await?;
        Ok(users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::updated_at.ge(since))
            .select(users::name)
            .load(&mut c)
            .await?)
    }

    async fn change_user(&self, tenant: &str, name: &str, change: UserChange) -> StoreResult<bool> {
        let mut c = self.conn().await?;
        let n = diesel::update(
            users::table
                .find((tenant, name))
                .filter(users::source.eq("local")),
        )
        .set(&change)
        .execute(&mut c)
        .await?;
        Ok(n > 0)
    }

    async fn save_user(&self, user: User) -> StoreResult<()> {
        let mut c = self.conn().await?;
        diesel::insert_into(users::table)
            .values(&user)
            .on_conflict((users::tenant, users::name))
            .do_update()
            .set(&user)
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn record_login_failure(
        &self,
        tenant: &str,
        name: &str,
        now: i64,
        max_failures: i32,
        lock_micros: i64,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let row = users::table.find((tenant, name));
        diesel::update(row)
            .set((
                users::failed_logins.eq(users::failed_logins + 1),
                users::updated_at.eq(now),
            ))
            .execute(&mut c)
            .await?;
        diesel::update(row.filter(users::failed_logins.ge(max_failures)))
            .set((
                users::failed_logins.eq(0),
                users::locked_until.eq(now + lock_micros),
            ))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn record_login_success(&self, tenant: &str, name: &str) -> StoreResult<()> {
        let mut c = self.conn().await?;
        diesel::update(users::table.find((tenant, name)))
            .set(users::failed_logins.eq(0))
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn delete_export(&self, tenant: &str, id: &str, job: bool) -> StoreResult<()> {
        let mut c = self.conn().await?;
        diesel::delete(
            export_parts::table
                .filter(export_parts::tenant.eq(tenant))
                .filter(export_parts::job_id.eq(id)),
        )
        .execute(&mut c)
        .await?;
        if job {
            diesel::delete(export_jobs::table.find((tenant, id)))
                .execute(&mut c)
                .await?;
        }
        Ok(())
    }

    async fn history(&self, tenant: &str, q: &HistoryQuery<'_>) -> StoreResult<Vec<HistoryEntry>> {
        let mut c = self.conn().await?;
        let mut query = resource_history::table
            .filter(resource_history::tenant.eq(tenant))
            .into_boxed();
        match q.scope {
            HistoryScope::System => {}
            HistoryScope::Type(t) => query = query.filter(resource_history::res_type.eq(t)),
            HistoryScope::Instance(t, id) => {
                query = query
                    .filter(resource_history::res_type.eq(t))
                    .filter(resource_history::id.eq(id));
            }
        }
        if let Some(s) = q.since {
            query = query.filter(resource_history::last_updated.ge(s));
        }
        if let Some(b) = q.before_seq {
            query = query.filter(resource_history::seq.lt(b));
        }
        // Within one resource, versions follow write order: ordering by version
        // lets the (tenant, type, id, version) key serve the whole query.
        query = match q.scope {
            HistoryScope::Instance(..) => query.order(resource_history::version.desc()),
            _ => query.order(resource_history::seq.desc()),
        };
        let rows: Vec<(i64, VersionRow)> = query
            .limit(i64::from(q.limit))
            .select((resource_history::seq, history_version_columns()))
            .load(&mut c)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(|(seq, r)| HistoryEntry {
                seq,
                version: r.into(),
            })
            .collect())
    }

    async fn search(&self, tenant: &str, q: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let mut c = self.conn().await?;
        let c: &mut AsyncPgConnection = &mut c;
        // The estimates only choose the plan; the search itself is one
        // statement, or several in one repeatable-read transaction so that
        // every statement sees the same snapshot.
        let driver = driver(c, &self.common, tenant, q).await?;
        let mut statements = search_sql(tenant, q, Placeholders::Numbered, driver);
        if statements.len() == 1
            && let Some((sql, binds)) = statements.pop()
        {
            let rows: Vec<SearchRow> = PreparedSql::new(sql, binds).load(c).await?;
            return Ok(rows.into_iter().map(SearchHit::from).collect());
        }
        c.build_transaction()
            .read_only()
            .repeatable_read()
            .run::<_, StoreError, _>(async |c| {
                let mut hits = Vec::new();
                for (sql, binds) in statements {
                    if hits.len() >= q.limit as usize {
                        break;
                    }
                    let rows: Vec<SearchRow> = PreparedSql::new(sql, binds).load(c).await?;
                    hits.extend(rows.into_iter().map(SearchHit::from));
                }
                hits.truncate(q.limit as usize);
                Ok(hits)
            })
            .await
    }

    async fn compartment_page(
        &self,
        tenant: &str,
        q: &CompartmentQuery,
    ) -> StoreResult<Vec<SearchHit>> {
        let (sql, binds) = compartment_sql(tenant, q, Placeholders::Numbered);
        let mut c = self.conn().await?;
        let rows: Vec<SearchRow> = PreparedSql::new(sql, binds).load(&mut c).await?;
        Ok(rows.into_iter().map(SearchHit::from).collect())
    }

    async fn add_reindex_job(&self, tenant: &str, name: &str, reason: &str) -> StoreResult<()> {
        let mut c = self.conn().await?;
        diesel::insert_into(reindex_jobs::table)
            .values(NewReindexJob::new(tenant, name, reason))
            .on_conflict_do_nothing()
            .execute(&mut c)
            .await?;
        Ok(())
    }

    async fn reindex_jobs(&self) -> StoreResult<Vec<ReindexJob>> {
        let mut c = self.conn().await?;
        let rows: Vec<ReindexJobRow> = reindex_jobs::table
            .select(ReindexJobRow::as_select())
            .order((reindex_jobs::created_at, reindex_jobs::name))
            .load(&mut c)
            .await?;
        Ok(rows.into_iter().map(ReindexJob::from).collect())
    }

    async fn reindex_batch(
        &self,
        tenant: &str,
        after: (&str, &str),
        limit: u32,
    ) -> StoreResult<Vec<StoredVersion>> {
        let mut c = self.conn().await?;
        let (t, id) = after;
        let rows: Vec<VersionRow> = resources::table
            .filter(resources::tenant.eq(tenant))
            .filter(resources::deleted.eq(false))
            .filter(
                resources::res_type
                    .gt(t)
                    .or(resources::res_type.eq(t).and(resources::id.gt(id))),
            )
            .order((resources::res_type, resources::id))
            .limit(i64::from(limit))
            .select(VersionRow::as_select())
            .load(&mut c)
            .await?;
        Ok(rows.into_iter().map(StoredVersion::from).collect())
    }

    async fn reindex_apply(
        &self,
        job: &ReindexJob,
        batch: Vec<Reindexed>,
        finished: bool,
    ) -> StoreResult<()> {
        let mut c = self.conn().await?;
        let c: &mut AsyncPgConnection = &mut c;
        c.transaction::<_, StoreError, _>(async |c| {
            let mut index = IndexChanges::default();
            for r in &batch {
                // Only if no write came since the version was read (the row lock
                // keeps one from coming before this transaction ends).
                let current: Option<(i64, bool)> = resources::table
                    .find((&job.tenant, &r.res_type, &r.id))
                    .select((resources::version, resources::deleted))
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                if current == Some((r.version, false)) {
                    index.delete(&r.res_type, &r.id);
                    index.insert(&job.tenant, &r.res_type, &r.id, &r.index, r.last_updated);
                }
            }
            apply_index(c, &job.tenant, index).await?;
            diesel::update(reindex_jobs::table.find((&job.tenant, &job.name)))
                .set(ReindexProgress::after(job, &batch, finished))
                .execute(c)
                .await?;
            Ok(())
        })
        .await?;
        if finished {
            self.analyze_soon();
        }
        Ok(())
    }

    async fn count(&self, tenant: &str, q: &SearchQuery) -> StoreResult<u64> {
        let mut c = self.conn().await?;
        let driver = driver(&mut c, &self.common, tenant, q).await?;
        let (sql, binds) = count_sql(tenant, q, Placeholders::Numbered, driver);
        let row: CountRow = PreparedSql::new(sql, binds).get_result(&mut c).await?;
        Ok(u64::try_from(row.n).unwrap_or(0))
    }

    async fn data_keys(&self, tenant: &str) -> StoreResult<Vec<WrappedKey>> {
        let mut c = self.conn().await?;
        data_keys::table
            .filter(data_keys::tenant.eq(tenant))
            .order(data_keys::created_at.asc())
            .select(KeyRow::as_select())
            .load(&mut c)
            .await
            .map(|rows| rows.into_iter().map(WrappedKey::from).collect())
            .map_err(StoreError::from)
    }

    async fn add_data_key(&self, tenant: &str, key: &WrappedKey) -> StoreResult<()> {
        let row = KeyRow::new(tenant, key);
        let mut c = self.conn().await?;
        let c: &mut AsyncPgConnection = &mut c;
        c.transaction::<_, DieselError, _>(async |c| {
            if row.active {
                diesel::update(
                    data_keys::table
                        .filter(data_keys::tenant.eq(&row.tenant))
                        .filter(data_keys::purpose.eq(&row.purpose)),
                )
                .set(data_keys::active.eq(false))
                .execute(c)
                .await?;
            }
            diesel::insert_into(data_keys::table)
                .values(&row)
                .execute(c)
                .await
        })
        .await
        .map(|_| ())
        .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_migration_file_is_listed() {
        hearth_store::assert_migrations_listed(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/postgres"),
            super::MIGRATIONS,
        );
    }
}
