//! Prompt registry: immutable prompt versions with labels, deployments with deterministic
//! canary routing, per-version metrics with an auto-rollback policy, experiments with their
//! statistics, and a hash-chained audit trail.
//!
//! The domain modules (`version`, `routing`, `metrics`, `rollback`, `stats`, `experiment`,
//! `audit`, `diff`) are pure: no SQL, no async runtime, no clock; times and ids are passed in.
//! [`store`] persists them with sqlx on SQLite or PostgreSQL behind one trait, and
//! [`service::Registry`] is the API front ends call.

pub mod audit;
pub mod canonical;
pub mod diff;
pub mod error;
pub mod experiment;
pub mod files;
pub mod live;
pub mod metrics;
pub mod review;
pub mod rollback;
pub mod routing;
pub mod service;
pub mod stats;
pub mod store;
pub mod version;

pub use error::{RegistryError, Result};
pub use semver::Version;
pub use service::Registry;
