//! Prompt templates: minijinja with strict variables, declared and typed variables, partial
//! application, `include("component")` composition, and rendering to chat messages.
//!
//! Syntax is Jinja as minijinja implements it, configured for prompts rather than HTML:
//!
//! - Only the Jinja delimiters are special: `{{ expr }}`, `{% stmt %}` and `{# comment #}`.
//!   `{{var}}` without spaces (the seed's syntax) works. Single braces are literal text, so a JSON
//!   example such as `{"a": 1}` inside a prompt renders unchanged; Python-format `{var}` is *not*
//!   a placeholder.
//! - Autoescape is off whatever the template name (prompts are not HTML), and the `tojson`
//!   filter does not HTML-escape either: `{{ schema | tojson(indent=2) }}` gives plain JSON.
//! - `trim_blocks` and `lstrip_blocks` are on, so a `{% if %}` line leaves no blank line or
//!   indentation behind; the trailing newline of the source is kept, so plain text renders to
//!   itself byte for byte.
//! - Undefined values are semi-strict: printing or iterating an undefined value is an error
//!   naming it, while `{% if optional_var %}` is allowed for variables declared optional.
//!
//! Before rendering, the variables the template uses (minijinja's static analysis, which ignores
//! control flow) are compared with those given, so one error lists every missing name. A
//! variable used only inside an `{% if %}` branch is therefore required unless it is declared
//! optional with a [`VariableSpec`].
//!
//! Composition: `{{ include("name") }}` asks the [`ComponentLookup`] given to the builder for the
//! source of `name` and renders it with the variables of the including template (loop and `set`
//! variables visible at the call included), so its output is inserted exactly where the call is. Components may include others; a cycle, nesting
//! deeper than [`MAX_INCLUDE_DEPTH`], a missing component or a missing variable is an error naming
//! the include chain. Jinja's `{% include "name" %}` goes through the same lookup, but only the
//! function form is checked for missing variables up front and for cycles by name (a cycle
//! through the statement form is reported once minijinja's recursion limit is hit); note that
//! `trim_blocks` removes the newline after a `{% include %}` line, as after any block tag.
//! Components are fetched once per built template and then kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde};
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::CoreError;
use crate::message::{Message, Role};

type JinjaValue = minijinja::Value;

/// Variables given to a template: a JSON object, name to value.
pub type Variables = Map<String, Value>;

/// How many components deep `include()` may nest below the template being rendered.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// Context entry carrying the include chain into components; not meant for templates to use.
const INCLUDE_STATE: &str = "__promptops_include__";

/// The JSON type a declared variable must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    /// A JSON string.
    String,
    /// A JSON number without a fractional part that fits i64 or u64.
    Integer,
    /// Any JSON number, integers included.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
    /// Any value, `null` included.
    #[default]
    Any,
}

impl VarType {
    /// The lowercase name used in errors and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Integer => "integer",
            VarType::Number => "number",
            VarType::Boolean => "boolean",
            VarType::Array => "array",
            VarType::Object => "object",
            VarType::Any => "any",
        }
    }

    /// Whether `value` has this type.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            VarType::String => value.is_string(),
            VarType::Integer => value.is_i64() || value.is_u64(),
            VarType::Number => value.is_number(),
            VarType::Boolean => value.is_boolean(),
            VarType::Array => value.is_array(),
            VarType::Object => value.is_object(),
            VarType::Any => true,
        }
    }
}

impl fmt::Display for VarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of the JSON type of `value`, as errors report it (`integer` for whole numbers).
fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A variable a template declares: its type, whether it must be given, and a default.
///
/// In config files the type is spelled `type` (`kind` is accepted too). A variable with a
/// default never has to be given; `required = false` without a default leaves it undefined
/// when absent, which the template may test with `{% if name %}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSpec {
    /// The variable's name as the template uses it.
    pub name: String,
    /// The JSON type its value must have.
    #[serde(rename = "type", alias = "kind", default)]
    pub kind: VarType,
    /// Whether rendering fails when it is absent (and has no default).
    #[serde(default = "default_required")]
    pub required: bool,
    /// The value used when the variable is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// What the variable is for, for people editing prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_required() -> bool {
    true
}

