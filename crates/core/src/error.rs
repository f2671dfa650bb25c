//! The one error type of promptops-core; every variant names the input at fault.

use thiserror::Error;

/// Errors raised by the prompt core.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A prompt template that does not compile, or that fails while rendering.
    #[error("template \"{template}\"{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Template {
        /// The template (or component) at fault.
        template: String,
        /// 1-based line of the fault, when the template engine knows it.
        line: Option<usize>,
        /// What is wrong, e.g. `syntax error: unexpected end of block`.
        reason: String,
    },
    /// Variables a template needs that the render context does not provide.
    #[error("template \"{template}\": missing variable(s): {}", names.join(", "))]
    MissingVariables {
        /// The template, or the include chain `main > component` for a component.
        template: String,
        /// The missing names, sorted.
        names: Vec<String>,
    },
    /// Variables passed to a template that rejects names it neither declares nor uses.
    #[error("template \"{template}\": unknown variable(s): {}", names.join(", "))]
    UnknownVariables {
        /// The template.
        template: String,
        /// The unknown names, sorted.
        names: Vec<String>,
    },
    /// A template variable whose value does not have the declared type.
    #[error("template \"{template}\": variable `{name}` must be {expected}, got {actual}")]
    VariableType {
        /// The template.
        template: String,
        /// The variable.
        name: String,
        /// The declared type, e.g. `integer`.
        expected: &'static str,
        /// The JSON type of the value given, e.g. `string`.
        actual: &'static str,
    },
    /// A template component that the component lookup does not know.
    #[error("template \"{template}\": component \"{name}\" not found (include chain: {chain})")]
    ComponentNotFound {
        /// The top-level template being rendered.
        template: String,
        /// The component asked for.
        name: String,
        /// The include chain that asked for it, e.g. `main > header`.
        chain: String,
    },
    /// Template components that include each other in a cycle, or nest too deep.
    #[error("template \"{template}\": {problem}: {chain}")]
    ComponentChain {
        /// The top-level template being rendered.
        template: String,
        /// `include cycle` or `components nested deeper than 16`.
        problem: String,
        /// The include chain, e.g. `main > a > b > a`.
        chain: String,
    },
    /// A model name that the catalog and the encoding table do not know.
    #[error("unknown model `{model}`; known models: {known}")]
    UnknownModel {
        /// The model that was asked for.
        model: String,
        /// Comma-separated list of the names that are known.
        known: String,
    },
    /// An encoding name that is not built in.
    #[error("unknown encoding `{encoding}`; known encodings: {known}")]
    UnknownEncoding {
        /// The encoding that was asked for.
        encoding: String,
        /// Comma-separated list of the names that are known.
        known: String,
    },
    /// Token ids that an encoding cannot turn back into text.
    #[error("cannot decode token ids with `{encoding}`: {reason}")]
    InvalidTokenIds {
        /// The encoding asked to decode, e.g. `o200k_base`.
        encoding: &'static str,
        /// Which id is at fault (by its index in the input) and why.
        reason: String,
    },
    /// A wire-format payload that does not have the expected shape.
    #[error("invalid {format} payload at {path}: {reason}")]
    InvalidWire {
        /// The format being read ("openai", "anthropic").
        format: &'static str,
        /// JSON path of the offending value, e.g. `messages[2].content`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Model output in which a parser found nothing usable.
    #[error("no {what} found: {reason}")]
    OutputParse {
        /// What was looked for, e.g. `JSON object or array`.
        what: &'static str,
        /// Char offset of the best candidate that failed, if there was one.
        offset: Option<usize>,
        /// Why the best candidate failed, or why there was none.
        reason: String,
    },
    /// JSON was found in model output but does not fit the type the caller asked for.
    #[error("JSON at char {offset} does not match `{target}`: {reason}")]
    OutputShape {
        /// The Rust type that was expected.
        target: &'static str,
        /// Char offset of the JSON value in the output.
        offset: usize,
        /// The deserialisation error.
        reason: String,
    },
    /// A generation parameter outside its allowed range.
    #[error("invalid generation parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The field at fault, e.g. `temperature`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A model catalog (built-in data file or config override) that does not parse or validate.
    #[error("invalid model catalog at `{path}`: {reason}")]
    InvalidCatalog {
        /// Where: `models."gpt-4o".context_window`, or the TOML line and column.
        path: String,
        /// What is wrong there.
        reason: String,
    },
    /// A task preset name that is not built in.
    #[error("unknown task preset `{preset}`; known presets: {known}")]
    UnknownPreset {
        /// The preset that was asked for.
        preset: String,
        /// Comma-separated list of the names that are known.
        known: String,
    },
    /// Messages that cannot be made to fit the context window, even after truncation.
    #[error(
        "{what} need {required} tokens but only {available} fit \
         ({context_window}-token context window minus {reserved_output} reserved for output)"
    )]
    ContextOverflow {
        /// What had to fit, e.g. `system messages and the last turn`.
        what: &'static str,
        /// Tokens those messages take.
        required: usize,
        /// Tokens available for the prompt.
        available: usize,
        /// The model's context window.
        context_window: usize,
        /// Tokens reserved for the reply.
        reserved_output: usize,
    },
}

/// `error` and its sources on one line, `: `-separated, skipping a source whose text the line
/// already holds (wrappers often repeat their cause). The useful part of many errors (hyper,
/// sqlx, minijinja) sits in the sources, which `Display` leaves out.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        #[source]
        source: Option<Box<Layer>>,
    }

    fn layer(text: &'static str, source: Option<Layer>) -> Layer {
        Layer {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn sources_join_and_repeats_are_skipped() {
        let error = layer(
            "cannot render: undefined value",
            Some(layer(
                "undefined value",
                Some(layer("variable `who` (line 1)", None)),
            )),
        );
        assert_eq!(
            error_chain(&error),
            "cannot render: undefined value: variable `who` (line 1)"
        );
        assert_eq!(error_chain(&layer("alone", None)), "alone");
    }
}
