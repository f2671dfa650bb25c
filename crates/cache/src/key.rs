//! Canonical-JSON SHA-256 cache keys.
//!
//! Clients serialise the same request with fields in any order (`{"model":..,"messages":..}` vs
//! `{"messages":..,"model":..}`); hashing their raw bytes would split one logical request over
//! several cache entries and lower the hit rate for no reason. So the key hashes a canonical
//! form: object keys sorted (by their UTF-8 bytes) at every depth, no whitespace, strings escaped
//! and numbers printed exactly as `serde_json` prints them. Array order is kept: it is meaningful
//! (message order). The caller decides which request fields go into the value it hashes.

use std::fmt;
use std::io::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// SHA-256 of a request's canonical JSON form; `Display` prints 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Hash the canonical JSON form of `value`.
    pub fn of(value: &Value) -> CacheKey {
        let mut hasher = HashWriter(Sha256::new());
        write_canonical(&mut hasher, value);
        CacheKey(hasher.0.finalize().into())
    }

    /// The raw 32-byte digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Build a key from a raw digest (e.g. one read back from storage).
    pub fn from_bytes(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    /// The canonical JSON text that [`CacheKey::of`] hashes (for debugging and tests).
    pub fn canonical_json(value: &Value) -> String {
        let mut out = StringWriter(String::new());
        write_canonical(&mut out, value);
        out.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A sink for canonical JSON pieces; writing never fails.
trait Sink {
    fn put(&mut self, s: &[u8]);
}

struct HashWriter(Sha256);

impl Sink for HashWriter {
    fn put(&mut self, s: &[u8]) {
        self.0.update(s);
    }
}

struct StringWriter(String);

impl Sink for StringWriter {
    fn put(&mut self, s: &[u8]) {
        self.0.push_str(&String::from_utf8_lossy(s));
    }
}

fn write_string<S: Sink>(out: &mut S, s: &str) {
    // serde_json's string escaping; writing to a Vec cannot fail.
    let mut buf = Vec::with_capacity(s.len() + 2);
    if serde_json::to_writer(&mut buf, s).is_err() {
        buf.clear();
        let _ = buf.write_all(b"\"\"");
    }
    out.put(&buf);
}

fn write_canonical<S: Sink>(out: &mut S, value: &Value) {
    match value {
        Value::Null => out.put(b"null"),
        Value::Bool(true) => out.put(b"true"),
        Value::Bool(false) => out.put(b"false"),
        Value::Number(n) => out.put(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_canonical(out, item);
            }
            out.put(b"]");
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.put(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.put(b",");
                }
                write_string(out, k);
                out.put(b":");
                write_canonical(out, v);
            }
            out.put(b"}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_order_does_not_matter() {
        let a: Value = serde_json::from_str(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.5}"#,
        )
        .unwrap();
        let b: Value =
            serde_json::from_str(r#"{ "temperature": 0.5, "messages": [ {"content":"hi","role":"user"} ], "model": "m" }"#)
                .unwrap();
        assert_eq!(CacheKey::of(&a), CacheKey::of(&b));
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let v = json!({"b": [3, {"z": null, "a": true}], "a": "x\"y", "c": 1.5});
        assert_eq!(
            CacheKey::canonical_json(&v),
            r#"{"a":"x\"y","b":[3,{"a":true,"z":null}],"c":1.5}"#
        );
    }

    #[test]
    fn different_content_differs_and_array_order_matters() {
        let a = json!({"messages": ["a", "b"]});
        let b = json!({"messages": ["b", "a"]});
        let c = json!({"messages": ["a", "b"], "temperature": 0});
        assert_ne!(CacheKey::of(&a), CacheKey::of(&b));
        assert_ne!(CacheKey::of(&a), CacheKey::of(&c));
    }

    #[test]
    fn display_is_hex_sha256_of_canonical_text() {
        let v = json!({"b": 1, "a": 2});
        let key = CacheKey::of(&v);
        let expected = Sha256::digest(br#"{"a":2,"b":1}"#);
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.to_string(), hex);
        assert_eq!(key.to_string().len(), 64);
    }

    proptest::proptest! {
        #[test]
        fn reordering_object_keys_keeps_the_key(keys in proptest::collection::btree_set("[a-z]{1,6}", 1..8)) {
            let forward: serde_json::Map<String, Value> =
                keys.iter().enumerate().map(|(i, k)| (k.clone(), json!(i))).collect();
            let backward: serde_json::Map<String, Value> =
                keys.iter().enumerate().rev().map(|(i, k)| (k.clone(), json!(i))).collect();
            proptest::prop_assert_eq!(CacheKey::of(&Value::Object(forward)), CacheKey::of(&Value::Object(backward)));
        }
    }
}
