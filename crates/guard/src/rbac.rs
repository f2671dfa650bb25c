//! Role-based access control as policy data: roles with permissions, tool allow-lists, a
//! document access level and PII visibility; tools with a required permission and a JSON
//! schema for their arguments. Decisions are data (with an audit record), never errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::GuardError;

/// How sensitive a document is; a role reads documents up to its own level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    /// Anyone.
    #[default]
    Public,
    /// Staff.
    Internal,
    /// Named groups.
    Confidential,
    /// Administrators only.
    Restricted,
}

/// One role as written in config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Permitted actions; `"*"` permits all.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Tools the role may call; `"*"` allows all.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// Highest document level the role may read.
    #[serde(default)]
    pub access_level: AccessLevel,
    /// Whether de-redacted PII may be shown to this role.
    #[serde(default)]
    pub can_view_pii: bool,
    /// Requests per minute per end user (the gateway enforces it on keys acting as this role;
    /// a key's own lower `user_requests_per_minute` wins).
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
}

/// One tool as written in config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Permission a caller needs besides having the tool in `allowed_tools`.
    #[serde(default)]
    pub required_permission: Option<String>,
    /// JSON schema of the arguments.
    #[serde(default = "any_object")]
    pub parameters: serde_json::Value,
}

fn any_object() -> serde_json::Value {
    serde_json::json!({"type": "object"})
}

/// The RBAC section of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RbacConfig {
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    /// Tools by name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolConfig>,
}

/// A validated policy with compiled tool schemas.
pub struct Rbac {
    roles: BTreeMap<String, RoleConfig>,
    tools: BTreeMap<String, (ToolConfig, jsonschema::Validator)>,
}

impl std::fmt::Debug for Rbac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rbac")
            .field("roles", &self.roles)
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The outcome of a tool-call authorisation, with its audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolDecision {
    /// Whether the call may run.
    pub allowed: bool,
    /// Why not (empty when allowed).
    pub reasons: Vec<String>,
    /// The caller's role.
    pub role: String,
    /// The tool.
    pub tool: String,
}

impl Rbac {
    /// Validates a config: tool schemas must compile and allow-lists must name known tools.
    pub fn new(config: RbacConfig) -> Result<Rbac, GuardError> {
        let mut tools = BTreeMap::new();
        for (name, tool) in config.tools {
            let validator = jsonschema::validator_for(&tool.parameters).map_err(|e| {
                GuardError::BadToolSchema {
                    tool: name.clone(),
                    message: e.to_string(),
                }
            })?;
            tools.insert(name, (tool, validator));
        }
        for (role, role_config) in &config.roles {
            for tool in &role_config.allowed_tools {
                if tool != "*" && !tools.contains_key(tool) {
                    return Err(GuardError::BadConfig {
                        field: format!("rbac.roles.{role}.allowed_tools"),
                        message: format!("unknown tool `{tool}`"),
                    });
                }
            }
        }
        Ok(Rbac {
            roles: config.roles,
            tools,
        })
    }

