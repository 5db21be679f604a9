//! `batch` and `transaction` Bundles (R4 3.1.0.11): the entries of a
//! transaction are kept together or not at all, in one store transaction; the
//! entries of a batch each succeed or fail on their own.
//!
//! Entries are read and checked first (method, url, resource), every
//! `urn:uuid:`/`urn:oid:` fullUrl gets its server id, and references to them are
//! rewritten (`Reference.reference`, and links in narrative `div`s). A
//! transaction then writes in the order R4 gives — DELETE, POST, PUT — and
//! reads (GET) last; the response lists the entries in the order received.

use std::collections::{HashMap, HashSet};

use hearth_store::schema::ImportedFile;
use hearth_store::{Precondition, WriteIntent, WriteKind, WriteOutcome};

use crate::error::{ApiError, ErrorKind};
use crate::fhir::{self, Expect};
use crate::json::{Json, Object};
use crate::service::{
    DeleteResult, PatchKind, PreparedPut, ResourceVersion, Service, new_id, no_body,
};
use crate::time::now_micros;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleKind {
    Batch,
    Transaction,
}

/// What a Bundle sent to the base asks for.
pub struct BundleRequest {
    pub kind: BundleKind,
    entries: Vec<Entry>,
}

/// An entry's references rewritten: placeholders to the ids their entries
/// got, conditional references to the one resource each matches.
fn rewrite_entry(
    i: usize,
    op: &mut Op,
    ids: &HashMap<String, String>,
    found: &HashMap<String, String>,
) -> Result<(), ApiError> {
    if let Op::Put { resource, .. } = op {
        rewrite_references(resource, ids, found).map_err(|e| at_entry(i, e))?;
    }
    Ok(())
}

/// The outcome of one entry, in the order of the request.
#[derive(Debug)]
pub enum EntryResult {
    /// 201 (created) or 200 (updated).
    Written { created: bool, rv: ResourceVersion },
    /// 204, whether or not there was something to delete.
    Deleted { res_type: String, id: String },
    /// 200 with the resource.
    Read(ResourceVersion),
    /// 200 with a `searchset` Bundle of these matches (a `GET [type]?…`).
    SearchSet(Vec<ResourceVersion>),
    /// 200: a conditional create (`ifNoneExist`) found this resource, and
    /// nothing was written.
    Matched(ResourceVersion),
    /// The entry failed on its own (batch only).
    Failed(ApiError),
}

impl EntryResult {
    /// `entry.response.status`.
    pub fn status(&self) -> String {
        match self {
            EntryResult::Written { created: true, .. } => "201 Created".to_owned(),
            EntryResult::Written { created: false, .. }
            | EntryResult::Read(_)
            | EntryResult::SearchSet(_)
            | EntryResult::Matched(_) => "200 OK".to_owned(),
            EntryResult::Deleted { .. } => "204 No Content".to_owned(),
            EntryResult::Failed(e) => e.status().to_string(),
        }
    }
}

/// Matches a search entry returns without `_count`, and at most.
const SEARCH_ENTRY_COUNT: u32 = 20;
const SEARCH_ENTRY_MAX: u32 = 1000;

/// Search parameters of a conditional entry or reference.
type Criteria = Vec<(String, String)>;

#[derive(Debug)]
enum Op {
    /// POST (`create`, the id new) or PUT; `condition` makes it conditional
    /// (resolved by [`Service::resolve_conditions`] before anything runs).
    Put {
        create: bool,
        res_type: String,
        id: String,
        resource: Json,
        precondition: Precondition,
        condition: Option<Conditional>,
    },
    /// DELETE of `id`, or (`condition`) of what the search matches.
    Delete {
        res_type: String,
        id: String,
        condition: Option<Criteria>,
    },
    /// PATCH: a JSON Patch (a `Binary` entry) or a FHIRPath Patch (a
    /// `Parameters` entry) applied to the current version.
    Patch {
        res_type: String,
        id: String,
        kind: PatchKind,
        document: Json,
        if_match: Option<i64>,
    },
    /// A conditional create whose condition matched: nothing to write.
    Matched(ResourceVersion),
    /// A conditional delete whose condition matched nothing.
    NoMatch { res_type: String },
    Read {
        res_type: String,
        id: String,
        version: Option<i64>,
    },
    /// `GET [type]?…`: the first page of a search.
    Search {
        res_type: String,
        criteria: Criteria,
    },
}

#[derive(Debug)]
enum Conditional {
    /// POST with `ifNoneExist`: a match stands in for the create.
    IfNoneExist(Criteria),
    /// PUT `[type]?…`: the match is updated; without one, a create.
    Update(Criteria),
}

