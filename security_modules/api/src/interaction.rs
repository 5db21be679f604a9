//! What a request asks to do, classified once at routing.
//!
//! The router builds an `Interaction` from the route it matched (never by re-parsing
//! the URL later); [`crate::access::decide`] decides on it. Bundle entries are
//! classified the same way, one `Interaction` each.

use crate::permission::AdminArea;

/// The level of a history interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryLevel {
    /// `GET [type]/[id]/_history`
    Instance,
    /// `GET [type]/_history`
    Type,
    /// `GET /_history`
    System,
}

/// The level an operation is invoked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationLevel {
    /// `[base]/$op`
    System,
    /// `[base]/[type]/$op`
    Type,
    /// `[base]/[type]/[id]/$op`
    Instance,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InteractionKind {
    Read,
    VRead,
    History(HistoryLevel),
    /// `GET [type]?…`, `POST [type]/_search`, and compartment searches
    /// (`GET Patient/123/Observation`, see [`Interaction::compartment`]).
    SearchType,
    /// `GET [base]?…`
    SearchSystem,
    Create,
    /// Also a conditional update (no id).
    Update,
    Patch,
    /// Also a conditional delete (no id).
    Delete,
    /// `GET /metadata`
    Capabilities,
    Transaction,
    Batch,
    /// `name` without its `$` (`everything`, `validate`, `export`).
    Operation {
        name: String,
        level: OperationLevel,
    },
    /// The server's administration API (not FHIR).
    Admin(AdminArea),
    /// `GET /.well-known/smart-configuration`
    SmartConfiguration,
}

/// Whether an interaction returns stored data, changes it, both or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataAccess {
    None,
    Read,
    Write,
    ReadWrite,
}

/// A classified interaction: the kind and the resource it is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interaction {
    pub kind: InteractionKind,
    pub res_type: Option<String>,
    pub id: Option<String>,
    /// The compartment a search is confined to: `("Patient", "123")` for
    /// `GET Patient/123/Observation`.
    pub compartment: Option<(String, String)>,
}

impl Interaction {
    fn new(kind: InteractionKind, res_type: Option<&str>, id: Option<&str>) -> Interaction {
        Interaction {
            kind,
            res_type: res_type.map(str::to_owned),
            id: id.map(str::to_owned),
            compartment: None,
        }
    }

    pub fn read(res_type: &str, id: &str) -> Interaction {
        Interaction::new(InteractionKind::Read, Some(res_type), Some(id))
    }

    pub fn vread(res_type: &str, id: &str) -> Interaction {
        Interaction::new(InteractionKind::VRead, Some(res_type), Some(id))
    }

    pub fn history_instance(res_type: &str, id: &str) -> Interaction {
        Interaction::new(
            InteractionKind::History(HistoryLevel::Instance),
            Some(res_type),
            Some(id),
        )
    }

    pub fn history_type(res_type: &str) -> Interaction {
        Interaction::new(
            InteractionKind::History(HistoryLevel::Type),
            Some(res_type),
            None,
        )
    }

    pub fn history_system() -> Interaction {
        Interaction::new(InteractionKind::History(HistoryLevel::System), None, None)
    }

    pub fn search_type(res_type: &str) -> Interaction {
        Interaction::new(InteractionKind::SearchType, Some(res_type), None)
    }

    /// `GET [compartment_type]/[compartment_id]/[res_type]`.
    pub fn search_compartment(
        compartment_type: &str,
        compartment_id: &str,
        res_type: &str,
    ) -> Interaction {
        Interaction {
            compartment: Some((compartment_type.to_owned(), compartment_id.to_owned())),
            ..Interaction::search_type(res_type)
        }
    }

    pub fn search_system() -> Interaction {
        Interaction::new(InteractionKind::SearchSystem, None, None)
    }

    pub fn create(res_type: &str) -> Interaction {
        Interaction::new(InteractionKind::Create, Some(res_type), None)
    }

    pub fn update(res_type: &str, id: &str) -> Interaction {
        Interaction::new(InteractionKind::Update, Some(res_type), Some(id))
    }

    pub fn update_conditional(res_type: &str) -> Interaction {
        Interaction::new(InteractionKind::Update, Some(res_type), None)
    }

    pub fn patch(res_type: &str, id: &str) -> Interaction {
        Interaction::new(InteractionKind::Patch, Some(res_type), Some(id))
    }

