//! promptops-core: the pure heart of promptops.
//!
//! Everything here is deterministic and free of I/O, async and clocks, so that the gateway, the
//! CLI and the evaluation runner share one behaviour and it can be tested without a network.

pub mod anthropic;
pub mod budget;
pub mod builder;
pub mod catalog;
pub mod error;
pub mod generation;
pub mod message;
pub mod parse;
pub mod stream_count;
pub mod template;
pub mod tokens;

pub use error::{CoreError, error_chain};
