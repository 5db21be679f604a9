//! The access-control decision: [`decide`] on a [`Principal`] and a classified
//! [`Interaction`], before anything is read or written; [`check_resource`] on each
//! resource a read returns. Pure functions, deny by default.
//!
//! # Effective rights
//!
//! Rights are a list of [`Grant`]s: operations (`c r u d s`) on a type selector,
//! optionally limited to one patient's compartment and (SMART 2.x) to resources
//! matching a search filter.
//!
//! - Without a token (`Principal::scopes` is `None`) the rights are the principal's
//!   [`Permission`]s: `read` grants `r s`, `write` grants `c u d`, `superuser` grants
//!   everything.
//! - With a token (a user through an app, or a client acting for itself with client
//!   credentials) the rights are the **intersection** of the permissions and the
//!   token's resource scopes: a token only ever narrows, it never grants more than its
//!   holder's permissions, superuser included. Which scopes count depends on the holder:
//!   - `patient/` scopes count for anyone, limited to the launch patient's compartment;
//!     without a launch patient they grant nothing;
//!   - `user/` scopes count for users (and anonymous), not for a client acting for
//!     itself (there is no user);
//!   - `system/` scopes count only for a client acting for itself (the client's
//!     configured permissions bound them); a user's token cannot use them.
//!
//! So the difference between a user's token and a client's own token is whose
//! permissions bound the scopes and which scope contexts apply, not the rule.
//!
//! # Rules
//!
//! - `Capabilities` and `SmartConfiguration` are always allowed, even anonymously.
//! - `Transaction` and `Batch` are allowed to enter; the caller decides each entry
//!   on its own interaction ([`decide_all`]), and refuses a transaction unless every
//!   entry is allowed ([`all_allowed`], [`first_denial`]).
//! - Administration needs `superuser` or the matching `admin:<area>` permission, and
//!   no token: SMART scopes never grant administration, and a token narrows its
//!   holder to what its scopes grant. Anonymous principals never administer.
//! - Read and vread need `r`, history (any level) needs `r`, search needs `s`; create
//!   needs `c`, update and patch `u`, delete `d`.
//! - A compartment limit (`read:*@Patient/123`, or a `patient/` scope with launch
//!   patient 123): `Patient/123` itself is inside, other Patients are outside; types
//!   of the Patient compartment ([`PATIENT_COMPARTMENT_TYPES`]) are allowed with a
//!   narrowing the caller applies; other types (`Organization`) are outside, at every
//!   level. A search confined to another patient's compartment is outside. Creating a
//!   Patient is outside (the new Patient is nobody's compartment yet).
//! - `$everything` on `Patient/<id>` needs read of that Patient; each returned
//!   resource then goes through [`check_resource`]. `$validate` needs read on its
//!   type. `$export` needs read without compartment or filter limits on every type it
//!   covers: all types at system level, the Patient compartment types at Patient
//!   level, those and Group at Group level (the export job runs later and cannot
//!   narrow). Other operations, and these at other levels, need superuser.
//!
//! # Narrowing
//!
//! An allowed decision carries a [`Narrowing`]: the grants that allowed it. The
//! caller narrows its query with [`Narrowing::patients_for`] and
//! [`Narrowing::filters_for`]; these are a superset of what the grants allow (one
//! grant's patient and another grant's filter are not paired), so every returned
//! resource must still pass [`check_resource`], and totals must count what passed.
//! Writes under a narrowing check the resource written (and, for update, patch and
//! delete, the stored one) with [`check_write`].
//!
//! Deny reasons are short English sentences naming operations and types, never
//! resource content or ids, so they can be logged.

use std::collections::BTreeSet;
use std::fmt;

use crate::interaction::{HistoryLevel, Interaction, InteractionKind, OperationLevel};
use crate::permission::{AdminArea, Permission, TypeSelector};
use crate::principal::{Principal, PrincipalKind};
use crate::scope::{Ops, Scope, ScopeContext};

