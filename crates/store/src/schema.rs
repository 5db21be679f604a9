//! Table definitions shared by both backends. Must match `schema/*/` migrations;
//! the behavioural suite of each backend exercises every column.

diesel::table! {
    data_keys (tenant, key_id) {
        tenant -> Text,
        key_id -> Text,
        master_key_id -> Text,
        wrapped -> Binary,
        created_at -> BigInt,
        active -> Bool,
        purpose -> Text,
    }
}

diesel::table! {
    resources (tenant, res_type, id) {
        tenant -> Text,
        res_type -> Text,
        id -> Text,
        version -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        key_id -> Nullable<Text>,
        nonce -> Nullable<Binary>,
        body -> Nullable<Binary>,
    }
}

diesel::table! {
    resource_history (seq) {
        seq -> BigInt,
        tenant -> Text,
        res_type -> Text,
        id -> Text,
        version -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
        key_id -> Nullable<Text>,
        nonce -> Nullable<Binary>,
        body -> Nullable<Binary>,
    }
}

diesel::table! {
    hearth_migrations (name) {
        name -> Text,
        checksum -> Text,
        applied_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(resources, resource_history);

use crate::{Micros, SealedBody, StoredVersion, WrappedKey};
use diesel::prelude::*;

/// A version row as selected from `resources` or `resource_history`.
#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = resources)]
pub struct VersionRow {
    pub res_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated: i64,
    pub deleted: bool,
    pub key_id: Option<String>,
    pub nonce: Option<Vec<u8>>,
    pub body: Option<Vec<u8>>,
}

impl From<VersionRow> for StoredVersion {
    fn from(r: VersionRow) -> Self {
        let body = match (r.key_id, r.nonce, r.body) {
            (Some(key_id), Some(nonce), Some(ciphertext)) => Some(SealedBody {
                key_id,
                nonce,
                ciphertext,
            }),
            _ => None,
        };
        StoredVersion {
            res_type: r.res_type,
            id: r.id,
            version: r.version,
            last_updated: r.last_updated,
            deleted: r.deleted,
            body,
        }
    }
}

/// The columns of a new version, inserted into both tables.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = resources, treat_none_as_null = true)]
pub struct NewVersion<'a> {
    pub tenant: &'a str,
    pub res_type: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub last_updated: Micros,
    pub deleted: bool,
    pub key_id: Option<&'a str>,
    pub nonce: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
}

#[derive(Insertable)]
#[diesel(table_name = resource_history)]
pub struct NewHistoryVersion<'a> {
    pub tenant: &'a str,
    pub res_type: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub last_updated: Micros,
    pub deleted: bool,
    pub key_id: Option<&'a str>,
    pub nonce: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
}

impl<'a> NewVersion<'a> {
    pub fn new(
        tenant: &'a str,
        intent: &'a crate::WriteIntent<'a>,
        version: i64,
        body: Option<&'a SealedBody>,
    ) -> Self {
        NewVersion {
            tenant,
            res_type: intent.res_type,
            id: intent.id,
            version,
            last_updated: intent.last_updated,
            deleted: body.is_none(),
            key_id: body.map(|b| b.key_id.as_str()),
            nonce: body.map(|b| b.nonce.as_slice()),
            body: body.map(|b| b.ciphertext.as_slice()),
        }
    }

    pub fn history(&self) -> NewHistoryVersion<'a> {
        NewHistoryVersion {
            tenant: self.tenant,
            res_type: self.res_type,
            id: self.id,
            version: self.version,
            last_updated: self.last_updated,
            deleted: self.deleted,
            key_id: self.key_id,
            nonce: self.nonce,
            body: self.body,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = data_keys)]
pub struct KeyRow {
    pub tenant: String,
    pub key_id: String,
    pub master_key_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: i64,
    pub active: bool,
    pub purpose: String,
}

impl From<KeyRow> for WrappedKey {
    fn from(r: KeyRow) -> Self {
        WrappedKey {
            key_id: r.key_id,
            master_key_id: r.master_key_id,
            wrapped: r.wrapped,
            created_at: r.created_at,
            active: r.active,
            purpose: r.purpose,
        }
    }
}

