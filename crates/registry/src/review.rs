//! The review queue for retrieved documents the guard flagged: each distinct content is held
//! once (keyed by its SHA-256) until a reviewer approves it (a false positive: later retrievals
//! of the same content are used) or rejects it (it stays excluded). Queueing is automatic and
//! not audited (an attack can queue many documents); every decision is an audited admin action.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::canonical::sha256_hex;
use crate::error::RegistryError;

/// Longest content kept in the queue, in bytes; longer documents are cut (at a character
/// boundary) so one flagged upload cannot grow the database without bound.
pub const MAX_REVIEW_CONTENT_BYTES: usize = 64 * 1024;

/// Where a queued document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Waiting for a reviewer; the document is excluded meanwhile.
    Pending,
    /// Judged safe: retrievals of the same content use it.
    Approved,
    /// Judged malicious: it stays excluded.
    Rejected,
}

impl ReviewStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReviewStatus {
    type Err = RegistryError;

    fn from_str(text: &str) -> Result<ReviewStatus, RegistryError> {
        match text {
            "pending" => Ok(ReviewStatus::Pending),
            "approved" | "approve" => Ok(ReviewStatus::Approved),
            "rejected" | "reject" => Ok(ReviewStatus::Rejected),
            other => Err(RegistryError::InvalidReview(format!(
                "unknown review status `{other}` (expected pending, approved or rejected)"
            ))),
        }
    }
}

/// A flagged document to queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReview {
    /// Where it came from (as the caller named it).
    pub source: String,
    /// The document text.
    pub content: String,
    /// The injection score that flagged it.
    pub score: f64,
    /// The signals that fired.
    pub reasons: Vec<String>,
    /// The request that retrieved it.
    pub request_id: String,
    /// When, Unix milliseconds.
    pub at_ms: i64,
}

impl NewReview {
    /// The key the queue holds the content under.
    pub fn content_sha256(&self) -> String {
        content_sha256(&self.content)
    }

    /// The content as stored: cut to [`MAX_REVIEW_CONTENT_BYTES`].
    pub fn stored_content(&self) -> &str {
        let mut end = self.content.len().min(MAX_REVIEW_CONTENT_BYTES);
        while !self.content.is_char_boundary(end) {
            end -= 1;
        }
        &self.content[..end]
    }
}

/// The queue key of a document's content.
pub fn content_sha256(content: &str) -> String {
    sha256_hex(content.as_bytes())
}

/// One queued document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Queue id.
    pub id: i64,
    /// SHA-256 of the full content.
    pub content_sha256: String,
    /// Where it came from.
    pub source: String,
    /// The content (possibly cut, see [`MAX_REVIEW_CONTENT_BYTES`]).
    pub content: String,
    /// The injection score that flagged it.
    pub score: f64,
    /// The signals that fired.
    pub reasons: Vec<String>,
    /// Where it stands.
    pub status: ReviewStatus,
    /// The first request that retrieved it.
    pub request_id: String,
    /// When it was first queued, Unix milliseconds.
    pub created_at_ms: i64,
    /// How many times it was flagged while queued (repeat retrievals).
    pub hits: i64,
    /// Who decided.
    pub resolved_by: Option<String>,
    /// When, Unix milliseconds.
    pub resolved_at_ms: Option<i64>,
    /// Why, if given.
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_bad_ones_are_named() {
        for status in [
            ReviewStatus::Pending,
            ReviewStatus::Approved,
            ReviewStatus::Rejected,
        ] {
            assert_eq!(status.as_str().parse::<ReviewStatus>().unwrap(), status);
        }
        let error = "maybe".parse::<ReviewStatus>().unwrap_err().to_string();
        assert!(error.contains("`maybe`"), "{error}");
    }

    #[test]
    fn long_content_is_cut_at_a_character_boundary() {
        let review = NewReview {
            source: "s".into(),
            content: "é".repeat(MAX_REVIEW_CONTENT_BYTES),
            score: 0.9,
            reasons: vec![],
            request_id: "r".into(),
            at_ms: 0,
        };
        let stored = review.stored_content();
        assert!(stored.len() <= MAX_REVIEW_CONTENT_BYTES);
        assert!(stored.len() >= MAX_REVIEW_CONTENT_BYTES - 1);
        assert_eq!(review.content_sha256(), content_sha256(&review.content));
    }
}
