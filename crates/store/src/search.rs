//! Search over the index tables: the query a store runs, and the SQL for it,
//! written once for both backends (they differ only in placeholders). Values are
//! always bound, never pasted into the SQL text.

use crate::Micros;

/// How a date condition compares the indexed range `[low, high)` with the
/// searched range `[from, to)` (R4 3.1.1.4.2, prefixes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateOp {
    /// The indexed range lies within the searched one (`eq`).
    Within,
    /// Not within (`ne`).
    NotWithin,
    /// Something after the searched range (`gt`).
    EndsAfter,
    /// Something before the searched range (`lt`).
    StartsBefore,
    /// Something at or after its start (`ge`).
    EndsAfterStart,
    /// Something before its end (`le`).
    StartsBeforeEnd,
    /// Starts after the searched range (`sa`).
    StartsAfter,
    /// Ends before the searched range (`eb`).
    EndsBefore,
    /// Overlaps it (`ap`, with the range already widened by the caller).
    Overlaps,
}

impl DateOp {
    /// Whether an indexed range `[low, high)` meets this comparison with the
    /// searched range `[from, to)` (the SQL of [`Condition::Date`], in Rust).
    pub fn holds(self, low: Micros, high: Micros, from: Micros, to: Micros) -> bool {
        match self {
            DateOp::Within => low >= from && high <= to,
            DateOp::NotWithin => !(low >= from && high <= to),
            DateOp::EndsAfter => high > to,
            DateOp::StartsBefore => low < from,
            DateOp::EndsAfterStart => high > from,
            DateOp::StartsBeforeEnd => low < to,
            DateOp::StartsAfter => low >= to,
            DateOp::EndsBefore => high <= from,
            DateOp::Overlaps => low < to && high > from,
        }
    }

    /// The comparison that a wider range `[low', high') ⊇ [low, high)` meets
    /// whenever the exact range meets this one: what an index of coarsened
    /// values (birth years) can be asked, before the exact value is checked.
    pub fn widened(self, from: Micros, to: Micros) -> (DateOp, Micros, Micros) {
        match self {
            DateOp::Within | DateOp::Overlaps => (DateOp::Overlaps, from, to),
            DateOp::NotWithin => (DateOp::Overlaps, Micros::MIN, Micros::MAX),
            DateOp::StartsAfter => (DateOp::EndsAfter, from, to),
            DateOp::EndsBefore => (DateOp::StartsBefore, from, to),
            op => (op, from, to),
        }
    }
}

/// How a number or quantity condition compares the indexed value with the
/// searched one (R4 3.1.1.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberOp {
    /// Within the searched value's implicit range (`eq`).
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    /// Within ±10% of the searched value (`ap`).
    Approx,
}

/// A number (or the numeric part of a quantity) as searched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NumberTest {
    pub op: NumberOp,
    pub value: f64,
    /// The implicit range of the searched value (for `eq` and `ne`).
    pub low: f64,
    pub high: f64,
}

impl NumberTest {
    /// Whether an indexed value meets this test (the SQL the store writes
    /// for it, in Rust).
    pub fn holds(&self, x: f64) -> bool {
        match self.op {
            NumberOp::Eq => x >= self.low && x < self.high,
            NumberOp::Ne => !(x >= self.low && x < self.high),
            NumberOp::Gt => x > self.value,
            NumberOp::Lt => x < self.value,
            NumberOp::Ge => x >= self.value,
            NumberOp::Le => x <= self.value,
            NumberOp::Approx => {
                let d = (self.value * 0.1).abs();
                x >= self.value - d && x <= self.value + d
            }
        }
    }
}

/// One AND-ed condition: any of its alternatives (OR) must hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Any of these conditions (compartments: any of the linking parameters).
    AnyOf(Vec<Condition>),
    /// All of these conditions (the trigrams of one `:contains` value).
    AllOf(Vec<Condition>),
    /// Resources not meeting the condition (`:not`, `:not-in`), including those
    /// without any value for it.
    Not(Box<Condition>),
    /// A chained parameter: a reference `param` to one of `target_types` whose
    /// current target meets `inner`.
    Chain {
        param: String,
        target_types: Vec<String>,
        inner: Box<Condition>,
    },
    /// `_has`: some live `source_type` resource refers to this one through `param`
    /// and meets `inner`.
    Has {
        source_type: String,
        param: String,
        inner: Box<Condition>,
    },
    /// `system`: `None` any system, `Some("")` no system. `code`: `None` any code.
    Token {
        param: String,
        any_of: Vec<(Option<String>, Option<String>)>,
        negate: bool,
    },
    /// By target: (type if known, id).
    Reference {
        param: String,
        any_of: Vec<(Option<String>, String)>,
    },
    /// By the reference text as written (absolute URLs, canonicals).
    ReferenceUrl { param: String, any_of: Vec<String> },
    Number {
        param: String,
        any_of: Vec<NumberTest>,
    },
    /// `(test, system, code)`: without a system, the code also matches the unit.
    Quantity {
        param: String,
        any_of: Vec<(NumberTest, Option<String>, Option<String>)>,
    },
    /// Equal URIs, or (`below`) URIs starting with the value.
    Uri {
        param: String,
        any_of: Vec<String>,
        below: bool,
    },
    /// Keyed hashes of identifying strings: any of them.
    StringHash { param: String, any_of: Vec<Vec<u8>> },
    /// A token's display text (`:text`): the texts that the tenant's text
    /// dictionary files under any of these keyed prefix hashes.
    Text { param: String, any_of: Vec<Vec<u8>> },
    Date {
        param: String,
        any_of: Vec<(DateOp, Micros, Micros)>,
    },
    /// Whether the parameter has any index row (`:missing`); `table` names its kind.
    Missing {
        param: String,
        table: IndexTable,
        missing: bool,
    },
    /// Membership of a compartment (`idx_compartment`): of any `compartment`
    /// (`ids` None) or of one of those ids.
    InCompartment {
        compartment: String,
        ids: Option<Vec<String>>,
    },
    /// `_id`.
    Id(Vec<String>),
    /// `_lastUpdated`, on the resource row itself.
    LastUpdated(Vec<(DateOp, Micros, Micros)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexTable {
    Number,
    Quantity,
    Uri,
    StringHash,
    Token,
    Reference,
    Date,
}

impl IndexTable {
    fn name(self) -> &'static str {
        match self {
            IndexTable::Number => "idx_number",
            IndexTable::Quantity => "idx_quantity",
            IndexTable::Uri => "idx_uri",
            IndexTable::StringHash => "idx_string_hash",
            IndexTable::Token => "idx_token",
            IndexTable::Reference => "idx_reference",
            IndexTable::Date => "idx_date",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    pub res_type: String,
    pub conditions: Vec<Condition>,
    /// The order of results: by these keys (none: by id), then by id.
    pub sort: Vec<SortBy>,
    /// Keyset paging: only results after this position.
    pub after: Option<Cursor>,
    pub limit: u32,
    /// A condition matching fewer resources than this drives the query (the
    /// store counts up to it); 0 always walks in result order.
    pub drive_below: u32,
}

/// The default of `SearchQuery::drive_below` (`fhir.search_drive_below`).
pub const DEFAULT_DRIVE_BELOW: u32 = 4096;

/// The parameter that sorts by a version's `lastUpdated`.
pub const LAST_UPDATED: &str = "_lastUpdated";

/// At most this many `_sort` keys.
pub const MAX_SORT_KEYS: usize = 3;

/// One `_sort` key: a parameter with sort keys (see [`sort_keys`]), ascending or
/// descending. Results are in the order of the keys, then by id.
#[derive(Clone, Debug, PartialEq)]
pub struct SortBy {
    pub param: String,
    pub descending: bool,
}

/// One result of a search, with its position for the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub version: crate::StoredVersion,
    pub cursor: Cursor,
}

/// A position in a result list: the sort keys of the last row shown (as stored,
/// see [`sort_keys`]) and its id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub keys: Vec<Vec<u8>>,
    pub id: String,
    /// A `previous` position: the results before it, nearest first.
    pub backward: bool,
}