impl KeyRow {
    pub fn new(tenant: &str, k: &WrappedKey) -> Self {
        KeyRow {
            tenant: tenant.to_owned(),
            key_id: k.key_id.clone(),
            master_key_id: k.master_key_id.clone(),
            wrapped: k.wrapped.clone(),
            created_at: k.created_at,
            active: k.active,
            purpose: k.purpose.clone(),
        }
    }
}

/// The history columns in the shape of [`VersionRow`].
pub fn history_version_columns() -> (
    resource_history::res_type,
    resource_history::id,
    resource_history::version,
    resource_history::last_updated,
    resource_history::deleted,
    resource_history::key_id,
    resource_history::nonce,
    resource_history::body,
) {
    (
        resource_history::res_type,
        resource_history::id,
        resource_history::version,
        resource_history::last_updated,
        resource_history::deleted,
        resource_history::key_id,
        resource_history::nonce,
        resource_history::body,
    )
}

diesel::table! {
    idx_token (tenant, res_type, res_id, param, system, code) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        system -> Text,
        code -> Text,
    }
}

diesel::table! {
    idx_reference (tenant, res_type, res_id, param, target_type, target_id, url) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        target_type -> Text,
        target_id -> Text,
        url -> Text,
    }
}

diesel::table! {
    idx_date (tenant, res_type, res_id, param, low, high) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        low -> BigInt,
        high -> BigInt,
    }
}

diesel::table! {
    idx_number (tenant, res_type, res_id, param, value) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        value -> Double,
        low -> Double,
        high -> Double,
    }
}

diesel::table! {
    idx_quantity (tenant, res_type, res_id, param, value) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        value -> Double,
        low -> Double,
        high -> Double,
        system -> Text,
        code -> Text,
        unit -> Text,
    }
}

diesel::table! {
    idx_uri (tenant, res_type, res_id, param, value) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        value -> Text,
    }
}

#[derive(Insertable)]
#[diesel(table_name = idx_number)]
pub struct NumberRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Insertable)]
#[diesel(table_name = idx_quantity)]
pub struct QuantityRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub system: String,
    pub code: String,
    pub unit: String,
}

#[derive(Insertable)]
#[diesel(table_name = idx_uri)]
pub struct UriRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub value: String,
}

/// The delete of one resource's rows in an index table (run by each backend).
#[macro_export]
macro_rules! delete_index_rows {
    ($table:ident, $tenant:expr, $res_type:expr, $res_id:expr) => {
        diesel::delete(
            $crate::schema::$table::table
                .filter($crate::schema::$table::tenant.eq($tenant))
                .filter($crate::schema::$table::res_type.eq($res_type))
                .filter($crate::schema::$table::res_id.eq($res_id)),
        )
    };
}

diesel::table! {
    idx_string_hash (tenant, res_type, res_id, param, hash) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        hash -> Binary,
    }
}

#[derive(Insertable)]
#[diesel(table_name = idx_string_hash)]
pub struct StringHashRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub hash: Vec<u8>,
}

diesel::table! {
    idx_text_prefix (tenant, prefix_hash, text_hash) {
        tenant -> Text,
        prefix_hash -> Binary,
        text_hash -> Binary,
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub struct TextPrefixRow {
    pub tenant: String,
    pub prefix_hash: Vec<u8>,
    pub text_hash: Vec<u8>,
}

#[derive(Insertable)]
#[diesel(table_name = idx_token)]
pub struct TokenRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub system: String,
    pub code: String,
}

#[derive(Insertable)]
#[diesel(table_name = idx_reference)]
pub struct ReferenceRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub target_type: String,
    pub target_id: String,
    pub url: String,
}

#[derive(Insertable)]
#[diesel(table_name = idx_date)]
pub struct DateRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub low: i64,
    pub high: i64,
}

diesel::table! {
    idx_sort (tenant, res_type, res_id, param) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        param -> Text,
        key_asc -> Binary,
        key_desc -> Binary,
    }
}

#[derive(Insertable)]
#[diesel(table_name = idx_sort)]
pub struct SortRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub param: String,
    pub key_asc: Vec<u8>,
    pub key_desc: Vec<u8>,
}

