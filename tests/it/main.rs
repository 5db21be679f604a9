#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Integration tests: a real server over HTTP, on SQLite and on PostgreSQL.

mod support;

mod admin;
mod audit;
mod auth;
mod bundle;
mod concurrency;
mod conditional;
mod conformance;
mod crud;
mod encryption;
mod export;
mod http_semantics;
mod import;
mod oidc;
mod patch;
mod plans;
mod roundtrip;
mod search;
mod startup;
mod sweep;
mod tls;
mod validate_op;
mod validation;
mod xml;
