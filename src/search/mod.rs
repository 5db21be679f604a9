//! Search: what is extracted from a resource for its search parameters, and how
//! values are normalised so that queries compare like with like.
//!
//! `extract` turns a resource into typed index entries through the R4
//! SearchParameter registry; the store writes them in the resource's transaction
//! (to come), and queries read them.

pub mod custom;
pub mod extract;
pub mod normalize;
pub mod plan;
pub mod query;
pub mod run;
pub mod ucum;
