//! The `local` credential source: users kept in Hearth's own database with
//! argon2id password hashes, the password policy, account lockout, and the
//! pieces of the HTTP `basic` module that do not depend on the web framework
//! (header parsing, the verified-credential cache).
//!
//! The database is reached through [`UserDirectory`], implemented by the
//! application over its store: this crate depends on neither actix-web nor
//! diesel.

mod basic;
mod cache;
mod hash;
mod policy;
mod source;

pub use basic::parse_basic;
pub use cache::CredentialCache;
pub use hash::{hash_password, verify_password};
pub use policy::check_password;
pub use source::{LocalSource, LocalUser, UserDirectory};
