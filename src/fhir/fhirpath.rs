//! The FHIRPath subset that R4 search parameter expressions use: paths with
//! choice types, `|`, `is`/`as` (operators and functions), `ofType()`, `where()`,
//! `resolve()` (to the referenced type), `extension(url)`, `hasExtension(url)`,
//! `exists()`, `empty()`, `not()`, `first()`, indexers, `=`/`!=`, `and`/`or`, and
//! string, boolean and number literals.
//!
//! Navigation is typed by the R4 model, so `Observation.value` finds
//! `valueQuantity` and `as Quantity` knows what it holds. Anything outside the
//! subset fails at compile time, never at evaluation.

use super::model::{TypeRef, r4};
use crate::json::Json;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `$this`, or the context at the start of a path.
    This,
    /// `%resource`: the resource the evaluation started from.
    Resource,
    /// An identifier at the start of a path: a type filter on the root resource
    /// (`Observation`) or a child of `$this` (`type` inside `where`).
    Start(String),
    Member(Box<Expr>, String),
    Index(Box<Expr>, usize),
    Call(Box<Expr>, Function),
    Union(Box<Expr>, Box<Expr>),
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
    Equals(Box<Expr>, Box<Expr>, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Str(String),
    Bool(bool),
    Number(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Function {
    Where(Box<Expr>),
    Resolve,
    Exists,
    Empty,
    Not,
    First,
    Extension(String),
    HasExtension(String),
    OfType(String),
    As(String),
    Is(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError(pub String);

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<Token>, CompileError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |m: &str, at: usize| CompileError(format!("{m} at offset {at}"));
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(err("unterminated string", i)),
                        Some(b'\'') => break,
                        Some(b'\\') => {
                            let e = b.get(i + 1).ok_or_else(|| err("bad escape", i))?;
                            s.push(match e {
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                other => char::from(*other),
                            });
                            i += 2;
                        }
                        Some(_) => {
                            let ch = src[i..]
                                .chars()
                                .next()
                                .ok_or_else(|| err("bad string", i))?;
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                i += 1;
                out.push(Token::Str(s));
            }
            b'`' => {
                let end = src[i + 1..]
                    .find('`')
                    .ok_or_else(|| err("unterminated identifier", i))?;
                out.push(Token::Ident(src[i + 1..i + 1 + end].to_owned()));
                i += end + 2;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_digit()
                        || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                out.push(Token::Number(src[start..i].to_owned()));
            }
            b'$' | b'%' | b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Token::Ident(src[start..i].to_owned()));
            }
            _ => {
                let two = src.get(i..i + 2).unwrap_or("");
                let sym: &'static str = match two {
                    "!=" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    _ => match c {
                        b'.' => ".",
                        b'(' => "(",
                        b')' => ")",
                        b'[' => "[",
                        b']' => "]",
                        b'|' => "|",
                        b'=' => "=",
                        b',' => ",",
                        b'<' => "<",
                        b'>' => ">",
                        _ => return Err(err("unexpected character", i)),
                    },
                };
                i += sym.len();
                out.push(Token::Sym(sym));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(x)) if *x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(x)) if x == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), CompileError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(CompileError(format!(
                "expected '{s}' at token {}",
                self.pos
            )))
        }
    }

    fn ident(&mut self) -> Result<String, CompileError> {
        match self.tokens.get(self.pos) {
            Some(Token::Ident(s)) => {
                self.pos += 1;
                Ok(s.clone())
            }
            _ => Err(CompileError(format!(
                "expected an identifier at token {}",
                self.pos
            ))),
        }
    }

    /// A type specifier: `Quantity`, `FHIR.Quantity`, `System.String`.
    fn type_name(&mut self) -> Result<String, CompileError> {
        let mut name = self.ident()?;
        while self.eat_sym(".") {
            name = self.ident()?;
        }
        Ok(name)
    }

    fn or(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.equality()?;
        while self.eat_word("and") {
            left = Expr::And(Box::new(left), Box::new(self.equality()?));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.union()?;
        loop {
            if self.eat_sym("=") {
                left = Expr::Equals(Box::new(left), Box::new(self.union()?), true);
            } else if self.eat_sym("!=") {
                left = Expr::Equals(Box::new(left), Box::new(self.union()?), false);
            } else {
                return Ok(left);
            }
        }
    }

    fn union(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.type_op()?;
        while self.eat_sym("|") {
            left = Expr::Union(Box::new(left), Box::new(self.type_op()?));
        }
        Ok(left)
    }

    fn type_op(&mut self) -> Result<Expr, CompileError> {
        let mut left = self.term()?;
        loop {
            if self.eat_word("is") {
                left = Expr::Is(Box::new(left), self.type_name()?);
            } else if self.eat_word("as") {
                left = Expr::As(Box::new(left), self.type_name()?);
            } else {
                return Ok(left);
            }
        }
    }

    fn term(&mut self) -> Result<Expr, CompileError> {
        let mut e = match self.tokens.get(self.pos).cloned() {
            Some(Token::Str(s)) => {
                self.pos += 1;
                Expr::Str(s)
            }
            Some(Token::Number(n)) => {
                self.pos += 1;
                Expr::Number(n)
            }
            Some(Token::Sym("(")) => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect_sym(")")?;
                inner
            }
            Some(Token::Ident(w)) => {
                self.pos += 1;
                match w.as_str() {
                    "true" => Expr::Bool(true),
                    "false" => Expr::Bool(false),
                    "$this" => Expr::This,
                    "%resource" => Expr::Resource,
                    _ if self.eat_sym("(") => Expr::Call(Box::new(Expr::This), self.function(&w)?),
                    _ => Expr::Start(w),
                }
            }
            other => return Err(CompileError(format!("unexpected {other:?}"))),
        };
        loop {
            if self.eat_sym(".") {
                let name = self.ident()?;
                e = if self.eat_sym("(") {
                    Expr::Call(Box::new(e), self.function(&name)?)
                } else {
                    Expr::Member(Box::new(e), name)
                };
            } else if self.eat_sym("[") {
                let index = match self.tokens.get(self.pos) {
                    Some(Token::Number(n)) => {
                        n.parse().map_err(|_| CompileError("bad index".into()))?
                    }
                    _ => return Err(CompileError("only literal indexes are supported".into())),
                };
                self.pos += 1;
                self.expect_sym("]")?;
                e = Expr::Index(Box::new(e), index);
            } else {
                return Ok(e);
            }
        }
    }

    /// Parses the arguments of `name(` up to and including `)`.
    fn function(&mut self, name: &str) -> Result<Function, CompileError> {
        let string_arg = |p: &mut Self| match p.tokens.get(p.pos).cloned() {
            Some(Token::Str(s)) => {
                p.pos += 1;
                Ok(s)
            }
            _ => Err(CompileError(format!("{name}() takes a string"))),
        };
        let f = match name {
            "where" => Function::Where(Box::new(self.or()?)),
            "resolve" => Function::Resolve,
            "exists" => Function::Exists,
            "empty" => Function::Empty,
            "not" => Function::Not,
            "first" => Function::First,
            "extension" => Function::Extension(string_arg(self)?),
            "hasExtension" => Function::HasExtension(string_arg(self)?),
            "ofType" => Function::OfType(self.type_name()?),
            "as" => Function::As(self.type_name()?),
            "is" => Function::Is(self.type_name()?),
            other => return Err(CompileError(format!("function {other}() is not supported"))),
        };
        self.expect_sym(")")?;
        Ok(f)
    }
}