    /// Whether `role` may perform `action`. Unknown roles may do nothing.
    pub fn check_permission(&self, role: &str, action: &str) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| r.permissions.iter().any(|p| p == "*" || p == action))
    }

    /// Whether `role` may read a document of `level`.
    pub fn may_read(&self, role: &str, level: AccessLevel) -> bool {
        self.roles
            .get(role)
            .is_some_and(|r| level <= r.access_level)
    }

    /// The documents `role` may read, in order (for access-filtered retrieval).
    pub fn filter_documents<'a, D>(
        &self,
        role: &str,
        documents: &'a [D],
        level_of: impl Fn(&D) -> AccessLevel,
    ) -> Vec<&'a D> {
        documents
            .iter()
            .filter(|d| self.may_read(role, level_of(d)))
            .collect()
    }

    /// Whether responses may be de-redacted for `role`.
    pub fn may_view_pii(&self, role: &str) -> bool {
        self.roles.get(role).is_some_and(|r| r.can_view_pii)
    }

    /// The per-user rate limit of `role`, if it has one.
    pub fn rate_limit(&self, role: &str) -> Option<u32> {
        self.roles.get(role).and_then(|r| r.rate_limit_per_minute)
    }

    /// Decides whether `role` may call `tool` with `arguments`: the role must exist and allow
    /// the tool, hold its required permission, and the arguments must satisfy its schema.
    pub fn authorize_tool(
        &self,
        role: &str,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> ToolDecision {
        let mut reasons = Vec::new();
        match (self.roles.get(role), self.tools.get(tool)) {
            (None, _) => reasons.push(format!("unknown role `{role}`")),
            (_, None) => reasons.push(format!("unknown tool `{tool}`")),
            (Some(role_config), Some((tool_config, schema))) => {
                if !role_config
                    .allowed_tools
                    .iter()
                    .any(|t| t == "*" || t == tool)
                {
                    reasons.push(format!("role `{role}` may not call `{tool}`"));
                }
                if let Some(permission) = &tool_config.required_permission
                    && !self.check_permission(role, permission)
                {
                    reasons.push(format!("role `{role}` lacks permission `{permission}`"));
                }
                for error in schema.iter_errors(arguments) {
                    reasons.push(format!(
                        "argument {}: {error}",
                        display_path(&error.instance_path().to_string())
                    ));
                }
            }
        }
        ToolDecision {
            allowed: reasons.is_empty(),
            reasons,
            role: role.to_owned(),
            tool: tool.to_owned(),
        }
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_owned()
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rbac() -> Rbac {
        let config: RbacConfig = serde_json::from_value(serde_json::json!({
            "roles": {
                "public": {"permissions": ["read_public_docs"], "access_level": "public"},
                "customer": {"permissions": ["read_public_docs", "submit_ticket"], "allowed_tools": ["ticket_status"], "rate_limit_per_minute": 30},
                "employee": {"permissions": ["read_all_docs", "update_ticket"], "allowed_tools": ["ticket_status", "update_ticket"], "access_level": "internal", "can_view_pii": true},
                "admin": {"permissions": ["*"], "allowed_tools": ["*"], "access_level": "restricted", "can_view_pii": true}
            },
            "tools": {
                "ticket_status": {"parameters": {"type": "object", "required": ["ticket_id"], "properties": {"ticket_id": {"type": "string", "pattern": "^T-[0-9]+$"}}, "additionalProperties": false}},
                "update_ticket": {"required_permission": "update_ticket", "parameters": {"type": "object", "required": ["ticket_id", "status"], "properties": {"ticket_id": {"type": "string"}, "status": {"enum": ["open", "closed"]}}}}
            }
        }))
        .unwrap();
        Rbac::new(config).unwrap()
    }

    #[test]
    fn permissions_and_documents() {
        let rbac = rbac();
        assert!(rbac.check_permission("customer", "submit_ticket"));
        assert!(!rbac.check_permission("customer", "update_ticket"));
        assert!(rbac.check_permission("admin", "anything"));
        assert!(!rbac.check_permission("ghost", "read_public_docs"));
        let docs = [
            ("faq", AccessLevel::Public),
            ("runbook", AccessLevel::Internal),
            ("salaries", AccessLevel::Restricted),
        ];
        let names = |role| {
            rbac.filter_documents(role, &docs, |d| d.1)
                .iter()
                .map(|d| d.0)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("customer"), vec!["faq"]);
        assert_eq!(names("employee"), vec!["faq", "runbook"]);
        assert_eq!(names("admin"), vec!["faq", "runbook", "salaries"]);
        assert!(!rbac.may_view_pii("customer"));
        assert!(rbac.may_view_pii("employee"));
        assert_eq!(rbac.rate_limit("customer"), Some(30));
    }

    #[test]
    fn tool_calls_are_checked_for_role_permission_and_schema() {
        let rbac = rbac();
        let ok = rbac.authorize_tool(
            "customer",
            "ticket_status",
            &serde_json::json!({"ticket_id": "T-42"}),
        );
        assert!(ok.allowed, "{ok:?}");
        let bad_args = rbac.authorize_tool(
            "customer",
            "ticket_status",
            &serde_json::json!({"ticket_id": "42; DROP TABLE"}),
        );
        assert!(!bad_args.allowed);
        assert!(
            bad_args.reasons[0].starts_with("argument /ticket_id"),
            "{:?}",
            bad_args.reasons
        );
        let denied = rbac.authorize_tool(
            "customer",
            "update_ticket",
            &serde_json::json!({"ticket_id": "T-1", "status": "closed"}),
        );
        assert_eq!(
            denied.reasons,
            vec![
                "role `customer` may not call `update_ticket`",
                "role `customer` lacks permission `update_ticket`"
            ]
        );
        assert!(
            rbac.authorize_tool(
                "employee",
                "update_ticket",
                &serde_json::json!({"ticket_id": "T-1", "status": "closed"})
            )
            .allowed
        );
        assert!(
            !rbac
                .authorize_tool("ghost", "ticket_status", &serde_json::json!({}))
                .allowed
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let config: RbacConfig = serde_json::from_value(
            serde_json::json!({"roles": {"x": {"allowed_tools": ["nope"]}}}),
        )
        .unwrap();
        assert_eq!(
            Rbac::new(config).unwrap_err().to_string(),
            "guard config `rbac.roles.x.allowed_tools`: unknown tool `nope`"
        );
        let config: RbacConfig = serde_json::from_value(
            serde_json::json!({"tools": {"t": {"parameters": {"type": 5}}}}),
        )
        .unwrap();
        assert!(
            Rbac::new(config)
                .unwrap_err()
                .to_string()
                .starts_with("tool `t`: invalid JSON schema")
        );
    }
}