diesel::table! {
    reindex_jobs (tenant, name) {
        tenant -> Text,
        name -> Text,
        reason -> Text,
        done -> Bool,
        after_type -> Text,
        after_id -> Text,
        processed -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

/// A new reindex job, from the start.
#[derive(Insertable)]
#[diesel(table_name = reindex_jobs)]
pub struct NewReindexJob<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub reason: &'a str,
    pub done: bool,
    pub after_type: &'a str,
    pub after_id: &'a str,
    pub processed: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'a> NewReindexJob<'a> {
    pub fn new(tenant: &'a str, name: &'a str, reason: &'a str) -> Self {
        let now = crate::now_micros();
        NewReindexJob {
            tenant,
            name,
            reason,
            done: false,
            after_type: "",
            after_id: "",
            processed: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A reindex job's progress after a batch.
#[derive(AsChangeset)]
#[diesel(table_name = reindex_jobs)]
pub struct ReindexProgress {
    pub done: bool,
    pub after_type: String,
    pub after_id: String,
    pub processed: i64,
    pub updated_at: i64,
}

impl ReindexProgress {
    /// Where `job` stands once `batch` is applied.
    pub fn after(job: &crate::ReindexJob, batch: &[crate::Reindexed], finished: bool) -> Self {
        let (after_type, after_id) = batch
            .last()
            .map(|r| (r.res_type.clone(), r.id.clone()))
            .unwrap_or(job.after.clone());
        ReindexProgress {
            done: finished,
            after_type,
            after_id,
            processed: job.processed + i64::try_from(batch.len()).unwrap_or(0),
            updated_at: crate::now_micros(),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = reindex_jobs)]
pub struct ReindexJobRow {
    pub tenant: String,
    pub name: String,
    pub reason: String,
    pub done: bool,
    pub after_type: String,
    pub after_id: String,
    pub processed: i64,
}

impl From<ReindexJobRow> for crate::ReindexJob {
    fn from(r: ReindexJobRow) -> Self {
        crate::ReindexJob {
            tenant: r.tenant,
            name: r.name,
            reason: r.reason,
            done: r.done,
            after: (r.after_type, r.after_id),
            processed: r.processed,
        }
    }
}

diesel::table! {
    idx_compartment (tenant, res_type, res_id, compartment, comp_id) {
        tenant -> Text,
        res_type -> Text,
        res_id -> Text,
        compartment -> Text,
        comp_id -> Text,
    }
}

#[derive(Insertable)]
#[diesel(table_name = idx_compartment)]
pub struct CompartmentRow {
    pub tenant: String,
    pub res_type: String,
    pub res_id: String,
    pub compartment: String,
    pub comp_id: String,
}

/// Index rows, split by table, ready to insert.
#[derive(Default)]
pub struct IndexInserts {
    pub numbers: Vec<NumberRow>,
    pub quantities: Vec<QuantityRow>,
    pub uris: Vec<UriRow>,
    pub string_hashes: Vec<StringHashRow>,
    pub tokens: Vec<TokenRow>,
    pub references: Vec<ReferenceRow>,
    pub dates: Vec<DateRow>,
    pub sorts: Vec<SortRow>,
    pub compartments: Vec<CompartmentRow>,
    /// Dictionary entries (inserted unless present, never deleted with a resource).
    pub text_prefixes: Vec<TextPrefixRow>,
}

/// Rows per insert statement: well under the bind limits of both databases
/// (SQLite 32,766; PostgreSQL 65,535) for the widest index table.
pub const INSERT_CHUNK: usize = 2_000;

/// Index changes gathered over several writes: the resources whose rows go
/// (by type) and the rows that come. Applied with one delete per table and
/// type and chunked inserts, so a bundle of hundreds of resources costs a few
/// dozen statements, not thousands.
#[derive(Default)]
pub struct IndexChanges {
    pub deletes: std::collections::BTreeMap<String, Vec<String>>,
    pub inserts: IndexInserts,
    /// The resources touched so far; a second change to one of them must
    /// wait until these are applied (see [`IndexChanges::touches`]).
    touched: std::collections::HashSet<(String, String)>,
}

impl IndexChanges {
    /// Whether a change to this resource is already gathered.
    pub fn touches(&self, res_type: &str, id: &str) -> bool {
        self.touched.contains(&(res_type.to_owned(), id.to_owned()))
    }

    /// The resource's current rows go (it existed before this write).
    pub fn delete(&mut self, res_type: &str, id: &str) {
        self.touched.insert((res_type.to_owned(), id.to_owned()));
        self.deletes
            .entry(res_type.to_owned())
            .or_default()
            .push(id.to_owned());
    }

    /// These rows come for the resource.
    pub fn insert(
        &mut self,
        tenant: &str,
        res_type: &str,
        id: &str,
        rows: &[crate::IndexRow],
        last_updated: crate::Micros,
    ) {
        self.touched.insert((res_type.to_owned(), id.to_owned()));
        self.inserts
            .append(IndexInserts::new(tenant, res_type, id, rows, last_updated));
    }

    pub fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }
}

/// The bookkeeping of `Store::write_all` that both backends share: the
/// outcomes so far, the versions written earlier in the set (a later write of
/// the same resource sees them), and the index changes still to apply.
#[derive(Default)]
pub struct WriteSet {
    pub outcomes: Vec<crate::WriteOutcome>,
    pub index: IndexChanges,
    written: std::collections::HashMap<(String, String), (i64, bool)>,
}

impl WriteSet {
    /// The `(version, deleted)` a write earlier in this set left.
    pub fn written(&self, res_type: &str, id: &str) -> Option<(i64, bool)> {
        self.written
            .get(&(res_type.to_owned(), id.to_owned()))
            .copied()
    }

    /// Records a write whose rows are in: its index changes (the caller
    /// applies those gathered so far first when [`IndexChanges::touches`]
    /// says the resource is among them) and its outcome.
    pub fn wrote(
        &mut self,
        tenant: &str,
        intent: &crate::WriteIntent<'_>,
        existed: bool,
        version: i64,
        created: bool,
    ) {
        if existed {
            self.index.delete(intent.res_type, intent.id);
        }
        let deleted = intent.kind == crate::WriteKind::Delete;
        if !deleted {
            self.index.insert(
                tenant,
                intent.res_type,
                intent.id,
                intent.index,
                intent.last_updated,
            );
        }
        self.written.insert(
            (intent.res_type.to_owned(), intent.id.to_owned()),
            (version, deleted),
        );
        self.outcomes
            .push(crate::WriteOutcome::Written { version, created });
    }
}

/// The statements adding the dictionary entries of one apply that are not
/// there yet (the same entry from several resources goes in once).
pub fn text_prefix_inserts(
    tenant: &str,
    mut rows: Vec<TextPrefixRow>,
    style: crate::search::Placeholders,
) -> Vec<(String, Vec<crate::search::Bind>)> {
    use crate::search::{Bind, Placeholders};
    rows.sort_unstable();
    rows.dedup();
    let mark = |n: usize| match style {
        Placeholders::Numbered => format!("${n}"),
        Placeholders::Question => format!("?{n}"),
    };
    rows.chunks(INSERT_CHUNK)
        .map(|chunk| {
            let mut binds = vec![Bind::Text(tenant.to_owned())];
            let mut values = Vec::with_capacity(chunk.len());
            for r in chunk {
                binds.push(Bind::Bytes(r.prefix_hash.clone()));
                binds.push(Bind::Bytes(r.text_hash.clone()));
                values.push(format!(
                    "({}, {}, {})",
                    mark(1),
                    mark(binds.len() - 1),
                    mark(binds.len())
                ));
            }
            let sql = format!(
                "INSERT INTO idx_text_prefix (tenant, prefix_hash, text_hash) VALUES {} \
                 ON CONFLICT DO NOTHING",
                values.join(", ")
            );
            (sql, binds)
        })
        .collect()
}

/// Applies [`IndexChanges`] on a connection (each backend expands it, with
/// `.await` after each statement on PostgreSQL): deletes first, then inserts.
/// The dictionary entries ([`IndexInserts::text_prefixes`]) are left to the
/// backend (see [`text_prefix_inserts`]).
#[macro_export]
macro_rules! apply_index_changes {
    ($c:expr, $tenant:expr, $changes:expr $(, $await:tt)?) => {{
        use $crate::schema::*;
        let changes: $crate::schema::IndexChanges = $changes;
        for (res_type, ids) in &changes.deletes {
            for ids in ids.chunks($crate::schema::INSERT_CHUNK) {
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_token $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_reference $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_date $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_string_hash $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_number $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_quantity $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_uri $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_sort $(, $await)?);
                $crate::apply_index_changes!(@delete $c, $tenant, res_type, ids, idx_compartment $(, $await)?);
            }
        }
        let rows = changes.inserts;
        $crate::apply_index_changes!(@insert $c, idx_token, rows.tokens $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_reference, rows.references $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_date, rows.dates $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_string_hash, rows.string_hashes $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_number, rows.numbers $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_quantity, rows.quantities $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_uri, rows.uris $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_sort, rows.sorts $(, $await)?);
        $crate::apply_index_changes!(@insert $c, idx_compartment, rows.compartments $(, $await)?);
        Ok::<(), $crate::StoreError>(())
    }};
    (@delete $c:expr, $tenant:expr, $res_type:expr, $ids:expr, $table:ident $(, $await:tt)?) => {
        diesel::delete(
            $table::table
                .filter($table::tenant.eq($tenant))
                .filter($table::res_type.eq($res_type))
                .filter($table::res_id.eq_any($ids)),
        )
        .execute($c)$(.$await)??;
    };
    (@insert $c:expr, $table:ident, $rows:expr $(, $await:tt)?) => {
        for chunk in $rows.chunks($crate::schema::INSERT_CHUNK) {
            diesel::insert_into($table::table)
                .values(chunk)
                .execute($c)$(.$await)??;
        }
    };
}

impl IndexInserts {
    /// Moves every row of `other` into `self`.
    pub fn append(&mut self, mut other: IndexInserts) {
        self.numbers.append(&mut other.numbers);
        self.quantities.append(&mut other.quantities);
        self.uris.append(&mut other.uris);
        self.string_hashes.append(&mut other.string_hashes);
        self.tokens.append(&mut other.tokens);
        self.references.append(&mut other.references);
        self.dates.append(&mut other.dates);
        self.sorts.append(&mut other.sorts);
        self.compartments.append(&mut other.compartments);
        self.text_prefixes.append(&mut other.text_prefixes);
    }

    pub fn new(
        tenant: &str,
        res_type: &str,
        res_id: &str,
        rows: &[crate::IndexRow],
        last_updated: crate::Micros,
    ) -> Self {
        let mut out = IndexInserts::default();
        let (t, rt, id) = (tenant.to_owned(), res_type.to_owned(), res_id.to_owned());
        out.sorts = crate::search::sort_keys(rows, last_updated)
            .into_iter()
            .map(|(param, key_asc, key_desc)| SortRow {
                tenant: t.clone(),
                res_type: rt.clone(),
                res_id: id.clone(),
                param,
                key_asc,
                key_desc,
            })
            .collect();
        for row in rows {
            match row {
                crate::IndexRow::Token {
                    param,
                    system,
                    code,
                } => out.tokens.push(TokenRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    param: param.clone(),
                    system: system.clone(),
                    code: code.clone(),
                }),
                crate::IndexRow::Reference {
                    param,
                    target_type,
                    target_id,
                    url,
                } => out.references.push(ReferenceRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    param: param.clone(),
                    target_type: target_type.clone(),
                    target_id: target_id.clone(),
                    url: url.clone(),
                }),
                crate::IndexRow::Number {
                    param,
                    value,
                    low,
                    high,
                } => out.numbers.push(NumberRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    param: param.clone(),
                    value: *value,
                    low: *low,
                    high: *high,
                }),
                crate::IndexRow::Quantity {
                    param,
                    value,
                    low,
                    high,
                    system,
                    code,
                    unit,
                    base: _,
                } => out.quantities.push(QuantityRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    param: param.clone(),
                    value: *value,
                    low: *low,
                    high: *high,
                    system: system.clone(),
                    code: code.clone(),
                    unit: unit.clone(),
                }),
                crate::IndexRow::Uri { param, value } => out.uris.push(UriRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    param: param.clone(),
                    value: value.clone(),
                }),
                crate::IndexRow::StringHash { param, hash } => {
                    out.string_hashes.push(StringHashRow {
                        tenant: t.clone(),
                        res_type: rt.clone(),
                        res_id: id.clone(),
                        param: param.clone(),
                        hash: hash.clone(),
                    })
                }
                crate::IndexRow::Compartment {
                    compartment,
                    id: comp_id,
                } => out.compartments.push(CompartmentRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    compartment: compartment.clone(),
                    comp_id: comp_id.clone(),
                }),
                crate::IndexRow::TextPrefix { prefix, text } => {
                    out.text_prefixes.push(TextPrefixRow {
                        tenant: t.clone(),
                        prefix_hash: prefix.clone(),
                        text_hash: text.clone(),
                    })
                }
                crate::IndexRow::Date { param, low, high } => out.dates.push(DateRow {
                    tenant: t.clone(),
                    res_type: rt.clone(),
                    res_id: id.clone(),
                    param: param.clone(),
                    low: *low,
                    high: *high,
                }),
            }
        }
        out
    }
}