impl VariableSpec {
    /// A required variable of the given type, without default or description.
    pub fn new(name: impl Into<String>, kind: VarType) -> Self {
        VariableSpec {
            name: name.into(),
            kind,
            required: true,
            default: None,
            description: None,
        }
    }

    /// The same variable, no longer required.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// The same variable with a default value (checked against the type when the template is built).
    pub fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }

    /// The same variable with a description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Whether rendering needs a value from the caller or a partial binding.
    fn needs_value(&self) -> bool {
        self.required && self.default.is_none()
    }

    /// Whether the variable may stay undefined while rendering.
    fn may_be_undefined(&self) -> bool {
        !self.required && self.default.is_none()
    }
}

/// What to do with variables that a template neither declares nor uses.
///
/// The default is [`UnknownVariables::Allow`], because callers often pass one shared context to
/// several templates; `Reject` catches misspelled names. Under `Reject`, variables that only
/// components use must be declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownVariables {
    /// Ignore them.
    #[default]
    Allow,
    /// Fail with [`CoreError::UnknownVariables`].
    Reject,
}

/// Where `include("name")` finds the source of a component.
pub trait ComponentLookup: Send + Sync {
    /// The template source of component `name`, or `None` when there is no such component.
    fn component(&self, name: &str) -> Option<String>;
}

impl<F> ComponentLookup for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn component(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl ComponentLookup for HashMap<String, String> {
    fn component(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl ComponentLookup for BTreeMap<String, String> {
    fn component(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<T: ComponentLookup + ?Sized> ComponentLookup for Arc<T> {
    fn component(&self, name: &str) -> Option<String> {
        (**self).component(name)
    }
}

/// A finding of [`PromptTemplate::lint`]: a mismatch between declared and used variables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateLint {
    /// Declared but not used by the template itself (it may still be used by components).
    DeclaredUnused {
        /// The variable.
        name: String,
    },
    /// Used by the template but neither declared nor bound by `partial`.
    UsedUndeclared {
        /// The variable.
        name: String,
    },
}

impl fmt::Display for TemplateLint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateLint::DeclaredUnused { name } => {
                write!(f, "variable `{name}` is declared but not used")
            }
            TemplateLint::UsedUndeclared { name } => {
                write!(f, "variable `{name}` is used but not declared")
            }
        }
    }
}

/// Builds a [`PromptTemplate`]: source, declared variables, components and the unknown-variable policy.
pub struct PromptTemplateBuilder {
    name: String,
    source: String,
    specs: Vec<VariableSpec>,
    components: Option<Arc<dyn ComponentLookup>>,
    unknown: UnknownVariables,
}

impl PromptTemplateBuilder {
    /// Declares one variable.
    pub fn variable(mut self, spec: VariableSpec) -> Self {
        self.specs.push(spec);
        self
    }

    /// Declares several variables.
    pub fn variables(mut self, specs: impl IntoIterator<Item = VariableSpec>) -> Self {
        self.specs.extend(specs);
        self
    }

    /// Sets where `include("name")` and `{% include "name" %}` find components.
    pub fn components(mut self, lookup: impl ComponentLookup + 'static) -> Self {
        self.components = Some(Arc::new(lookup));
        self
    }

    /// Sets what happens to variables the template neither declares nor uses.
    pub fn unknown_variables(mut self, policy: UnknownVariables) -> Self {
        self.unknown = policy;
        self
    }

    /// Compiles the template and checks the declarations (unique names, defaults of the right type).
    pub fn build(self) -> Result<PromptTemplate, CoreError> {
        check_declarations(&self.name, &self.specs)?;
        let mut env = prompt_environment(&self.name)?;
        if let Some(lookup) = self.components {
            env.set_loader(move |name| Ok(lookup.component(name)));
        }
        env.add_template_owned(self.name.clone(), self.source.clone())
            .map_err(|err| engine_error(&self.name, &err))?;
        let used = used_variables(&env, &self.name, &self.specs)?;
        Ok(PromptTemplate {
            name: self.name,
            source: self.source,
            env,
            used,
            specs: self.specs,
            bound: Variables::new(),
            unknown: self.unknown,
        })
    }
}

/// A compiled prompt template with declared variables, partial bindings and components.
///
/// Cheap to clone; `Send + Sync`, so one compiled template serves every request.
#[derive(Clone)]
pub struct PromptTemplate {
    name: String,
    source: String,
    env: Environment<'static>,
    used: BTreeSet<String>,
    specs: Vec<VariableSpec>,
    bound: Variables,
    unknown: UnknownVariables,
}

impl fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("variables", &self.specs)
            .field("bound", &self.bound)
            .field("unknown", &self.unknown)
            .finish_non_exhaustive()
    }
}

