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
#[derive(Queryable, Selectable)]
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
}

impl From<KeyRow> for WrappedKey {
    fn from(r: KeyRow) -> Self {
        WrappedKey {
            key_id: r.key_id,
            master_key_id: r.master_key_id,
            wrapped: r.wrapped,
            created_at: r.created_at,
            active: r.active,
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