/// The resource types of the R4 Patient compartment
/// (`CompartmentDefinition/patient`, the types with at least one parameter).
pub const PATIENT_COMPARTMENT_TYPES: [&str; 66] = [
    "Account",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "BodyStructure",
    "CarePlan",
    "CareTeam",
    "ChargeItem",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "Communication",
    "CommunicationRequest",
    "Composition",
    "Condition",
    "Consent",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "Encounter",
    "EnrollmentRequest",
    "EpisodeOfCare",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "Group",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "Invoice",
    "List",
    "MeasureReport",
    "Media",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "MolecularSequence",
    "NutritionOrder",
    "Observation",
    "Patient",
    "Person",
    "Procedure",
    "Provenance",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchSubject",
    "RiskAssessment",
    "Schedule",
    "ServiceRequest",
    "Specimen",
    "SupplyDelivery",
    "SupplyRequest",
    "VisionPrescription",
];

/// Whether resources of `res_type` can be in a Patient's compartment.
pub fn in_patient_compartment(res_type: &str) -> bool {
    PATIENT_COMPARTMENT_TYPES.binary_search(&res_type).is_ok()
}

/// One effective right: `ops` on `types`, within the compartment of
/// `Patient/<patient>` when set, on resources matching `filter` when set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant {
    pub ops: Ops,
    pub types: TypeSelector,
    pub patient: Option<String>,
    pub filter: Option<Vec<(String, String)>>,
}

impl Grant {
    fn unlimited(&self) -> bool {
        self.patient.is_none() && self.filter.is_none()
    }

    /// Whether the resource described by `facts` is within this grant (its
    /// operations aside).
    pub fn admits(&self, facts: &ResourceFacts<'_>) -> bool {
        self.types.covers(facts.res_type)
            && self
                .patient
                .as_ref()
                .is_none_or(|p| facts.in_compartment_of(p))
            && self
                .filter
                .as_ref()
                .is_none_or(|f| (facts.matches_filter)(facts.res_type, f))
    }

    /// What both grants allow, if anything. Filters add up (both must match).
    fn intersect(&self, other: &Grant) -> Option<Grant> {
        let ops = self.ops.intersection(other.ops);
        if ops.is_empty() {
            return None;
        }
        let types = self.types.intersect(&other.types)?;
        let patient = match (&self.patient, &other.patient) {
            (Some(a), Some(b)) if a != b => return None,
            (Some(p), _) | (None, Some(p)) => Some(p.clone()),
            (None, None) => None,
        };
        let filter = match (&self.filter, &other.filter) {
            (Some(a), Some(b)) => Some(a.iter().chain(b).cloned().collect()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        Some(Grant {
            ops,
            types,
            patient,
            filter,
        })
    }
}

/// Whether a resource matches SMART 2.x filter pairs: called with the resource
/// type and the pairs; true when the resource matches all of them.
pub type MatchesFilter<'a> = dyn Fn(&str, &[(String, String)]) -> bool + 'a;

/// What the caller knows about a resource it is about to return or write.
pub struct ResourceFacts<'a> {
    pub res_type: &'a str,
    pub id: &'a str,
    /// The ids of the patients whose compartments hold the resource (computed by
    /// the caller from the compartment definition). A Patient is in its own
    /// compartment whether or not its id is listed.
    pub patients: Vec<String>,
    /// Whether the resource matches SMART 2.x filter pairs (all of them, as a search
    /// would): called with the resource type and the pairs.
    pub matches_filter: &'a MatchesFilter<'a>,
}

fn matches_no_filter(_: &str, _: &[(String, String)]) -> bool {
    false
}

impl<'a> ResourceFacts<'a> {
    /// Facts whose resource matches no filter (set one with [`Self::with_filter`]).
    pub fn new(res_type: &'a str, id: &'a str, patients: Vec<String>) -> ResourceFacts<'a> {
        ResourceFacts {
            res_type,
            id,
            patients,
            matches_filter: &matches_no_filter,
        }
    }

    pub fn with_filter(self, matches_filter: &'a MatchesFilter<'a>) -> ResourceFacts<'a> {
        ResourceFacts {
            matches_filter,
            ..self
        }
    }

    fn in_compartment_of(&self, patient: &str) -> bool {
        self.patients.iter().any(|p| p == patient)
            || (self.res_type == "Patient" && self.id == patient)
    }
}

impl fmt::Debug for ResourceFacts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceFacts")
            .field("res_type", &self.res_type)
            .field("id", &self.id)
            .field("patients", &self.patients)
            .finish_non_exhaustive()
    }
}

