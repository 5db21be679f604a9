//! Hearth: a FHIR R4 server. This crate is the composition root and the core
//! domain; storage backends and listener plumbing live in small crates beside it.
//! See `docs/ARCHITECTURE.md` for the map.

pub mod app;
pub mod audit;
pub mod auth;
pub mod bundle;
pub mod config;
pub mod crypto;
pub mod error;
pub mod export;
pub mod fhir;
pub mod http;
pub mod import;
pub mod json;
pub mod limits;
pub mod search;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod time;
