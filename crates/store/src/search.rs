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
    /// Keyset paging: only ids after this one.
    pub after_id: Option<String>,
    pub limit: u32,
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
    /// `?` (SQLite)
    Question,
}

struct Sql {
    text: String,
    binds: Vec<Bind>,
    style: Placeholders,
}

impl Sql {
    /// Binds a value and returns its placeholder. Placeholders must appear in the
    /// SQL in the order they are bound: SQLite's `?` is positional.
    fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        match self.style {
            Placeholders::Numbered => format!("${}", self.binds.len()),
            Placeholders::Question => "?".to_owned(),
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

/// `EXISTS` over an index table for the resource row aliased `r`.
fn exists(table: IndexTable, r: &str, param_bind: &str, filter: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM {t} x WHERE x.tenant = {r}.tenant AND x.res_type = {r}.res_type \
         AND x.res_id = {r}.id AND x.param = {param_bind} AND ({filter}))",
        t = table.name()
    )
}

/// The SQL of one condition on the resource row aliased `r`; `depth` keeps the
/// aliases of nested chains and `_has` apart.
fn clause(sql: &mut Sql, c: &Condition, r: &str, depth: usize) -> String {
    match c {
        Condition::Chain {
            param,
            target_types,
            inner,
        } => {
            let p = sql.text(param);
            let types: Vec<String> = target_types.iter().map(|t| sql.text(t)).collect();
            let r2 = format!("c{}", depth + 1);
            let inner = clause(sql, inner, &r2, depth + 1);
            format!(
                "EXISTS (SELECT 1 FROM idx_reference x WHERE x.tenant = {r}.tenant AND x.res_type = {r}.res_type \
                 AND x.res_id = {r}.id AND x.param = {p} AND x.target_type IN ({types}) AND EXISTS (\
                 SELECT 1 FROM resources {r2} WHERE {r2}.tenant = x.tenant AND {r2}.res_type = x.target_type \
                 AND {r2}.id = x.target_id AND NOT {r2}.deleted AND ({inner})))",
                types = types.join(", ")
            )
        }
        Condition::Has {
            source_type,
            param,
            inner,
        } => {
            let (h, y) = (format!("h{}", depth + 1), format!("y{}", depth + 1));
            let (st, p) = (sql.text(source_type), sql.text(param));
            let inner = clause(sql, inner, &h, depth + 1);
            format!(
                "EXISTS (SELECT 1 FROM resources {h} JOIN idx_reference {y} ON {y}.tenant = {h}.tenant \
                 AND {y}.res_type = {h}.res_type AND {y}.res_id = {h}.id WHERE {h}.tenant = {r}.tenant \
                 AND {h}.res_type = {st} AND NOT {h}.deleted AND {y}.param = {p} \
                 AND {y}.target_type = {r}.res_type AND {y}.target_id = {r}.id AND ({inner}))"
            )
        }
        Condition::AnyOf(alternatives) => {
            let parts: Vec<String> = alternatives
                .iter()
                .map(|a| clause(sql, a, r, depth))
                .collect();
            format!("({})", parts.join(" OR "))
        }
        Condition::Token {
            param,
            any_of,
            negate,
        } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
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
                .collect();
            let e = exists(IndexTable::Token, r, &p, &alternatives.join(" OR "));
            if *negate { format!("NOT {e}") } else { e }
        }
        Condition::Reference { param, any_of } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
                .iter()
                .map(|(target_type, id)| match target_type {
                    Some(tt) => format!(
                        "(x.target_id = {} AND x.target_type = {})",
                        sql.text(id),
                        sql.text(tt)
                    ),
                    None => format!("x.target_id = {}", sql.text(id)),
                })
                .collect();
            exists(IndexTable::Reference, r, &p, &alternatives.join(" OR "))
        }
        Condition::Number { param, any_of } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of.iter().map(|t| sql.number(t)).collect();
            exists(IndexTable::Number, r, &p, &alternatives.join(" OR "))
        }
        Condition::Quantity { param, any_of } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
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
                .collect();
            exists(IndexTable::Quantity, r, &p, &alternatives.join(" OR "))
        }
        Condition::Uri {
            param,
            any_of,
            below,
        } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
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
                .collect();
            exists(IndexTable::Uri, r, &p, &alternatives.join(" OR "))
        }
        Condition::StringHash { param, any_of } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
                .iter()
                .map(|h| format!("x.hash = {}", sql.bind(Bind::Bytes(h.clone()))))
                .collect();
            exists(IndexTable::StringHash, r, &p, &alternatives.join(" OR "))
        }
        Condition::ReferenceUrl { param, any_of } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
                .iter()
                .map(|u| format!("x.url = {}", sql.text(u)))
                .collect();
            exists(IndexTable::Reference, r, &p, &alternatives.join(" OR "))
        }
        Condition::Date { param, any_of } => {
            let p = sql.text(param);
            let alternatives: Vec<String> = any_of
                .iter()
                .map(|(op, from, to)| sql.date(*op, "x.low", "x.high", *from, *to))
                .collect();
            exists(IndexTable::Date, r, &p, &alternatives.join(" OR "))
        }
        Condition::Missing {
            param,
            table,
            missing,
        } => {
            let p = sql.text(param);
            let e = exists(*table, r, &p, "1 = 1");
            if *missing { format!("NOT {e}") } else { e }
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
    }
}

fn build(tenant: &str, q: &SearchQuery, style: Placeholders, count: bool) -> (String, Vec<Bind>) {
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
        style,
    };
    let (t, rt) = (sql.text(tenant), sql.text(&q.res_type));
    let mut clauses = vec![
        format!("r.tenant = {t}"),
        format!("r.res_type = {rt}"),
        "NOT r.deleted".to_owned(),
    ];
    for c in &q.conditions {
        let c = clause(&mut sql, c, "r", 0);
        clauses.push(c);
    }
    if let Some(after) = &q.after_id {
        let a = sql.text(after);
        clauses.push(format!("r.id > {a}"));
    }
    if count {
        sql.text = format!(
            "SELECT COUNT(*) AS n FROM resources r WHERE {}",
            clauses.join(" AND ")
        );
        return (sql.text, sql.binds);
    }
    let limit = sql.int(i64::from(q.limit));
    sql.text = format!(
        "SELECT r.res_type, r.id, r.version, r.last_updated, r.deleted, r.key_id, r.nonce, r.body \
         FROM resources r WHERE {} ORDER BY r.id LIMIT {limit}",
        clauses.join(" AND ")
    );
    (sql.text, sql.binds)
}

/// The SQL and binds of a search; columns are those of `VersionRow`.
pub fn search_sql(tenant: &str, q: &SearchQuery, style: Placeholders) -> (String, Vec<Bind>) {
    build(tenant, q, style, false)
}

/// The SQL and binds counting all matches of a search (`_total`); one column `n`.
pub fn count_sql(tenant: &str, q: &SearchQuery, style: Placeholders) -> (String, Vec<Bind>) {
    let q = SearchQuery {
        after_id: None,
        ..q.clone()
    };
    build(tenant, &q, style, true)
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
            after_id: Some("abc".into()),
            limit: 21,
        };
        let (sql, binds) = search_sql("default", &q, Placeholders::Numbered);
        assert!(!sql.contains("1'"), "{sql}");
        assert!(sql.contains("x.code = $4 AND x.system = $5"), "{sql}");
        assert_eq!(binds.len(), 12);
        assert_eq!(binds.last(), Some(&Bind::Int(21)));
        let (sql, _) = search_sql("default", &q, Placeholders::Question);
        assert!(!sql.contains('$'));
    }
}