impl Op {
    fn order(&self) -> u8 {
        match self {
            Op::Delete { .. } => 0,
            Op::Put { create: true, .. } => 1,
            Op::Put { create: false, .. } | Op::Patch { .. } => 2,
            Op::Read { .. } | Op::Search { .. } | Op::Matched(_) | Op::NoMatch { .. } => 3,
        }
    }

    fn target(&self) -> (&str, &str) {
        match self {
            Op::Put { res_type, id, .. }
            | Op::Delete { res_type, id, .. }
            | Op::Patch { res_type, id, .. }
            | Op::Read { res_type, id, .. } => (res_type, id),
            Op::Matched(rv) => (&rv.res_type, &rv.id),
            Op::NoMatch { res_type } | Op::Search { res_type, .. } => (res_type, ""),
        }
    }
}

/// The criteria of a conditional URL's query (`identifier=a|b&…`).
fn criteria(query: &str) -> Criteria {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                crate::http::percent_decode(k),
                crate::http::percent_decode(v),
            )
        })
        .collect()
}

/// The resource of a put, validated as the single-resource path does.
fn check_put(
    create: bool,
    res_type: &str,
    id: &str,
    resource: Json,
) -> Result<crate::json::Object, ApiError> {
    let expect = if create {
        Expect::Create { res_type }
    } else {
        Expect::Update { res_type, id }
    };
    fhir::check_resource(resource, expect)
}

#[derive(Debug)]
struct Entry {
    /// The entry's op, or why it cannot be done (a batch answers it alone).
    op: Result<Op, ApiError>,
    /// Its fullUrl, when a placeholder (`urn:uuid:`, `urn:oid:`).
    full_url: Option<String>,
}

/// An error about entry `i`, saying so in every issue.
fn at_entry(i: usize, mut e: ApiError) -> ApiError {
    for issue in &mut e.issues {
        issue.diagnostics = format!("Bundle.entry[{i}]: {}", issue.diagnostics);
    }
    e
}

fn invalid(i: usize, msg: impl Into<String>) -> ApiError {
    at_entry(i, ApiError::invalid(msg))
}

fn string_at<'a>(o: &'a Object, name: &str) -> Option<&'a str> {
    o.get(name).and_then(Json::as_str)
}

/// Whether `s` is a placeholder fullUrl that the server resolves.
fn is_placeholder(s: &str) -> bool {
    s.starts_with("urn:uuid:") || s.starts_with("urn:oid:")
}

impl BundleRequest {
    /// Each entry's interaction, for the access check (None for an entry
    /// that is already an error).
    pub fn interactions(&self) -> Vec<Option<hearth_security::Interaction>> {
        use hearth_security::Interaction as I;
        self.entries
            .iter()
            .map(|e| {
                let op = e.op.as_ref().ok()?;
                Some(match op {
                    Op::Put {
                        create: true,
                        res_type,
                        ..
                    } => I::create(res_type),
                    Op::Put {
                        res_type,
                        condition: Some(Conditional::Update(_)),
                        ..
                    } => I::update_conditional(res_type),
                    Op::Put { res_type, id, .. } => I::update(res_type, id),
                    Op::Delete {
                        res_type,
                        condition: Some(_),
                        ..
                    } => I::delete_conditional(res_type),
                    Op::Delete { res_type, id, .. } => I::delete(res_type, id),
                    Op::Patch { res_type, id, .. } => I::patch(res_type, id),
                    Op::Read {
                        res_type,
                        id,
                        version: Some(_),
                    } => I::vread(res_type, id),
                    Op::Read { res_type, id, .. } => I::read(res_type, id),
                    Op::Search { res_type, .. } => I::search_type(res_type),
                    Op::Matched(rv) => I::read(&rv.res_type, &rv.id),
                    Op::NoMatch { res_type } => I::delete_conditional(res_type),
                })
            })
            .collect()
    }

    /// Refuses entry `i` (a batch answers it alone; a transaction fails).
    pub fn refuse(&mut self, i: usize, error: ApiError) {
        if let Some(e) = self.entries.get_mut(i) {
            e.op = Err(at_entry(i, error));
        }
    }