impl Cursor {
    /// The text form used in `_page` links: the id alone when unsorted, else
    /// `k` and the keys in hex, dot-separated, then `~` and the id.
    /// A leading `-` marks a position read backward (`previous` links).
    pub fn encode(&self) -> String {
        let dir = if self.backward { "-" } else { "" };
        if self.keys.is_empty() {
            return format!("{dir}{}", self.id);
        }
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| k.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        format!("{dir}k{}~{}", keys.join("."), self.id)
    }

    /// The end of a result list, read backward: the last results, nearest
    /// first.
    pub fn end() -> Cursor {
        Cursor {
            keys: Vec::new(),
            id: String::new(),
            backward: true,
        }
    }

    /// The start of a result list in (type, id) order (searches across
    /// types, compartments), read forward: everything.
    pub fn before_every_type() -> Cursor {
        Cursor {
            keys: vec![Vec::new()],
            id: String::new(),
            backward: false,
        }
    }

    /// Whether this is [`Cursor::end`].
    pub fn is_end(&self) -> bool {
        self.backward && self.keys.is_empty() && self.id.is_empty()
    }

    /// The same position, read forward (`next`) or backward (`previous`).
    pub fn toward(&self, backward: bool) -> Cursor {
        Cursor {
            backward,
            ..self.clone()
        }
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (backward, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let Some((keys, id)) = s.rsplit_once('~') else {
            return Some(Cursor {
                keys: Vec::new(),
                id: s.to_owned(),
                backward,
            });
        };
        let keys = keys
            .strip_prefix('k')?
            .split('.')
            .map(|hex| {
                if hex.len() % 2 != 0 || !hex.is_ascii() {
                    return None;
                }
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                    .collect::<Option<Vec<u8>>>()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Cursor {
            keys,
            id: id.to_owned(),
            backward,
        })
    }
}

/// Every stored key starts with this byte, so the missing-value markers sort
/// around all of them: `[0xFF]` after (ascending), `[]` before (descending).
const KEY_TAG: u8 = 0x01;
const MISSING_LAST_ASC: [u8; 1] = [0xFF];
const MISSING_LAST_DESC: [u8; 0] = [];

/// Texts as bytes that compare in their order, part by part (a part that is a
/// prefix of another sorts first: parts end with a zero byte).
pub fn text_key(parts: &[&str]) -> Vec<u8> {
    let mut out = vec![KEY_TAG];
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// An integer as bytes that compare in the integer's order.
pub fn int_key(v: i64) -> Vec<u8> {
    let mut out = vec![KEY_TAG];
    out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
    out
}

/// A (non-NaN) float as bytes that compare in the number's order.
pub fn real_key(v: f64) -> Vec<u8> {
    let bits = v.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    let mut out = vec![KEY_TAG];
    out.extend_from_slice(&ordered.to_be_bytes());
    out
}

/// The sort keys of a resource: per date, number or quantity parameter the
/// smallest value (dates: earliest start) and the largest (dates: latest end);
/// per token, reference or uri parameter the least and the greatest text (a
/// token's code then its system; a reference's `Type/id`, or its URL); and
/// `_lastUpdated`. As `(param, ascending key, descending key)`.
pub fn sort_keys(
    rows: &[crate::IndexRow],
    last_updated: Micros,
) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    use std::collections::BTreeMap;
    enum Range {
        Int(i64, i64),
        Real(f64, f64),
        Text(Vec<u8>, Vec<u8>),
    }
    let mut ranges: BTreeMap<&str, Range> = BTreeMap::new();
    // Quantity parameters with values in a base unit sort by those only.
    let based: std::collections::HashSet<&str> = rows
        .iter()
        .filter_map(|r| match r {
            crate::IndexRow::Quantity {
                param, base: true, ..
            } => param.strip_suffix(crate::BASE_UNIT_SUFFIX),
            _ => None,
        })
        .collect();
    for row in rows {
        let (param, range) = match row {
            crate::IndexRow::Date { param, low, high } => (param.as_str(), Range::Int(*low, *high)),
            crate::IndexRow::Quantity {
                param, value, base, ..
            } => {
                let param = match (base, param.strip_suffix(crate::BASE_UNIT_SUFFIX)) {
                    (true, Some(p)) => p,
                    (false, _) if !based.contains(param.as_str()) => param.as_str(),
                    _ => continue,
                };
                if value.is_nan() {
                    continue;
                }
                (param, Range::Real(*value, *value))
            }
            crate::IndexRow::Number { param, value, .. } => {
                if value.is_nan() {
                    continue;
                }
                (param.as_str(), Range::Real(*value, *value))
            }
            crate::IndexRow::Token {
                param,
                system,
                code,
            } => {
                let k = text_key(&[code, system]);
                (param.as_str(), Range::Text(k.clone(), k))
            }
            crate::IndexRow::Reference {
                param,
                target_type,
                target_id,
                url,
            } => {
                let k = if target_type.is_empty() {
                    text_key(&[url])
                } else {
                    text_key(&[&format!("{target_type}/{target_id}")])
                };
                (param.as_str(), Range::Text(k.clone(), k))
            }
            crate::IndexRow::Uri { param, value } => {
                let k = text_key(&[value]);
                (param.as_str(), Range::Text(k.clone(), k))
            }
            _ => continue,
        };
        let merged = match (ranges.remove(param), range) {
            (None, r) => r,
            (Some(Range::Int(a, b)), Range::Int(c, d)) => Range::Int(a.min(c), b.max(d)),
            (Some(Range::Real(a, b)), Range::Real(c, d)) => Range::Real(a.min(c), b.max(d)),
            (Some(Range::Text(a, b)), Range::Text(c, d)) => Range::Text(a.min(c), b.max(d)),
            // A parameter has one type; keep the first kind seen if not.
            (Some(first), _) => first,
        };
        ranges.insert(param, merged);
    }
    let mut out: Vec<(String, Vec<u8>, Vec<u8>)> = ranges
        .into_iter()
        .map(|(param, r)| match r {
            Range::Int(lo, hi) => (param.to_owned(), int_key(lo), int_key(hi)),
            Range::Real(lo, hi) => (param.to_owned(), real_key(lo), real_key(hi)),
            Range::Text(lo, hi) => (param.to_owned(), lo, hi),
        })
        .collect();
    out.push((
        LAST_UPDATED.to_owned(),
        int_key(last_updated),
        int_key(last_updated),
    ));
    out
}

/// A bound value.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1`, `$2`, … (PostgreSQL)
    Numbered,
    /// `?1`, `?2`, … (SQLite's numbered form)
    Question,
}

struct Sql {
    text: String,
    binds: Vec<Bind>,
    style: Placeholders,
    /// The placeholder of the tenant (bound first, reused everywhere).
    tenant: String,
}

impl Sql {
    /// A statement with the tenant bound first.
    fn new(style: Placeholders, tenant: &str) -> Self {
        let mut sql = Sql {
            text: String::new(),
            binds: Vec::new(),
            style,
            tenant: String::new(),
        };
        sql.tenant = sql.text(tenant);
        sql
    }

