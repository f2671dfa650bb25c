//! Redaction of detected PII and secrets: numbered placeholders, masking, keyed hashes, or
//! reversible tokens whose mapping (the [`Vault`]) is kept per request and can be sealed with
//! ChaCha20-Poly1305 before the caller persists it.

use std::collections::{BTreeMap, HashMap, HashSet};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::GuardError;
use crate::spans::byte_to_char_offsets;

/// How detected values are rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactionMode {
    /// `<EMAIL_1>`, numbered per distinct value and type.
    Replace,
    /// Characters replaced by `*`, keeping separators and a short tail where that is customary.
    Mask,
    /// `<EMAIL:1a2b3c4d5e6f7a8b>`: HMAC-SHA256 under the caller's key (stable, not reversible).
    Hash,
    /// `<EMAIL_1>` with the mapping kept in a [`Vault`] for de-redaction.
    Token,
}

impl std::str::FromStr for RedactionMode {
    type Err = GuardError;
    fn from_str(s: &str) -> Result<Self, GuardError> {
        match s {
            "replace" => Ok(RedactionMode::Replace),
            "mask" => Ok(RedactionMode::Mask),
            "hash" => Ok(RedactionMode::Hash),
            "token" => Ok(RedactionMode::Token),
            other => Err(GuardError::BadConfig {
                field: "redaction mode".into(),
                message: format!("unknown mode `{other}` (expected replace, mask, hash or token)"),
            }),
        }
    }
}

/// A span to redact: a type label and byte offsets into the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Type label used in placeholders (`EMAIL`, `AWS_ACCESS_KEY`, ...).
    pub label: String,
    /// Start byte offset.
    pub byte_start: usize,
    /// End byte offset.
    pub byte_end: usize,
}

/// One rewrite that was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    /// Type label.
    #[serde(rename = "type")]
    pub label: String,
    /// Start in the original text, in Unicode scalar values.
    pub start: usize,
    /// End in the original text, in Unicode scalar values.
    pub end: usize,
    /// What was written instead.
    pub replacement: String,
}

/// The result of redacting a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted {
    /// The rewritten text.
    pub text: String,
    /// Every rewrite, in text order.
    pub replacements: Vec<Replacement>,
    /// The token mapping (mode `Token` only).
    pub vault: Option<Vault>,
}

/// Rewrites the findings in `text`. Overlapping findings keep the earlier, longer one.
/// `hash_key` is required (non-empty) for [`RedactionMode::Hash`].
pub fn redact(
    text: &str,
    findings: &[Finding],
    mode: RedactionMode,
    hash_key: Option<&[u8]>,
) -> Result<Redacted, GuardError> {
    let mac_key = match mode {
        RedactionMode::Hash => match hash_key {
            Some(key) if !key.is_empty() => Some(key),
            _ => {
                return Err(GuardError::BadKey {
                    what: "hash redaction key",
                    message: "hash mode needs a non-empty key".into(),
                });
            }
        },
        _ => None,
    };
    let mut spans: Vec<&Finding> = findings
        .iter()
        .filter(|f| {
            f.byte_start < f.byte_end
                && f.byte_end <= text.len()
                && text.is_char_boundary(f.byte_start)
                && text.is_char_boundary(f.byte_end)
        })
        .collect();
    spans.sort_by(|a, b| {
        a.byte_start
            .cmp(&b.byte_start)
            .then(b.byte_end.cmp(&a.byte_end))
    });
    let mut kept: Vec<&Finding> = Vec::new();
    for span in spans {
        if kept
            .last()
            .is_none_or(|last| span.byte_start >= last.byte_end)
        {
            kept.push(span);
        }
    }
    let literal_tokens = placeholder_like(text);
    let mut numbering: HashMap<(&str, &str), usize> = HashMap::new();
    let mut per_label: HashMap<&str, usize> = HashMap::new();
    let mut vault = Vault::default();
    let mut out = String::with_capacity(text.len());
    let mut cursor = 0;
    let mut raw = Vec::with_capacity(kept.len());
    for finding in &kept {
        let value = &text[finding.byte_start..finding.byte_end];
        let label = finding.label.as_str();
        let replacement = match mode {
            RedactionMode::Replace | RedactionMode::Token => {
                let number = *numbering.entry((label, value)).or_insert_with(|| {
                    let next = per_label.entry(label).or_insert(0);
                    *next += 1;
                    // A placeholder the text already contains would be de-redacted too:
                    // skip numbers whose token is written literally in the input.
                    while literal_tokens.contains(format!("<{label}_{next}>").as_str()) {
                        *next += 1;
                    }
                    *next
                });
                let token = format!("<{label}_{number}>");
                if mode == RedactionMode::Token {
                    vault.entries.insert(token.clone(), value.to_owned());
                }
                token
            }
            RedactionMode::Mask => mask(label, value),
            RedactionMode::Hash => format!(
                "<{label}:{}>",
                keyed_hash(mac_key.unwrap_or(&[]), label, value)
            ),
        };
        out.push_str(&text[cursor..finding.byte_start]);
        out.push_str(&replacement);
        cursor = finding.byte_end;
        raw.push((finding, replacement));
    }
    out.push_str(&text[cursor..]);
    let offsets: Vec<usize> = kept
        .iter()
        .flat_map(|f| [f.byte_start, f.byte_end])
        .collect();
    let chars = byte_to_char_offsets(text, &offsets);
    let replacements = raw
        .into_iter()
        .enumerate()
        .map(|(i, (finding, replacement))| Replacement {
            label: finding.label.clone(),
            start: chars[2 * i],
            end: chars[2 * i + 1],
            replacement,
        })
        .collect();
    Ok(Redacted {
        text: out,
        replacements,
        vault: (mode == RedactionMode::Token).then_some(vault),
    })
}