    /// Reads a Bundle body: its type and each entry's request. Errors about
    /// the bundle as a whole (not a Bundle, wrong type, too many entries) are
    /// returned; an entry's own error stays with the entry.
    pub fn parse(
        body: Json,
        max_entries: usize,
        local_base: Option<&str>,
    ) -> Result<BundleRequest, ApiError> {
        let Json::Object(mut bundle) = body else {
            return Err(ApiError::invalid("the body must be a Bundle resource"));
        };
        if string_at(&bundle, "resourceType") != Some("Bundle") {
            return Err(ApiError::invalid_at(
                "Bundle.resourceType",
                "send a Bundle of type batch or transaction to the base",
            ));
        }
        let kind = match string_at(&bundle, "type") {
            Some("transaction") => BundleKind::Transaction,
            Some("batch") => BundleKind::Batch,
            _ => {
                return Err(ApiError::invalid_at(
                    "Bundle.type",
                    "the Bundle type must be batch or transaction",
                ));
            }
        };
        let entries = match bundle.remove("entry") {
            None => Vec::new(),
            Some(Json::Array(a)) => a,
            Some(_) => {
                return Err(ApiError::invalid_at(
                    "Bundle.entry",
                    "entry must be an array",
                ));
            }
        };
        if entries.len() > max_entries {
            return Err(ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "the Bundle has {} entries; the limit is {max_entries} (fhir.max_bundle_entries)",
                    entries.len()
                ),
            ));
        }
        // References are rewritten once conditions are resolved (the ids of
        // conditional entries are known then): see `Service::bundle`.
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.into_iter().enumerate() {
            let (full_url, op) = match read_entry(i, entry, local_base) {
                Ok((full_url, op)) => (full_url, Ok(op)),
                Err(e) => (None, Err(e)),
            };
            if let Some(u) = &full_url
                && !seen.insert(u.clone())
            {
                return Err(invalid(i, format!("fullUrl {u} is used twice")));
            }
            out.push(Entry { op, full_url });
        }
        Ok(BundleRequest { kind, entries: out })
    }

    /// How many entries write a resource.
    pub fn writes(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.op, Ok(Op::Read { .. }) | Err(_)))
            .count()
    }
}

/// Reads one entry: its fullUrl when it is a placeholder, and its op.
fn read_entry(
    i: usize,
    entry: Json,
    local_base: Option<&str>,
) -> Result<(Option<String>, Op), ApiError> {
    let Json::Object(mut entry) = entry else {
        return Err(invalid(i, "an entry must be an object"));
    };
    let full_url = string_at(&entry, "fullUrl")
        .filter(|u| is_placeholder(u))
        .map(str::to_owned);
    let Some(Json::Object(request)) = entry.get("request") else {
        return Err(invalid(
            i,
            "entry.request is required in a batch or transaction",
        ));
    };
    let method = string_at(request, "method").unwrap_or_default().to_owned();
    let url =
        string_at(request, "url").ok_or_else(|| invalid(i, "entry.request.url is required"))?;
    let if_match = string_at(request, "ifMatch").map(str::to_owned);
    let if_none_exist = match request.get("ifNoneExist") {
        None => None,
        Some(Json::String(q)) => {
            let c = criteria(q.split_once('?').map_or(q.as_str(), |(_, q)| q));
            if c.is_empty() {
                return Err(invalid(
                    i,
                    "entry.request.ifNoneExist names no search parameters",
                ));
            }
            Some(c)
        }
        Some(_) => return Err(invalid(i, "entry.request.ifNoneExist must be a string")),
    };
    let url = local_base
        .and_then(|b| url.strip_prefix(b.trim_end_matches('/')))
        .unwrap_or(url)
        .trim_start_matches('/')
        .to_owned();
    let (url, condition) = match url.split_once('?') {
        None => (url, None),
        Some((path, query)) => {
            let c = criteria(query);
            if c.is_empty() {
                return Err(invalid(i, "entry.request.url ends with an empty query"));
            }
            (path.to_owned(), Some(c))
        }
    };
    let parts: Vec<&str> = url.split('/').collect();
    let known_type = |t: &str| -> Result<String, ApiError> {
        if fhir::model::r4().is_resource_type(t) {
            Ok(t.to_owned())
        } else {
            Err(invalid(
                i,
                format!("entry.request.url names no R4 resource type: {t}"),
            ))
        }
    };
    let checked_id = |id: &str| -> Result<String, ApiError> {
        fhir::primitive::check_id(id).map_err(|e| invalid(i, e))?;
        Ok(id.to_owned())
    };
    let mut resource = || -> Result<Json, ApiError> {
        match entry.remove("resource") {
            Some(r @ Json::Object(_)) => Ok(r),
            _ => Err(invalid(
                i,
                format!("a {method} entry must carry a resource"),
            )),
        }
    };
    let precondition =
        match if_match {
            None => Precondition::None,
            Some(v) => Precondition::VersionIs(crate::http::parse_etag(&v).ok_or_else(|| {
                invalid(i, "entry.request.ifMatch must be an ETag such as W/\"3\"")
            })?),
        };
    let op = match (method.as_str(), parts.as_slice(), condition) {
        ("POST", [t], None) => Op::Put {
            create: true,
            res_type: known_type(t)?,
            id: new_id()?,
            resource: resource()?,
            precondition: Precondition::Absent,
            condition: if_none_exist.map(Conditional::IfNoneExist),
        },
        ("PUT", [t, id], None) => Op::Put {
            create: false,
            res_type: known_type(t)?,
            id: checked_id(id)?,
            resource: resource()?,
            precondition,
            condition: None,
        },
        ("PUT", [t], Some(c)) => Op::Put {
            create: false,
            res_type: known_type(t)?,
            id: String::new(),
            resource: resource()?,
            precondition,
            condition: Some(Conditional::Update(c)),
        },
        ("DELETE", [t, id], None) => Op::Delete {
            res_type: known_type(t)?,
            id: checked_id(id)?,
            condition: None,
        },
        ("DELETE", [t], Some(c)) => Op::Delete {
            res_type: known_type(t)?,
            id: String::new(),
            condition: Some(c),
        },
        ("GET", [t], Some(c)) => Op::Search {
            res_type: known_type(t)?,
            criteria: c,
        },
        ("GET", [t, id], None) => Op::Read {
            res_type: known_type(t)?,
            id: checked_id(id)?,
            version: None,
        },
        ("GET", [t, id, "_history", v], None) => Op::Read {
            res_type: known_type(t)?,
            id: checked_id(id)?,
            version: Some(
                v.parse()
                    .map_err(|_| invalid(i, "a version id is a number"))?,
            ),
        },
        ("PATCH", [t, id], None) => {
            let (kind, document) = patch_document(i, resource()?)?;
            Op::Patch {
                res_type: known_type(t)?,
                id: checked_id(id)?,
                kind,
                document,
                if_match: match precondition {
                    Precondition::VersionIs(v) => Some(v),
                    _ => None,
                },
            }
        }
        ("GET" | "POST" | "PUT" | "DELETE", _, _) => {
            return Err(invalid(
                i,
                format!("entry.request.url {url} does not fit method {method}"),
            ));
        }
        _ => {
            return Err(invalid(
                i,
                "entry.request.method must be GET, POST, PUT, DELETE or PATCH",
            ));
        }
    };
    Ok((full_url, op))
}