impl PromptTemplate {
    /// Compiles a template with no declared variables and no components.
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Result<Self, CoreError> {
        Self::builder(name, source).build()
    }

    /// Starts building a template; finish with [`PromptTemplateBuilder::build`].
    pub fn builder(name: impl Into<String>, source: impl Into<String>) -> PromptTemplateBuilder {
        PromptTemplateBuilder {
            name: name.into(),
            source: source.into(),
            specs: Vec::new(),
            components: None,
            unknown: UnknownVariables::default(),
        }
    }

    /// The template's name, used in every error about it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source exactly as given (the canonical text for content hashing).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The declared variables, in declaration order.
    pub fn variables(&self) -> &[VariableSpec] {
        &self.specs
    }

    /// The variables bound by [`PromptTemplate::partial`].
    pub fn bound_variables(&self) -> &Variables {
        &self.bound
    }

    /// The variables the template's own source reads (components not included), sorted.
    pub fn used_variables(&self) -> Vec<String> {
        self.used.iter().cloned().collect()
    }

    /// The variables a caller must still give to render, sorted.
    ///
    /// Used or declared-required variables, minus those with a default, declared optional, or
    /// bound by `partial`.
    pub fn required_variables(&self) -> Vec<String> {
        self.needed()
            .into_iter()
            .filter(|name| !self.bound.contains_key(*name))
            .map(str::to_owned)
            .collect()
    }

    /// Declared-but-unused and used-but-undeclared variables, as data rather than an error.
    ///
    /// Declared-but-unused is expected for variables that only components read; a template that
    /// declares nothing reports every variable it uses, so the lint suits declaring templates.
    pub fn lint(&self) -> Vec<TemplateLint> {
        let declared: BTreeSet<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
        let unused = declared
            .iter()
            .filter(|name| !self.used.contains(**name))
            .map(|name| TemplateLint::DeclaredUnused {
                name: (*name).to_owned(),
            });
        let undeclared = self
            .used
            .iter()
            .filter(|name| !declared.contains(name.as_str()) && !self.bound.contains_key(*name))
            .map(|name| TemplateLint::UsedUndeclared { name: name.clone() });
        unused.chain(undeclared).collect()
    }

    /// A copy with some variables bound; they no longer need to be given, but may be overridden.
    ///
    /// Values are type-checked now, and rejected if unknown under [`UnknownVariables::Reject`].
    pub fn partial(&self, vars: &Variables) -> Result<PromptTemplate, CoreError> {
        self.check_unknown(vars)?;
        self.check_types(vars)?;
        let mut bound = self.clone();
        for (name, value) in vars {
            bound.bound.insert(name.clone(), value.clone());
        }
        Ok(bound)
    }

    /// Renders to a string after checking unknown, missing and mistyped variables.
    ///
    /// Precedence: given variables, then partial bindings, then declared defaults.
    pub fn render(&self, vars: &Variables) -> Result<String, CoreError> {
        self.check_unknown(vars)?;
        self.render_checked(vars)
    }

