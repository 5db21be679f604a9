//! Hearth's security vocabulary and access-control engine.
//!
//! - [`Principal`] — who is calling (a user, a client acting for itself, or nobody),
//!   with its configured [`Permission`]s and, when it presented a token, its SMART
//!   [`Scope`]s and launch patient. Authentication modules produce it.
//! - [`Interaction`] — what the request asks to do, classified once at routing.
//! - [`decide`] — the decision: [`Decision::Allow`] with a [`Narrowing`] the caller
//!   applies to its query, or [`Decision::Deny`] with a reason safe for logs. Deny by
//!   default; the rules are in the [`access`] module documentation.
//! - [`CredentialSource`] — where a user name and password are checked (local
//!   store, LDAP); refusals never fail open.
//! - [`check_resource`] / [`check_write`] — the check on each resource a read
//!   returns or a write is about to store, when a decision was narrowed.
//!
//! **Architecture invariant: this crate never does I/O.** No files, network, clock,
//! environment, logging, async runtime or storage; it depends on `std` only (no
//! actix-web, no diesel), so every decision is a pure function tested by table
//! (`fixtures/access/cases.txt`).

pub mod access;
pub mod credentials;
pub mod interaction;
pub mod permission;
pub mod principal;
pub mod scope;

pub use access::{
    Decision, Grant, MatchesFilter, Narrowing, PATIENT_COMPARTMENT_TYPES, ResourceFacts,
    all_allowed, check_resource, check_write, decide, decide_all, effective_grants, first_denial,
    in_patient_compartment,
};
pub use credentials::{CredentialError, CredentialSource, VerifiedUser};
pub use interaction::{DataAccess, HistoryLevel, Interaction, InteractionKind, OperationLevel};
pub use permission::{AdminArea, Permission, PermissionError, TypeSelector};
pub use principal::{Principal, PrincipalKind};
pub use scope::{Ops, ResourceScope, Scope, ScopeContext, ScopeError, ScopeVersion, parse_scopes};