/// Whether a reference is conditional (`Patient?identifier=a|b`).
fn is_conditional_reference(r: &str) -> bool {
    r.contains('?') && !r.starts_with('#') && !r.contains("://") && !is_placeholder(r)
}

/// The conditional references (`reference` elements) in a resource.
fn conditional_references(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| conditional_references(i, out)),
        Json::Object(o) => {
            for (name, value) in &o.0 {
                match (name.as_str(), value) {
                    ("reference", Json::String(r)) if is_conditional_reference(r) => {
                        if !out.contains(r) {
                            out.push(r.clone());
                        }
                    }
                    (_, value) => conditional_references(value, out),
                }
            }
        }
        _ => {}
    }
}

/// The patch a PATCH entry carries: a `Binary` holding a JSON Patch
/// (`contentType` `application/json-patch+json`, `data` in base64), or a
/// `Parameters` resource (FHIRPath Patch).
fn patch_document(i: usize, resource: Json) -> Result<(PatchKind, Json), ApiError> {
    use base64::Engine;
    let Json::Object(o) = &resource else {
        return Err(invalid(i, "a PATCH entry carries a Binary or a Parameters"));
    };
    match string_at(o, "resourceType") {
        Some("Parameters") => Ok((PatchKind::FhirPath, resource)),
        Some("Binary") if string_at(o, "contentType") == Some("application/json-patch+json") => {
            let data = string_at(o, "data")
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .ok_or_else(|| invalid(i, "the Binary of a JSON Patch needs its data in base64"))?;
            let document = crate::json::parse(&data)
                .map_err(|e| invalid(i, format!("the JSON Patch is not valid JSON: {e}")))?;
            Ok((PatchKind::Json, document))
        }
        _ => Err(invalid(
            i,
            "a PATCH entry carries a Binary (contentType application/json-patch+json) or a Parameters",
        )),
    }
}

