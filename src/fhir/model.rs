//! The R4 type model: which types exist, which elements each has, with cardinality,
//! types and required code bindings. Loaded once from `r4_elements.txt`, a table
//! generated from the official R4 StructureDefinitions by `scripts/gen-r4-tables.py`.

use std::collections::HashMap;
use std::sync::LazyLock;

const TABLE: &str = include_str!("r4_elements.txt");

/// How a primitive type is written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Boolean,
    Number,
    String,
}

/// What an element holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeRef {
    /// A primitive, by FHIR type name (`date`, `decimal`, …).
    Primitive(&'static str),
    /// A complex datatype (`HumanName`) or an inline backbone (`Patient.contact`):
    /// either way the name of the owner whose children describe it.
    Complex(&'static str),
    /// Any resource (`contained`, `Bundle.entry.resource`): the instance names its type.
    Resource,
}

#[derive(Clone, Debug)]
pub struct ElementDef {
    /// The name as in the definition: `gender`, `value[x]`.
    pub name: &'static str,
    pub min: u32,
    /// `true` when `max` is `*`: the JSON form is an array.
    pub repeats: bool,
    pub types: Vec<TypeRef>,
    /// Codes of a required binding, when the value set is enumerable.
    pub required_codes: Option<Vec<&'static str>>,
    /// The JSON property name for each of `types`, in the same order
    /// (`valueQuantity`, …; just the name unless a choice).
    pub json_names: Vec<String>,
}

impl ElementDef {
    pub fn is_choice(&self) -> bool {
        self.name.ends_with("[x]")
    }

    /// The JSON name for one of the types (the name itself unless a choice).
    pub fn json_name(&self, t: TypeRef) -> String {
        match self.name.strip_suffix("[x]") {
            None => self.name.to_owned(),
            Some(base) => {
                let tn = match t {
                    TypeRef::Primitive(n) | TypeRef::Complex(n) => n,
                    TypeRef::Resource => "Resource",
                };
                let mut s = String::with_capacity(base.len() + tn.len());
                s.push_str(base);
                let mut chars = tn.chars();
                if let Some(c) = chars.next() {
                    s.extend(c.to_uppercase());
                }
                s.push_str(chars.as_str());
                s
            }
        }
    }
}

/// The children of one type or backbone, with a lookup by JSON property name.
#[derive(Debug, Default)]
pub struct TypeDef {
    pub elements: Vec<ElementDef>,
    by_json_name: HashMap<String, (usize, TypeRef)>,
}

impl TypeDef {
    /// Resolves a JSON property name (`valueQuantity`, `gender`) to its element and type.
    pub fn property(&self, json_name: &str) -> Option<(&ElementDef, TypeRef)> {
        self.by_json_name
            .get(json_name)
            .map(|&(i, t)| (&self.elements[i], t))
    }
}

#[derive(Debug)]
pub struct Model {
    primitives: HashMap<&'static str, JsonKind>,
    /// Concrete (non-abstract) resource types, sorted.
    resource_types: Vec<&'static str>,
    types: HashMap<&'static str, TypeDef>,
    /// Per resource type, its top-level elements marked isSummary.
    summary: HashMap<&'static str, Vec<&'static str>>,
}

impl Model {
    /// The top-level elements of a resource type marked isSummary, as defined
    /// (`value[x]` for a choice).
    pub fn summary_elements(&self, resource_type: &str) -> &[&'static str] {
        self.summary.get(resource_type).map_or(&[], Vec::as_slice)
    }

    pub fn primitive_kind(&self, name: &str) -> Option<JsonKind> {
        self.primitives.get(name).copied()
    }

    /// Whether `name` is a concrete R4 resource type.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.resource_types.binary_search(&name).is_ok()
    }

    /// All concrete resource types, sorted.
    pub fn resource_types(&self) -> &[&'static str] {
        &self.resource_types
    }

    /// The definition of a type or backbone path.
    pub fn type_def(&self, owner: &str) -> Option<&TypeDef> {
        self.types.get(owner)
    }

    fn element(&self, owner: &str, name: &str) -> Option<&ElementDef> {
        self.type_def(owner)?
            .elements
            .iter()
            .find(|e| e.name == name)
    }

    /// Whether `owner` has the choice element `name[x]`.
    pub fn is_choice(&self, owner: &str, name: &str) -> bool {
        self.element(owner, &format!("{name}[x]")).is_some()
    }

    /// Whether element `name` of `owner` repeats (an array in JSON).
    pub fn is_list(&self, owner: &str, name: &str) -> bool {
        self.element(owner, name).is_some_and(|e| e.repeats)
    }
}

