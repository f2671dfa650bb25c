//! Differences between two versions: a unified text diff per message template and the list of
//! changed configuration fields, for `prompt diff`.

use serde::Serialize;
use serde_json::{Map, Value};
use similar::TextDiff;

use crate::version::PromptVersion;

/// A configuration field whose value differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted field path (`generation.temperature`, `model`, `variables`).
    pub field: String,
    /// Value in the first version (`null` when absent).
    pub before: Value,
    /// Value in the second version (`null` when absent).
    pub after: Value,
}

/// What changed from one version to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionDiff {
    /// Unified diffs of the message templates (empty when they are identical).
    pub templates: String,
    /// Changed fields other than the templates.
    pub fields: Vec<FieldChange>,
}

impl VersionDiff {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty() && self.fields.is_empty()
    }
}

/// Compares `a` with `b`.
pub fn diff_versions(a: &PromptVersion, b: &PromptVersion) -> VersionDiff {
    let render = |v: &PromptVersion| {
        v.content
            .messages
            .iter()
            .map(|m| {
                format!(
                    "[{}]\n{}\n",
                    m.role.as_str(),
                    m.template.trim_end_matches('\n')
                )
            })
            .collect::<String>()
    };
    let (left, right) = (render(a), render(b));
    let templates = if left == right {
        String::new()
    } else {
        TextDiff::from_lines(&left, &right)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{}@{}", a.name, a.version),
                &format!("{}@{}", b.name, b.version),
            )
            .to_string()
    };
    let as_map = |v: &PromptVersion| {
        let mut value = serde_json::to_value(&v.content).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("messages");
            map.clone()
        } else {
            Map::new()
        }
    };
    let mut fields = Vec::new();
    compare("", &as_map(a), &as_map(b), &mut fields);
    VersionDiff { templates, fields }
}

fn compare(
    prefix: &str,
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    out: &mut Vec<FieldChange>,
) {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (a.get(key), b.get(key)) {
            (Some(Value::Object(x)), Some(Value::Object(y))) if key == "generation" => {
                compare(&path, x, y, out);
            }
            (x, y) if x != y => out.push(FieldChange {
                field: path,
                before: x.cloned().unwrap_or(Value::Null),
                after: y.cloned().unwrap_or(Value::Null),
            }),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::{PromptContent, VersionStatus};
    use promptops_core::generation::GenerationConfig;
    use semver::Version;

    fn version(patch: u64, user: &str, temperature: f64) -> PromptVersion {
        let mut content = PromptContent::system_user(Some("Be brief.".into()), user.into());
        content.generation = GenerationConfig::builder()
            .temperature(temperature)
            .build()
            .unwrap();
        PromptVersion {
            name: "greet".into(),
            version: Version::new(1, 0, patch),
            content_hash: content.content_hash().unwrap(),
            content,
            status: VersionStatus::Draft,
            author: "a".into(),
            message: None,
            created_at_ms: 0,
        }
    }

    #[test]
    fn shows_template_and_field_changes() {
        let d = diff_versions(&version(0, "Hi", 0.2), &version(1, "Hello", 0.7));
        assert!(d.templates.contains("-Hi\n+Hello"), "{}", d.templates);
        assert_eq!(d.fields.len(), 1);
        assert_eq!(d.fields[0].field, "generation.temperature");
        assert!(diff_versions(&version(0, "Hi", 0.2), &version(0, "Hi", 0.2)).is_empty());
    }
}