/// Rewrites references to placeholders (`urn:uuid:`, `urn:oid:`) into the
/// ids the server gave them (`reference` elements, and `href`/`src` links in
/// narrative), and conditional references into the resource each matched
/// (`found`). A placeholder no entry defines is an error.
fn rewrite_references(
    v: &mut Json,
    ids: &HashMap<String, String>,
    found: &HashMap<String, String>,
) -> Result<(), ApiError> {
    match v {
        Json::Array(items) => items
            .iter_mut()
            .try_for_each(|item| rewrite_references(item, ids, found)),
        Json::Object(o) => {
            for (name, value) in &mut o.0 {
                match (name.as_str(), value) {
                    ("reference", Json::String(r)) => {
                        if let Some(target) = ids.get(r.as_str()).or_else(|| found.get(r.as_str()))
                        {
                            *r = target.clone();
                        } else if is_placeholder(r) {
                            return Err(ApiError::invalid(format!(
                                "the reference {r} names no entry of this Bundle"
                            )));
                        } else if is_conditional_reference(r) {
                            return Err(ApiError::internal(
                                "a conditional reference was not resolved",
                            ));
                        }
                    }
                    ("div", Json::String(html)) if html.contains("urn:") => {
                        *html = rewrite_links(html, ids);
                    }
                    (_, value) => rewrite_references(value, ids, found)?,
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Narrative links to placeholders, rewritten (unknown ones stay as written).
fn rewrite_links(html: &str, ids: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find("urn:") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(['"', '\'', '<', ' ']).unwrap_or(tail.len());
        let token = &tail[..end];
        out.push_str(ids.get(token).map_or(token, String::as_str));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A write of a transaction, ready for the store.
enum Ready {
    Put(Box<PreparedPut>),
    Delete {
        res_type: String,
        id: String,
        precondition: Precondition,
    },
}

/// 412: a condition that must name one resource matches none or several.
fn not_one(what: &str, n: usize) -> ApiError {
    let how = if n == 0 { "no" } else { "more than one" };
    ApiError::new(
        ErrorKind::PreconditionFailed,
        format!("{what} matches {how} resource; it must match exactly one"),
    )
}

impl Service {
    /// Runs a batch or transaction Bundle read by [`BundleRequest::parse`].
    /// `imported` (bulk import only) is recorded with a transaction's writes.
    pub async fn bundle(
        &self,
        tenant: &str,
        request: BundleRequest,
        imported: Option<ImportedFile>,
    ) -> Result<Vec<EntryResult>, ApiError> {
        let kind = request.kind;
        let mut entries = request.entries;
        // Conditional writes run one at a time per condition (this process).
        let conditions: Vec<(String, Criteria)> = entries
            .iter()
            .filter_map(|e| match &e.op {
                Ok(Op::Put {
                    res_type,
                    condition: Some(Conditional::IfNoneExist(c) | Conditional::Update(c)),
                    ..
                })
                | Ok(Op::Delete {
                    res_type,
                    condition: Some(c),
                    ..
                }) => Some((res_type.clone(), c.clone())),
                _ => None,
            })
            .collect();
        let _one_at_a_time = self.conditional_locks(tenant, &conditions).await;
        self.resolve_conditions(tenant, kind, &mut entries).await?;
        match kind {
            BundleKind::Transaction => self.transaction(tenant, entries, imported).await,
            BundleKind::Batch => Ok(self.batch(tenant, entries).await),
        }
    }

    /// Resolves what depends on the stored data, in entry order: the match of
    /// each conditional entry (`ifNoneExist`, `PUT`/`DELETE [type]?…`), the
    /// resource each conditional reference names; then rewrites references
    /// (placeholders to the ids their entries got). A failure fails the
    /// transaction, or in a batch only its entry.
    async fn resolve_conditions(
        &self,
        tenant: &str,
        kind: BundleKind,
        entries: &mut [Entry],
    ) -> Result<(), ApiError> {
        let searcher = self.searcher(tenant);
        let mut failed: Vec<(usize, ApiError)> = Vec::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            let Ok(op) = &mut entry.op else { continue };
            let resolved: Result<(), ApiError> = match op {
                Op::Put {
                    res_type,
                    condition: condition @ Some(Conditional::IfNoneExist(_)),
                    ..
                } => {
                    let Some(Conditional::IfNoneExist(c)) = condition.take() else {
                        continue;
                    };
                    match searcher.matching(res_type, &c, 2).await {
                        Ok(found) if found.is_empty() => Ok(()),
                        Ok(mut found) if found.len() == 1 => {
                            *op = Op::Matched(found.remove(0));
                            Ok(())
                        }
                        Ok(found) => Err(not_one("ifNoneExist", found.len())),
                        Err(e) => Err(e),
                    }
                }
                Op::Put {
                    res_type,
                    id,
                    resource,
                    condition: condition @ Some(Conditional::Update(_)),
                    ..
                } => {
                    let Some(Conditional::Update(c)) = condition.take() else {
                        continue;
                    };
                    let body_id = match resource {
                        Json::Object(o) => o.get("id").and_then(Json::as_str).map(str::to_owned),
                        _ => None,
                    };
                    let target = match searcher.matching(res_type, &c, 2).await {
                        Ok(found) => match (found.as_slice(), body_id) {
                            ([], Some(given)) => Ok(given),
                            ([], None) => new_id(),
                            ([one], Some(given)) if given != one.id => Err(ApiError::invalid(
                                "the id in the resource differs from the resource the condition matches",
                            )),
                            ([one], _) => Ok(one.id.clone()),
                            (several, _) => Err(not_one("the conditional update", several.len())),
                        },
                        Err(e) => Err(e),
                    };
                    // The resource carries the id it is written under, as
                    // any update does.
                    target.map(|target| {
                        if let Json::Object(o) = resource {
                            o.remove("id");
                            o.push("id", Json::string(target.clone()));
                        }
                        *id = target;
                    })
                }
                Op::Delete {
                    res_type,
                    id,
                    condition: condition @ Some(_),
                } => {
                    let Some(c) = condition.take() else { continue };
                    match searcher.matching(res_type, &c, 2).await {
                        Ok(found) if found.is_empty() => {
                            *op = Op::NoMatch {
                                res_type: res_type.clone(),
                            };
                            Ok(())
                        }
                        Ok(found) if found.len() == 1 => {
                            *id = found[0].id.clone();
                            Ok(())
                        }
                        Ok(found) => Err(not_one("the conditional delete", found.len())),
                        Err(e) => Err(e),
                    }
                }
                _ => Ok(()),
            };
            if let Err(e) = resolved {
                failed.push((i, e));
            }
        }
        self.fail_entries(kind, entries, &mut failed)?;
        // The ids of placeholder fullUrls, now that every id is known.
        let mut ids = HashMap::new();
        for e in entries.iter() {
            if let (Some(u), Ok(op)) = (&e.full_url, &e.op)
                && !matches!(op, Op::NoMatch { .. })
            {
                let (t, id) = op.target();
                ids.insert(u.clone(), format!("{t}/{id}"));
            }
        }
        // Conditional references, each searched once.
        let mut found: HashMap<String, String> = HashMap::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            let Ok(Op::Put { resource, .. }) = &entry.op else {
                continue;
            };
            let mut refs = Vec::new();
            conditional_references(resource, &mut refs);
            for r in refs {
                if found.contains_key(&r) {
                    continue;
                }
                match self.resolve_reference(tenant, &r).await {
                    Ok(target) => {
                        found.insert(r, target);
                    }
                    Err(e) => {
                        failed.push((i, e));
                        break;
                    }
                }
            }
        }
        self.fail_entries(kind, entries, &mut failed)?;
        for (i, entry) in entries.iter_mut().enumerate() {
            if let Ok(op) = &mut entry.op
                && let Err(e) = rewrite_entry(i, op, &ids, &found)
            {
                failed.push((i, e));
            }
        }
        self.fail_entries(kind, entries, &mut failed)
    }

    /// Entries that failed while resolving: the transaction fails with the
    /// first; a batch answers each with its error.
    fn fail_entries(
        &self,
        kind: BundleKind,
        entries: &mut [Entry],
        failed: &mut Vec<(usize, ApiError)>,
    ) -> Result<(), ApiError> {
        if kind == BundleKind::Transaction && !failed.is_empty() {
            let (i, e) = failed.remove(0);
            return Err(at_entry(i, e));
        }
        for (i, e) in failed.drain(..) {
            entries[i].op = Err(at_entry(i, e));
        }
        Ok(())
    }

    /// `Type?criteria` as the `Type/id` of the one resource it matches (412
    /// for none or several).
    async fn resolve_reference(&self, tenant: &str, reference: &str) -> Result<String, ApiError> {
        let (t, query) = reference.split_once('?').unwrap_or((reference, ""));
        if !fhir::model::r4().is_resource_type(t) {
            return Err(ApiError::invalid(format!(
                "the conditional reference {reference} names no R4 resource type"
            )));
        }
        let c = criteria(query);
        if c.is_empty() {
            return Err(ApiError::invalid(format!(
                "the conditional reference {reference} names no search parameters"
            )));
        }
        let found = self.searcher(tenant).matching(t, &c, 2).await?;
        match found.as_slice() {
            [one] => Ok(format!("{t}/{}", one.id)),
            other => Err(not_one(
                &format!("the conditional reference {reference}"),
                other.len(),
            )),
        }
    }

    async fn transaction(
        &self,
        tenant: &str,
        entries: Vec<Entry>,
        imported: Option<ImportedFile>,
    ) -> Result<Vec<EntryResult>, ApiError> {
        let mut ops = Vec::with_capacity(entries.len());
        let mut targets = HashSet::new();
        for (i, e) in entries.into_iter().enumerate() {
            let op = e.op?;
            if matches!(op, Op::Put { .. } | Op::Delete { .. } | Op::Patch { .. }) {
                let (t, id) = op.target();
                if !targets.insert((t.to_owned(), id.to_owned())) {
                    return Err(invalid(
                        i,
                        format!("{t}/{id} is written by more than one entry of the transaction"),
                    ));
                }
            }
            ops.push((i, op));
        }
        ops.sort_by_key(|(_, op)| op.order());
        let mut ready: Vec<(usize, Ready)> = Vec::new();
        let mut reads = Vec::new();
        for (i, op) in ops {
            match op {
                Op::Put {
                    create,
                    res_type,
                    id,
                    resource,
                    precondition,
                    ..
                } => {
                    let obj =
                        check_put(create, &res_type, &id, resource).map_err(|e| at_entry(i, e))?;
                    let precondition = self
                        .limit_write(tenant, &res_type, &id, Some(&obj), precondition)
                        .await
                        .map_err(|e| at_entry(i, e))?;
                    let p = self
                        .prepare_put(tenant, &res_type, &id, obj, precondition)
                        .map_err(|e| at_entry(i, e))?;
                    ready.push((i, Ready::Put(Box::new(p))));
                }
                Op::Delete { res_type, id, .. } => {
                    let precondition = self
                        .limit_write(tenant, &res_type, &id, None, Precondition::None)
                        .await
                        .map_err(|e| at_entry(i, e))?;
                    ready.push((
                        i,
                        Ready::Delete {
                            res_type,
                            id,
                            precondition,
                        },
                    ));
                }
                Op::Patch {
                    res_type,
                    id,
                    kind,
                    document,
                    if_match,
                } => {
                    // Written only if still the version patched.
                    let (obj, version) = self
                        .patched(tenant, &res_type, &id, kind, &document, if_match)
                        .await
                        .map_err(|e| at_entry(i, e))?;
                    let precondition = self
                        .limit_write(
                            tenant,
                            &res_type,
                            &id,
                            Some(&obj),
                            Precondition::VersionIs(version),
                        )
                        .await
                        .map_err(|e| at_entry(i, e))?;
                    let p = self
                        .prepare_put(tenant, &res_type, &id, obj, precondition)
                        .map_err(|e| at_entry(i, e))?;
                    ready.push((i, Ready::Put(Box::new(p))));
                }
                other => reads.push((i, other)),
            }
        }
        let last_updated = now_micros();
        let mut writes = Vec::with_capacity(ready.len());
        for (_, r) in &mut ready {
            match r {
                Ready::Put(p) => {
                    let seal = p.take_seal()?;
                    writes.push((p.intent(), seal));
                }
                Ready::Delete {
                    res_type,
                    id,
                    precondition,
                } => writes.push((
                    WriteIntent {
                        res_type,
                        id,
                        precondition: *precondition,
                        kind: WriteKind::Delete,
                        last_updated,
                        index: &[],
                    },
                    no_body(),
                )),
            }
        }
        let outcomes = match self.write_all(tenant, writes, imported).await {
            Ok(o) => o,
            Err(e) => {
                let err = ApiError::from(e.error);
                return Err(match e.entry.and_then(|k| ready.get(k)) {
                    Some((i, _)) => at_entry(*i, err),
                    None => err,
                });
            }
        };
        let mut results: Vec<(usize, EntryResult)> = Vec::with_capacity(outcomes.len());
        for ((i, r), outcome) in ready.into_iter().zip(outcomes) {
            results.push((i, self.finish(tenant, r, outcome).await?));
        }
        for (i, read) in reads {
            results.push((i, self.read_entry(tenant, read).await));
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    async fn finish(
        &self,
        tenant: &str,
        ready: Ready,
        outcome: WriteOutcome,
    ) -> Result<EntryResult, ApiError> {
        Ok(match ready {
            Ready::Put(p) => {
                let (rv, created) = self.finish_put(tenant, *p, outcome).await?;
                EntryResult::Written { created, rv }
            }
            Ready::Delete { res_type, id, .. } => {
                // Deleting what is not there is no error here (R4 3.1.0.7.1).
                match Service::finish_delete(&res_type, &id, outcome) {
                    Ok(DeleteResult::Deleted { .. } | DeleteResult::AlreadyDeleted) => {}
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                EntryResult::Deleted { res_type, id }
            }
        })
    }

    /// An entry that writes nothing: a read, or a condition that settled it.
    async fn read_entry(&self, tenant: &str, op: Op) -> EntryResult {
        let (res_type, id, version) = match op {
            Op::Read {
                res_type,
                id,
                version,
            } => (res_type, id, version),
            Op::Matched(rv) => return EntryResult::Matched(rv),
            Op::Search { res_type, criteria } => {
                return self
                    .searcher(tenant)
                    .first_page(&res_type, &criteria, SEARCH_ENTRY_COUNT, SEARCH_ENTRY_MAX)
                    .await
                    .map_or_else(EntryResult::Failed, EntryResult::SearchSet);
            }
            Op::NoMatch { res_type } => {
                return EntryResult::Deleted {
                    res_type,
                    id: String::new(),
                };
            }
            Op::Put { .. } | Op::Delete { .. } | Op::Patch { .. } => {
                return EntryResult::Failed(ApiError::internal("not a read"));
            }
        };
        let read = match version {
            None => self.read(tenant, &res_type, &id).await,
            Some(v) => self.vread(tenant, &res_type, &id, v).await,
        };
        read.map_or_else(EntryResult::Failed, EntryResult::Read)
    }

    /// Each entry on its own, in the order received.
    async fn batch(&self, tenant: &str, entries: Vec<Entry>) -> Vec<EntryResult> {
        let mut results = Vec::with_capacity(entries.len());
        for (i, e) in entries.into_iter().enumerate() {
            let result = match e.op {
                Err(e) => EntryResult::Failed(e),
                Ok(op) => self
                    .batch_entry(tenant, op)
                    .await
                    .unwrap_or_else(|e| EntryResult::Failed(at_entry(i, e))),
            };
            results.push(result);
        }
        results
    }

    async fn batch_entry(&self, tenant: &str, op: Op) -> Result<EntryResult, ApiError> {
        Ok(match op {
            Op::Put {
                create,
                res_type,
                id,
                resource,
                precondition,
                ..
            } => {
                let obj = check_put(create, &res_type, &id, resource)?;
                let (rv, created) = self.put(tenant, &res_type, &id, obj, precondition).await?;
                EntryResult::Written { created, rv }
            }
            Op::Patch {
                res_type,
                id,
                kind,
                document,
                if_match,
            } => {
                let rv = self
                    .patch(tenant, &res_type, &id, kind, &document.to_bytes(), if_match)
                    .await?;
                EntryResult::Written { created: false, rv }
            }
            Op::Delete { res_type, id, .. } => {
                match self.delete(tenant, &res_type, &id).await {
                    Ok(_) => {}
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                EntryResult::Deleted { res_type, id }
            }
            other => self.read_entry(tenant, other).await,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> HashMap<String, String> {
        HashMap::from([("urn:uuid:a".to_owned(), "Patient/1".to_owned())])
    }

    #[test]
    fn references_and_narrative_links_are_rewritten() {
        let mut r = crate::json::parse(
            br#"{"subject":{"reference":"urn:uuid:a"},"text":{"div":"<div><a href=\"urn:uuid:a\">x</a> urn:uuid:zz</div>"},"identifier":[{"value":"urn:uuid:a"}]}"#,
        )
        .unwrap();
        rewrite_references(&mut r, &ids(), &HashMap::new()).unwrap();
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            r#"{"subject":{"reference":"Patient/1"},"text":{"div":"<div><a href=\"Patient/1\">x</a> urn:uuid:zz</div>"},"identifier":[{"value":"urn:uuid:a"}]}"#
        );
    }

    #[test]
    fn unknown_placeholders_are_refused_and_conditional_references_found() {
        let mut r = crate::json::parse(br#"{"subject":{"reference":"urn:uuid:b"}}"#).unwrap();
        assert_eq!(
            rewrite_references(&mut r, &ids(), &HashMap::new())
                .unwrap_err()
                .status(),
            400
        );
        let text = br##"{"subject":{"reference":"Patient?identifier=x|1"},"performer":[{"reference":"#c"},{"reference":"http://x.org/fhir/Practitioner?a=1"}]}"##;
        let mut r = crate::json::parse(text).unwrap();
        let mut refs = Vec::new();
        conditional_references(&r, &mut refs);
        assert_eq!(refs, ["Patient?identifier=x|1"]);
        let found = HashMap::from([(refs[0].clone(), "Patient/7".to_owned())]);
        rewrite_references(&mut r, &ids(), &found).unwrap();
        assert!(
            String::from_utf8(r.to_bytes())
                .unwrap()
                .contains(r#""reference":"Patient/7""#)
        );
    }
}