    /// Binds a value and returns its numbered placeholder (so the SQL may use
    /// placeholders in any order, on both backends).
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        match self.style {
            Placeholders::Numbered => format!("${}", self.binds.len()),
            Placeholders::Question => format!("?{}", self.binds.len()),
        }
    }

    fn text(&mut self, s: &str) -> String {
        self.bind(Bind::Text(s.to_owned()))
    }

    fn int(&mut self, i: i64) -> String {
        self.bind(Bind::Int(i))
    }

    fn number(&mut self, t: &NumberTest) -> String {
        let float = |sql: &mut Self, f: f64| sql.bind(Bind::Float(f));
        match t.op {
            NumberOp::Eq => format!(
                "(x.value >= {} AND x.value < {})",
                float(self, t.low),
                float(self, t.high)
            ),
            NumberOp::Ne => format!(
                "NOT (x.value >= {} AND x.value < {})",
                float(self, t.low),
                float(self, t.high)
            ),
            NumberOp::Gt => format!("x.value > {}", float(self, t.value)),
            NumberOp::Lt => format!("x.value < {}", float(self, t.value)),
            NumberOp::Ge => format!("x.value >= {}", float(self, t.value)),
            NumberOp::Le => format!("x.value <= {}", float(self, t.value)),
            NumberOp::Approx => {
                let d = (t.value * 0.1).abs();
                format!(
                    "(x.value >= {} AND x.value <= {})",
                    float(self, t.value - d),
                    float(self, t.value + d)
                )
            }
        }
    }

    fn date(&mut self, op: DateOp, lo_col: &str, hi_col: &str, from: Micros, to: Micros) -> String {
        match op {
            DateOp::Within => format!(
                "({lo_col} >= {} AND {hi_col} <= {})",
                self.int(from),
                self.int(to)
            ),
            DateOp::NotWithin => format!(
                "NOT ({lo_col} >= {} AND {hi_col} <= {})",
                self.int(from),
                self.int(to)
            ),
            DateOp::EndsAfter => format!("{hi_col} > {}", self.int(to)),
            DateOp::StartsBefore => format!("{lo_col} < {}", self.int(from)),
            DateOp::EndsAfterStart => format!("{hi_col} > {}", self.int(from)),
            DateOp::StartsBeforeEnd => format!("{lo_col} < {}", self.int(to)),
            DateOp::StartsAfter => format!("{lo_col} >= {}", self.int(to)),
            DateOp::EndsBefore => format!("{hi_col} <= {}", self.int(from)),
            DateOp::Overlaps => format!(
                "({lo_col} < {} AND {hi_col} > {})",
                self.int(to),
                self.int(from)
            ),
        }
    }
}

/// Which resource rows a condition applies to: an alias and the SQL that
/// constrains their type (`= $2`, `IN ($5, $6)`).
struct Scope {
    r: String,
    /// The column of `r` holding the resource id: `id` on `resources`, `res_id`
    /// on an index table (`_has` tests its sources on their index rows).
    id: &'static str,
    types: String,
}

/// How a membership condition is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// An uncorrelated `IN` over (type, id): the set is built once.
    In,
    /// A correlated `EXISTS`, probed per candidate through the owner index: for
    /// conditions checked on rows another condition (or the walk) produced.
    Exists,
}

/// A condition met by the resources some index rows point at: the columns that
/// name the resource, and the `FROM … WHERE …` of the rows.
struct Member {
    ty: String,
    id: String,
    core: String,
    negated: bool,
}

/// What ends a per-row probe so that the planner keeps it one: PostgreSQL
/// would otherwise hash the probe's whole set (`OFFSET 0` is its documented
/// fence); SQLite probes per row anyway and has no OFFSET without LIMIT.
fn probe_fence(style: Placeholders) -> &'static str {
    match style {
        Placeholders::Numbered => " OFFSET 0",
        Placeholders::Question => "",
    }
}

impl Member {
    fn render(&self, form: Form, scope: &Scope, style: Placeholders) -> String {
        let (ty, id, core, r, rid) = (&self.ty, &self.id, &self.core, &scope.r, scope.id);
        let e = match form {
            Form::In => format!(
                "({r}.res_type, {r}.{rid}) IN (SELECT {ty}, {id} {core} AND {ty} {types})",
                types = scope.types
            ),
            // `IS TRUE` and the fence keep the probe a per-row test:
            // PostgreSQL would otherwise turn a top-level EXISTS into a
            // semi-join, or a hashed subplan, over the whole set, which is
            // what the choice of a driver avoids.
            Form::Exists => {
                let test = if self.negated {
                    "IS NOT TRUE"
                } else {
                    "IS TRUE"
                };
                // A single type as a bound value, not a correlation: either
                // way of evaluating the probe can then use an index on it.
                let same_type = if scope.types.starts_with("= ") {
                    format!("{ty} {}", scope.types)
                } else {
                    format!("{ty} = {r}.res_type")
                };
                return format!(
                    "(EXISTS (SELECT 1 {core} AND {same_type} AND {id} = {r}.{rid}{fence})) {test}",
                    fence = probe_fence(style)
                );
            }
        };
        if self.negated { format!("NOT {e}") } else { e }
    }

    /// The distinct ids of the matching resources of one type, as a row source.
    fn ids(&self, types: &str) -> String {
        let (ty, id, core) = (&self.ty, &self.id, &self.core);
        format!("SELECT DISTINCT {id} AS id {core} AND {ty} {types}")
    }
}

/// The rows of an index table for `param` meeting any of `alternatives`.
fn member(
    sql: &mut Sql,
    table: IndexTable,
    param: &str,
    alternatives: impl FnOnce(&mut Sql) -> Vec<String>,
) -> Member {
    let p = sql.text(param);
    let alternatives = alternatives(sql);
    let filter = if alternatives.is_empty() {
        // Nothing can match (an empty value set).
        "1 = 0".to_owned()
    } else {
        alternatives.join(" OR ")
    };
    Member {
        ty: "x.res_type".to_owned(),
        id: "x.res_id".to_owned(),
        core: format!(
            "FROM {t} x WHERE x.tenant = {tenant} AND x.param = {p} AND ({filter})",
            tenant = sql.tenant,
            t = table.name(),
        ),
        negated: false,
    }
}

/// Whether a condition needs the resource row itself (not only index rows).
fn needs_row(c: &Condition) -> bool {
    match c {
        Condition::LastUpdated(_) => true,
        Condition::AnyOf(all) | Condition::AllOf(all) => all.iter().any(needs_row),
        Condition::Not(inner) => needs_row(inner),
        _ => false,
    }
}