/// Compiles an expression of the supported subset.
pub fn compile(src: &str) -> Result<Expr, CompileError> {
    let mut p = Parser {
        tokens: lex(src)?,
        pos: 0,
    };
    let e = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(CompileError(format!(
            "unexpected trailing input at token {}",
            p.pos
        )));
    }
    Ok(e)
}

/// The FHIR type of a node, as far as navigation knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty<'a> {
    /// A complex type or backbone (the owner name in the model).
    Complex(&'static str),
    Primitive(&'static str),
    /// A resource, with its `resourceType`.
    Resource(&'a str),
}

/// One item of a result collection.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Node(&'a Json, Ty<'a>),
    Bool(bool),
    Str(String),
    Number(String),
    /// What `resolve()` gives: the referenced resource type (content is not loaded).
    Reference(String),
}

impl Value<'_> {
    fn type_name(&self) -> Option<&str> {
        match self {
            Value::Node(_, Ty::Complex(n) | Ty::Primitive(n)) => Some(n),
            Value::Node(_, Ty::Resource(t)) => Some(t),
            Value::Reference(t) => Some(t),
            Value::Bool(_) => Some("boolean"),
            Value::Str(_) => Some("string"),
            Value::Number(_) => Some("decimal"),
        }
    }
}

/// Whether a value of type `actual` is a `wanted` (FHIR type names, with the
/// Quantity profiles and the abstract resource types).
fn type_matches(actual: &str, wanted: &str) -> bool {
    actual == wanted
        || (wanted == "Quantity"
            && matches!(
                actual,
                "Age" | "Count" | "Distance" | "Duration" | "MoneyQuantity" | "SimpleQuantity"
            ))
        || (matches!(wanted, "Resource" | "DomainResource") && r4().is_resource_type(actual))
        || (wanted == "String"
            && matches!(
                actual,
                "string"
                    | "code"
                    | "id"
                    | "markdown"
                    | "uri"
                    | "url"
                    | "canonical"
                    | "oid"
                    | "uuid"
            ))
}