/// The limits an allowed interaction comes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowing {
    /// The type the decision was about; `None` at system level.
    res_type: Option<String>,
    /// `None`: no limit; otherwise each resource must be admitted by one of them.
    grants: Option<Vec<Grant>>,
}

impl Narrowing {
    fn unrestricted(res_type: Option<&str>) -> Narrowing {
        Narrowing {
            res_type: res_type.map(str::to_owned),
            grants: None,
        }
    }

    fn from_grants(res_type: Option<&str>, grants: Vec<Grant>) -> Narrowing {
        let unlimited = grants.iter().any(|g| {
            g.unlimited()
                && match res_type {
                    Some(t) => g.types.covers(t),
                    None => g.types == TypeSelector::All,
                }
        });
        if unlimited {
            Narrowing::unrestricted(res_type)
        } else {
            Narrowing {
                res_type: res_type.map(str::to_owned),
                grants: Some(grants),
            }
        }
    }

    /// The resource type the decision was about (`None` at system level).
    pub fn res_type(&self) -> Option<&str> {
        self.res_type.as_deref()
    }

    pub fn is_unrestricted(&self) -> bool {
        self.grants.is_none()
    }

    /// The grants a resource must be admitted by (`None` when unrestricted).
    pub fn grants(&self) -> Option<&[Grant]> {
        self.grants.as_deref()
    }

    /// The grants covering `res_type` (none when unrestricted).
    fn covering(&self, res_type: &str) -> Vec<&Grant> {
        self.grants
            .iter()
            .flatten()
            .filter(|g| g.types.covers(res_type))
            .collect()
    }

    /// Whether resources of `res_type` may be returned under this narrowing (for a
    /// system-level query: the types to search).
    pub fn allows_type(&self, res_type: &str) -> bool {
        match &self.grants {
            None => self.res_type.as_deref().is_none_or(|t| t == res_type),
            Some(_) => !self.covering(res_type).is_empty(),
        }
    }

    /// The patient ids whose compartments a query on `res_type` must be confined to
    /// (for `Patient`: those Patients themselves); `None` when there is no
    /// compartment limit (an empty set: nothing).
    pub fn patients_for(&self, res_type: &str) -> Option<BTreeSet<String>> {
        if !self.allows_type(res_type) {
            return Some(BTreeSet::new());
        }
        let mut patients = BTreeSet::new();
        for grant in self.covering(res_type) {
            patients.insert(grant.patient.clone()?);
        }
        self.grants.as_ref().map(|_| patients)
    }

    /// The SMART 2.x filters a query on `res_type` must match one of; `None` when
    /// there is no filter (an empty list: nothing).
    pub fn filters_for(&self, res_type: &str) -> Option<Vec<&[(String, String)]>> {
        if !self.allows_type(res_type) {
            return Some(Vec::new());
        }
        let mut filters = Vec::new();
        for grant in self.covering(res_type) {
            filters.push(grant.filter.as_deref()?);
        }
        self.grants.as_ref().map(|_| filters)
    }