/// The condition as a membership in a set of resources, when it is one; `form`
/// is how the membership itself will be written (nested conditions follow it).
fn membership(sql: &mut Sql, c: &Condition, depth: usize, form: Form) -> Option<Member> {
    let tenant = sql.tenant.clone();
    Some(match c {
        Condition::Chain {
            param,
            target_types,
            inner,
        } => {
            let p = sql.text(param);
            let types: Vec<String> = target_types.iter().map(|t| sql.text(t)).collect();
            let c = format!("c{}", depth + 1);
            let inner_scope = Scope {
                r: c.clone(),
                id: "id",
                types: format!("IN ({})", types.join(", ")),
            };
            let inner = clause(sql, inner, &inner_scope, depth + 1, Form::In);
            Member {
                ty: "x.res_type".to_owned(),
                id: "x.res_id".to_owned(),
                core: format!(
                    "FROM idx_reference x WHERE x.tenant = {tenant} AND x.param = {p} \
                     AND (x.target_type, x.target_id) IN (SELECT {c}.res_type, {c}.id FROM resources {c} \
                     WHERE {c}.tenant = {tenant} AND {c}.res_type {inner_types} AND NOT {c}.deleted AND ({inner}))",
                    inner_types = inner_scope.types,
                ),
                negated: false,
            }
        }
        Condition::Has {
            source_type,
            param,
            inner,
        } => {
            let (h, y) = (format!("h{}", depth + 1), format!("y{}", depth + 1));
            let (st, p) = (sql.text(source_type), sql.text(param));
            // Index rows exist only for live resources, so the sources are
            // tested on their reference rows; the resource row is joined only
            // when the inner condition needs it (`_lastUpdated`).
            let join_row = needs_row(inner);
            let inner_scope = if join_row {
                Scope {
                    r: h.clone(),
                    id: "id",
                    types: format!("= {st}"),
                }
            } else {
                Scope {
                    r: y.clone(),
                    id: "res_id",
                    types: format!("= {st}"),
                }
            };
            // Probed per resource, the sources are probed too; as a set, the
            // inner set is built once.
            let inner = clause(sql, inner, &inner_scope, depth + 1, form);
            let join = if join_row {
                format!(
                    " JOIN resources {h} ON {h}.tenant = {y}.tenant AND {h}.res_type = {y}.res_type \
                     AND {h}.id = {y}.res_id AND NOT {h}.deleted"
                )
            } else {
                String::new()
            };
            Member {
                ty: format!("{y}.target_type"),
                id: format!("{y}.target_id"),
                core: format!(
                    "FROM idx_reference {y}{join} \
                     WHERE {y}.tenant = {tenant} AND {y}.res_type = {st} AND {y}.param = {p} \
                     AND ({inner})"
                ),
                negated: false,
            }
        }
        Condition::Token {
            param,
            any_of,
            negate,
        } => {
            let mut m = member(sql, IndexTable::Token, param, |sql: &mut Sql| {
                any_of
                    .iter()
                    .map(|(system, code)| {
                        let mut parts = Vec::new();
                        if let Some(code) = code {
                            parts.push(format!("x.code = {}", sql.text(code)));
                        }
                        if let Some(system) = system {
                            parts.push(format!("x.system = {}", sql.text(system)));
                        }
                        if parts.is_empty() {
                            "1 = 1".to_owned()
                        } else {
                            parts.join(" AND ")
                        }
                    })
                    .collect()
            });
            m.negated = *negate;
            m
        }
        Condition::Reference { param, any_of } => {
            member(sql, IndexTable::Reference, param, |sql| {
                any_of
                    .iter()
                    .map(|(target_type, id)| match target_type {
                        Some(tt) => format!(
                            "(x.target_id = {} AND x.target_type = {})",
                            sql.text(id),
                            sql.text(tt)
                        ),
                        None => format!("x.target_id = {}", sql.text(id)),
                    })
                    .collect()
            })
        }
        Condition::Number { param, any_of } => member(sql, IndexTable::Number, param, |sql| {
            any_of.iter().map(|t| sql.number(t)).collect()
        }),
        Condition::Quantity { param, any_of } => member(sql, IndexTable::Quantity, param, |sql| {
            any_of
                .iter()
                .map(|(t, system, code)| {
                    let mut parts = vec![sql.number(t)];
                    match (system, code) {
                        (Some(s), Some(c)) => {
                            parts.push(format!("x.system = {}", sql.text(s)));
                            parts.push(format!("x.code = {}", sql.text(c)));
                        }
                        (None, Some(c)) => {
                            let (a, b) = (sql.text(c), sql.text(c));
                            parts.push(format!("(x.code = {a} OR x.unit = {b})"));
                        }
                        (Some(s), None) => parts.push(format!("x.system = {}", sql.text(s))),
                        (None, None) => {}
                    }
                    format!("({})", parts.join(" AND "))
                })
                .collect()
        }),
        Condition::Uri {
            param,
            any_of,
            below,
        } => member(sql, IndexTable::Uri, param, |sql| {
            any_of
                .iter()
                .map(|u| {
                    if *below {
                        // A prefix match written without LIKE, so no wildcard
                        // in the value can widen it.
                        let b = sql.int(i64::try_from(u.len()).unwrap_or(i64::MAX));
                        let a = sql.text(u);
                        format!("substr(x.value, 1, CAST({b} AS INTEGER)) = {a}")
                    } else {
                        format!("x.value = {}", sql.text(u))
                    }
                })
                .collect()
        }),
        Condition::StringHash { param, any_of } => {
            member(sql, IndexTable::StringHash, param, |sql| {
                any_of
                    .iter()
                    .map(|h| format!("x.hash = {}", sql.bind(Bind::Bytes(h.clone()))))
                    .collect()
            })
        }
        Condition::Text { param, any_of } => member(sql, IndexTable::StringHash, param, |sql| {
            any_of
                .iter()
                .map(|h| {
                    format!(
                        "x.hash IN (SELECT d.text_hash FROM idx_text_prefix d \
                         WHERE d.tenant = {tenant} AND d.prefix_hash = {})",
                        sql.bind(Bind::Bytes(h.clone()))
                    )
                })
                .collect()
        }),
        Condition::ReferenceUrl { param, any_of } => {
            member(sql, IndexTable::Reference, param, |sql| {
                any_of
                    .iter()
                    .map(|u| format!("x.url = {}", sql.text(u)))
                    .collect()
            })
        }
        Condition::Date { param, any_of } => member(sql, IndexTable::Date, param, |sql| {
            any_of
                .iter()
                .map(|(op, from, to)| sql.date(*op, "x.low", "x.high", *from, *to))
                .collect()
        }),
        Condition::InCompartment { compartment, ids } => {
            let c = sql.text(compartment);
            let which = match ids {
                None => String::new(),
                Some(ids) if ids.is_empty() => " AND 1 = 0".to_owned(),
                Some(ids) => format!(
                    " AND ({})",
                    ids.iter()
                        .map(|id| format!("x.comp_id = {}", sql.text(id)))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ),
            };
            Member {
                ty: "x.res_type".to_owned(),
                id: "x.res_id".to_owned(),
                core: format!(
                    "FROM idx_compartment x WHERE x.tenant = {tenant} AND x.compartment = {c}{which}"
                ),
                negated: false,
            }
        }
        Condition::Missing {
            param,
            table,
            missing,
        } => {
            let mut m = member(sql, *table, param, |_| vec!["1 = 1".to_owned()]);
            m.negated = *missing;
            m
        }
        Condition::Not(inner) => {
            let mut m = membership(sql, inner, depth, form)?;
            m.negated = !m.negated;
            m
        }
        Condition::AnyOf(_)
        | Condition::AllOf(_)
        | Condition::Id(_)
        | Condition::LastUpdated(_) => {
            return None;
        }
    })
}

