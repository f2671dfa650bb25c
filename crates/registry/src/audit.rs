//! The audit trail: every change as an append-only row whose hash covers the previous row's
//! hash, so editing, deleting or reordering any row breaks the chain from that row on.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::canonical::{canonical_json, sha256_hex};

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A change to be recorded (the store assigns the sequence number and hashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What (`add_version`, `set_label`, `deploy`, `rollback`, ...).
    pub action: String,
    /// Which prompt, if the change concerns one.
    pub prompt: Option<String>,
    /// Before/after states, reason and figures.
    pub details: Value,
}

/// A stored audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The change.
    #[serde(flatten)]
    pub draft: AuditDraft,
    /// The previous row's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this row's canonical JSON.
    pub hash: String,
}

/// The hash of a row at `seq` following `prev_hash`.
pub fn entry_hash(prev_hash: &str, seq: i64, draft: &AuditDraft) -> String {
    let body = json!({
        "seq": seq,
        "at_ms": draft.at_ms,
        "actor": draft.actor,
        "action": draft.action,
        "prompt": draft.prompt,
        "details": draft.details,
    });
    let mut text = String::with_capacity(128);
    text.push_str(prev_hash);
    text.push('\n');
    text.push_str(&canonical_json(&body));
    sha256_hex(text.as_bytes())
}

/// The outcome of checking a chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainVerification {
    /// Rows checked.
    pub rows: usize,
    /// The first row that does not fit, with the reason; `None` when the chain is intact.
    pub broken_at: Option<(i64, String)>,
}

impl ChainVerification {
    /// Whether the whole chain is intact.
    pub fn is_intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Checks a whole chain in sequence order: consecutive numbers from 1, links and hashes.
pub fn verify_chain(entries: &[AuditEntry]) -> ChainVerification {
    let mut prev = GENESIS_HASH.to_owned();
    for (index, entry) in entries.iter().enumerate() {
        let expected_seq = i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1);
        let broken = |reason: String| ChainVerification {
            rows: entries.len(),
            broken_at: Some((entry.seq, reason)),
        };
        if entry.seq != expected_seq {
            return broken(format!(
                "expected row {expected_seq}, found row {} (a row was deleted or inserted)",
                entry.seq
            ));
        }
        if entry.prev_hash != prev {
            return broken("its link to the previous row does not match".to_owned());
        }
        if entry_hash(&prev, entry.seq, &entry.draft) != entry.hash {
            return broken("its content does not match its hash (the row was edited)".to_owned());
        }
        prev.clone_from(&entry.hash);
    }
    ChainVerification {
        rows: entries.len(),
        broken_at: None,
    }
}

/// Builds the row that follows `previous` (or starts the chain).
pub fn next_entry(previous: Option<(i64, &str)>, draft: AuditDraft) -> AuditEntry {
    let (seq, prev_hash) = match previous {
        Some((seq, hash)) => (seq.saturating_add(1), hash.to_owned()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let hash = entry_hash(&prev_hash, seq, &draft);
    AuditEntry {
        seq,
        draft,
        prev_hash,
        hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let draft = AuditDraft {
                at_ms: i as i64,
                actor: "ann".into(),
                action: "deploy".into(),
                prompt: Some("greet".into()),
                details: json!({"i": i}),
            };
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let entry = next_entry(prev, draft);
            out.push(entry);
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert!(verify_chain(&chain(5)).is_intact());
        assert!(verify_chain(&[]).is_intact());
    }

    #[test]
    fn edits_deletions_and_reorders_are_caught() {
        let mut edited = chain(5);
        edited[2].draft.actor = "mallory".into();
        assert_eq!(verify_chain(&edited).broken_at.unwrap().0, 3);

        let mut deleted = chain(5);
        deleted.remove(1);
        assert_eq!(verify_chain(&deleted).broken_at.unwrap().0, 3);

        let mut rehashed = chain(5);
        rehashed[2].draft.details = json!({"i": 99});
        rehashed[2].hash = entry_hash(&rehashed[2].prev_hash, 3, &rehashed[2].draft);
        // Recomputing one row's hash still breaks the next row's link.
        assert_eq!(verify_chain(&rehashed).broken_at.unwrap().0, 4);
    }
}