    /// Whether the resource is within this narrowing (its type included).
    pub fn admits(&self, facts: &ResourceFacts<'_>) -> bool {
        match &self.grants {
            None => self.res_type.as_deref().is_none_or(|t| t == facts.res_type),
            Some(grants) => grants.iter().any(|g| g.admits(facts)),
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        narrowing: Narrowing,
    },
    /// `reason` is a short sentence, safe for logs.
    Deny {
        reason: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn narrowing(&self) -> Option<&Narrowing> {
        match self {
            Decision::Allow { narrowing } => Some(narrowing),
            Decision::Deny { .. } => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { reason } => Some(reason),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { narrowing } if narrowing.is_unrestricted() => f.write_str("allow"),
            Decision::Allow { .. } => f.write_str("allow (narrowed)"),
            Decision::Deny { reason } => write!(f, "deny: {reason}"),
        }
    }
}

fn allow(res_type: Option<&str>) -> Decision {
    Decision::Allow {
        narrowing: Narrowing::unrestricted(res_type),
    }
}

fn deny(reason: impl Into<String>) -> Decision {
    Decision::Deny {
        reason: reason.into(),
    }
}

/// A principal's rights, with what is needed to explain a refusal.
struct Rights {
    /// The effective grants.
    grants: Vec<Grant>,
    from_permissions: Vec<Grant>,
    /// `None` without a token.
    from_scopes: Option<Vec<Grant>>,
    /// Resource scopes of the token that grant nothing to this principal, and why.
    unusable_scopes: Vec<(Grant, &'static str)>,
    /// A superuser without a token.
    superuser: bool,
}

fn rights(principal: &Principal) -> Rights {
    let anonymous = principal.kind() == PrincipalKind::Anonymous;
    let mut from_permissions = Vec::new();
    for permission in principal.permissions() {
        let (ops, types, patient) = match permission {
            Permission::Read { types, patient } => (Ops::V1_READ, types.clone(), patient.clone()),
            Permission::Write { types, patient } => (Ops::V1_WRITE, types.clone(), patient.clone()),
            Permission::Superuser if !anonymous => (Ops::ALL, TypeSelector::All, None),
            Permission::Superuser | Permission::Admin(_) => continue,
        };
        from_permissions.push(Grant {
            ops,
            types,
            patient,
            filter: None,
        });
    }

    let mut unusable_scopes = Vec::new();
    let from_scopes = principal.scopes().map(|scopes| {
        let mut grants = Vec::new();
        for scope in scopes.iter().filter_map(Scope::as_resource) {
            let grant = Grant {
                ops: scope.ops,
                types: scope.types.clone(),
                patient: None,
                filter: scope.filter.clone(),
            };
            match scope_patient(principal, scope.context) {
                Ok(patient) => grants.push(Grant { patient, ..grant }),
                Err(why) => unusable_scopes.push((grant, why)),
            }
        }
        grants
    });

    let grants = match &from_scopes {
        None => from_permissions.clone(),
        Some(scoped) => from_permissions
            .iter()
            .flat_map(|p| scoped.iter().filter_map(|s| p.intersect(s)))
            .collect(),
    };
    let superuser = !anonymous
        && !principal.has_token()
        && principal.permissions().contains(&Permission::Superuser);
    Rights {
        grants,
        from_permissions,
        from_scopes,
        unusable_scopes,
        superuser,
    }
}

/// The compartment a resource scope limits this principal to, or why the scope
/// grants it nothing.
fn scope_patient(
    principal: &Principal,
    context: ScopeContext,
) -> Result<Option<String>, &'static str> {
    match (context, principal.kind()) {
        (ScopeContext::Patient, _) => principal
            .launch_patient()
            .map(|id| Some(id.to_owned()))
            .ok_or("patient scopes need a launch patient"),
        (ScopeContext::User, PrincipalKind::Client) => {
            Err("user scopes need a user; a client acting for itself uses system scopes")
        }
        (ScopeContext::System, PrincipalKind::User | PrincipalKind::Anonymous) => {
            Err("system scopes are only for clients acting for themselves")
        }
        (ScopeContext::User, _) | (ScopeContext::System, PrincipalKind::Client) => Ok(None),
    }
}

/// The principal's effective grants (permissions, narrowed by the token's scopes).
pub fn effective_grants(principal: &Principal) -> Vec<Grant> {
    rights(principal).grants
}

/// What a resource interaction touches.
struct Target<'a> {
    res_type: Option<&'a str>,
    id: Option<&'a str>,
    /// The patient whose compartment a search is confined to.
    patient_compartment: Option<&'a str>,
    creating: bool,
}

fn target(interaction: &Interaction) -> Result<Target<'_>, &'static str> {
    use InteractionKind as K;
    let (needs_type, needs_id, system_level) = match &interaction.kind {
        K::Read | K::VRead | K::History(HistoryLevel::Instance) => (true, true, false),
        K::History(HistoryLevel::Type)
        | K::SearchType
        | K::Create
        | K::Update
        | K::Patch
        | K::Delete => (true, false, false),
        K::Operation { level, .. } => match level {
            OperationLevel::Instance => (true, true, false),
            OperationLevel::Type => (true, false, false),
            OperationLevel::System => (false, false, true),
        },
        K::History(HistoryLevel::System) | K::SearchSystem => (false, false, true),
        K::Capabilities | K::SmartConfiguration | K::Transaction | K::Batch | K::Admin(_) => {
            (false, false, false)
        }
    };
    if needs_type && interaction.res_type.is_none() {
        return Err("the interaction names no resource type");
    }
    if needs_id && interaction.id.is_none() {
        return Err("the interaction names no resource id");
    }
    if system_level && interaction.res_type.is_some() {
        return Err("a system-level interaction names a resource type");
    }
    Ok(Target {
        res_type: interaction.res_type.as_deref(),
        id: interaction.id.as_deref(),
        patient_compartment: interaction
            .compartment
            .as_ref()
            .filter(|(t, _)| t == "Patient")
            .map(|(_, id)| id.as_str()),
        creating: interaction.kind == K::Create,
    })
}

/// Whether `grant` (its operations aside) reaches what `target` touches.
fn applies(grant: &Grant, target: &Target<'_>) -> bool {
    if let Some(t) = target.res_type
        && !grant.types.covers(t)
    {
        return false;
    }
    let Some(patient) = &grant.patient else {
        return true;
    };
    if target.patient_compartment.is_some_and(|c| c != patient) {
        return false;
    }
    match target.res_type {
        None => true,
        Some("Patient") => match target.id {
            Some(id) => id == patient,
            None => !target.creating,
        },
        Some(t) => in_patient_compartment(t),
    }
}

/// Decides whether `principal` may perform `interaction`. Pure; deny by default.
pub fn decide(principal: &Principal, interaction: &Interaction) -> Decision {
    use InteractionKind as K;
    let target = match target(interaction) {
        Ok(target) => target,
        Err(reason) => return deny(reason),
    };
    match &interaction.kind {
        K::Capabilities | K::SmartConfiguration => allow(None),
        // Each entry is decided on its own interaction (`decide_all`).
        K::Transaction | K::Batch => allow(None),
        K::Admin(area) => decide_admin(principal, *area),
        K::Read | K::VRead | K::History(_) => decide_resource(principal, &target, Ops::READ),
        K::SearchType | K::SearchSystem => decide_resource(principal, &target, Ops::SEARCH),
        K::Create => decide_resource(principal, &target, Ops::CREATE),
        K::Update | K::Patch => decide_resource(principal, &target, Ops::UPDATE),
        K::Delete => decide_resource(principal, &target, Ops::DELETE),
        K::Operation { name, level } => decide_operation(principal, &target, name, *level),
    }
}

/// [`decide`] on each interaction (the entries of a batch or transaction), in order.
pub fn decide_all(principal: &Principal, interactions: &[Interaction]) -> Vec<Decision> {
    interactions.iter().map(|i| decide(principal, i)).collect()
}

/// Whether every decision allows: a transaction proceeds only then.
pub fn all_allowed(decisions: &[Decision]) -> bool {
    decisions.iter().all(Decision::is_allowed)
}

/// The first refused entry, with its index and reason.
pub fn first_denial(decisions: &[Decision]) -> Option<(usize, &str)> {
    decisions
        .iter()
        .enumerate()
        .find_map(|(i, d)| d.reason().map(|r| (i, r)))
}

/// Whether a resource a read returns (a match, an `_include`/`_revinclude`d
/// resource, a history entry, a Bundle entry, a `$everything` member) is visible:
/// the principal may read it (some grant with `r` covers its type, its compartment
/// and its filter), and it is within `narrowing`, the narrowing of the decision that
/// allowed the read. A resource of another type than the decision's (an included
/// resource) needs only the principal's read right.
pub fn check_resource(
    principal: &Principal,
    narrowing: &Narrowing,
    facts: &ResourceFacts<'_>,
) -> bool {
    let readable = rights(principal)
        .grants
        .iter()
        .any(|g| g.ops.contains(Ops::READ) && g.admits(facts));
    let other_type = narrowing.res_type().is_some_and(|t| t != facts.res_type);
    readable && (other_type || narrowing.admits(facts))
}

/// Whether a resource about to be written (the new content; for update, patch and
/// delete also the stored one) is within the narrowing of the decision that allowed
/// the write.
pub fn check_write(narrowing: &Narrowing, facts: &ResourceFacts<'_>) -> bool {
    narrowing.admits(facts)
}

fn anonymous_reason(principal: &Principal, rights: &Rights) -> Option<String> {
    (principal.kind() == PrincipalKind::Anonymous && rights.grants.is_empty())
        .then(|| "anonymous access is limited to the capability statement".to_owned())
}

fn decide_admin(principal: &Principal, area: AdminArea) -> Decision {
    if principal.kind() == PrincipalKind::Anonymous {
        return deny("anonymous principals have no admin access");
    }
    if principal.has_token() {
        return deny("a SMART token never grants admin access");
    }
    let permissions = principal.permissions();
    if permissions.contains(&Permission::Superuser)
        || permissions.contains(&Permission::Admin(area))
    {
        allow(None)
    } else {
        deny(format!("the admin:{area} permission is required"))
    }
}

fn decide_resource(principal: &Principal, target: &Target<'_>, op: Ops) -> Decision {
    let rights = rights(principal);
    let applicable: Vec<Grant> = rights
        .grants
        .iter()
        .filter(|g| g.ops.contains(op) && applies(g, target))
        .cloned()
        .collect();
    if applicable.is_empty() {
        deny(denial_reason(principal, &rights, target, op))
    } else {
        Decision::Allow {
            narrowing: Narrowing::from_grants(target.res_type, applicable),
        }
    }
}

/// Why no grant allows `op` on `target`: the most specific reason found.
fn denial_reason(principal: &Principal, rights: &Rights, target: &Target<'_>, op: Ops) -> String {
    if let Some(reason) = anonymous_reason(principal, rights) {
        return reason;
    }
    let what = match target.res_type {
        Some(t) => format!("{} on {t}", op.word()),
        None => format!("{} at system level", op.word()),
    };
    let covers =
        |g: &Grant| g.ops.contains(op) && target.res_type.is_none_or(|t| g.types.covers(t));
    if rights.grants.iter().any(covers) {
        // A grant covers the type but its compartment limit leaves the target out.
        return match target.res_type {
            Some("Patient") if target.creating => {
                "a compartment-limited grant cannot create a Patient".to_owned()
            }
            Some(t) if !in_patient_compartment(t) => {
                format!("{t} is not in the Patient compartment")
            }
            _ => "outside the allowed patient compartments".to_owned(),
        };
    }
    let Some(from_scopes) = &rights.from_scopes else {
        return format!("no permission allows {what}");
    };
    let by_permission = rights.from_permissions.iter().any(covers);
    let by_scope = from_scopes.iter().any(covers);
    match (by_permission, by_scope) {
        (_, false) => match rights.unusable_scopes.iter().find(|(g, _)| covers(g)) {
            Some((_, why)) => (*why).to_owned(),
            None => format!("the token's scopes do not allow {what}"),
        },
        (false, true) => {
            format!("no permission allows {what}; a token cannot exceed its holder's permissions")
        }
        (true, true) => {
            format!("permissions and token scopes do not overlap for {what}")
        }
    }
}

fn decide_operation(
    principal: &Principal,
    target: &Target<'_>,
    name: &str,
    level: OperationLevel,
) -> Decision {
    use OperationLevel as L;
    let prefixed = |decision: Decision| match decision {
        Decision::Deny { reason } => deny(format!("${name}: {reason}")),
        allowed => allowed,
    };
    match (name, level, target.res_type) {
        ("everything", L::Instance, Some("Patient"))
        | ("validate", L::Type | L::Instance, Some(_)) => {
            prefixed(decide_resource(principal, target, Ops::READ))
        }
        ("export", L::System, None) => decide_export(principal, None),
        ("export", L::Type, Some("Patient")) => decide_export(principal, Some(&[])),
        ("export", L::Instance, Some("Group")) => decide_export(principal, Some(&["Group"])),
        _ => {
            let rights = rights(principal);
            if rights.superuser {
                allow(target.res_type)
            } else if let Some(reason) = anonymous_reason(principal, &rights) {
                deny(reason)
            } else {
                deny(format!(
                    "operation ${name} is not known at this level; only a superuser may call it"
                ))
            }
        }
    }
}

/// `$export` reads without narrowing: `None` covers all types; `Some(extra)` the
/// Patient compartment types and `extra`.
fn decide_export(principal: &Principal, types: Option<&[&str]>) -> Decision {
    let rights = rights(principal);
    let unlimited_read = |res_type: Option<&str>| {
        rights.grants.iter().any(|g| {
            g.ops.contains(Ops::READ)
                && g.unlimited()
                && match res_type {
                    Some(t) => g.types.covers(t),
                    None => g.types == TypeSelector::All,
                }
        })
    };
    let allowed = match types {
        None => unlimited_read(None),
        Some(extra) => PATIENT_COMPARTMENT_TYPES
            .iter()
            .chain(extra)
            .all(|t| unlimited_read(Some(t))),
    };
    if allowed {
        allow(None)
    } else if let Some(reason) = anonymous_reason(principal, &rights) {
        deny(reason)
    } else if types.is_none() {
        deny("$export: needs read on all types without compartment or filter limits")
    } else {
        deny(
            "$export: needs read on every Patient compartment type without compartment or filter limits",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compartment_types_are_sorted_for_binary_search() {
        assert!(PATIENT_COMPARTMENT_TYPES.is_sorted());
        assert!(in_patient_compartment("Observation"));
        assert!(in_patient_compartment("Patient"));
        assert!(!in_patient_compartment("Organization"));
        assert!(!in_patient_compartment("Medication"));
    }

    #[test]
    fn malformed_interactions_are_denied() {
        let p = Principal::user("root").with_permission(Permission::Superuser);
        let mut read = Interaction::read("Patient", "1");
        read.id = None;
        assert_eq!(
            decide(&p, &read).reason(),
            Some("the interaction names no resource id")
        );
        let mut search = Interaction::search_system();
        search.res_type = Some("Patient".into());
        assert!(!decide(&p, &search).is_allowed());
        let mut create = Interaction::create("Patient");
        create.res_type = None;
        assert!(!decide(&p, &create).is_allowed());
    }

    #[test]
    fn narrowing_query_limits_are_a_superset() {
        let g = |patient: Option<&str>, filter: Option<&str>| Grant {
            ops: Ops::V1_READ,
            types: TypeSelector::One("Observation".into()),
            patient: patient.map(str::to_owned),
            filter: filter.map(|v| vec![("category".to_owned(), v.to_owned())]),
        };
        let n = Narrowing::from_grants(
            Some("Observation"),
            vec![
                g(Some("1"), Some("laboratory")),
                g(Some("2"), Some("vital-signs")),
            ],
        );
        assert!(!n.is_unrestricted());
        assert_eq!(
            n.patients_for("Observation"),
            Some(BTreeSet::from(["1".to_owned(), "2".to_owned()]))
        );
        assert_eq!(n.filters_for("Observation").map(|f| f.len()), Some(2));
        assert_eq!(n.patients_for("Condition"), Some(BTreeSet::new()));

        let n = Narrowing::from_grants(
            Some("Observation"),
            vec![g(Some("1"), None), g(None, Some("x"))],
        );
        assert_eq!(n.patients_for("Observation"), None);
        assert_eq!(n.filters_for("Observation"), None);

        let n =
            Narrowing::from_grants(Some("Observation"), vec![g(Some("1"), None), g(None, None)]);
        assert!(n.is_unrestricted());
        assert!(n.allows_type("Observation") && !n.allows_type("Patient"));
    }

    #[test]
    fn filters_add_up_when_grants_intersect() {
        let a = Grant {
            ops: Ops::ALL,
            types: TypeSelector::All,
            patient: Some("1".into()),
            filter: Some(vec![("a".into(), "1".into())]),
        };
        let b = Grant {
            ops: Ops::V1_READ,
            types: TypeSelector::One("Observation".into()),
            patient: None,
            filter: Some(vec![("b".into(), "2".into())]),
        };
        let both = a.intersect(&b);
        assert_eq!(
            both.map(|g| (g.ops, g.types, g.patient, g.filter.map(|f| f.len()))),
            Some((
                Ops::V1_READ,
                TypeSelector::One("Observation".into()),
                Some("1".into()),
                Some(2)
            ))
        );
        let other_patient = Grant {
            patient: Some("2".into()),
            ..b.clone()
        };
        assert_eq!(a.intersect(&other_patient), None);
    }

    #[test]
    fn facts_without_a_filter_function_match_no_filter() {
        let facts = ResourceFacts::new("Observation", "1", vec!["1".into()]);
        assert!(!(facts.matches_filter)("Observation", &[]));
        let patient = ResourceFacts::new("Patient", "7", Vec::new());
        assert!(patient.in_compartment_of("7"));
        assert!(!patient.in_compartment_of("8"));
        assert!(format!("{facts:?}").contains("Observation"));
    }
}