/// The SQL of one condition on the resource rows of `scope`; `depth` keeps the
/// aliases of nested chains and `_has` apart.
fn clause(sql: &mut Sql, c: &Condition, scope: &Scope, depth: usize, form: Form) -> String {
    if let Some(m) = membership(sql, c, depth, form) {
        return m.render(form, scope, sql.style);
    }
    let (r, rid) = (scope.r.as_str(), scope.id);
    match c {
        Condition::Not(inner) => format!("NOT ({})", clause(sql, inner, scope, depth, form)),
        Condition::AllOf(all) => {
            let parts: Vec<String> = all
                .iter()
                .map(|a| clause(sql, a, scope, depth, form))
                .collect();
            format!("({})", parts.join(" AND "))
        }
        Condition::AnyOf(alternatives) => {
            let parts: Vec<String> = alternatives
                .iter()
                .map(|a| clause(sql, a, scope, depth, form))
                .collect();
            format!("({})", parts.join(" OR "))
        }
        Condition::Id(ids) if ids.is_empty() => "1 = 0".to_owned(),
        Condition::Id(ids) => {
            let alternatives: Vec<String> = ids.iter().map(|id| sql.text(id)).collect();
            format!("{r}.{rid} IN ({})", alternatives.join(", "))
        }
        Condition::LastUpdated(any_of) => {
            // A version's lastUpdated is an instant: a one-microsecond range.
            let alternatives: Vec<String> = any_of
                .iter()
                .map(|(op, from, to)| {
                    sql.date(
                        *op,
                        &format!("{r}.last_updated"),
                        &format!("({r}.last_updated + 1)"),
                        *from,
                        *to,
                    )
                })
                .collect();
            format!("({})", alternatives.join(" OR "))
        }
        _ => unreachable!("memberships are rendered above"),
    }
}

/// Where the rows of a search come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// Walk the resources of the type in result order, testing every condition
    /// on each: best when the conditions match many resources.
    Walk,
    /// Start from the resources matching this condition (its index in
    /// `SearchQuery::conditions`), then test the others on them.
    Condition(usize),
}

/// One statement counting, for each condition that could drive the query, its
/// matches up to `cap`, except those in `skip` (their counts are known); rows
/// `(i, n)` with `i` the condition's index. A condition matching fewer than
/// `drive_below` drives the query; when all match more, walking in result order
/// finds a page sooner than building and sorting their sets. `None` when
/// nothing is left to count.
fn estimates_sql(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    cap: u32,
    skip: &[usize],
) -> Option<(String, Vec<Bind>)> {
    let mut sql = Sql::new(style, tenant);
    let mut parts = Vec::new();
    for (i, c) in q.conditions.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let Some(rows) = estimated_rows(&mut sql, c, &q.res_type) else {
            continue;
        };
        let cap = sql.int(i64::from(cap));
        let index = sql.int(i64::try_from(i).unwrap_or(i64::MAX));
        parts.push(format!(
            "SELECT CAST({index} AS BIGINT) AS i, COUNT(*) AS n FROM ({rows} LIMIT {cap}) e{i}"
        ));
    }
    if parts.is_empty() {
        return None;
    }
    Some((parts.join(" UNION ALL "), sql.binds))
}

/// Whether the driver of `q` is chosen from estimates at all: not when it is
/// always walked, nor when it names ids.
fn estimates_apply(q: &SearchQuery) -> bool {
    q.drive_below > 0 && !q.conditions.iter().any(|c| matches!(c, Condition::Id(_)))
}

/// How long a condition found to reach an estimate cap is taken to reach it
/// still, without counting again.
pub const COMMON_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// At most this many conditions are remembered (all are forgotten when full).
const COMMON_MAX: usize = 10_000;