/// A row of the estimates of a search: a condition's index and its capped count.
#[derive(QueryableByName)]
pub struct EstimateRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub i: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

impl EstimateRow {
    /// (condition index, capped count), as `search::DriverChoice::counted` takes them.
    pub fn pair(&self) -> (usize, u64) {
        (
            usize::try_from(self.i).unwrap_or(usize::MAX),
            u64::try_from(self.n).unwrap_or(0),
        )
    }
}

/// The one-column result of a count query.
#[derive(QueryableByName)]
pub struct CountRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub n: i64,
}

/// A search result row: the version and its sort keys (as many as the search
/// has, then nulls).
#[derive(QueryableByName)]
pub struct SearchRow {
    #[diesel(embed)]
    pub version: VersionRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    pub sort1: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    pub sort2: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    pub sort3: Option<Vec<u8>>,
}

impl From<SearchRow> for crate::search::SearchHit {
    fn from(r: SearchRow) -> Self {
        let keys = [r.sort1, r.sort2, r.sort3]
            .into_iter()
            .map_while(|k| k)
            .collect();
        let cursor = crate::search::Cursor {
            keys,
            id: r.version.id.clone(),
            backward: false,
        };
        crate::search::SearchHit {
            version: r.version.into(),
            cursor,
        }
    }
}