    /// Renders without the unknown-variable check (the chat template does it over all messages).
    fn render_checked(&self, vars: &Variables) -> Result<String, CoreError> {
        let mut context = self.context(vars);
        self.check_types(&context)?;
        self.check_missing(&context)?;
        context.insert(INCLUDE_STATE.to_owned(), self.include_state());
        let template = self
            .env
            .get_template(&self.name)
            .map_err(|err| engine_error(&self.name, &err))?;
        template
            .render(JinjaValue::from(Serde(&context)))
            .map_err(|err| self.render_error(&err))
    }

    /// Defaults, overridden by partial bindings, overridden by the caller's variables.
    fn context(&self, vars: &Variables) -> Variables {
        let mut context = Variables::new();
        for spec in &self.specs {
            if let Some(default) = &spec.default {
                context.insert(spec.name.clone(), default.clone());
            }
        }
        for (name, value) in self.bound.iter().chain(vars) {
            context.insert(name.clone(), value.clone());
        }
        context
    }

    /// Variables that must have a value for rendering, whoever supplies it.
    fn needed(&self) -> BTreeSet<&str> {
        let declared_needed = self.specs.iter().filter(|s| s.needs_value());
        let exempt: BTreeSet<&str> = self
            .specs
            .iter()
            .filter(|s| !s.needs_value())
            .map(|s| s.name.as_str())
            .collect();
        self.used
            .iter()
            .map(String::as_str)
            .chain(declared_needed.map(|s| s.name.as_str()))
            .filter(|name| !exempt.contains(name))
            .collect()
    }

    fn check_missing(&self, context: &Variables) -> Result<(), CoreError> {
        let names: Vec<String> = self
            .needed()
            .into_iter()
            .filter(|name| !context.contains_key(*name))
            .map(str::to_owned)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        Err(CoreError::MissingVariables {
            template: self.name.clone(),
            names,
        })
    }

    fn check_types(&self, vars: &Variables) -> Result<(), CoreError> {
        for spec in &self.specs {
            if let Some(value) = vars.get(&spec.name) {
                check_type(&self.name, spec, value)?;
            }
        }
        Ok(())
    }

    /// Whether the template declares, uses or binds `name`.
    fn knows(&self, name: &str) -> bool {
        self.used.contains(name)
            || self.bound.contains_key(name)
            || self.specs.iter().any(|s| s.name == name)
    }

    fn check_unknown(&self, vars: &Variables) -> Result<(), CoreError> {
        if self.unknown == UnknownVariables::Allow {
            return Ok(());
        }
        let mut names: Vec<String> = vars.keys().filter(|n| !self.knows(n)).cloned().collect();
        names.sort();
        if names.is_empty() {
            return Ok(());
        }
        Err(CoreError::UnknownVariables {
            template: self.name.clone(),
            names,
        })
    }

    /// The include chain and the optional variables, as components need them.
    fn include_state(&self) -> Value {
        let optional: Vec<&str> = self
            .specs
            .iter()
            .filter(|s| s.may_be_undefined())
            .map(|s| s.name.as_str())
            .collect();
        serde_json::json!({ "chain": [self.name], "optional": optional })
    }

    /// Turns a minijinja render error into the most specific [`CoreError`].
    fn render_error(&self, err: &minijinja::Error) -> CoreError {
        if let Some(failure) = find_include_failure(err) {
            return failure.to_core_error(&self.name);
        }
        let engine_errors = engine_error_chain(err);
        let innermost = engine_errors.last().copied().unwrap_or(err);
        if err.kind() == ErrorKind::BadInclude && is_recursion_limit(innermost) {
            return CoreError::ComponentChain {
                template: self.name.clone(),
                problem: "include cycle through {% include %}".to_owned(),
                chain: recursion_chain(&self.name, &engine_errors),
            };
        }
        engine_error(&self.name, innermost)
    }
}

/// One template per chat message, rendered with one set of variables into [`Message`]s.
#[derive(Debug, Clone, Default)]
pub struct ChatTemplate {
    messages: Vec<(Role, PromptTemplate)>,
}

impl ChatTemplate {
    /// An empty chat template; add messages with [`ChatTemplate::message`].
    pub fn new() -> Self {
        ChatTemplate::default()
    }

