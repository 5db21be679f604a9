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

/// One AND-ed condition: any of its alternatives (OR) must hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Any of these conditions (compartments: any of the linking parameters).
    AnyOf(Vec<Condition>),
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
    /// The order of results after the optional sort key: always by id last.
    pub sort: Option<Sort>,
    /// Keyset paging: only results after this position.
    pub after: Option<Cursor>,
    pub limit: u32,
    /// A condition matching fewer resources than this drives the query (the
    /// store counts up to it); 0 always walks in result order.
    pub drive_below: u32,
}

/// What results can be sorted by (numeric keys, so that the order and the
/// keyset comparison are exact on both backends).
#[derive(Clone, Debug, PartialEq)]
pub enum SortKey {
    LastUpdated,
    /// A date parameter: its earliest start ascending, its latest end descending.
    Date(String),
    /// A number or quantity parameter (`table` says which).
    Value {
        table: IndexTable,
        param: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

/// One result of a search, with its position for the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub version: crate::StoredVersion,
    pub cursor: Cursor,
}

/// A position in a result list: the sort key of the last row shown (when
/// sorted) and its id.
#[derive(Clone, Debug, PartialEq)]
pub enum Cursor {
    Id(String),
    Int(i64, String),
    Real(f64, String),
}

impl Cursor {
    /// The text form used in `_page` links.
    pub fn encode(&self) -> String {
        match self {
            Cursor::Id(id) => id.clone(),
            Cursor::Int(k, id) => format!("i{k}~{id}"),
            Cursor::Real(k, id) => format!("r{k:e}~{id}"),
        }
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        match s.rsplit_once('~') {
            None => Some(Cursor::Id(s.to_owned())),
            Some((key, id)) => match key.split_at_checked(1)? {
                ("i", k) => Some(Cursor::Int(k.parse().ok()?, id.to_owned())),
                ("r", k) => Some(Cursor::Real(k.parse().ok()?, id.to_owned())),
                _ => None,
            },
        }
    }
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

impl Member {
    fn render(&self, form: Form, scope: &Scope) -> String {
        let (ty, id, core, r) = (&self.ty, &self.id, &self.core, &scope.r);
        let e = match form {
            Form::In => format!(
                "({r}.res_type, {r}.id) IN (SELECT {ty}, {id} {core} AND {ty} {types})",
                types = scope.types
            ),
            Form::Exists => {
                format!("EXISTS (SELECT 1 {core} AND {ty} = {r}.res_type AND {id} = {r}.id)")
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
    let filter = alternatives(sql).join(" OR ");
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

/// The condition as a membership in a set of resources, when it is one.
fn membership(sql: &mut Sql, c: &Condition, depth: usize) -> Option<Member> {
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
            let inner_scope = Scope {
                r: h.clone(),
                types: format!("= {st}"),
            };
            let inner = clause(sql, inner, &inner_scope, depth + 1, Form::In);
            Member {
                ty: format!("{y}.target_type"),
                id: format!("{y}.target_id"),
                core: format!(
                    "FROM idx_reference {y} \
                     JOIN resources {h} ON {h}.tenant = {y}.tenant AND {h}.res_type = {y}.res_type AND {h}.id = {y}.res_id \
                     WHERE {y}.tenant = {tenant} AND {y}.res_type = {st} AND {y}.param = {p} AND NOT {h}.deleted \
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
        Condition::Missing {
            param,
            table,
            missing,
        } => {
            let mut m = member(sql, *table, param, |_| vec!["1 = 1".to_owned()]);
            m.negated = *missing;
            m
        }
        Condition::AnyOf(_) | Condition::Id(_) | Condition::LastUpdated(_) => return None,
    })
}

/// The SQL of one condition on the resource rows of `scope`; `depth` keeps the
/// aliases of nested chains and `_has` apart.
fn clause(sql: &mut Sql, c: &Condition, scope: &Scope, depth: usize, form: Form) -> String {
    if let Some(m) = membership(sql, c, depth) {
        return m.render(form, scope);
    }
    let r = scope.r.as_str();
    match c {
        Condition::AnyOf(alternatives) => {
            let parts: Vec<String> = alternatives
                .iter()
                .map(|a| clause(sql, a, scope, depth, form))
                .collect();
            format!("({})", parts.join(" OR "))
        }
        Condition::Id(ids) => {
            let alternatives: Vec<String> = ids.iter().map(|id| sql.text(id)).collect();
            format!("{r}.id IN ({})", alternatives.join(", "))
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

/// For each condition that could drive the query, the SQL counting its matches
/// up to `drive_below` (one column `n`): a condition matching fewer drives the
/// query; when all match more, walking in result order finds a page sooner
/// than building and sorting their sets. Empty when the choice is already
/// clear (an `_id` condition, or always walking).
pub fn estimates_sql(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
) -> Vec<(usize, String, Vec<Bind>)> {
    if q.drive_below == 0 || q.conditions.iter().any(|c| matches!(c, Condition::Id(_))) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, c) in q.conditions.iter().enumerate() {
        let mut sql = Sql::new(style, tenant);
        let rt = sql.text(&q.res_type);
        let Some(m) = membership(&mut sql, c, 0) else {
            continue;
        };
        if m.negated {
            continue;
        }
        let cap = sql.int(i64::from(q.drive_below));
        let text = format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 AS one {core} AND {ty} = {rt} LIMIT {cap}) e",
            core = m.core,
            ty = m.ty
        );
        out.push((i, text, sql.binds));
    }
    out
}

/// The driver given the estimates (condition index, capped count).
pub fn choose_driver(q: &SearchQuery, estimates: &[(usize, u64)]) -> Driver {
    match estimates.iter().min_by_key(|(_, n)| *n) {
        Some((i, n)) if *n < u64::from(q.drive_below) => Driver::Condition(*i),
        _ => Driver::Walk,
    }
}

fn build(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    driver: Driver,
    count: bool,
) -> (String, Vec<Bind>) {
    let mut sql = Sql::new(style, tenant);
    let t = sql.tenant.clone();
    let rt = sql.text(&q.res_type);
    let top = Scope {
        r: "r".to_owned(),
        types: format!("= {rt}"),
    };
    let mut from = "resources r".to_owned();
    let mut clauses = vec![
        format!("r.tenant = {t}"),
        format!("r.res_type = {rt}"),
        "NOT r.deleted".to_owned(),
    ];
    for (i, c) in q.conditions.iter().enumerate() {
        if driver == Driver::Condition(i)
            && let Some(m) = membership(&mut sql, c, 0).filter(|m| !m.negated)
        {
            // CROSS JOIN keeps the driving set first on SQLite; PostgreSQL
            // plans it like any join.
            from = format!("({}) d CROSS JOIN resources r", m.ids(&top.types));
            clauses.push("r.id = d.id".to_owned());
            continue;
        }
        let c = clause(&mut sql, c, &top, 0, Form::Exists);
        clauses.push(c);
    }
    if count {
        sql.text = format!(
            "SELECT COUNT(*) AS n FROM {from} WHERE {}",
            clauses.join(" AND ")
        );
        return (sql.text, sql.binds);
    }
    // The sort key, written out wherever it is used (so its binds stay in order);
    // resources without a value sort last either way.
    let key = |sql: &mut Sql| -> Option<(String, bool)> {
        let sort = q.sort.as_ref()?;
        let d = sort.descending;
        let (expr, real) = match &sort.key {
            SortKey::LastUpdated => ("r.last_updated".to_owned(), false),
            SortKey::Date(param) => {
                let p = sql.text(param);
                let agg = if d { "MAX(x.high)" } else { "MIN(x.low)" };
                (
                    format!(
                        "(SELECT {agg} FROM idx_date x WHERE x.tenant = r.tenant AND x.res_type = r.res_type \
                         AND x.res_id = r.id AND x.param = {p})"
                    ),
                    false,
                )
            }
            SortKey::Value { table, param } => {
                let p = sql.text(param);
                let agg = if d { "MAX(x.value)" } else { "MIN(x.value)" };
                (
                    format!(
                        "(SELECT {agg} FROM {t} x WHERE x.tenant = r.tenant AND x.res_type = r.res_type \
                         AND x.res_id = r.id AND x.param = {p})",
                        t = table.name()
                    ),
                    true,
                )
            }
        };
        let missing = match (real, d) {
            (false, false) => sql.int(i64::MAX),
            (false, true) => sql.int(i64::MIN),
            (true, false) => sql.bind(Bind::Float(f64::MAX)),
            (true, true) => sql.bind(Bind::Float(f64::MIN)),
        };
        Some((format!("COALESCE({expr}, {missing})"), real))
    };
    match &q.after {
        None => {}
        Some(Cursor::Id(id)) => {
            let a = sql.text(id);
            clauses.push(format!("r.id > {a}"));
        }
        Some(cursor) => {
            let op = if q.sort.as_ref().is_some_and(|s| s.descending) {
                "<"
            } else {
                ">"
            };
            let value = |sql: &mut Sql| match cursor {
                Cursor::Int(v, _) => sql.int(*v),
                Cursor::Real(v, _) => sql.bind(Bind::Float(*v)),
                Cursor::Id(_) => unreachable!("handled above"),
            };
            let id = match cursor {
                Cursor::Int(_, id) | Cursor::Real(_, id) | Cursor::Id(id) => id,
            };
            // Each placeholder is bound in the order it appears.
            let k1 = key(&mut sql).map_or_else(|| "0".to_owned(), |(e, _)| e);
            let v1 = value(&mut sql);
            let k2 = key(&mut sql).map_or_else(|| "0".to_owned(), |(e, _)| e);
            let v2 = value(&mut sql);
            let id = sql.text(id);
            clauses.push(format!("({k1} {op} {v1} OR ({k2} = {v2} AND r.id > {id}))"));
        }
    }
    let (select_key, order) = match key(&mut sql) {
        Some((e, false)) => (
            format!("{e} AS sort_int, CAST(NULL AS DOUBLE PRECISION) AS sort_real"),
            if q.sort.as_ref().is_some_and(|s| s.descending) {
                "sort_int DESC, r.id"
            } else {
                "sort_int, r.id"
            },
        ),
        Some((e, true)) => (
            format!("CAST(NULL AS BIGINT) AS sort_int, {e} AS sort_real"),
            if q.sort.as_ref().is_some_and(|s| s.descending) {
                "sort_real DESC, r.id"
            } else {
                "sort_real, r.id"
            },
        ),
        None => (
            "CAST(NULL AS BIGINT) AS sort_int, CAST(NULL AS DOUBLE PRECISION) AS sort_real"
                .to_owned(),
            "r.id",
        ),
    };
    let limit = sql.int(i64::from(q.limit));
    sql.text = format!(
        "SELECT r.res_type, r.id, r.version, r.last_updated, r.deleted, r.key_id, r.nonce, r.body, {select_key} \
         FROM {from} WHERE {} ORDER BY {order} LIMIT {limit}",
        clauses.join(" AND ")
    );
    (sql.text, sql.binds)
}

/// The SQL and binds of a search; columns are those of `VersionRow`.
pub fn search_sql(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    driver: Driver,
) -> (String, Vec<Bind>) {
    build(tenant, q, style, driver, false)
}

/// The SQL and binds counting all matches of a search (`_total`); one column `n`.
pub fn count_sql(
    tenant: &str,
    q: &SearchQuery,
    style: Placeholders,
    driver: Driver,
) -> (String, Vec<Bind>) {
    // Counting ignores the sort and the page position (both come after it in `build`).
    build(tenant, q, style, driver, true)
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
            sort: None,
            after: Some(Cursor::Id("abc".into())),
            limit: 21,
            drive_below: 4096,
        };
        let (sql, binds) = search_sql("default", &q, Placeholders::Numbered, Driver::Walk);
        assert!(!sql.contains("1'"), "{sql}");
        assert!(sql.contains("x.code = $4 AND x.system = $5"), "{sql}");
        assert_eq!(binds.len(), 12);
        assert_eq!(binds.last(), Some(&Bind::Int(21)));
        let (sql, _) = search_sql("default", &q, Placeholders::Question, Driver::Condition(1));
        assert!(!sql.contains('$'));
    }
}
