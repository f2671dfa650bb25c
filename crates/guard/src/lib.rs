//! promptops-guard: pure prompt security. Injection and jailbreak detection (normalisation,
//! payload decoding, weighted rules, a hashed n-gram logistic model), PII and secret detection,
//! redaction with reversible tokens, canary tokens, output validation, sanitisation and
//! instruction-hierarchy prompt assembly, RAG document trust, RBAC policy, a pluggable
//! harmful-content check and injection spike detection. No I/O, no async, no clock: callers
//! pass keys, seeds, nonces and times in.

pub mod canary;
pub mod decode;
pub mod error;
pub mod features;
pub mod guard;
pub mod harmful;
pub mod injection;
pub mod model;
pub mod normalize;
pub mod output;
pub mod pii;
pub mod pii_eval;
mod prefilter;
pub mod rag;
pub mod rbac;
pub mod redact;
pub mod rules;
pub mod sanitize;
pub mod secrets;
pub mod spans;
pub mod spike;
pub mod train;

pub use error::GuardError;
pub use guard::{Action, Guard, InputDecision, InputPolicy, ScanReport};
pub use injection::{InjectionDetector, InjectionVerdict};
pub use output::{OutputPolicy, OutputReport, Verdict};
pub use redact::{Redacted, RedactionMode, Vault};