    /// The common shape: an optional system message, then a user message.
    pub fn system_user(system: Option<PromptTemplate>, user: PromptTemplate) -> Self {
        let chat = ChatTemplate::new();
        let chat = match system {
            Some(system) => chat.message(Role::System, system),
            None => chat,
        };
        chat.message(Role::User, user)
    }

    /// Appends a message rendered from `template`.
    pub fn message(mut self, role: Role, template: PromptTemplate) -> Self {
        self.messages.push((role, template));
        self
    }

    /// The messages' roles and templates, in order.
    pub fn messages(&self) -> &[(Role, PromptTemplate)] {
        &self.messages
    }

    /// The variables any message still needs, sorted and without duplicates.
    pub fn required_variables(&self) -> Vec<String> {
        let names: BTreeSet<String> = self
            .messages
            .iter()
            .flat_map(|(_, t)| t.required_variables())
            .collect();
        names.into_iter().collect()
    }

    /// A copy in which each message binds the given variables it knows.
    pub fn partial(&self, vars: &Variables) -> Result<ChatTemplate, CoreError> {
        self.check_unknown(vars)?;
        let messages = self
            .messages
            .iter()
            .map(|(role, template)| {
                let known = known_subset(template, vars);
                Ok((*role, template.partial(&known)?))
            })
            .collect::<Result<_, CoreError>>()?;
        Ok(ChatTemplate { messages })
    }

    /// Renders every message with the same variables.
    ///
    /// A variable is unknown when no message knows it; it is rejected when any message's
    /// template rejects unknown variables.
    pub fn render(&self, vars: &Variables) -> Result<Vec<Message>, CoreError> {
        self.check_unknown(vars)?;
        self.messages
            .iter()
            .map(|(role, template)| Ok(Message::new(*role, template.render_checked(vars)?)))
            .collect()
    }

    fn check_unknown(&self, vars: &Variables) -> Result<(), CoreError> {
        let Some((_, strict)) = self
            .messages
            .iter()
            .find(|(_, t)| t.unknown == UnknownVariables::Reject)
        else {
            return Ok(());
        };
        let mut names: Vec<String> = vars
            .keys()
            .filter(|name| !self.messages.iter().any(|(_, t)| t.knows(name)))
            .cloned()
            .collect();
        names.sort();
        if names.is_empty() {
            return Ok(());
        }
        Err(CoreError::UnknownVariables {
            template: strict.name.clone(),
            names,
        })
    }
}