/// Conditions recently counted up to an estimate cap: a common code, a broad
/// date range. Counting thousands of index rows is the dearest part of
/// choosing a driver, and what it shows changes slowly, so a search repeated
/// within [`COMMON_FOR`] skips it. What is remembered only chooses a plan,
/// never which resources match; rarer conditions are always counted (their
/// count stops early, so it is cheap).
#[derive(Debug, Default)]
pub struct CommonConditions {
    seen: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl CommonConditions {
    fn key(tenant: &str, q: &SearchQuery, i: usize, cap: u32) -> String {
        format!(
            "{tenant}\u{0}{}\u{0}{cap}\u{0}{:?}",
            q.res_type, q.conditions[i]
        )
    }

    fn seen(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::time::Instant>> {
        // A panic elsewhere while holding the lock leaves nothing half-done.
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The conditions of `q` known to reach `cap`.
    fn known(&self, tenant: &str, q: &SearchQuery, cap: u32) -> Vec<usize> {
        let seen = self.seen();
        (0..q.conditions.len())
            .filter(|&i| {
                seen.get(&Self::key(tenant, q, i, cap))
                    .is_some_and(|at| at.elapsed() < COMMON_FOR)
            })
            .collect()
    }

    /// Remembers the conditions whose count reached `cap`.
    fn learn(&self, tenant: &str, q: &SearchQuery, cap: u32, counts: &[(usize, u64)]) {
        let mut seen = self.seen();
        for &(i, n) in counts {
            if n >= u64::from(cap) && i < q.conditions.len() {
                if seen.len() >= COMMON_MAX {
                    seen.clear();
                }
                seen.insert(Self::key(tenant, q, i, cap), std::time::Instant::now());
            }
        }
    }
}

/// The choice of a search's driver from capped counts, pass by pass (see
/// [`FIRST_ESTIMATE_CAP`]): the store runs each statement it is given, hands
/// back its rows, and asks for the driver when no statement is left. Counts
/// found in [`CommonConditions`] are not asked for again.
pub struct DriverChoice<'a> {
    tenant: &'a str,
    q: &'a SearchQuery,
    style: Placeholders,
    common: &'a CommonConditions,
    /// The caps of the passes still to come.
    caps: std::vec::IntoIter<u32>,
    /// The pass under way: its cap, and the counts known without counting.
    cap: u32,
    known: Vec<(usize, u64)>,
    /// The counts of the last pass that counted anything.
    counts: Vec<(usize, u64)>,
    settled: bool,
}

impl<'a> DriverChoice<'a> {
    pub fn new(
        tenant: &'a str,
        q: &'a SearchQuery,
        style: Placeholders,
        common: &'a CommonConditions,
    ) -> Self {
        DriverChoice {
            tenant,
            q,
            style,
            common,
            caps: estimate_caps(q).into_iter(),
            cap: 0,
            known: Vec::new(),
            counts: Vec::new(),
            // Walking always, or by id: nothing to estimate.
            settled: !estimates_apply(q),
        }
    }

    /// The next statement to run (rows `(i, n)`), or `None` once the counts
    /// settle the driver.
    pub fn next_statement(&mut self) -> Option<(String, Vec<Bind>)> {
        while !self.settled {
            let Some(cap) = self.caps.next() else {
                self.settled = true;
                break;
            };
            let known = self.common.known(self.tenant, self.q, cap);
            self.cap = cap;
            self.known = known.iter().map(|&i| (i, u64::from(cap))).collect();
            match estimates_sql(self.tenant, self.q, self.style, cap, &known) {
                Some(statement) => return Some(statement),
                None if known.is_empty() => self.settled = true,
                None => self.counted(Vec::new()),
            }
        }
        None
    }

    /// The rows of the statement last given: the pass's counts, remembered
    /// where they reach its cap.
    pub fn counted(&mut self, counted: Vec<(usize, u64)>) {
        self.common.learn(self.tenant, self.q, self.cap, &counted);
        let mut counts = std::mem::take(&mut self.known);
        counts.extend(counted);
        counts.sort_unstable();
        self.settled = estimates_settle(self.q, self.cap, &counts);
        self.counts = counts;
    }

    /// The driver the counts so far choose.
    pub fn driver(&self) -> Driver {
        choose_driver(self.q, &self.counts)
    }
}

/// Whether a condition is met by being in a set of index rows (so it can
/// drive a query), rather than by being absent from one.
fn positive_membership(c: &Condition) -> bool {
    match c {
        Condition::Token { negate, .. } => !negate,
        Condition::Missing { missing, .. } => !missing,
        Condition::Not(_)
        | Condition::AnyOf(_)
        | Condition::AllOf(_)
        | Condition::Id(_)
        | Condition::LastUpdated(_) => false,
        Condition::Has { inner, .. } => positive_membership(inner),
        _ => true,
    }
}

/// Rows whose number bounds the matches of `c` among resources of `res_type`.
/// For `_has`, the sources meeting its inner condition (each names its
/// targets): counting them is one index range, where counting the targets
/// would test the references of every source.
fn estimated_rows(sql: &mut Sql, c: &Condition, res_type: &str) -> Option<String> {
    if let Condition::Has {
        source_type, inner, ..
    } = c
    {
        return estimated_rows(sql, inner, source_type);
    }
    if !positive_membership(c) {
        // Decided before anything is bound: the estimates share one statement.
        return None;
    }
    let rt = sql.text(res_type);
    let m = membership(sql, c, 0, Form::In)?;
    Some(format!(
        "SELECT 1 AS one {core} AND {ty} = {rt}",
        core = m.core,
        ty = m.ty
    ))
}

/// The first estimate pass counts each condition up to this many rows: a
/// condition under it drives whatever the others hold, so common conditions
/// are not counted to the full cap (on PostgreSQL, counting 4,096 index rows
/// of a common code costs more than a millisecond). Only when every
/// condition reaches it does a second pass count up to `drive_below`.
pub const FIRST_ESTIMATE_CAP: u32 = 256;

/// The caps of the estimate passes of a query, in order.
fn estimate_caps(q: &SearchQuery) -> Vec<u32> {
    if q.drive_below > FIRST_ESTIMATE_CAP {
        vec![FIRST_ESTIMATE_CAP, q.drive_below]
    } else {
        vec![q.drive_below]
    }
}

/// Whether the counts of a pass with `cap` settle the driver: one is under
/// the cap (so it is the least), or this was the last pass.
fn estimates_settle(q: &SearchQuery, cap: u32, estimates: &[(usize, u64)]) -> bool {
    cap >= q.drive_below || estimates.iter().any(|(_, n)| *n < u64::from(cap))
}

/// The driver given the counts: the least under `drive_below`, else a walk.
fn choose_driver(q: &SearchQuery, estimates: &[(usize, u64)]) -> Driver {
    match estimates.iter().min_by_key(|(_, n)| *n) {
        Some((i, n)) if *n < u64::from(q.drive_below) => Driver::Condition(*i),
        _ => Driver::Walk,
    }
}

/// Which rows one statement of a search reads. A sorted search walking in
/// result order reads the resources with a value of the first key in key order,
/// then (when the page is not full) those without one, which sort last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    All,
    Keyed,
    Unkeyed,
}

/// The order in which the conditions that do not drive are checked on each
/// row: those that usually fail most often first (a reference to one resource
/// before a code, a code before a date range), so a row that fails is dropped
/// after one probe.
fn check_rank(c: &Condition) -> u8 {
    match c {
        Condition::Id(_) => 0,
        Condition::Reference { .. }
        | Condition::ReferenceUrl { .. }
        | Condition::InCompartment { .. } => 1,
        Condition::StringHash { .. } | Condition::Text { .. } => 2,
        Condition::Token { negate: false, .. } | Condition::Uri { .. } => 3,
        Condition::Number { .. } | Condition::Quantity { .. } => 4,
        Condition::Chain { .. } => 5,
        Condition::Has { .. } => 6,
        Condition::Date { .. } => 7,
        Condition::LastUpdated(_) | Condition::Missing { .. } => 8,
        Condition::Token { negate: true, .. }
        | Condition::Not(_)
        | Condition::AnyOf(_)
        | Condition::AllOf(_) => 9,
    }
}

/// Row checks in rank order, as one expression evaluated in that order:
/// nested `CASE`, since PostgreSQL otherwise orders them by estimated cost,
/// which is about the same for every probe.
fn in_order(mut checks: Vec<(u8, String)>) -> Option<String> {
    checks.sort_by_key(|(rank, _)| *rank);
    let mut rest = checks.into_iter().map(|(_, c)| c).rev();
    let last = rest.next()?;
    Some(rest.fold(last, |inner, check| {
        format!("CASE WHEN {check} THEN {inner} ELSE FALSE END")
    }))
}

fn build(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    driver: Driver,
    phase: Option<Phase>,
) -> (String, Vec<Bind>) {
    let mut sql = Sql::new(style, tenant);
    let t = sql.tenant.clone();
    let rt = sql.text(&q.res_type);
    let top = Scope {
        r: "r".to_owned(),
        id: "id",
        types: format!("= {rt}"),
    };
    // Walking the sort keys, conditions are probed on the key row, before the
    // resource row is read (only for conditions that do not need that row).
    let walked = Scope {
        r: "s1".to_owned(),
        id: "res_id",
        types: top.types.clone(),
    };
    let mut from = "resources r".to_owned();
    let mut clauses = vec![
        format!("r.tenant = {t}"),
        format!("r.res_type = {rt}"),
        "NOT r.deleted".to_owned(),
    ];
    // Driven, conditions are probed on the driver's ids, before the resource
    // row is read: only the rows that pass (and the page) read it.
    let drives = |i: usize| {
        driver == Driver::Condition(i)
            && q.conditions.get(i).is_some_and(|c| {
                membership(&mut Sql::new(style, tenant), c, 0, Form::In).is_some_and(|m| !m.negated)
            })
    };
    let driven_scope = (0..q.conditions.len()).any(drives).then(|| Scope {
        r: "d".to_owned(),
        id: "id",
        types: top.types.clone(),
    });
    let mut checks = Vec::new();
    for (i, c) in q.conditions.iter().enumerate() {
        if drives(i)
            && let Some(m) = membership(&mut sql, c, 0, Form::In).filter(|m| !m.negated)
        {
            // CROSS JOIN keeps the driving set first on SQLite; PostgreSQL
            // plans it like any join.
            from = format!("({}) d CROSS JOIN resources r", m.ids(&top.types));
            clauses.push("r.id = d.id".to_owned());
            continue;
        }
        let scope = match &driven_scope {
            Some(driven) if !needs_row(c) => driven,
            _ if phase == Some(Phase::Keyed) && !needs_row(c) => &walked,
            _ => &top,
        };
        checks.push((check_rank(c), clause(&mut sql, c, scope, 0, Form::Exists)));
    }
    if let Some(all) = in_order(checks) {
        clauses.push(all);
    }
    let Some(phase) = phase else {
        sql.text = format!(
            "SELECT COUNT(*) AS n FROM {from} WHERE {}",
            clauses.join(" AND ")
        );
        return (sql.text, sql.binds);
    };

    // The sort keys; a resource without a value for one sorts last.
    let sort = &q.sort[..q.sort.len().min(MAX_SORT_KEYS)];
    let mut joins = String::new();
    let mut keys: Vec<String> = Vec::new();
    let mut id_col = "r.id";
    for (j, by) in sort.iter().enumerate() {
        let a = format!("s{}", j + 1);
        let col = if by.descending { "key_desc" } else { "key_asc" };
        let p = sql.text(&by.param);
        let missing = if by.descending {
            MISSING_LAST_DESC.to_vec()
        } else {
            MISSING_LAST_ASC.to_vec()
        };
        match (j, phase) {
            (0, Phase::Keyed) => {
                from = "idx_sort s1 CROSS JOIN resources r".to_owned();
                clauses.push(format!(
                    "s1.tenant = {t} AND s1.res_type = {rt} AND s1.param = {p} \
                     AND r.tenant = s1.tenant AND r.res_type = s1.res_type AND r.id = s1.res_id"
                ));
                keys.push(format!("s1.{col}"));
                id_col = "s1.res_id";
            }
            (0, Phase::Unkeyed) => {
                clauses.push(format!(
                    "NOT EXISTS (SELECT 1 FROM idx_sort s1 WHERE s1.tenant = r.tenant \
                     AND s1.res_type = r.res_type AND s1.res_id = r.id AND s1.param = {p})"
                ));
                keys.push(sql.bind(Bind::Bytes(missing)));
            }
            _ => {
                joins.push_str(&format!(
                    " LEFT JOIN idx_sort {a} ON {a}.tenant = r.tenant AND {a}.res_type = r.res_type \
                     AND {a}.res_id = r.id AND {a}.param = {p}"
                ));
                let m = sql.bind(Bind::Bytes(missing));
                keys.push(format!("COALESCE({a}.{col}, {m})"));
            }
        }
    }
    // Read backward (a `previous` page), every direction flips; the caller
    // puts the rows back in result order.
    let back = q.after.as_ref().is_some_and(|c| c.backward);
    // A backward position without keys or id is the end of the results.
    if let Some(after) = q.after.as_ref().filter(|c| !c.is_end()) {
        // (k1, k2, …, id) after the cursor, each key in its own direction.
        let id_op = if back { "<" } else { ">" };
        let mut acc = format!("{id_col} {id_op} {}", sql.text(&after.id));
        for ((k, by), v) in keys.iter().zip(sort).zip(&after.keys).rev() {
            let op = if by.descending != back { "<" } else { ">" };
            let (v1, v2) = (
                sql.bind(Bind::Bytes(v.clone())),
                sql.bind(Bind::Bytes(v.clone())),
            );
            acc = format!("({k} {op} {v1} OR ({k} = {v2} AND {acc}))");
        }
        clauses.push(acc);
        // The same bound on the first key alone, so an index range can start there.
        if let (Some(k), Some(by), Some(v)) = (keys.first(), sort.first(), after.keys.first()) {
            let op = if by.descending != back { "<=" } else { ">=" };
            let v = sql.bind(Bind::Bytes(v.clone()));
            clauses.push(format!("{k} {op} {v}"));
        }
    }
    let blob = match style {
        Placeholders::Numbered => "BYTEA",
        Placeholders::Question => "BLOB",
    };
    let mut select = Vec::new();
    let mut order = Vec::new();
    for j in 0..MAX_SORT_KEYS {
        match (keys.get(j), sort.get(j)) {
            (Some(k), Some(by)) => {
                select.push(format!("{k} AS sort{}", j + 1));
                order.push(if by.descending != back {
                    format!("{k} DESC")
                } else {
                    k.clone()
                });
            }
            _ => select.push(format!("CAST(NULL AS {blob}) AS sort{}", j + 1)),
        }
    }
    order.push(if back {
        format!("{id_col} DESC")
    } else {
        id_col.to_owned()
    });
    let limit = sql.int(i64::from(q.limit));
    sql.text = format!(
        "SELECT r.res_type, r.id, r.version, r.last_updated, r.deleted, r.key_id, r.nonce, r.body, {} \
         FROM {from}{joins} WHERE {} ORDER BY {} LIMIT {limit}",
        select.join(", "),
        clauses.join(" AND "),
        order.join(", "),
    );
    (sql.text, sql.binds)
}

/// The statements of a search, to run in order until `limit` rows are found;
/// columns are those of `SearchRow`.
pub fn search_sql(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    driver: Driver,
) -> Vec<(String, Vec<Bind>)> {
    // With ids given, the few resources are read by id and sorted; walking
    // the sort keys of the whole type would be the slow way to find them.
    let by_id = q.conditions.iter().any(|c| matches!(c, Condition::Id(_)));
    if driver == Driver::Walk && !q.sort.is_empty() && !by_id {
        let keyed = build(tenant, q, style, driver, Some(Phase::Keyed));
        let unkeyed = build(tenant, q, style, driver, Some(Phase::Unkeyed));
        // Backward, the resources without a key (last in result order) come first.
        if q.after.as_ref().is_some_and(|c| c.backward) {
            vec![unkeyed, keyed]
        } else {
            vec![keyed, unkeyed]
        }
    } else {
        vec![build(tenant, q, style, driver, Some(Phase::All))]
    }
}

/// The SQL and binds counting all matches of a search (`_total`); one column `n`.
pub fn count_sql(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    driver: Driver,
) -> (String, Vec<Bind>) {
    // Counting ignores the sort and the page position.
    build(tenant, q, style, driver, None)
}

/// A page of a compartment's members (`Patient/$everything`).
#[derive(Clone, Debug, PartialEq)]
pub struct CompartmentQuery {
    pub compartment: String,
    pub id: String,
    /// Only these types (empty: all).
    pub types: Vec<String>,
    /// Only versions with `last_updated >= since`.
    pub since: Option<Micros>,
    /// After this position (before it, nearest first, when it is backward):
    /// the cursor's one key is the type's name.
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// The SQL of a compartment page: one index range, walked in (type, id) order
/// (backward from a `previous` position, nearest first); columns are those of
/// `SearchRow` (the type is the cursor's key).
pub fn compartment_sql(
    tenant: &str,
    q: &CompartmentQuery,
    style: Placeholders,
) -> (String, Vec<Bind>) {
    let mut sql = Sql::new(style, tenant);
    let t = sql.tenant.clone();
    let (comp, id) = (sql.text(&q.compartment), sql.text(&q.id));
    let mut clauses = vec![
        format!("c.tenant = {t} AND c.compartment = {comp} AND c.comp_id = {id}"),
        "r.tenant = c.tenant AND r.res_type = c.res_type AND r.id = c.res_id AND NOT r.deleted"
            .to_owned(),
    ];
    if !q.types.is_empty() {
        let types: Vec<String> = q.types.iter().map(|t| sql.text(t)).collect();
        clauses.push(format!("c.res_type IN ({})", types.join(", ")));
    }
    if let Some(since) = q.since {
        clauses.push(format!("r.last_updated >= {}", sql.int(since)));
    }
    let back = q.after.as_ref().is_some_and(|c| c.backward);
    if let Some(after) = &q.after {
        let ty =
            String::from_utf8_lossy(after.keys.first().map_or(&[][..], Vec::as_slice)).into_owned();
        let (t1, t2, t3) = (sql.text(&ty), sql.text(&ty), sql.text(&ty));
        let a = sql.text(&after.id);
        let (or_eq, op) = if back { ("<=", "<") } else { (">=", ">") };
        clauses.push(format!(
            "c.res_type {or_eq} {t1} AND (c.res_type {op} {t2} OR (c.res_type = {t3} AND c.res_id {op} {a}))"
        ));
    }
    let order = if back {
        "c.res_type DESC, c.res_id DESC"
    } else {
        "c.res_type, c.res_id"
    };
    let blob = match style {
        Placeholders::Numbered => "BYTEA",
        Placeholders::Question => "BLOB",
    };
    let limit = sql.int(i64::from(q.limit));
    sql.text = format!(
        "SELECT r.res_type, r.id, r.version, r.last_updated, r.deleted, r.key_id, r.nonce, r.body, \
         CAST(NULL AS {blob}) AS sort1, CAST(NULL AS {blob}) AS sort2, CAST(NULL AS {blob}) AS sort3 \
         FROM idx_compartment c CROSS JOIN resources r WHERE {} ORDER BY {order} LIMIT {limit}",
        clauses.join(" AND ")
    );
    (sql.text, sql.binds)
}

/// A raw SQL query with its values bound, for either backend.
pub fn bound_query<'a, DB>(
    sql: String,
    binds: Vec<Bind>,
) -> diesel::query_builder::BoxedSqlQuery<'a, DB, diesel::query_builder::SqlQuery>
where
    DB: diesel::backend::Backend
        + diesel::sql_types::HasSqlType<diesel::sql_types::Text>
        + diesel::sql_types::HasSqlType<diesel::sql_types::BigInt>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Binary>
        + diesel::sql_types::HasSqlType<diesel::sql_types::Double>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    Vec<u8>: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
    f64: diesel::serialize::ToSql<diesel::sql_types::Double, DB>,
{
    let mut query = diesel::sql_query(sql).into_boxed::<DB>();
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind::<diesel::sql_types::Text, _>(s),
            Bind::Int(i) => query.bind::<diesel::sql_types::BigInt, _>(i),
            Bind::Bytes(b) => query.bind::<diesel::sql_types::Binary, _>(b),
            Bind::Float(f) => query.bind::<diesel::sql_types::Double, _>(f),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_not_pasted() {
        let q = SearchQuery {
            res_type: "Observation".into(),
            conditions: vec![
                Condition::Token {
                    param: "code".into(),
                    any_of: vec![(Some("http://loinc.org".into()), Some("1' OR '1'='1".into()))],
                    negate: false,
                },
                Condition::Reference {
                    param: "subject".into(),
                    any_of: vec![(Some("Patient".into()), "p1".into())],
                },
                Condition::Date {
                    param: "date".into(),
                    any_of: vec![(DateOp::EndsAfterStart, 10, 20)],
                },
            ],
            sort: vec![SortBy {
                param: "date".into(),
                descending: true,
            }],
            after: Some(Cursor {
                keys: vec![int_key(7)],
                id: "abc'--".into(),
                backward: false,
            }),
            limit: 21,
            drive_below: DEFAULT_DRIVE_BELOW,
        };
        let statements = search_sql("default", &q, Placeholders::Numbered, Driver::Walk);
        assert_eq!(statements.len(), 2, "keyed, then unkeyed");
        for (sql, binds) in statements {
            assert!(!sql.contains("1'") && !sql.contains("abc"), "{sql}");
            assert!(sql.contains("x.code = $4 AND x.system = $5"), "{sql}");
            assert_eq!(binds.last(), Some(&Bind::Int(21)));
        }
        let statements = search_sql("default", &q, Placeholders::Question, Driver::Condition(1));
        assert_eq!(statements.len(), 1);
        assert!(!statements[0].0.contains('$'));
    }

    #[test]
    fn common_conditions_are_not_counted_again() {
        let token = |code: &str| Condition::Token {
            param: "code".into(),
            any_of: vec![(None, Some(code.into()))],
            negate: false,
        };
        let q = SearchQuery {
            res_type: "Observation".into(),
            conditions: vec![token("common"), token("rare")],
            sort: Vec::new(),
            after: None,
            limit: 21,
            drive_below: DEFAULT_DRIVE_BELOW,
        };
        let common = CommonConditions::default();
        let counted = |statement: &Option<(String, Vec<Bind>)>| {
            statement
                .as_ref()
                .map_or(0, |(sql, _)| sql.matches("COUNT(*)").count())
        };
        let mut first = DriverChoice::new("default", &q, Placeholders::Numbered, &common);
        let statement = first.next_statement();
        assert_eq!((counted(&statement), first.known.len()), (2, 0));
        first.counted(vec![(1, 3), (0, 256)]);
        assert_eq!(first.counts, [(0, 256), (1, 3)]);
        assert!(first.next_statement().is_none(), "settled by the rare one");
        assert_eq!(first.driver(), Driver::Condition(1));

        // Again: only the rare condition is counted; the common one's count is
        // known, for this cap, this tenant and this type only.
        let mut again = DriverChoice::new("default", &q, Placeholders::Numbered, &common);
        let statement = again.next_statement();
        assert_eq!(
            (counted(&statement), again.known.clone()),
            (1, vec![(0, 256)])
        );
        let (sql, binds) = statement.unwrap();
        assert!(sql.ends_with(" e1") && !sql.contains(" e0"), "{sql}");
        assert!(binds.contains(&Bind::Text("rare".into())), "{binds:?}");
        assert!(!binds.contains(&Bind::Text("common".into())), "{binds:?}");
        assert!(common.known("default", &q, 4096).is_empty());
        assert!(common.known("other", &q, 256).is_empty());

        // Walking always, or by id, nothing is estimated at all.
        let walked = SearchQuery {
            drive_below: 0,
            ..q.clone()
        };
        let mut none = DriverChoice::new("default", &walked, Placeholders::Numbered, &common);
        assert!(none.next_statement().is_none() && none.known.is_empty());
        assert_eq!(none.driver(), Driver::Walk);
    }

    #[test]
    fn widened_comparisons_never_lose_a_match() {
        let ops = [
            DateOp::Within,
            DateOp::NotWithin,
            DateOp::EndsAfter,
            DateOp::StartsBefore,
            DateOp::EndsAfterStart,
            DateOp::StartsBeforeEnd,
            DateOp::StartsAfter,
            DateOp::EndsBefore,
            DateOp::Overlaps,
        ];
        // Exact ranges inside coarse "years" of 100, searched ranges anywhere.
        for op in ops {
            for low in (0..400).step_by(7) {
                for len in [1, 13, 60] {
                    let high = low + len;
                    let (wl, wh) = (low / 100 * 100, (high - 1) / 100 * 100 + 100);
                    for from in (0..400).step_by(11) {
                        for to in [from + 1, from + 30, from + 150] {
                            if op.holds(low, high, from, to) {
                                let (w, f, t) = op.widened(from, to);
                                assert!(w.holds(wl, wh, f, t), "{op:?} {low}-{high} {from}-{to}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn keys_compare_like_their_values() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in ints.windows(2) {
            assert!(int_key(w[0]) < int_key(w[1]), "{w:?}");
        }
        let reals = [f64::MIN, -2.5, -0.0001, 0.0, 1e-9, 3.25, 1e300];
        for w in reals.windows(2) {
            assert!(real_key(w[0]) < real_key(w[1]), "{w:?}");
        }
        let texts = [
            text_key(&["", "z"]),
            text_key(&["a", "urn:x"]),
            text_key(&["a", "urn:y"]),
            text_key(&["ab", ""]),
            text_key(&["b", ""]),
            text_key(&["\u{10FFFF}"]),
        ];
        for w in texts.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
        }
        for k in [
            int_key(i64::MAX),
            real_key(f64::MAX),
            text_key(&["\u{10FFFF}"]),
        ] {
            assert!(MISSING_LAST_DESC.as_slice() < k.as_slice());
            assert!(k.as_slice() < MISSING_LAST_ASC.as_slice());
        }
    }

    #[test]
    fn cursors_round_trip() {
        for c in [
            Cursor {
                keys: vec![],
                id: "a-1".into(),
                backward: false,
            },
            Cursor {
                keys: vec![int_key(-3), vec![], vec![0xFF]],
                id: "x.y".into(),
                backward: false,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("kzz~a"), None);
        assert_eq!(Cursor::decode("i5~a"), None);
    }
}