/// The `resourceType` of a resource.
pub fn resource_type(json: &Json) -> Option<&str> {
    match json {
        Json::Object(o) => o.get("resourceType").and_then(Json::as_str),
        _ => None,
    }
}

/// The children named `name` of one node, typed.
fn children<'a>(v: &Value<'a>, name: &str, out: &mut Vec<Value<'a>>) {
    let Value::Node(Json::Object(obj), ty) = v else {
        return;
    };
    let def = match ty {
        Ty::Complex(owner) => r4().type_def(owner),
        Ty::Resource(t) => r4().type_def(t),
        Ty::Primitive(_) => None,
    };
    let Some(def) = def else { return };
    let Some(el) = def
        .elements
        .iter()
        .find(|e| e.name == name || e.name.strip_suffix("[x]") == Some(name))
    else {
        return;
    };
    for (&t, json_name) in el.types.iter().zip(&el.json_names) {
        let Some(found) = obj.get(json_name) else {
            continue;
        };
        let items: &[Json] = match found {
            Json::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        for item in items {
            let ty = match t {
                TypeRef::Primitive(p) => Ty::Primitive(p),
                TypeRef::Complex(c) => Ty::Complex(c),
                TypeRef::Resource => match resource_type(item) {
                    Some(rt) => Ty::Resource(rt),
                    None => continue,
                },
            };
            if !matches!(item, Json::Null) {
                out.push(Value::Node(item, ty));
            }
        }
    }
}

/// The type a Reference points at: its `type`, else the type in `reference`.
fn referenced_type(v: &Value<'_>) -> Option<String> {
    let Value::Node(Json::Object(o), _) = v else {
        return None;
    };
    if let Some(t) = o.get("type").and_then(Json::as_str) {
        return Some(t.rsplit('/').next().unwrap_or(t).to_owned());
    }
    let r = o.get("reference").and_then(Json::as_str)?;
    let mut parts: Vec<&str> = r.split('/').collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    let t = parts.get(parts.len().checked_sub(2)?)?;
    r4().is_resource_type(t).then(|| (*t).to_owned())
}

fn equal(a: &Value<'_>, b: &Value<'_>) -> bool {
    let text = |v: &Value<'_>| -> Option<String> {
        match v {
            Value::Node(Json::String(s), _) | Value::Str(s) => Some(s.clone()),
            Value::Node(Json::Bool(x), _) | Value::Bool(x) => Some(x.to_string()),
            Value::Node(Json::Number(n), _) => Some(n.to_string()),
            Value::Number(n) => Some(n.clone()),
            _ => None,
        }
    };
    matches!((text(a), text(b)), (Some(x), Some(y)) if x == y)
}