/// The variables of `vars` that `template` declares, uses or binds.
fn known_subset(template: &PromptTemplate, vars: &Variables) -> Variables {
    vars.iter()
        .filter(|(name, _)| template.knows(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn check_type(template: &str, spec: &VariableSpec, value: &Value) -> Result<(), CoreError> {
    if spec.kind.accepts(value) {
        return Ok(());
    }
    Err(CoreError::VariableType {
        template: template.to_owned(),
        name: spec.name.clone(),
        expected: spec.kind.as_str(),
        actual: json_type_name(value),
    })
}

/// Unique names, and defaults that have the declared type.
fn check_declarations(template: &str, specs: &[VariableSpec]) -> Result<(), CoreError> {
    let mut seen = BTreeSet::new();
    for spec in specs {
        if !seen.insert(spec.name.as_str()) {
            return Err(CoreError::Template {
                template: template.to_owned(),
                line: None,
                reason: format!("variable `{}` is declared more than once", spec.name),
            });
        }
        if let Some(default) = &spec.default {
            check_type(template, spec, default)?;
        }
    }
    Ok(())
}

/// A minijinja environment configured for prompts (see the module docs).
fn prompt_environment(template: &str) -> Result<Environment<'static>, CoreError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Debug info makes errors carry the line and the failing expression.
    env.set_debug(true);
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|err| engine_error(template, &err))?;
    env.set_syntax(syntax);
    env.add_function("include", include_component);
    env.add_filter("tojson", prompt_tojson);
    Ok(env)
}

/// `tojson` without minijinja's HTML escaping of `<`, `>`, `&` and `'` (noise in a prompt).
///
/// Compact by default; `tojson(true)` or `tojson(indent=n)` pretty-prints (true means 2 spaces).
fn prompt_tojson(
    value: &JinjaValue,
    indent: Option<JinjaValue>,
    kwargs: Kwargs,
) -> Result<JinjaValue, minijinja::Error> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<JinjaValue>>("indent")?,
    };
    kwargs.assert_all_used()?;
    let width = match indent {
        None => None,
        Some(indent) => match bool::try_from(indent.clone()) {
            Ok(true) => Some(2),
            Ok(false) => None,
            Err(_) => Some(usize::try_from(indent)?),
        },
    };
    let cannot = |err: serde_json::Error| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON")
            .with_source(err)
    };
    let json = match width {
        None => serde_json::to_string(value).map_err(cannot)?,
        Some(width) => {
            let spaces = " ".repeat(width);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut out = Vec::new();
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            value.serialize(&mut serializer).map_err(cannot)?;
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    Ok(JinjaValue::from(json))
}

/// Names the template's source reads, minus engine globals unless the caller declared them.
fn used_variables(
    env: &Environment<'static>,
    name: &str,
    specs: &[VariableSpec],
) -> Result<BTreeSet<String>, CoreError> {
    let template = env
        .get_template(name)
        .map_err(|err| engine_error(name, &err))?;
    let globals: BTreeSet<&str> = env.globals().map(|(global, _)| global).collect();
    let declared = |var: &str| specs.iter().any(|s| s.name == var);
    Ok(template
        .undeclared_variables(false)
        .into_iter()
        .filter(|var| var != INCLUDE_STATE)
        .filter(|var| declared(var) || !globals.contains(var.as_str()))
        .collect())
}

/// A [`CoreError::Template`] from a minijinja error, naming the template (or component) and line.
fn engine_error(default_template: &str, err: &minijinja::Error) -> CoreError {
    let reason = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    CoreError::Template {
        template: err.name().unwrap_or(default_template).to_owned(),
        line: err.line(),
        reason,
    }
}

/// A composition failure raised inside `include()`, carried out of minijinja as an error source.
#[derive(Debug)]
enum IncludeFailure {
    NotFound {
        name: String,
        chain: Vec<String>,
    },
    Cycle {
        chain: Vec<String>,
    },
    TooDeep {
        chain: Vec<String>,
    },
    MissingVariables {
        chain: Vec<String>,
        names: Vec<String>,
    },
}

impl fmt::Display for IncludeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IncludeFailure::NotFound { name, chain } => {
                write!(
                    f,
                    "component \"{name}\" not found (from {})",
                    chain.join(" > ")
                )
            }
            IncludeFailure::Cycle { chain } => write!(f, "include cycle: {}", chain.join(" > ")),
            IncludeFailure::TooDeep { chain } => {
                write!(f, "components nested too deep: {}", chain.join(" > "))
            }
            IncludeFailure::MissingVariables { chain, names } => write!(
                f,
                "{}: missing variable(s): {}",
                chain.join(" > "),
                names.join(", ")
            ),
        }
    }
}

impl std::error::Error for IncludeFailure {}

impl IncludeFailure {
    fn into_engine_error(self) -> minijinja::Error {
        minijinja::Error::new(ErrorKind::InvalidOperation, self.to_string()).with_source(self)
    }

    fn to_core_error(&self, template: &str) -> CoreError {
        let template = template.to_owned();
        match self {
            IncludeFailure::NotFound { name, chain } => CoreError::ComponentNotFound {
                template,
                name: name.clone(),
                chain: chain.join(" > "),
            },
            IncludeFailure::Cycle { chain } => CoreError::ComponentChain {
                template,
                problem: "include cycle".to_owned(),
                chain: chain.join(" > "),
            },
            IncludeFailure::TooDeep { chain } => CoreError::ComponentChain {
                template,
                problem: format!("components nested deeper than {MAX_INCLUDE_DEPTH}"),
                chain: chain.join(" > "),
            },
            IncludeFailure::MissingVariables { chain, names } => CoreError::MissingVariables {
                template: chain.join(" > "),
                names: names.clone(),
            },
        }
    }
}