    pub fn delete(res_type: &str, id: &str) -> Interaction {
        Interaction::new(InteractionKind::Delete, Some(res_type), Some(id))
    }

    pub fn delete_conditional(res_type: &str) -> Interaction {
        Interaction::new(InteractionKind::Delete, Some(res_type), None)
    }

    pub fn capabilities() -> Interaction {
        Interaction::new(InteractionKind::Capabilities, None, None)
    }

    pub fn smart_configuration() -> Interaction {
        Interaction::new(InteractionKind::SmartConfiguration, None, None)
    }

    pub fn transaction() -> Interaction {
        Interaction::new(InteractionKind::Transaction, None, None)
    }

    pub fn batch() -> Interaction {
        Interaction::new(InteractionKind::Batch, None, None)
    }

    pub fn admin(area: AdminArea) -> Interaction {
        Interaction::new(InteractionKind::Admin(area), None, None)
    }

    fn operation(
        name: &str,
        level: OperationLevel,
        res_type: Option<&str>,
        id: Option<&str>,
    ) -> Interaction {
        let name = name.strip_prefix('$').unwrap_or(name).to_owned();
        Interaction::new(InteractionKind::Operation { name, level }, res_type, id)
    }

    /// `[base]/$name` (`name` with or without its `$`).
    pub fn operation_system(name: &str) -> Interaction {
        Interaction::operation(name, OperationLevel::System, None, None)
    }

    /// `[base]/[res_type]/$name`.
    pub fn operation_type(res_type: &str, name: &str) -> Interaction {
        Interaction::operation(name, OperationLevel::Type, Some(res_type), None)
    }

    /// `[base]/[res_type]/[id]/$name`.
    pub fn operation_instance(res_type: &str, id: &str, name: &str) -> Interaction {
        Interaction::operation(name, OperationLevel::Instance, Some(res_type), Some(id))
    }

    /// What the interaction does to stored data. Unknown operations, bundles and
    /// administration count as reading and writing.
    pub fn data_access(&self) -> DataAccess {
        use InteractionKind as K;
        match &self.kind {
            K::Capabilities | K::SmartConfiguration => DataAccess::None,
            K::Read | K::VRead | K::History(_) | K::SearchType | K::SearchSystem => {
                DataAccess::Read
            }
            K::Create | K::Update | K::Patch | K::Delete => DataAccess::Write,
            K::Operation { name, level } => match (name.as_str(), level) {
                ("validate", OperationLevel::Type) => DataAccess::None,
                ("everything" | "export" | "validate", _) => DataAccess::Read,
                _ => DataAccess::ReadWrite,
            },
            K::Transaction | K::Batch | K::Admin(_) => DataAccess::ReadWrite,
        }
    }

    /// Whether the interaction returns stored data.
    pub fn reads(&self) -> bool {
        matches!(self.data_access(), DataAccess::Read | DataAccess::ReadWrite)
    }

    /// Whether the interaction changes stored data.
    pub fn writes(&self) -> bool {
        matches!(
            self.data_access(),
            DataAccess::Write | DataAccess::ReadWrite
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes() {
        let read = Interaction::read("Patient", "1");
        assert!(read.reads() && !read.writes());
        let create = Interaction::create("Observation");
        assert!(!create.reads() && create.writes());
        let tx = Interaction::transaction();
        assert!(tx.reads() && tx.writes());
        let meta = Interaction::capabilities();
        assert!(!meta.reads() && !meta.writes());
        assert_eq!(
            Interaction::operation_type("Patient", "validate").data_access(),
            DataAccess::None
        );
        assert_eq!(
            Interaction::operation_instance("Patient", "1", "$everything").data_access(),
            DataAccess::Read
        );
        assert_eq!(
            Interaction::operation_system("$reindex").data_access(),
            DataAccess::ReadWrite
        );
    }

    #[test]
    fn operation_names_lose_their_dollar() {
        let op = Interaction::operation_system("$export");
        assert_eq!(
            op.kind,
            InteractionKind::Operation {
                name: "export".into(),
                level: OperationLevel::System
            }
        );
        assert_eq!(Interaction::operation_system("export").kind, op.kind,);
    }

    #[test]
    fn compartment_search() {
        let i = Interaction::search_compartment("Patient", "123", "Observation");
        assert_eq!(i.kind, InteractionKind::SearchType);
        assert_eq!(i.res_type.as_deref(), Some("Observation"));
        assert_eq!(i.compartment, Some(("Patient".into(), "123".into())));
    }
}
