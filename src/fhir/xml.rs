//! FHIR XML (`application/fhir+xml`) to and from the JSON tree, driven by the
//! R4 type table (`model.rs`): element order, which elements repeat, which are
//! primitives, the choice-type names and where a resource is nested all come
//! from the StructureDefinitions, so the two formats carry the same content.
//!
//! The R4 XML rules kept here: primitives are `<name value="…"/>` whose `id`
//! attribute and `extension` children are JSON's `_name` companion (arrays of
//! them pair up by position, with `null` where one side is absent); `id` of a
//! datatype or backbone element and `url` of an Extension are attributes;
//! nested resources (`contained`, `Bundle.entry.resource`, …) are wrapped in an
//! element named after their type; the narrative `div` is XHTML carried as is
//! (JSON holds its text; here it is markup, copied byte for byte).
//!
//! Input is parsed safely: a document type declaration (and so any entity it
//! could declare, internal or external) is refused, only the five predefined
//! entities and character references are known, nesting is bounded and the
//! body size is bounded before it gets here.

use std::collections::HashMap;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use super::model::{self, JsonKind, Model, TypeRef};
use crate::json::{Json, Object};

pub const FHIR_NS: &str = "http://hl7.org/fhir";
pub const XHTML_NS: &str = "http://www.w3.org/1999/xhtml";

/// Deepest element nesting accepted (the same bound as JSON).
const MAX_DEPTH: usize = crate::json::MAX_DEPTH;

/// What is wrong with an XML document, and where (a FHIRPath-like location
/// when known). Messages never quote values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError {
    pub message: String,
    pub location: Option<String>,
}

impl XmlError {
    fn at(location: &str, message: impl Into<String>) -> Self {
        XmlError {
            message: message.into(),
            location: Some(location.to_owned()),
        }
    }

    fn syntax(message: impl Into<String>) -> Self {
        XmlError {
            message: message.into(),
            location: None,
        }
    }
}

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(l) => write!(f, "{l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

// ---------------------------------------------------------------- reading

#[derive(Debug, PartialEq, Eq)]
enum Ns {
    Fhir,
    Xhtml,
    Other,
}

/// An element of the input: its FHIR-relevant attributes, children, and where
/// it is in the input (for the XHTML `div`, taken as written).
#[derive(Debug)]
struct Node {
    name: String,
    ns: Ns,
    /// Attributes other than namespace declarations: (qualified name, value).
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    start: usize,
    end: usize,
}

fn is_predefined_entity(name: &str) -> bool {
    matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
}

/// Reads a document into a tree of FHIR elements. XHTML elements are read
/// (for well-formedness) but not kept: the `div` node keeps its span.
fn read_tree(input: &str) -> Result<Node, XmlError> {
    let mut reader = NsReader::from_str(input);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    config.trim_text(false);
    let mut stack: Vec<Node> = Vec::new();
    // Depth inside an XHTML div (0: not inside one).
    let mut xhtml_depth = 0usize;
    let mut root: Option<Node> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError::syntax(format!("the XML is not well-formed: {}", brief(&e))))?;
        let ns = match ns {
            ResolveResult::Bound(n) if n.as_ref() == FHIR_NS => Ns::Fhir,
            ResolveResult::Bound(n) if n.as_ref() == XHTML_NS => Ns::Xhtml,
            ResolveResult::Unknown(_) => {
                return Err(XmlError::syntax(
                    "the XML uses a namespace prefix that is not declared",
                ));
            }
            _ => Ns::Other,
        };
        match event {
            Event::DocType(_) => {
                return Err(XmlError::syntax(
                    "document type declarations (DTDs) are not accepted",
                ));
            }
            Event::Decl(d) => {
                if let Some(Ok(enc)) = d.encoding()
                    && !enc.eq_ignore_ascii_case("utf-8")
                {
                    return Err(XmlError::syntax("FHIR XML must be encoded as UTF-8"));
                }
            }
            Event::PI(_) | Event::Comment(_) => {}
            Event::Start(e) => {
                if root.is_some() {
                    return Err(XmlError::syntax("content after the root element"));
                }
                if stack.len() + xhtml_depth >= MAX_DEPTH {
                    return Err(XmlError::syntax(format!(
                        "elements are nested more than {MAX_DEPTH} deep"
                    )));
                }
                if xhtml_depth > 0 {
                    xhtml_depth += 1;
                    continue;
                }
                let name = e.local_name().as_ref().to_owned();
                let mut attrs = Vec::new();
                for a in e.attributes() {
                    let a = a.map_err(|e| {
                        XmlError::syntax(format!("an attribute is not well-formed: {}", brief(&e)))
                    })?;
                    if a.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let key = a.key.as_ref().to_owned();
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| {
                            XmlError::syntax(format!(
                                "an attribute value is not well-formed: {}",
                                brief(&e)
                            ))
                        })?
                        .into_owned();
                    attrs.push((key, value));
                }
                if ns == Ns::Xhtml {
                    xhtml_depth = 1;
                }
                stack.push(Node {
                    name,
                    ns,
                    attrs,
                    children: Vec::new(),
                    start: before,
                    end: before,
                });
            }
            Event::End(_) => {
                if xhtml_depth > 1 {
                    xhtml_depth -= 1;
                    continue;
                }
                xhtml_depth = 0;
                let Some(mut node) = stack.pop() else {
                    return Err(XmlError::syntax("an end tag without a start tag"));
                };
                node.end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                if xhtml_depth == 0 && !t.as_ref().bytes().all(|b| b.is_ascii_whitespace()) {
                    return Err(text_error(&stack));
                }
            }
            Event::CData(c) => {
                if xhtml_depth == 0 && !c.as_ref().bytes().all(|b| b.is_ascii_whitespace()) {
                    return Err(text_error(&stack));
                }
            }
            Event::GeneralRef(r) => {
                if xhtml_depth == 0 {
                    return Err(text_error(&stack));
                }
                let known = if r.is_char_ref() {
                    matches!(r.resolve_char_ref(), Ok(Some(_)))
                } else {
                    is_predefined_entity(&r.xml10_content())
                };
                if !known {
                    return Err(XmlError::syntax(
                        "an entity reference that is not defined (only &amp; &lt; &gt; &quot; \
                         &apos; and character references are)",
                    ));
                }
            }
            // Empty elements are expanded into Start and End by the configuration.
            Event::Empty(_) => return Err(XmlError::syntax("unexpected empty element")),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::syntax("the XML ends inside an element"));
    }
    root.ok_or_else(|| XmlError::syntax("the XML has no root element"))
}