/// The include chain so far and the variables allowed to stay undefined, read from the context.
struct IncludeState {
    chain: Vec<String>,
    optional: BTreeSet<String>,
}

impl IncludeState {
    fn from_state(state: &State) -> Self {
        let entry = state.lookup(INCLUDE_STATE);
        let strings = |key: &str| -> Vec<String> {
            entry
                .as_ref()
                .and_then(|value| value.get_attr(key).ok())
                .and_then(|list| list.try_iter().ok())
                .map(|items| {
                    items
                        .filter_map(|item| item.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut chain = strings("chain");
        if chain.is_empty() {
            chain.push(state.name().to_owned());
        }
        IncludeState {
            chain,
            optional: strings("optional").into_iter().collect(),
        }
    }

    fn to_value(&self) -> JinjaValue {
        JinjaValue::from_pairs([
            ("chain", JinjaValue::from(self.chain.clone())),
            (
                "optional",
                JinjaValue::from(self.optional.iter().cloned().collect::<Vec<_>>()),
            ),
        ])
    }
}

/// The `include(name)` template function: renders a component with every variable visible at
/// the call (the caller's context, loop and `set` variables), after checking that the
/// component's own variables are all there.
fn include_component(state: &State, name: String) -> Result<JinjaValue, minijinja::Error> {
    let parent = IncludeState::from_state(state);
    let mut chain = parent.chain.clone();
    chain.push(name.clone());
    if parent.chain.contains(&name) {
        return Err(IncludeFailure::Cycle { chain }.into_engine_error());
    }
    if chain.len() - 1 > MAX_INCLUDE_DEPTH {
        return Err(IncludeFailure::TooDeep { chain }.into_engine_error());
    }
    let component = state.env().get_template(&name).map_err(|err| {
        if err.kind() == ErrorKind::TemplateNotFound {
            IncludeFailure::NotFound {
                name: name.clone(),
                chain: parent.chain.clone(),
            }
            .into_engine_error()
        } else {
            err
        }
    })?;
    let mut context: BTreeMap<String, JinjaValue> = state
        .known_variables()
        .into_iter()
        .filter_map(|var| {
            let value = state.lookup(&var).filter(|value| !value.is_undefined())?;
            Some((var.into_owned(), value))
        })
        .collect();
    let missing: Vec<String> = component
        .undeclared_variables(false)
        .into_iter()
        .filter(|var| !context.contains_key(var) && !parent.optional.contains(var))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !missing.is_empty() {
        let names = missing;
        return Err(IncludeFailure::MissingVariables { chain, names }.into_engine_error());
    }
    let child = IncludeState {
        chain,
        optional: parent.optional,
    };
    context.insert(INCLUDE_STATE.to_owned(), child.to_value());
    Ok(JinjaValue::from(
        component.render(JinjaValue::from(context))?,
    ))
}

/// The sources of `err` (itself excluded), outermost first.
fn error_sources(
    err: &minijinja::Error,
) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(err), |e| e.source())
}

fn find_include_failure(err: &minijinja::Error) -> Option<&IncludeFailure> {
    error_sources(err).find_map(|e| e.downcast_ref::<IncludeFailure>())
}

/// `err` and the minijinja errors among its sources, outermost first.
fn engine_error_chain(err: &minijinja::Error) -> Vec<&minijinja::Error> {
    std::iter::once(err)
        .chain(error_sources(err).filter_map(|e| e.downcast_ref::<minijinja::Error>()))
        .collect()
}

fn is_recursion_limit(err: &minijinja::Error) -> bool {
    err.detail()
        .is_some_and(|detail| detail.contains("recursion limit"))
}

/// The template names along a `{% include %}` recursion, cut after the first repeated name.
fn recursion_chain(template: &str, errors: &[&minijinja::Error]) -> String {
    let mut chain: Vec<&str> = vec![template];
    for name in errors.iter().skip(1).filter_map(|e| e.name()) {
        let repeated = chain.contains(&name);
        chain.push(name);
        if repeated || chain.len() > MAX_INCLUDE_DEPTH + 1 {
            break;
        }
    }
    chain.join(" > ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(value: Value) -> Variables {
        value.as_object().cloned().unwrap_or_default()
    }

    /// Renders `source` (named "t") with `variables`; `expected` is the output or the error message.
    fn check(source: &str, variables: Value, expected: Result<&str, &str>) {
        let rendered = PromptTemplate::new("t", source).and_then(|t| t.render(&vars(variables)));
        let actual = rendered.as_deref().map_err(|e| e.to_string());
        assert_eq!(
            actual,
            expected.map_err(str::to_owned),
            "source: {source:?}"
        );
    }

    #[test]
    fn renders_and_reports() {
        let cases: &[(&str, Value, Result<&str, &str>)] = &[
            (
                "Hello {{ name }}!",
                json!({"name": "Ada"}),
                Ok("Hello Ada!"),
            ),
            ("Hello {{name}}!", json!({"name": "Ada"}), Ok("Hello Ada!")),
            (
                "Reply as JSON like {\"a\": 1} for {{ name }}",
                json!({"name": "Ada"}),
                Ok("Reply as JSON like {\"a\": 1} for Ada"),
            ),
            (
                "{name} stays literal",
                json!({}),
                Ok("{name} stays literal"),
            ),
            ("{{ n + 1 }}", json!({"n": 41}), Ok("42")),
            (
                "{% for x in items %}- {{ x }}\n{% endfor %}",
                json!({"items": ["a", "b"]}),
                Ok("- a\n- b\n"),
            ),
            (
                "A\n  {% if flag %}\n  B\n  {% endif %}\nC\n",
                json!({"flag": true}),
                Ok("A\n  B\nC\n"),
            ),
            ("<b>{{ x }}</b>", json!({"x": "<&>"}), Ok("<b><&></b>")),
            ("{{ range(3) | join(',') }}", json!({}), Ok("0,1,2")),
            (
                "{{ d | tojson }}",
                json!({"d": {"q": "it's <b>&", "n": [1, 2]}}),
                Ok(r#"{"n":[1,2],"q":"it's <b>&"}"#),
            ),
            (
                "{{ d | tojson(indent=4) }}|{{ d | tojson(true) }}",
                json!({"d": {"a": [1]}}),
                Ok("{\n    \"a\": [\n        1\n    ]\n}|{\n  \"a\": [\n    1\n  ]\n}"),
            ),
            (
                "{{ d | tojson(indent='x') }}",
                json!({"d": 1}),
                Err("template \"t\", line 1: invalid operation: cannot convert string to usize"),
            ),
            (
                "{{ greeting }}, {{ name }} from {{ city }}",
                json!({"greeting": "Hi"}),
                Err("template \"t\": missing variable(s): city, name"),
            ),
            (
                "Hi {{ user.name }}",
                json!({"user": {}}),
                Err("template \"t\", line 1: undefined value: `user.name` is undefined"),
            ),
            (
                "line one\n{% if %}",
                json!({}),
                Err("template \"t\", line 2: syntax error: unexpected end of block"),
            ),
            (
                "{{ x",
                json!({"x": 1}),
                Err(
                    "template \"t\", line 1: syntax error: unexpected end of input, \
                     expected end of variable block",
                ),
            ),
            (
                "{{ include('nav') }}",
                json!({}),
                Err("template \"t\": component \"nav\" not found (include chain: t)"),
            ),
        ];
        for (source, variables, expected) in cases {
            check(source, variables.clone(), *expected);
        }
    }

    #[test]
    fn types_are_named_for_errors() {
        let names: Vec<&str> = [json!(null), json!(true), json!(1), json!(1.5), json!("s")]
            .iter()
            .map(json_type_name)
            .collect();
        assert_eq!(names, ["null", "boolean", "integer", "number", "string"]);
        assert!(VarType::Number.accepts(&json!(3)));
        assert!(!VarType::Integer.accepts(&json!(3.0)));
        assert!(VarType::Integer.accepts(&json!(u64::MAX)));
    }
}