fn truthy(c: &[Value<'_>]) -> bool {
    match c {
        [Value::Bool(b)] => *b,
        [Value::Node(Json::Bool(b), _)] => *b,
        [] => false,
        _ => true,
    }
}

/// Evaluates `e` with `this` as the input collection; `root` is the resource.
pub fn evaluate<'a>(e: &Expr, this: &[Value<'a>], root: &Value<'a>) -> Vec<Value<'a>> {
    match e {
        Expr::This => this.to_vec(),
        Expr::Resource => vec![root.clone()],
        Expr::Start(name) => {
            if name.starts_with(char::is_uppercase)
                && (r4().is_resource_type(name) || name == "Resource" || name == "DomainResource")
            {
                // A type filter on the resource the expression starts from.
                return match root.type_name() {
                    Some(t) if type_matches(t, name) => vec![root.clone()],
                    _ => Vec::new(),
                };
            }
            let mut out = Vec::new();
            for v in this {
                children(v, name, &mut out);
            }
            out
        }
        Expr::Member(inner, name) => {
            let mut out = Vec::new();
            for v in evaluate(inner, this, root) {
                children(&v, name, &mut out);
            }
            out
        }
        Expr::Index(inner, i) => evaluate(inner, this, root)
            .into_iter()
            .nth(*i)
            .into_iter()
            .collect(),
        Expr::Union(a, b) => {
            let mut out = evaluate(a, this, root);
            for v in evaluate(b, this, root) {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            out
        }
        Expr::Is(inner, t) => {
            let c = evaluate(inner, this, root);
            match c.as_slice() {
                [one] => vec![Value::Bool(
                    one.type_name().is_some_and(|n| type_matches(n, t)),
                )],
                _ => Vec::new(),
            }
        }
        Expr::As(inner, t) => evaluate(inner, this, root)
            .into_iter()
            .filter(|v| v.type_name().is_some_and(|n| type_matches(n, t)))
            .collect(),
        Expr::Equals(a, b, want) => {
            let (x, y) = (evaluate(a, this, root), evaluate(b, this, root));
            match (x.as_slice(), y.as_slice()) {
                ([x], [y]) => vec![Value::Bool(equal(x, y) == *want)],
                _ => Vec::new(),
            }
        }
        Expr::And(a, b) => vec![Value::Bool(
            truthy(&evaluate(a, this, root)) && truthy(&evaluate(b, this, root)),
        )],
        Expr::Or(a, b) => vec![Value::Bool(
            truthy(&evaluate(a, this, root)) || truthy(&evaluate(b, this, root)),
        )],
        Expr::Str(s) => vec![Value::Str(s.clone())],
        Expr::Bool(b) => vec![Value::Bool(*b)],
        Expr::Number(n) => vec![Value::Number(n.clone())],
        Expr::Call(inner, f) => {
            let input = evaluate(inner, this, root);
            call(f, input, root)
        }
    }
}

fn call<'a>(f: &Function, input: Vec<Value<'a>>, root: &Value<'a>) -> Vec<Value<'a>> {
    let with_url = |v: &Value<'a>, url: &str| -> Vec<Value<'a>> {
        let mut ext = Vec::new();
        children(v, "extension", &mut ext);
        ext.retain(|e| matches!(e, Value::Node(Json::Object(o), _) if o.get("url").and_then(Json::as_str) == Some(url)));
        ext
    };
    match f {
        Function::Where(criteria) => input
            .into_iter()
            .filter(|v| truthy(&evaluate(criteria, std::slice::from_ref(v), root)))
            .collect(),
        Function::Resolve => input
            .iter()
            .filter_map(referenced_type)
            .map(Value::Reference)
            .collect(),
        Function::Exists => vec![Value::Bool(!input.is_empty())],
        Function::Empty => vec![Value::Bool(input.is_empty())],
        Function::Not => match input.as_slice() {
            [] => Vec::new(),
            c => vec![Value::Bool(!truthy(c))],
        },
        Function::First => input.into_iter().take(1).collect(),
        Function::Extension(url) => input.iter().flat_map(|v| with_url(v, url)).collect(),
        Function::HasExtension(url) => vec![Value::Bool(
            input.iter().any(|v| !with_url(v, url).is_empty()),
        )],
        Function::OfType(t) | Function::As(t) => input
            .into_iter()
            .filter(|v| v.type_name().is_some_and(|n| type_matches(n, t)))
            .collect(),
        Function::Is(t) => match input.as_slice() {
            [one] => vec![Value::Bool(
                one.type_name().is_some_and(|n| type_matches(n, t)),
            )],
            _ => Vec::new(),
        },
    }
}

/// Evaluates a compiled expression against a resource.
pub fn evaluate_resource<'a>(e: &Expr, resource: &'a Json) -> Vec<Value<'a>> {
    let Some(t) = resource_type(resource) else {
        return Vec::new();
    };
    let root = Value::Node(resource, Ty::Resource(t));
    evaluate(e, std::slice::from_ref(&root), &root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn eval(expr: &str, resource: &str) -> Vec<String> {
        let r = parse(resource.as_bytes()).unwrap();
        let e = compile(expr).unwrap();
        evaluate_resource(&e, &r)
            .iter()
            .map(|v| match v {
                Value::Node(j, _) => String::from_utf8(j.to_bytes()).unwrap(),
                Value::Bool(b) => b.to_string(),
                Value::Str(s) | Value::Number(s) | Value::Reference(s) => s.clone(),
            })
            .collect()
    }

    const OBS: &str = r#"{"resourceType":"Observation","status":"final",
        "code":{"coding":[{"system":"http://loinc.org","code":"8867-4"},{"system":"urn:x","code":"hr"}]},
        "subject":{"reference":"Patient/p1"},"performer":[{"reference":"Practitioner/d1"},{"reference":"Organization/o1/_history/2"}],
        "valueQuantity":{"value":72.50,"code":"/min"},
        "component":[{"code":{"text":"a"},"valueString":"x"},{"code":{"text":"b"},"valueQuantity":{"value":1}}],
        "extension":[{"url":"http://e/1","valueCode":"c1"},{"url":"http://e/2","valueCode":"c2"}]}"#;

    #[test]
    fn paths_choices_and_unions() {
        assert_eq!(
            eval("Observation.code.coding.code", OBS),
            ["\"8867-4\"", "\"hr\""]
        );
        assert_eq!(eval("Patient.name", OBS), Vec::<String>::new());
        assert_eq!(
            eval("Observation.value", OBS),
            [r#"{"value":72.50,"code":"/min"}"#]
        );
        assert_eq!(
            eval("(Observation.value as Quantity).value", OBS),
            ["72.50"]
        );
        assert_eq!(
            eval("Observation.value as CodeableConcept", OBS),
            Vec::<String>::new()
        );
        assert_eq!(
            eval("Observation.component.value.ofType(Quantity).value", OBS),
            ["1"]
        );
        assert_eq!(
            eval("Observation.component.value as string", OBS),
            ["\"x\""]
        );
        assert_eq!(
            eval("Observation.code | Observation.component.code", OBS).len(),
            3
        );
        assert_eq!(eval("Observation.component[1].code.text", OBS), ["\"b\""]);
    }

    #[test]
    fn where_resolve_and_extensions() {
        assert_eq!(
            eval("Observation.subject.where(resolve() is Patient)", OBS),
            [r#"{"reference":"Patient/p1"}"#]
        );
        assert_eq!(
            eval(
                "Observation.performer.where(resolve() is Organization)",
                OBS
            )
            .len(),
            1
        );
        assert_eq!(
            eval("Observation.code.coding.where(system='urn:x').code", OBS),
            ["\"hr\""]
        );
        assert_eq!(
            eval("Observation.extension('http://e/2').value", OBS),
            ["\"c2\""]
        );
        assert_eq!(
            eval("Observation.hasExtension('http://e/1')", OBS),
            ["true"]
        );
        let p = r#"{"resourceType":"Patient","deceasedBoolean":false}"#;
        assert_eq!(
            eval("Patient.deceased.exists() and Patient.deceased != false", p),
            ["false"]
        );
        let p = r#"{"resourceType":"Patient","deceasedDateTime":"2020-01-01"}"#;
        assert_eq!(
            eval("Patient.deceased.exists() and Patient.deceased != false", p),
            ["true"]
        );
        let c = r#"{"resourceType":"Condition","subject":{"reference":"Patient/1"},"onsetAge":{"value":4}}"#;
        assert_eq!(
            eval("Condition.onset.as(Age) | Condition.onset.as(Range)", c),
            [r#"{"value":4}"#]
        );
    }

    #[test]
    fn unsupported_syntax_fails_to_compile() {
        for bad in [
            "Patient.name.select(given)",
            "Patient.name[",
            "'open",
            "Patient.name.where(",
            "1 +",
        ] {
            assert!(compile(bad).is_err(), "{bad}");
        }
    }
}