fn text_error(stack: &[Node]) -> XmlError {
    let at = stack.last().map_or("the document", |n| n.name.as_str());
    XmlError::syntax(format!(
        "text is not allowed inside FHIR elements (in {at}): values go in value attributes"
    ))
}

/// The parser's error, without any of the input.
fn brief(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    // quick-xml messages may quote names from the input; keep them short.
    s.chars().take(120).collect()
}

/// Parses a FHIR XML resource into the JSON tree, members in definition order.
pub fn parse(input: &[u8]) -> Result<Json, XmlError> {
    let text = std::str::from_utf8(input)
        .map_err(|_| XmlError::syntax("FHIR XML must be encoded as UTF-8"))?;
    let root = read_tree(text)?;
    let reader = Reader {
        model: model::r4(),
        input: text,
    };
    reader.resource(&root, "")
}

struct Reader<'a> {
    model: &'static Model,
    input: &'a str,
}

impl Reader<'_> {
    fn resource(&self, node: &Node, path: &str) -> Result<Json, XmlError> {
        let here = if path.is_empty() {
            node.name.clone()
        } else {
            path.to_owned()
        };
        if node.ns != Ns::Fhir {
            return Err(XmlError::at(
                &here,
                format!("a resource must be in the FHIR namespace ({FHIR_NS})"),
            ));
        }
        if !self.model.is_resource_type(&node.name) {
            return Err(XmlError::at(&here, "not an R4 resource type"));
        }
        if let Some((k, _)) = node.attrs.first() {
            return Err(XmlError::at(
                &here,
                format!("unexpected attribute {k} on a resource"),
            ));
        }
        let mut obj = Object::default();
        obj.push("resourceType", Json::string(node.name.clone()));
        self.members(&mut obj, &node.name, node, &here, true)?;
        Ok(Json::Object(obj))
    }

    /// Fills `obj` with the content of `node`, an instance of `owner`.
    fn members(
        &self,
        obj: &mut Object,
        owner: &str,
        node: &Node,
        path: &str,
        is_resource: bool,
    ) -> Result<(), XmlError> {
        let Some(def) = self.model.type_def(owner) else {
            return Err(XmlError::at(path, format!("no definition for {owner}")));
        };
        if !is_resource {
            for (k, v) in &node.attrs {
                match k.as_str() {
                    "id" => obj.push("id", Json::string(v.clone())),
                    "url" if owner == "Extension" => obj.push("url", Json::string(v.clone())),
                    _ => {
                        return Err(XmlError::at(path, format!("unexpected attribute {k}")));
                    }
                }
            }
        }
        // Children grouped by element name, kept in document order.
        let mut groups: HashMap<&str, Vec<&Node>> = HashMap::new();
        for child in &node.children {
            if child.ns != Ns::Fhir && !(child.ns == Ns::Xhtml && child.name == "div") {
                return Err(XmlError::at(
                    path,
                    format!("element {} is not in the FHIR namespace", child.name),
                ));
            }
            let known = def.property(&child.name).is_some_and(|(el, _)| {
                // Element ids and Extension urls are attributes, not elements.
                is_resource || (el.name != "id" && !(owner == "Extension" && el.name == "url"))
            });
            if !known {
                return Err(XmlError::at(
                    path,
                    format!("unknown element {} in {owner}", child.name),
                ));
            }
            groups.entry(child.name.as_str()).or_default().push(child);
        }
        for el in &def.elements {
            for (&t, json_name) in el.types.iter().zip(&el.json_names) {
                let Some(nodes) = groups.get(json_name.as_str()) else {
                    continue;
                };
                let at = format!("{path}.{json_name}");
                if !el.repeats && nodes.len() > 1 {
                    return Err(XmlError::at(&at, "this element may appear only once"));
                }
                match t {
                    TypeRef::Primitive("xhtml") => {
                        let div = nodes[0];
                        if div.ns != Ns::Xhtml || div.name != "div" {
                            return Err(XmlError::at(
                                &at,
                                format!(
                                    "the narrative must be a <div> in the {XHTML_NS} namespace"
                                ),
                            ));
                        }
                        let raw = self.input.get(div.start..div.end).unwrap_or_default();
                        obj.push(json_name.clone(), Json::string(raw));
                    }
                    TypeRef::Primitive(p) => {
                        let mut values = Vec::with_capacity(nodes.len());
                        let mut companions = Vec::with_capacity(nodes.len());
                        for (i, n) in nodes.iter().enumerate() {
                            let at = item_at(&at, el.repeats, i);
                            let (v, c) = self.primitive(n, p, &at)?;
                            values.push(v);
                            companions.push(c);
                        }
                        if el.repeats {
                            // An array of nulls only is left out, as the R4
                            // examples write it (`_event` without `event`).
                            if values.iter().any(|v| *v != Json::Null) {
                                obj.push(json_name.clone(), Json::Array(values));
                            }
                            if companions.iter().any(|c| *c != Json::Null) {
                                obj.push(format!("_{json_name}"), Json::Array(companions));
                            }
                        } else {
                            let (v, c) = (values.remove(0), companions.remove(0));
                            if v != Json::Null {
                                obj.push(json_name.clone(), v);
                            }
                            if c != Json::Null {
                                obj.push(format!("_{json_name}"), c);
                            }
                        }
                    }
                    TypeRef::Complex(c) => {
                        let mut items = Vec::with_capacity(nodes.len());
                        for (i, n) in nodes.iter().enumerate() {
                            let at = item_at(&at, el.repeats, i);
                            let mut o = Object::default();
                            self.members(&mut o, c, n, &at, false)?;
                            if o.0.is_empty() {
                                return Err(XmlError::at(
                                    &at,
                                    "an element must have a value, attributes or children",
                                ));
                            }
                            items.push(Json::Object(o));
                        }
                        push_items(obj, json_name, el.repeats, items);
                    }
                    TypeRef::Resource => {
                        let mut items = Vec::with_capacity(nodes.len());
                        for (i, n) in nodes.iter().enumerate() {
                            let at = item_at(&at, el.repeats, i);
                            if !n.attrs.is_empty() {
                                return Err(XmlError::at(&at, "unexpected attribute"));
                            }
                            let [inner] = n.children.as_slice() else {
                                return Err(XmlError::at(
                                    &at,
                                    "must hold exactly one resource, as an element named after its type",
                                ));
                            };
                            items.push(self.resource(inner, &at)?);
                        }
                        push_items(obj, json_name, el.repeats, items);
                    }
                }
            }
        }
        Ok(())
    }

    /// A primitive element: its JSON value (or null) and its `_name`
    /// companion (or null).
    fn primitive(&self, node: &Node, type_name: &str, at: &str) -> Result<(Json, Json), XmlError> {
        let mut companion = Object::default();
        let mut value = Json::Null;
        for (k, v) in &node.attrs {
            match k.as_str() {
                "value" => value = self.value(type_name, v, at)?,
                "id" => companion.push("id", Json::string(v.clone())),
                _ => return Err(XmlError::at(at, format!("unexpected attribute {k}"))),
            }
        }
        let mut extensions = Vec::new();
        for (i, child) in node.children.iter().enumerate() {
            if child.ns != Ns::Fhir || child.name != "extension" {
                return Err(XmlError::at(
                    at,
                    format!(
                        "a primitive element holds only extensions, not {}",
                        child.name
                    ),
                ));
            }
            let mut o = Object::default();
            self.members(
                &mut o,
                "Extension",
                child,
                &format!("{at}.extension[{i}]"),
                false,
            )?;
            extensions.push(Json::Object(o));
        }
        if !extensions.is_empty() {
            companion.push("extension", Json::Array(extensions));
        }
        if value == Json::Null && companion.0.is_empty() {
            return Err(XmlError::at(
                at,
                "an element must have a value, attributes or children",
            ));
        }
        let companion = if companion.0.is_empty() {
            Json::Null
        } else {
            Json::Object(companion)
        };
        Ok((value, companion))
    }

    fn value(&self, type_name: &str, text: &str, at: &str) -> Result<Json, XmlError> {
        match self.model.primitive_kind(type_name) {
            Some(JsonKind::Boolean) => match text {
                "true" => Ok(Json::Bool(true)),
                "false" => Ok(Json::Bool(false)),
                _ => Err(XmlError::at(at, "a boolean must be true or false")),
            },
            Some(JsonKind::Number) => {
                if is_json_number(text) {
                    Ok(Json::Number(text.into()))
                } else {
                    Err(XmlError::at(at, format!("not a valid {type_name}")))
                }
            }
            _ => Ok(Json::string(text)),
        }
    }
}