/// The R4 model, parsed on first use (a few milliseconds).
pub fn r4() -> &'static Model {
    static MODEL: LazyLock<Model> = LazyLock::new(|| load(TABLE));
    &MODEL
}

fn load(table: &'static str) -> Model {
    let mut primitives = HashMap::new();
    let mut resource_types = Vec::new();
    let mut raw_elements: Vec<(&str, &str, u32, bool, &str)> = Vec::new();
    let mut bindings: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut summary: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&'static str> = line.split('\t').collect();
        match f.as_slice() {
            ["P", name, kind] => {
                let kind = match *kind {
                    "boolean" => JsonKind::Boolean,
                    "number" => JsonKind::Number,
                    _ => JsonKind::String,
                };
                primitives.insert(*name, kind);
            }
            ["R", name, "0"] => resource_types.push(*name),
            ["R", _, _] | ["C", _, _] => {}
            ["E", owner, name, min, max, types] => {
                raw_elements.push((owner, name, min.parse().unwrap_or(0), *max == "*", types));
            }
            ["S", name, elements] => {
                summary.insert(*name, elements.split(',').collect());
            }
            ["B", path, codes] => {
                bindings.insert(path, codes.split(',').collect());
            }
            _ => panic!("malformed line in r4_elements.txt: {line}"),
        }
    }
    resource_types.sort_unstable();
    let mut types: HashMap<&'static str, TypeDef> = HashMap::new();
    for (owner, name, min, repeats, type_list) in raw_elements {
        let types_of: Vec<TypeRef> = type_list
            .split(',')
            .map(|t| {
                if let Some(path) = t.strip_prefix('@') {
                    TypeRef::Complex(path)
                } else if t == "Resource" {
                    TypeRef::Resource
                } else if primitives.contains_key(t) {
                    TypeRef::Primitive(t)
                } else {
                    TypeRef::Complex(t)
                }
            })
            .collect();
        // Binding paths are full element paths; the owner of a backbone child is
        // already a full path, and a type's own elements are owner.name.
        let path = format!("{owner}.{name}");
        let required_codes = bindings.get(path.as_str()).cloned();
        let def = types.entry(owner).or_default();
        let mut el = ElementDef {
            name,
            min,
            repeats,
            types: types_of,
            required_codes,
            json_names: Vec::new(),
        };
        el.json_names = el.types.iter().map(|&t| el.json_name(t)).collect();
        let index = def.elements.len();
        for (&t, n) in el.types.iter().zip(&el.json_names) {
            def.by_json_name.insert(n.clone(), (index, t));
        }
        def.elements.push(el);
    }
    Model {
        primitives,
        resource_types,
        types,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_has_the_r4_shape() {
        let m = r4();
        assert_eq!(m.resource_types().len(), 146);
        assert!(m.is_resource_type("Patient") && !m.is_resource_type("DomainResource"));
        let obs = m.type_def("Observation").unwrap();
        let (el, t) = obs.property("valueQuantity").unwrap();
        assert_eq!((el.name, t), ("value[x]", TypeRef::Complex("Quantity")));
        let (el, t) = obs.property("effectiveDateTime").unwrap();
        assert_eq!(
            (el.name, t),
            ("effective[x]", TypeRef::Primitive("dateTime"))
        );
        assert!(obs.property("value").is_none());
        let (status, _) = obs.property("status").unwrap();
        assert_eq!(status.min, 1);
        assert!(status.required_codes.as_ref().unwrap().contains(&"final"));
        let item = m.type_def("Questionnaire.item").unwrap();
        assert_eq!(
            item.property("item").unwrap().1,
            TypeRef::Complex("Questionnaire.item")
        );
        assert_eq!(m.primitive_kind("decimal"), Some(JsonKind::Number));
    }
}
