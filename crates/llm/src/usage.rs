//! Local token counting for responses whose provider reported no usage, so that usage is always
//! filled; results are flagged [`Exactness::Estimate`] unless the tokenizer is exact for the model.

use promptops_core::message::{Message, Tool};
use promptops_core::tokens::{Encoding, Exactness, Tokenizer, count_chat, tokenizer_for_model};

use crate::types::Usage;

/// A stand-in tokenizer for models nobody knows: cl100k counts, always flagged as estimates.
struct UnknownModelTokenizer;

impl Tokenizer for UnknownModelTokenizer {
    fn name(&self) -> &str {
        "estimate:cl100k_base"
    }

    fn exactness(&self) -> Exactness {
        Exactness::Estimate
    }

    fn count(&self, text: &str) -> usize {
        Encoding::Cl100kBase.count(text)
    }
}

/// The tokenizer used to count for `model`: the core's mapping, or a flagged cl100k estimate.
pub fn tokenizer_for(model: &str) -> Box<dyn Tokenizer> {
    tokenizer_for_model(model).unwrap_or_else(|_| Box::new(UnknownModelTokenizer))
}

/// Usage counted locally: the prompt as the provider bills chat requests, and `output_text`
/// (all generated text and tool call arguments).
pub fn count_usage(model: &str, messages: &[Message], tools: &[Tool], output_text: &str) -> Usage {
    let tokenizer = tokenizer_for(model);
    let input = count_chat(tokenizer.as_ref(), messages, tools);
    let output = tokenizer.count(output_text);
    Usage {
        input_tokens: input.total as u64,
        output_tokens: output as u64,
        cached_tokens: 0,
        cache_write_tokens: 0,
        exactness: input.exactness.and(tokenizer.exactness()),
    }
}

/// Input-only usage of embedding `texts`.
pub fn count_embedding_usage(model: &str, texts: &[String]) -> Usage {
    let tokenizer = tokenizer_for(model);
    let input: usize = texts.iter().map(|text| tokenizer.count(text)).sum();
    Usage {
        input_tokens: input as u64,
        output_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        exactness: tokenizer.exactness(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_for_openai_models_and_flags_others() {
        let messages = vec![Message::user("Say hello.")];
        let exact = count_usage("gpt-4o-mini", &messages, &[], "Hello!");
        assert_eq!(exact.exactness, Exactness::Exact);
        assert_eq!(exact.output_tokens, 2);
        assert!(exact.input_tokens > 3);
        let claude = count_usage("claude-3-5-haiku-latest", &messages, &[], "Hello!");
        assert_eq!(claude.exactness, Exactness::Estimate);
        let unknown = count_usage("my-finetune", &messages, &[], "Hello!");
        assert_eq!(unknown.exactness, Exactness::Estimate);
        assert_eq!(unknown.output_tokens, 2);
    }
}