/// Every `<...>` substring of `text` that [`Vault::restore`] would look up (a `<` and the first
/// `>` within 64 bytes): placeholders written literally in the input must not be reused.
fn placeholder_like(text: &str) -> HashSet<&str> {
    let mut found = HashSet::new();
    for (open, _) in text.match_indices('<') {
        let candidate = &text[open..];
        if let Some(close) = candidate.bytes().take(64).position(|b| b == b'>') {
            found.insert(&candidate[..=close]);
        }
    }
    found
}

/// First 8 bytes of HMAC-SHA256(key, "label:value") as hex.
pub fn keyed_hash(key: &[u8], label: &str, value: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(label.as_bytes());
    mac.update(b":");
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Masks a value: emails keep their first character and domain; numbers keep their last four
/// digits; everything else keeps at most its first four characters (secrets) or nothing.
pub fn mask(label: &str, value: &str) -> String {
    if label == "EMAIL"
        && let Some((local, domain)) = value.split_once('@')
    {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let numeric =
        matches!(label, "CREDIT_CARD" | "PHONE" | "SSN" | "IBAN") || digits * 2 > value.len();
    if numeric {
        let total_alnum = value.chars().filter(char::is_ascii_alphanumeric).count();
        let mut seen = 0;
        return value
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    seen += 1;
                    if seen > total_alnum.saturating_sub(4) {
                        c
                    } else {
                        '*'
                    }
                } else {
                    c
                }
            })
            .collect();
    }
    let keep = if label.contains("KEY") || label.contains("TOKEN") || label.contains("SECRET") {
        4
    } else {
        0
    };
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i < keep || c.is_whitespace() {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The per-request mapping from tokens back to original values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vault {
    entries: BTreeMap<String, String>,
}

impl Vault {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the vault holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The mapping, token to original value.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// Replaces every token of this vault found in `text` by its original value (de-redaction).
    /// Only call it for callers allowed to see PII (see `rbac`).
    pub fn restore(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('<') {
            out.push_str(&rest[..open]);
            let candidate = &rest[open..];
            let close = candidate.bytes().take(64).position(|b| b == b'>');
            match close.and_then(|close| self.entries.get(&candidate[..=close]).map(|v| (close, v)))
            {
                Some((close, value)) => {
                    out.push_str(value);
                    rest = &candidate[close + 1..];
                }
                None => {
                    out.push('<');
                    rest = &candidate[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Encrypts the mapping with ChaCha20-Poly1305 for storage: `nonce (12 bytes) || ciphertext`.
    /// The caller supplies a 32-byte key and a nonce never reused with that key.
    pub fn seal(&self, key: &[u8], nonce: &[u8; 12]) -> Result<Vec<u8>, GuardError> {
        let cipher = cipher(key)?;
        let plain =
            serde_json::to_vec(&self.entries).map_err(|e| GuardError::VaultOpen(e.to_string()))?;
        let sealed = cipher
            .encrypt(Nonce::from_slice(nonce), plain.as_slice())
            .map_err(|_| GuardError::VaultOpen("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a vault produced by [`Vault::seal`]; a wrong key or tampered data is an error.
    pub fn open(key: &[u8], sealed: &[u8]) -> Result<Vault, GuardError> {
        let cipher = cipher(key)?;
        if sealed.len() < 12 + 16 {
            return Err(GuardError::VaultOpen(format!(
                "{} bytes is too short",
                sealed.len()
            )));
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| {
                GuardError::VaultOpen("authentication failed (wrong key or tampered data)".into())
            })?;
        let entries =
            serde_json::from_slice(&plain).map_err(|e| GuardError::VaultOpen(e.to_string()))?;
        Ok(Vault { entries })
    }
}

fn cipher(key: &[u8]) -> Result<ChaCha20Poly1305, GuardError> {
    if key.len() != 32 {
        return Err(GuardError::BadKey {
            what: "vault key",
            message: format!("must be 32 bytes, got {}", key.len()),
        });
    }
    Ok(ChaCha20Poly1305::new(Key::from_slice(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(text: &str, value: &str, label: &str, nth: usize) -> Finding {
        let start = text.match_indices(value).nth(nth).unwrap().0;
        Finding {
            label: label.into(),
            byte_start: start,
            byte_end: start + value.len(),
        }
    }

    fn sample() -> (&'static str, Vec<Finding>) {
        let text = "Mail a@x.io, then b@y.io, then a@x.io; card 4111 1111 1111 1111.";
        let findings = vec![
            finding(text, "a@x.io", "EMAIL", 0),
            finding(text, "b@y.io", "EMAIL", 0),
            finding(text, "a@x.io", "EMAIL", 1),
            finding(text, "4111 1111 1111 1111", "CREDIT_CARD", 0),
        ];
        (text, findings)
    }

    #[test]
    fn replace_numbers_distinct_values() {
        let (text, findings) = sample();
        let out = redact(text, &findings, RedactionMode::Replace, None).unwrap();
        assert_eq!(
            out.text,
            "Mail <EMAIL_1>, then <EMAIL_2>, then <EMAIL_1>; card <CREDIT_CARD_1>."
        );
        assert_eq!(out.replacements[1].start, 18);
        assert!(out.vault.is_none());
    }

    #[test]
    fn mask_and_hash() {
        let (text, findings) = sample();
        let out = redact(text, &findings, RedactionMode::Mask, None).unwrap();
        assert_eq!(
            out.text,
            "Mail a***@x.io, then b***@y.io, then a***@x.io; card **** **** **** 1111."
        );
        let one = redact(text, &findings, RedactionMode::Hash, Some(b"k1")).unwrap();
        let two = redact(text, &findings, RedactionMode::Hash, Some(b"k2")).unwrap();
        assert_ne!(one.text, two.text);
        assert_eq!(
            one.replacements[0].replacement,
            one.replacements[2].replacement
        );
        assert!(one.replacements[0].replacement.starts_with("<EMAIL:"));
        assert!(redact(text, &findings, RedactionMode::Hash, None).is_err());
    }

    #[test]
    fn tokens_round_trip_through_a_sealed_vault() {
        let (text, findings) = sample();
        let out = redact(text, &findings, RedactionMode::Token, None).unwrap();
        let vault = out.vault.unwrap();
        assert_eq!(vault.len(), 3);
        assert_eq!(vault.restore(&out.text), text);
        let model_reply = "I wrote to <EMAIL_2> and kept <UNKNOWN_1> and <EMAIL_1";
        assert_eq!(
            vault.restore(model_reply),
            "I wrote to b@y.io and kept <UNKNOWN_1> and <EMAIL_1"
        );
        let key = [7u8; 32];
        let sealed = vault.seal(&key, &[1u8; 12]).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("a@x.io"));
        assert_eq!(Vault::open(&key, &sealed).unwrap(), vault);
        assert!(Vault::open(&[8u8; 32], &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(Vault::open(&key, &tampered).is_err());
        assert!(vault.seal(&[0u8; 5], &[0u8; 12]).is_err());
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            "token".parse::<RedactionMode>().unwrap(),
            RedactionMode::Token
        );
        assert!(
            "shred"
                .parse::<RedactionMode>()
                .unwrap_err()
                .to_string()
                .contains("shred")
        );
    }
}