diesel::table! {
    imported_files (tenant, digest) {
        tenant -> Text,
        digest -> Text,
        path -> Text,
        resources -> BigInt,
        imported_at -> BigInt,
    }
}

/// A file loaded by the bulk import.
#[derive(Insertable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = imported_files)]
pub struct ImportedFile {
    pub tenant: String,
    pub digest: String,
    pub path: String,
    pub resources: i64,
    pub imported_at: i64,
}

diesel::table! {
    export_jobs (tenant, id) {
        tenant -> Text,
        id -> Text,
        status -> Text,
        request -> Text,
        params -> Text,
        transaction_time -> BigInt,
        progress -> Text,
        output -> Text,
        error -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

/// A Bulk Data export: what was asked, where it is, what it produced (the
/// manifest's `output` as JSON). `params` and `output` are JSON text the
/// service reads; the store keeps them as they are.
#[derive(Insertable, Queryable, AsChangeset, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = export_jobs)]
pub struct ExportJob {
    pub tenant: String,
    pub id: String,
    /// `accepted`, `running`, `done`, `failed` or `cancelled`.
    pub status: String,
    pub request: String,
    pub params: String,
    pub transaction_time: i64,
    pub progress: String,
    pub output: String,
    pub error: String,
    pub created_at: i64,
    pub updated_at: i64,
}

diesel::table! {
    export_parts (tenant, job_id, file, part) {
        tenant -> Text,
        job_id -> Text,
        file -> Text,
        part -> BigInt,
        data -> Binary,
    }
}

/// One part of an export's output file, sealed (the service encrypts it
/// under the tenant's data key before the store sees it).
#[derive(Insertable, Queryable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = export_parts)]
pub struct ExportPart {
    pub tenant: String,
    pub job_id: String,
    pub file: String,
    pub part: i64,
    pub data: Vec<u8>,
}

diesel::table! {
    users (tenant, name) {
        tenant -> Text,
        name -> Text,
        source -> Text,
        password_hash -> Nullable<Text>,
        external_id -> Nullable<Text>,
        roles -> Text,
        locked -> Bool,
        locked_until -> Nullable<BigInt>,
        failed_logins -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

/// A change to some columns of a local user's row (`None`: left as it is),
/// made by one `UPDATE`, so a concurrent change of another column is kept.
#[derive(AsChangeset, Clone, Debug, Default)]
#[diesel(table_name = users)]
pub struct UserChange {
    pub password_hash: Option<Option<String>>,
    pub roles: Option<String>,
    pub locked: Option<bool>,
    pub locked_until: Option<Option<i64>>,
    pub failed_logins: Option<i32>,
    pub updated_at: Option<i64>,
}

/// A user: of the local credential source (with a password hash), or the
/// shadow of an external identity (`source` `ldap`/`oidc`, no hash).
#[derive(Insertable, Queryable, AsChangeset, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = users, treat_none_as_null = true)]
pub struct User {
    pub tenant: String,
    pub name: String,
    pub source: String,
    pub password_hash: Option<String>,
    pub external_id: Option<String>,
    /// Space-separated role names.
    pub roles: String,
    pub locked: bool,
    pub locked_until: Option<i64>,
    pub failed_logins: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

diesel::table! {
    audit_events (tenant, seq) {
        tenant -> Text,
        seq -> BigInt,
        recorded_at -> BigInt,
        listener -> Text,
        request_id -> Text,
        user_name -> Nullable<Text>,
        client_id -> Nullable<Text>,
        source_addr -> Text,
        method -> Text,
        interaction -> Text,
        resource -> Nullable<Text>,
        patient -> Nullable<Text>,
        status -> Integer,
        detail -> Text,
        key_id -> Text,
        hash -> Binary,
    }
}

/// An audit row: one request, its caller, what it touched, its outcome, and
/// its link in the tenant's hash chain (`seq`, `hash` and `key_id` are set by
/// the store when the row is appended).
#[derive(Insertable, Queryable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub tenant: String,
    pub seq: i64,
    pub recorded_at: i64,
    pub listener: String,
    pub request_id: String,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub source_addr: String,
    pub method: String,
    pub interaction: String,
    /// `Type/id` or `Type/id/_history/version`, when the request named one.
    pub resource: Option<String>,
    /// The patient whose compartment the request touched, when known.
    pub patient: Option<String>,
    /// The HTTP status answered.
    pub status: i32,
    /// A short reason (no resource content).
    pub detail: String,
    pub key_id: String,
    pub hash: Vec<u8>,
}

impl AuditEvent {
    /// The bytes the chain MAC covers: every field but `hash` and `key_id`
    /// (the key is named, not covered), and the previous row's hash (`prev`,
    /// empty for the first row), each length-prefixed so no two rows share an
    /// encoding.
    pub fn chain_input(&self, prev: &[u8]) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        fn opt(out: &mut Vec<u8>, v: Option<&str>) {
            match v {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    field(out, s.as_bytes());
                }
            }
        }
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"hearth-audit-v1");
        field(&mut out, self.tenant.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.recorded_at.to_be_bytes());
        field(&mut out, self.listener.as_bytes());
        field(&mut out, self.request_id.as_bytes());
        opt(&mut out, self.user_name.as_deref());
        opt(&mut out, self.client_id.as_deref());
        field(&mut out, self.source_addr.as_bytes());
        field(&mut out, self.method.as_bytes());
        field(&mut out, self.interaction.as_bytes());
        opt(&mut out, self.resource.as_deref());
        opt(&mut out, self.patient.as_deref());
        out.extend_from_slice(&self.status.to_be_bytes());
        field(&mut out, self.detail.as_bytes());
        field(&mut out, prev);
        out
    }
}

diesel::table! {
    audit_anchors (tenant) {
        tenant -> Text,
        seq -> BigInt,
        hash -> Binary,
    }
}

diesel::table! {
    audit_pending (id) {
        id -> BigInt,
        tenant -> Text,
        token -> Text,
        recorded_at -> BigInt,
        listener -> Text,
        request_id -> Text,
        user_name -> Nullable<Text>,
        client_id -> Nullable<Text>,
        source_addr -> Text,
        method -> Text,
        interaction -> Text,
        resource -> Nullable<Text>,
        patient -> Nullable<Text>,
        status -> Integer,
        detail -> Text,
    }
}

/// The columns of [`PendingAudit`], in its field order (everything but `id`).
pub type PendingAuditColumns = (
    audit_pending::tenant,
    audit_pending::token,
    audit_pending::recorded_at,
    audit_pending::listener,
    audit_pending::request_id,
    audit_pending::user_name,
    audit_pending::client_id,
    audit_pending::source_addr,
    audit_pending::method,
    audit_pending::interaction,
    audit_pending::resource,
    audit_pending::patient,
    audit_pending::status,
    audit_pending::detail,
);

/// [`PendingAuditColumns`] as a value for `select`.
pub const PENDING_AUDIT_COLUMNS: PendingAuditColumns = (
    audit_pending::tenant,
    audit_pending::token,
    audit_pending::recorded_at,
    audit_pending::listener,
    audit_pending::request_id,
    audit_pending::user_name,
    audit_pending::client_id,
    audit_pending::source_addr,
    audit_pending::method,
    audit_pending::interaction,
    audit_pending::resource,
    audit_pending::patient,
    audit_pending::status,
    audit_pending::detail,
);

/// A write's audit row, inserted in the write's transaction: what the
/// request was known to be when it wrote. The request's final row (with the
/// status it answered) replaces it when the audit writer links that row into
/// the chain; one a stopped process left behind is linked as it is.
/// `token` names the request (the caller's request id need not be unique).
#[derive(Insertable, Queryable, Clone, Debug, PartialEq, Eq)]
#[diesel(table_name = audit_pending)]
pub struct PendingAudit {
    pub tenant: String,
    pub token: String,
    pub recorded_at: i64,
    pub listener: String,
    pub request_id: String,
    pub user_name: Option<String>,
    pub client_id: Option<String>,
    pub source_addr: String,
    pub method: String,
    pub interaction: String,
    pub resource: Option<String>,
    pub patient: Option<String>,
    pub status: i32,
    pub detail: String,
}

impl PendingAudit {
    /// The row for a set of writes that kept something: for one resource
    /// written, its new version and the status a write like it answers (201
    /// when it created the resource, 204 for a delete, else 200). `None` when
    /// nothing was written.
    pub fn for_writes(
        &self,
        one: Option<(&str, &str, crate::WriteKind)>,
        outcomes: &[crate::WriteOutcome],
    ) -> Option<PendingAudit> {
        let written: Vec<(i64, bool)> = outcomes
            .iter()
            .filter_map(|o| match o {
                crate::WriteOutcome::Written { version, created } => Some((*version, *created)),
                _ => None,
            })
            .collect();
        let &(version, created) = written.first()?;
        let mut row = self.clone();
        if let (Some((t, id, kind)), [_]) = (one, written.as_slice()) {
            row.resource = Some(format!("{t}/{id}/_history/{version}"));
            row.status = match kind {
                crate::WriteKind::Delete => 204,
                crate::WriteKind::Put if created => 201,
                crate::WriteKind::Put => 200,
            };
        } else {
            row.status = 200;
        }
        Some(row)
    }

    /// The chain row this pending row becomes as it is (its request's final
    /// row never came).
    pub fn into_event(self) -> AuditEvent {
        AuditEvent {
            tenant: self.tenant,
            seq: 0,
            recorded_at: self.recorded_at,
            listener: self.listener,
            request_id: self.request_id,
            user_name: self.user_name,
            client_id: self.client_id,
            source_addr: self.source_addr,
            method: self.method,
            interaction: self.interaction,
            resource: self.resource,
            patient: self.patient,
            status: self.status,
            detail: self.detail,
            key_id: String::new(),
            hash: Vec::new(),
        }
    }
}