/// The location of item `i` of an element (`name[i]` when it repeats).
fn item_at(at: &str, repeats: bool, i: usize) -> String {
    if repeats {
        format!("{at}[{i}]")
    } else {
        at.to_owned()
    }
}

fn push_items(obj: &mut Object, name: &str, repeats: bool, mut items: Vec<Json>) {
    if repeats {
        obj.push(name, Json::Array(items));
    } else if let Some(item) = items.pop() {
        obj.push(name, item);
    }
}

/// The JSON number grammar, which is also FHIR's decimal and integer lexical
/// space (without leading zeros or a `+`).
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

// ---------------------------------------------------------------- writing

/// Writes a resource (the JSON tree of a valid resource) as FHIR XML, with
/// two-space indentation when `pretty`.
pub fn write(resource: &Json, pretty: bool) -> Result<Vec<u8>, XmlError> {
    let mut w = Writer {
        model: model::r4(),
        out: Vec::with_capacity(1024),
        pretty,
        depth: 0,
    };
    w.resource(resource, true, "")?;
    if pretty {
        w.out.push(b'\n');
    }
    Ok(w.out)
}

struct Writer {
    model: &'static Model,
    out: Vec<u8>,
    pretty: bool,
    depth: usize,
}

impl Writer {
    fn indent(&mut self) {
        if self.pretty {
            if !self.out.is_empty() {
                self.out.push(b'\n');
            }
            for _ in 0..self.depth {
                self.out.extend_from_slice(b"  ");
            }
        }
    }

    fn resource(&mut self, json: &Json, root: bool, path: &str) -> Result<(), XmlError> {
        let Json::Object(obj) = json else {
            return Err(XmlError::at(path, "a resource must be a JSON object"));
        };
        let Some(t) = obj.get("resourceType").and_then(Json::as_str) else {
            return Err(XmlError::at(path, "a resource needs a resourceType"));
        };
        if !self.model.is_resource_type(t) {
            return Err(XmlError::at(path, "not an R4 resource type"));
        }
        let path = if path.is_empty() {
            t.to_owned()
        } else {
            path.to_owned()
        };
        self.indent();
        self.out.push(b'<');
        self.out.extend_from_slice(t.as_bytes());
        if root {
            self.out.extend_from_slice(b" xmlns=\"");
            self.out.extend_from_slice(FHIR_NS.as_bytes());
            self.out.push(b'"');
        }
        self.out.push(b'>');
        self.depth += 1;
        self.members(t, obj, &path, true)?;
        self.depth -= 1;
        self.indent();
        self.close(t);
        Ok(())
    }

    fn close(&mut self, name: &str) {
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'>');
    }

    fn attr(&mut self, name: &str, value: &str, at: &str) -> Result<(), XmlError> {
        self.out.push(b' ');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"=\"");
        escape_attr(value, &mut self.out).map_err(|m| XmlError::at(at, m))?;
        self.out.push(b'"');
        Ok(())
    }

    /// Writes the elements of `obj`, an instance of `owner`, in definition order.
    fn members(
        &mut self,
        owner: &str,
        obj: &Object,
        path: &str,
        is_resource: bool,
    ) -> Result<(), XmlError> {
        let Some(def) = self.model.type_def(owner) else {
            return Err(XmlError::at(path, format!("no definition for {owner}")));
        };
        // Every member must be written somewhere: nothing is dropped silently.
        for (k, _) in obj.iter() {
            let name = k.strip_prefix('_').unwrap_or(k);
            let known = (is_resource && k == "resourceType")
                || def.property(name).is_some_and(|(_, t)| {
                    !k.starts_with('_') || matches!(t, TypeRef::Primitive(_))
                });
            if !known {
                return Err(XmlError::at(
                    path,
                    format!("unknown element {k} in {owner}"),
                ));
            }
        }
        for el in &def.elements {
            if !is_resource && (el.name == "id" || (owner == "Extension" && el.name == "url")) {
                continue; // written as attributes
            }
            for (&t, json_name) in el.types.iter().zip(&el.json_names) {
                let value = obj.get(json_name);
                let at = format!("{path}.{json_name}");
                match t {
                    TypeRef::Primitive("xhtml") => {
                        if let Some(v) = value {
                            let Some(div) = v.as_str() else {
                                return Err(XmlError::at(&at, "the narrative must be a string"));
                            };
                            check_xhtml(div).map_err(|m| XmlError::at(&at, m))?;
                            self.indent();
                            self.out.extend_from_slice(div.as_bytes());
                        }
                    }
                    TypeRef::Primitive(_) => {
                        let companion = obj.get(&format!("_{json_name}"));
                        if value.is_none() && companion.is_none() {
                            continue;
                        }
                        if el.repeats {
                            let values = as_list(value, &at)?;
                            let companions = as_list(companion, &at)?;
                            let n = values.len().max(companions.len());
                            for i in 0..n {
                                self.primitive(
                                    json_name,
                                    values.get(i).copied(),
                                    companions.get(i).copied(),
                                    &format!("{at}[{i}]"),
                                )?;
                            }
                        } else {
                            self.primitive(json_name, value, companion, &at)?;
                        }
                    }
                    TypeRef::Complex(c) => {
                        let Some(value) = value else { continue };
                        let items = if el.repeats {
                            as_list(Some(value), &at)?
                        } else {
                            vec![value]
                        };
                        for (i, item) in items.into_iter().enumerate() {
                            let at = item_at(&at, el.repeats, i);
                            let Json::Object(o) = item else {
                                return Err(XmlError::at(&at, "must be a JSON object"));
                            };
                            self.complex(json_name, c, o, &at)?;
                        }
                    }
                    TypeRef::Resource => {
                        let Some(value) = value else { continue };
                        let items = if el.repeats {
                            as_list(Some(value), &at)?
                        } else {
                            vec![value]
                        };
                        for (i, item) in items.into_iter().enumerate() {
                            let at = item_at(&at, el.repeats, i);
                            self.indent();
                            self.out.push(b'<');
                            self.out.extend_from_slice(json_name.as_bytes());
                            self.out.push(b'>');
                            self.depth += 1;
                            self.resource(item, false, &at)?;
                            self.depth -= 1;
                            self.indent();
                            self.close(json_name);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn complex(
        &mut self,
        name: &str,
        type_name: &str,
        o: &Object,
        at: &str,
    ) -> Result<(), XmlError> {
        self.indent();
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        if let Some(id) = o.get("id") {
            let id = id
                .as_str()
                .ok_or_else(|| XmlError::at(at, "an element id must be a string"))?;
            self.attr("id", id, at)?;
        }
        if type_name == "Extension"
            && let Some(url) = o.get("url")
        {
            let url = url
                .as_str()
                .ok_or_else(|| XmlError::at(at, "an extension url must be a string"))?;
            self.attr("url", url, at)?;
        }
        let has_children = o
            .iter()
            .any(|(k, _)| k != "id" && !(type_name == "Extension" && k == "url"));
        if !has_children {
            self.out.extend_from_slice(b"/>");
            return Ok(());
        }
        self.out.push(b'>');
        self.depth += 1;
        self.members(type_name, o, at, false)?;
        self.depth -= 1;
        self.indent();
        self.close(name);
        Ok(())
    }

    fn primitive(
        &mut self,
        name: &str,
        value: Option<&Json>,
        companion: Option<&Json>,
        at: &str,
    ) -> Result<(), XmlError> {
        let companion = match companion {
            None | Some(Json::Null) => None,
            Some(Json::Object(o)) => Some(o),
            Some(_) => {
                return Err(XmlError::at(
                    at,
                    "a primitive's _ companion must be an object",
                ));
            }
        };
        let value = match value {
            None | Some(Json::Null) => None,
            Some(v) => Some(v),
        };
        if value.is_none() && companion.is_none() {
            return Ok(());
        }
        self.indent();
        self.out.push(b'<');
        self.out.extend_from_slice(name.as_bytes());
        let mut extensions: &[Json] = &[];
        if let Some(c) = companion {
            for (k, v) in c.iter() {
                match (k, v) {
                    ("id", Json::String(id)) => self.attr("id", id, at)?,
                    ("extension", Json::Array(list)) => extensions = list,
                    _ => {
                        return Err(XmlError::at(
                            at,
                            format!("unexpected {k} in a primitive's _ companion"),
                        ));
                    }
                }
            }
        }
        if let Some(v) = value {
            let text: &str = match v {
                Json::Bool(true) => "true",
                Json::Bool(false) => "false",
                Json::Number(n) => n,
                Json::String(s) => s,
                _ => {
                    return Err(XmlError::at(
                        at,
                        "a primitive value must be a string, number or boolean",
                    ));
                }
            };
            self.attr("value", text, at)?;
        }
        if extensions.is_empty() {
            self.out.extend_from_slice(b"/>");
            return Ok(());
        }
        self.out.push(b'>');
        self.depth += 1;
        for (i, e) in extensions.iter().enumerate() {
            let at = format!("{at}.extension[{i}]");
            let Json::Object(o) = e else {
                return Err(XmlError::at(&at, "must be a JSON object"));
            };
            self.complex("extension", "Extension", o, &at)?;
        }
        self.depth -= 1;
        self.indent();
        self.close(name);
        Ok(())
    }
}

fn as_list<'a>(value: Option<&'a Json>, at: &str) -> Result<Vec<&'a Json>, XmlError> {
    match value {
        None => Ok(Vec::new()),
        Some(Json::Array(items)) => Ok(items.iter().collect()),
        Some(_) => Err(XmlError::at(at, "a repeating element must be a JSON array")),
    }
}

/// Escapes an attribute value. Whitespace other than spaces is written as
/// character references, so attribute-value normalisation gives it back.
fn escape_attr(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    for c in s.chars() {
        match c {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\n' => out.extend_from_slice(b"&#10;"),
            '\r' => out.extend_from_slice(b"&#13;"),
            '\t' => out.extend_from_slice(b"&#9;"),
            c if c < '\u{20}' || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err("a character that XML cannot carry");
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- XHTML

/// Elements the R4 narrative rules exclude (no document structure, scripts,
/// forms, frames, embedded objects or external references).
const FORBIDDEN_XHTML: &[&str] = &[
    "head", "body", "html", "script", "noscript", "form", "input", "button", "select", "textarea",
    "option", "base", "link", "meta", "frame", "frameset", "iframe", "object", "applet", "embed",
    "param",
];

/// Checks a narrative `div`: well-formed XML, a single `div` root in the XHTML
/// namespace, no DTD, only predefined entities, none of the excluded elements
/// and no event-handler (`on…`) attributes.
pub fn check_xhtml(div: &str) -> Result<(), &'static str> {
    let mut reader = NsReader::from_str(div);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|_| "the narrative is not well-formed XHTML")?;
        match event {
            Event::Start(e) => {
                if depth == 0 {
                    if seen_root {
                        return Err("the narrative must be a single <div> element");
                    }
                    seen_root = true;
                    let in_xhtml = matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == XHTML_NS);
                    if e.local_name().as_ref() != "div" || !in_xhtml {
                        return Err("narrative must be a <div> in the XHTML namespace");
                    }
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err("the narrative is nested too deeply");
                }
                let name = e.local_name();
                let name: &str = name.as_ref();
                if FORBIDDEN_XHTML.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                    return Err(
                        "the narrative contains an element R4 excludes (scripts, forms, frames, objects, head/body, base/link/meta)",
                    );
                }
                for a in e.attributes() {
                    let a = a.map_err(|_| "the narrative is not well-formed XHTML")?;
                    let key = a.key.local_name();
                    let key: &str = key.as_ref();
                    if key.len() > 2 && key.as_bytes()[..2].eq_ignore_ascii_case(b"on") {
                        return Err("event-handler attributes are not allowed in the narrative");
                    }
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|_| "the narrative is not well-formed XHTML")?;
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                if depth == 0 && !t.as_ref().bytes().all(|b| b.is_ascii_whitespace()) {
                    return Err("the narrative must be a single <div> element");
                }
            }
            Event::CData(_) => {
                if depth == 0 {
                    return Err("the narrative must be a single <div> element");
                }
            }
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err("the narrative must be a single <div> element");
                }
                let known = if r.is_char_ref() {
                    matches!(r.resolve_char_ref(), Ok(Some(_)))
                } else {
                    is_predefined_entity(&r.xml10_content())
                };
                if !known {
                    return Err(
                        "the narrative uses an entity XML does not define (write &#160; for &nbsp;)",
                    );
                }
            }
            Event::DocType(_) => return Err("the narrative must not contain a DTD"),
            Event::Decl(_) | Event::PI(_) => {
                return Err(
                    "the narrative must not contain XML declarations or processing instructions",
                );
            }
            Event::Comment(_) => {}
            Event::Empty(_) => return Err("the narrative is not well-formed XHTML"),
            Event::Eof => break,
        }
    }
    if seen_root {
        Ok(())
    } else {
        Err("narrative must be a <div> in the XHTML namespace")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn round_trip(json: &str) -> (String, Json) {
        let j = crate::json::parse(json.as_bytes()).unwrap();
        let xml = write(&j, false).unwrap();
        let back = parse(&xml).unwrap();
        (String::from_utf8(xml).unwrap(), back)
    }

    #[test]
    fn primitives_with_ids_and_extensions_pair_up() {
        let json = r#"{"resourceType":"Patient","id":"p1","name":[{"id":"n1","given":["A",null,"C"],"_given":[null,{"extension":[{"url":"http://x","valueString":"B"}]},{"id":"g3"}]}],"birthDate":"1970","_birthDate":{"id":"b","extension":[{"url":"http://y","valueDecimal":1.50}]},"active":true}"#;
        let (xml, back) = round_trip(json);
        assert_eq!(
            xml,
            r#"<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><active value="true"/><name id="n1"><given value="A"/><given><extension url="http://x"><valueString value="B"/></extension></given><given id="g3" value="C"/></name><birthDate id="b" value="1970"><extension url="http://y"><valueDecimal value="1.50"/></extension></birthDate></Patient>"#
        );
        // Members come back in definition order (active before name).
        let expected = r#"{"resourceType":"Patient","id":"p1","active":true,"name":[{"id":"n1","given":["A",null,"C"],"_given":[null,{"extension":[{"url":"http://x","valueString":"B"}]},{"id":"g3"}]}],"birthDate":"1970","_birthDate":{"id":"b","extension":[{"url":"http://y","valueDecimal":1.50}]}}"#;
        assert_eq!(back, crate::json::parse(expected.as_bytes()).unwrap());
    }

    #[test]
    fn escapes_survive_attribute_normalisation() {
        let json = "{\"resourceType\":\"Basic\",\"code\":{\"text\":\"a&b <c> \\\"d\\\" 'e'\\n\\tf\\r\\ng \u{e9}\u{1F600}\"}}";
        let (xml, back) = round_trip(json);
        assert!(xml.contains("a&amp;b &lt;c&gt; &quot;d&quot; 'e'&#10;&#9;f&#13;&#10;g"));
        assert_eq!(back, crate::json::parse(json.as_bytes()).unwrap());
    }

    #[test]
    fn narrative_is_copied_as_markup() {
        let div = r#"<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>x &amp; y &#160;<b>z</b></p><br/></div>"#;
        let json = format!(
            r#"{{"resourceType":"Basic","text":{{"status":"generated","div":"{div}"}},"code":{{"text":"t"}}}}"#
        );
        let (xml, back) = round_trip(&json);
        assert!(xml.contains(r#"<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>x &amp; y &#160;<b>z</b></p><br/></div></text>"#));
        assert_eq!(back, crate::json::parse(json.as_bytes()).unwrap());
    }

    #[test]
    fn hostile_or_broken_input_is_refused() {
        let cases = [
            (
                r#"<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#,
                "DTD",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#,
                "well-formed",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><id value="1"></Patient>"#,
                "well-formed",
            ),
            (r#"<Patient><id value="1"/></Patient>"#, "namespace"),
            (
                r#"<Patient xmlns="http://hl7.org/fhir">text</Patient>"#,
                "text",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><foo value="1"/></Patient>"#,
                "unknown element",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>"#,
                "boolean",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/><active value="true"/></Patient>"#,
                "only once",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><multipleBirthInteger value="01"/></Patient>"#,
                "valid",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"><name><given/></name></Patient>"#,
                "value",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir" foo="1"/>"#,
                "attribute",
            ),
            (r#"<Nope xmlns="http://hl7.org/fhir"/>"#, "resource type"),
            (
                r#"<?xml version="1.0" encoding="ISO-8859-1"?><Patient xmlns="http://hl7.org/fhir"/>"#,
                "UTF-8",
            ),
            (
                r#"<Patient xmlns="http://hl7.org/fhir"/><Patient xmlns="http://hl7.org/fhir"/>"#,
                "after the root",
            ),
            (r#"<x:Patient xmlns="http://hl7.org/fhir"/>"#, "prefix"),
        ];
        for (input, expected) in cases {
            let err = parse(input.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{input}: {err} (wanted {expected})"
            );
        }
        let deep = format!(
            r#"<Questionnaire xmlns="http://hl7.org/fhir"><status value="draft"/>{}{}</Questionnaire>"#,
            "<item><linkId value=\"a\"/><type value=\"group\"/>".repeat(120),
            "</item>".repeat(120)
        );
        assert!(
            parse(deep.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("nested")
        );
    }

    #[test]
    fn xhtml_rules() {
        let ok = r##"<div xmlns="http://www.w3.org/1999/xhtml"><p style="color:red">a<img src="#x" alt=""/></p></div>"##;
        assert_eq!(check_xhtml(ok), Ok(()));
        for bad in [
            r#"<div>no namespace</div>"#,
            r#"<p xmlns="http://www.w3.org/1999/xhtml">x</p>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><a onclick="x()">y</a></div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml">&nbsp;</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>"#,
            r#"<div xmlns="http://www.w3.org/1999/xhtml"></div><div xmlns="http://www.w3.org/1999/xhtml"></div>"#,
        ] {
            assert!(check_xhtml(bad).is_err(), "{bad}");
        }
    }

    /// `fixtures/xml`: each `NN-name.xml` reads as `NN-name.json` (compared
    /// without member order) and is exactly what the writer makes of it;
    /// `NN-name.in.xml` files are read only.
    #[test]
    fn fixture_pairs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/xml");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".xml") else {
                continue;
            };
            let (stem, input_only) = match stem.strip_suffix(".in") {
                Some(s) => (s, true),
                None => (stem, false),
            };
            let xml = std::fs::read_to_string(&path).unwrap();
            let json_text = std::fs::read(dir.join(format!("{stem}.json"))).unwrap();
            let json = crate::json::parse(&json_text).unwrap();
            let read = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(sorted(&read), sorted(&json), "{name}: read");
            if !input_only {
                let written = String::from_utf8(write(&json, true).unwrap()).unwrap();
                assert_eq!(written, xml, "{name}: written");
            }
            n += 1;
        }
        assert!(n >= 8, "only {n} fixtures");
    }

    fn sorted(json: &Json) -> Json {
        match json {
            Json::Object(o) => {
                let mut members: Vec<(String, Json)> =
                    o.0.iter().map(|(k, v)| (k.clone(), sorted(v))).collect();
                members.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Object(Object(members))
            }
            Json::Array(items) => Json::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn numbers() {
        for ok in ["0", "-1", "1.50", "1e10", "1.0E-3", "-0.0"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "01", "+1", "1.", ".5", "1e", "NaN", "1 "] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }
}
