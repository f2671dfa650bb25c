//! Prompt tokens of a chat request as OpenAI bills them: messages, images and tool definitions.
//!
//! OpenAI renders a chat request into one token sequence whose layout it does not publish. The
//! rules here are the ones OpenAI's cookbook ("How to count tokens with tiktoken") gives and
//! checks against the API's `usage.prompt_tokens`:
//!
//! - each message costs 3 tokens plus the tokens of its role, content and name, and 1 more when
//!   it has a name; every reply is primed with 3 tokens (`<|start|>assistant<|message|>`);
//!   verified for gpt-3.5-turbo-0125, gpt-4-0613, gpt-4o and gpt-4o-mini;
//! - tool definitions add, per function, a fixed start (7 tokens for o200k models, 10 for cl100k
//!   ones) plus the tokens of `name:description`, then 3 for the properties block, and per
//!   property 3 plus `key:type:description`, with enum values at 3 each plus their tokens (less 3
//!   per enum), and 12 at the end (trailing periods of descriptions are dropped); verified with a
//!   system message and flat properties that all have a type and a description.
//!
//! Whatever falls outside those verified shapes is still counted, by the nearest rule, and the
//! result is flagged [`Exactness::Estimate`]: several text parts in one message, images (their
//! price depends on the model, not the encoding), audio or file parts (not counted), tool calls
//! and tool results (rendering not documented; a call counts its name and arguments plus 3, the
//! community `openai-chat-tokens` rule), nested or unusual parameter schemas, strict tools,
//! and tools without a system message.

use serde_json::{Map, Value};

use super::{Encoding, Exactness, Tokenizer};
use crate::message::{Content, ContentPart, ImageUrl, KnownPart, Message, Role, Tool};

/// Token count of a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChatTokenCount {
    /// Total prompt tokens as billed, including per-message and reply-priming overhead.
    pub total: usize,
    /// Whether the figure is exact.
    pub exactness: Exactness,
}

/// Tokens every message costs beyond its role, content and name.
const TOKENS_PER_MESSAGE: usize = 3;
/// Extra token for a message that has a `name`.
const TOKENS_PER_NAME: usize = 1;
/// `<|start|>assistant<|message|>`, which primes every reply.
const REPLY_PRIMING: usize = 3;
/// Wrapper tokens assumed per assistant tool call (community estimate, not documented).
const TOOL_CALL_OVERHEAD: usize = 3;
/// Tokens of an image at `detail: low`, and the base of every image at high detail.
const IMAGE_BASE_TOKENS: usize = 85;
/// Tokens per 512-pixel tile of an image at high detail.
const IMAGE_TILE_TOKENS: usize = 170;
/// Bytes of a `data:` URL decoded to find an image's size (enough for a JPEG with large EXIF).
const IMAGE_HEADER_BYTES: usize = 96 * 1024;

/// Counts the prompt tokens of `messages` and `tools` as the provider bills them.
///
/// Exact when the tokenizer is exact and everything in the request has a shape whose billing
/// OpenAI's cookbook verified (see the module docs); otherwise an estimate, flagged as such.
pub fn count_chat(
    tokenizer: &dyn Tokenizer,
    messages: &[Message],
    tools: &[Tool],
) -> ChatTokenCount {
    let mut tally = Tally::new(tokenizer.exactness());
    for message in messages {
        count_message(tokenizer, message, &mut tally);
    }
    tally.add(REPLY_PRIMING);
    if !tools.is_empty() {
        let has_system = messages
            .iter()
            .any(|message| matches!(message.role, Role::System | Role::Developer));
        count_tools(tokenizer, tools, has_system, &mut tally);
    }
    ChatTokenCount {
        total: tally.total,
        exactness: tally.exactness,
    }
}

/// A running total and whether it is still exact.
struct Tally {
    total: usize,
    exactness: Exactness,
}

impl Tally {
    fn new(exactness: Exactness) -> Self {
        Tally {
            total: 0,
            exactness,
        }
    }

    fn add(&mut self, tokens: usize) {
        self.total = self.total.saturating_add(tokens);
    }

    /// Marks the total as an estimate.
    fn estimate(&mut self) {
        self.exactness = Exactness::Estimate;
    }

    fn add_estimate(&mut self, tokens: usize) {
        self.add(tokens);
        self.estimate();
    }
}

fn count_message(tokenizer: &dyn Tokenizer, message: &Message, tally: &mut Tally) {
    tally.add(TOKENS_PER_MESSAGE + tokenizer.count(message.role.as_str()));
    if let Some(name) = &message.name {
        tally.add(tokenizer.count(name) + TOKENS_PER_NAME);
    }
    if let Some(content) = &message.content {
        count_content(tokenizer, content, tally);
    }
    if matches!(message.role, Role::Tool | Role::Function) {
        tally.estimate();
    }
    for call in &message.tool_calls {
        let function = &call.function;
        let tokens = tokenizer.count(&function.name) + tokenizer.count(&function.arguments);
        tally.add_estimate(tokens + TOOL_CALL_OVERHEAD);
    }
}

fn count_content(tokenizer: &dyn Tokenizer, content: &Content, tally: &mut Tally) {
    let parts = match content {
        Content::Text(text) => return tally.add(tokenizer.count(text)),
        Content::Parts(parts) => parts,
    };
    if parts.iter().filter(|part| part.as_text().is_some()).count() > 1 {
        tally.estimate();
    }
    for part in parts {
        match part {
            ContentPart::Known(KnownPart::Text { text, .. }) => tally.add(tokenizer.count(text)),
            ContentPart::Known(KnownPart::ImageUrl { image_url, .. }) => {
                tally.add_estimate(image_url_tokens(image_url));
            }
            _ => tally.estimate(),
        }
    }
}

/// How much of an image the model looks at (`image_url.detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageDetail {
    /// A 512×512 thumbnail: a fixed 85 tokens.
    Low,
    /// Tiles of 512 pixels after resizing.
    High,
    /// The provider chooses; counted as `High`, the larger of the two.
    Auto,
}

impl ImageDetail {
    /// The detail named on the wire (`low`, `high`); anything else or nothing is `Auto`.
    pub fn from_wire(detail: Option<&str>) -> ImageDetail {
        match detail {
            Some("low") => ImageDetail::Low,
            Some("high") => ImageDetail::High,
            _ => ImageDetail::Auto,
        }
    }
}

/// Tokens of a `width`×`height` image by OpenAI's documented formula for GPT-4o-class models:
/// 85 at low detail; otherwise fit within 2048×2048, scale the shorter side down to 768, and
/// charge 85 plus 170 per 512-pixel tile. (gpt-4o-mini and patch-based models price differently.)
pub fn image_tokens(width: u32, height: u32, detail: ImageDetail) -> usize {
    if detail == ImageDetail::Low {
        return IMAGE_BASE_TOKENS;
    }
    let (width, height) = resized_for_tiling(width, height);
    let tiles = width.div_ceil(512) * height.div_ceil(512);
    IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * tiles
}

/// The size an image is scaled to before tiling, in whole pixels.
fn resized_for_tiling(width: u32, height: u32) -> (usize, usize) {
    if width == 0 || height == 0 {
        return (0, 0);
    }
    let (mut width, mut height) = (f64::from(width), f64::from(height));
    let longer = width.max(height);
    if longer > 2048.0 {
        width *= 2048.0 / longer;
        height *= 2048.0 / longer;
    }
    let shorter = width.min(height);
    if shorter > 768.0 {
        width *= 768.0 / shorter;
        height *= 768.0 / shorter;
    }
    // Whole pixels, and never less than one: a thin strip still fills a row of tiles.
    (width.max(1.0) as usize, height.max(1.0) as usize)
}

/// Tokens of an image part: the tile formula when its size can be read from a `data:` URL,
/// otherwise the 85 tokens every image costs at least.
fn image_url_tokens(image: &ImageUrl) -> usize {
    let detail = ImageDetail::from_wire(image.detail.as_deref());
    match data_url_dimensions(&image.url) {
        Some((width, height)) => image_tokens(width, height, detail),
        None => IMAGE_BASE_TOKENS,
    }
}

/// Width and height of a base64 `data:` URL holding a PNG, GIF, WebP or JPEG image.
fn data_url_dimensions(url: &str) -> Option<(u32, u32)> {
    let (meta, payload) = url.strip_prefix("data:")?.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    let head = decode_base64_prefix(payload, IMAGE_HEADER_BYTES);
    let (width, height) = png_size(&head)
        .or_else(|| gif_size(&head))
        .or_else(|| webp_size(&head))
        .or_else(|| jpeg_size(&head))?;
    (width > 0 && height > 0).then_some((width, height))
}

/// The first `limit` bytes of base64 `text` (standard or URL-safe alphabet); decoding stops at
/// padding or at the first character outside the alphabet.
fn decode_base64_prefix(text: &str, limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit.min(text.len()));
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => break,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
            if out.len() >= limit {
                break;
            }
        }
    }
    out
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 2)?;
    Some(u32::from(b[0]) << 8 | u32::from(b[1]))
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 2)?;
    Some(u32::from(b[1]) << 8 | u32::from(b[0]))
}

fn le_u24(bytes: &[u8], at: usize) -> Option<u32> {
    Some(le_u16(bytes, at)? | u32::from(*bytes.get(at + 2)?) << 16)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(be_u16(bytes, at)? << 16 | be_u16(bytes, at + 2)?)
}

fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be_u32(bytes, 16)?, be_u32(bytes, 20)?))
}

fn gif_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !(bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) {
        return None;
    }
    Some((le_u16(bytes, 6)?, le_u16(bytes, 8)?))
}

fn webp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WEBP" {
        return None;
    }
    match bytes.get(12..16)? {
        b"VP8 " => Some((le_u16(bytes, 26)? & 0x3fff, le_u16(bytes, 28)? & 0x3fff)),
        b"VP8L" => {
            let bits = le_u16(bytes, 21)? | le_u16(bytes, 23)? << 16;
            Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
        }
        b"VP8X" => Some((le_u24(bytes, 24)? + 1, le_u24(bytes, 27)? + 1)),
        _ => None,
    }
}

/// Size from the first start-of-frame segment of a JPEG.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        match marker {
            0xFF => at += 1,
            0x01 | 0xD0..=0xD8 => at += 2,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Some((be_u16(bytes, at + 7)?, be_u16(bytes, at + 5)?));
            }
            _ => at += 2 + be_u16(bytes, at + 2)? as usize,
        }
    }
}

/// Fixed costs of the cookbook's tool-definition formula; `func_init` differs by encoding.
struct ToolCosts {
    func_init: isize,
    prop_init: isize,
    prop_key: isize,
    enum_init: isize,
    enum_item: isize,
    func_end: isize,
}

const O200K_TOOL_COSTS: ToolCosts = ToolCosts {
    func_init: 7,
    prop_init: 3,
    prop_key: 3,
    enum_init: -3,
    enum_item: 3,
    func_end: 12,
};

const CL100K_TOOL_COSTS: ToolCosts = ToolCosts {
    func_init: 10,
    ..O200K_TOOL_COSTS
};

/// Top-level keys of `parameters` whose cost the formula is verified with.
const VERIFIED_PARAMETER_KEYS: [&str; 3] = ["type", "properties", "required"];
/// Keys of a property schema that the formula prices.
const PRICED_PROPERTY_KEYS: [&str; 3] = ["type", "description", "enum"];

fn count_tools(tokenizer: &dyn Tokenizer, tools: &[Tool], has_system: bool, tally: &mut Tally) {
    let costs = match tokenizer.encoding() {
        Some(Encoding::Cl100kBase) => &CL100K_TOOL_COSTS,
        Some(Encoding::O200kBase) => &O200K_TOOL_COSTS,
        None => {
            tally.estimate();
            &O200K_TOOL_COSTS
        }
    };
    if !has_system {
        tally.estimate();
    }
    let mut total = costs.func_end;
    for tool in tools {
        total += tool_tokens(tokenizer, tool, costs, tally);
    }
    tally.add(usize::try_from(total).unwrap_or_default());
}

fn tool_tokens(
    tokenizer: &dyn Tokenizer,
    tool: &Tool,
    costs: &ToolCosts,
    tally: &mut Tally,
) -> isize {
    let function = &tool.function;
    if tool.kind != "function" || function.strict == Some(true) || function.description.is_none() {
        tally.estimate();
    }
    let description = function.description.as_deref().unwrap_or_default();
    let header = format!("{}:{}", function.name, without_final_period(description));
    let mut tokens = costs.func_init + count(tokenizer, &header);
    let Some(parameters) = &function.parameters else {
        return tokens;
    };
    let Some(parameters) = parameters.as_object() else {
        tally.estimate();
        return tokens + count(tokenizer, &parameters.to_string());
    };
    let unverified = unpriced_keys(parameters, &VERIFIED_PARAMETER_KEYS);
    if !unverified.is_empty() {
        tally.estimate();
        let unverified: Map<String, Value> = unverified
            .into_iter()
            .filter(|(key, _)| key != "additionalProperties")
            .collect();
        if !unverified.is_empty() {
            tokens += count(tokenizer, &Value::Object(unverified).to_string());
        }
    }
    match parameters.get("properties") {
        Some(Value::Object(properties)) if !properties.is_empty() => {
            tokens += costs.prop_init;
            for (key, schema) in properties {
                tokens += property_tokens(tokenizer, key, schema, costs, tally);
            }
        }
        Some(Value::Object(_)) | None => {}
        Some(other) => tokens += count_estimate(tokenizer, &other.to_string(), tally),
    }
    tokens
}

fn property_tokens(
    tokenizer: &dyn Tokenizer,
    key: &str,
    schema: &Value,
    costs: &ToolCosts,
    tally: &mut Tally,
) -> isize {
    let mut tokens = costs.prop_key;
    let Some(schema) = schema.as_object() else {
        let line = format!("{key}:{schema}");
        return tokens + count_estimate(tokenizer, &line, tally);
    };
    let kind = text_field(schema, "type", tally);
    if matches!(kind.as_str(), "object" | "array") {
        tally.estimate();
    }
    let description = text_field(schema, "description", tally);
    if let Some(values) = schema.get("enum") {
        tokens += costs.enum_init;
        let Some(values) = values.as_array() else {
            return tokens + count_estimate(tokenizer, &values.to_string(), tally);
        };
        for value in values {
            let value = match value {
                Value::String(text) => count(tokenizer, text),
                other => count_estimate(tokenizer, &other.to_string(), tally),
            };
            tokens += costs.enum_item + value;
        }
    }
    let line = format!("{key}:{kind}:{}", without_final_period(&description));
    tokens += count(tokenizer, &line);
    let unpriced = unpriced_keys(schema, &PRICED_PROPERTY_KEYS);
    if !unpriced.is_empty() {
        tokens += count_estimate(tokenizer, &Value::Object(unpriced).to_string(), tally);
    }
    tokens
}

/// A string field of a schema; a missing or non-string field makes the count an estimate.
fn text_field(schema: &Map<String, Value>, field: &str, tally: &mut Tally) -> String {
    match schema.get(field) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => {
            tally.estimate();
            other.to_string()
        }
        None => {
            tally.estimate();
            String::new()
        }
    }
}

/// The entries of `object` whose keys are not in `priced`.
fn unpriced_keys(object: &Map<String, Value>, priced: &[&str]) -> Map<String, Value> {
    object
        .iter()
        .filter(|(key, _)| !priced.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

fn without_final_period(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

fn count(tokenizer: &dyn Tokenizer, text: &str) -> isize {
    isize::try_from(tokenizer.count(text)).unwrap_or(isize::MAX)
}

fn count_estimate(tokenizer: &dyn Tokenizer, text: &str, tally: &mut Tally) -> isize {
    tally.estimate();
    count(tokenizer, text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::message::{ToolCall, parse_messages, parse_tools};
    use crate::tokens::{EstimateFamily, EstimateTokenizer};

    /// Counts `messages` and `tools` (OpenAI wire JSON) with `tokenizer`.
    fn check(
        tokenizer: &dyn Tokenizer,
        messages: Value,
        tools: Value,
        expected: (usize, Exactness),
    ) {
        let messages = parse_messages(&messages.to_string()).unwrap();
        let tools = parse_tools(&tools.to_string()).unwrap();
        let count = count_chat(tokenizer, &messages, &tools);
        assert_eq!((count.total, count.exactness), expected);
    }

    /// The cookbook's message example, whose counts it checked against the API.
    fn cookbook_messages() -> Value {
        json!([
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
        ])
    }

    /// The cookbook's tool example, whose counts it checked against the API.
    fn cookbook_tools() -> Value {
        json!([{
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                        "unit": {"type": "string", "description": "The unit of temperature to return", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["location"],
                },
            },
        }])
    }

    fn weather_messages() -> Value {
        json!([
            {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
            {"role": "user", "content": "What's the weather like in San Francisco?"},
        ])
    }

    #[test]
    fn matches_the_api_verified_message_counts() {
        let exact = Exactness::Exact;
        check(
            &Encoding::Cl100kBase,
            cookbook_messages(),
            json!([]),
            (129, exact),
        );
        check(
            &Encoding::O200kBase,
            cookbook_messages(),
            json!([]),
            (124, exact),
        );
    }

    #[test]
    fn matches_the_api_verified_tool_counts() {
        let exact = Exactness::Exact;
        check(
            &Encoding::Cl100kBase,
            weather_messages(),
            cookbook_tools(),
            (105, exact),
        );
        check(
            &Encoding::O200kBase,
            weather_messages(),
            cookbook_tools(),
            (101, exact),
        );
    }

    #[test]
    fn empty_request_is_the_reply_priming() {
        check(
            &Encoding::O200kBase,
            json!([]),
            json!([]),
            (3, Exactness::Exact),
        );
    }

    #[test]
    fn one_text_part_equals_plain_text_and_several_are_an_estimate() {
        let plain = json!([{"role": "user", "content": "Hello there"}]);
        let one_part =
            json!([{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]);
        let two_parts = json!([{"role": "user", "content": [
            {"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]}]);
        // 3 per message + "user" (1) + "Hello there" (2) + 3 priming.
        check(
            &Encoding::O200kBase,
            plain,
            json!([]),
            (9, Exactness::Exact),
        );
        check(
            &Encoding::O200kBase,
            one_part,
            json!([]),
            (9, Exactness::Exact),
        );
        check(
            &Encoding::O200kBase,
            two_parts,
            json!([]),
            (9, Exactness::Estimate),
        );
    }

    #[test]
    fn images_are_priced_by_tiles_and_flagged() {
        let with_image = |url: &str, detail: &str| {
            json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url, "detail": detail}}]}])
        };
        let png = data_url("image/png", &png_header(1024, 1024));
        // 3 + "user" (1) + image + 3 priming.
        let high = with_image(&png, "high");
        check(
            &Encoding::O200kBase,
            high,
            json!([]),
            (7 + 765, Exactness::Estimate),
        );
        let low = with_image(&png, "low");
        check(
            &Encoding::O200kBase,
            low,
            json!([]),
            (7 + 85, Exactness::Estimate),
        );
        let remote = with_image("https://example.test/cat.png", "high");
        check(
            &Encoding::O200kBase,
            remote,
            json!([]),
            (7 + 85, Exactness::Estimate),
        );
    }

    #[test]
    fn tile_formula_gives_the_documented_examples() {
        assert_eq!(image_tokens(1024, 1024, ImageDetail::High), 765);
        assert_eq!(image_tokens(2048, 4096, ImageDetail::High), 1105);
        assert_eq!(image_tokens(4096, 8192, ImageDetail::Low), 85);
        assert_eq!(image_tokens(512, 512, ImageDetail::Auto), 255);
        assert_eq!(image_tokens(0, 0, ImageDetail::High), 85);
        assert_eq!(image_tokens(u32::MAX, 1, ImageDetail::High), 85 + 170 * 4);
    }

    #[test]
    fn reads_image_sizes_from_data_urls() {
        let cases = [
            ("image/png", png_header(640, 480), Some((640, 480))),
            (
                "image/gif",
                b"GIF89a\x20\x03\x58\x02rest".to_vec(),
                Some((800, 600)),
            ),
            ("image/jpeg", jpeg_header(300, 200), Some((300, 200))),
            ("image/webp", webp_vp8x(1920, 1080), Some((1920, 1080))),
            ("image/png", png_header(0, 480), None),
            ("image/png", b"not an image at all".to_vec(), None),
            ("image/jpeg", vec![0xFF, 0xD8, 0xFF, 0xE0, 0xFF, 0xFF], None),
        ];
        for (mime, bytes, expected) in cases {
            assert_eq!(
                data_url_dimensions(&data_url(mime, &bytes)),
                expected,
                "{mime}"
            );
        }
        assert_eq!(data_url_dimensions("https://example.test/a.png"), None);
        assert_eq!(data_url_dimensions("data:image/png,rawbytes"), None);
        assert_eq!(data_url_dimensions("data:image/png;base64,!!!!"), None);
    }

    #[test]
    fn tool_calls_and_results_are_estimates() {
        let call = ToolCall::function("call_1", "get_current_weather", r#"{"location":"Paris"}"#);
        let messages = vec![
            Message::user("Weather in Paris?"),
            Message::assistant_tool_calls(vec![call]),
            Message::tool_result("call_1", "18°C, cloudy"),
        ];
        let encoding = Encoding::O200kBase;
        let count = count_chat(&encoding, &messages, &[]);
        let text_tokens: usize = [
            "user",
            "Weather in Paris?",
            "assistant",
            "tool",
            "18°C, cloudy",
        ]
        .iter()
        .map(|text| encoding.count(text))
        .sum();
        let call_tokens = encoding.count("get_current_weather")
            + encoding.count(r#"{"location":"Paris"}"#)
            + TOOL_CALL_OVERHEAD;
        assert_eq!(
            count.total,
            3 * 3 + text_tokens + call_tokens + REPLY_PRIMING
        );
        assert_eq!(count.exactness, Exactness::Estimate);
    }

    #[test]
    fn unverified_tool_shapes_are_estimates() {
        let o200k = Encoding::O200kBase;
        // Same tools without a system message: the formula's figures were taken with one.
        let tools_alone = 101 - count_with(&o200k, weather_messages(), json!([])).total;
        let user_only =
            json!([{"role": "user", "content": "What's the weather like in San Francisco?"}]);
        let user_alone = count_with(&o200k, user_only.clone(), json!([])).total;
        check(
            &o200k,
            user_only,
            cookbook_tools(),
            (user_alone + tools_alone, Exactness::Estimate),
        );
        let nested = json!([{"type": "function", "function": {
            "name": "f", "description": "d",
            "parameters": {"type": "object", "properties": {
                "items": {"type": "array", "description": "list", "items": {"type": "string"}}}}}}]);
        let count = count_with(&o200k, weather_messages(), nested);
        assert_eq!(count.exactness, Exactness::Estimate);
        let strict = json!([{"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object", "properties": {}}, "strict": true}}]);
        assert_eq!(
            count_with(&o200k, weather_messages(), strict).exactness,
            Exactness::Estimate
        );
        let no_description = json!([{"type": "function", "function": {"name": "f"}}]);
        let count = count_with(&o200k, weather_messages(), no_description);
        assert_eq!(count.exactness, Exactness::Estimate);
    }

    #[test]
    fn estimate_tokenizers_give_estimates() {
        let claude = EstimateTokenizer::new(EstimateFamily::Anthropic);
        let count = count_with(&claude, weather_messages(), json!([]));
        assert_eq!(count.exactness, Exactness::Estimate);
        let exact = count_with(&Encoding::O200kBase, weather_messages(), json!([]));
        assert!(count.total > exact.total, "{count:?} vs {exact:?}");
    }

    #[test]
    fn unknown_part_types_are_flagged() {
        let audio = json!([{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}]}]);
        check(
            &Encoding::O200kBase,
            audio,
            json!([]),
            (7, Exactness::Estimate),
        );
    }

    fn count_with(tokenizer: &dyn Tokenizer, messages: Value, tools: Value) -> ChatTokenCount {
        let messages = parse_messages(&messages.to_string()).unwrap();
        let tools = parse_tools(&tools.to_string()).unwrap();
        count_chat(tokenizer, &messages, &tools)
    }

    fn data_url(mime: &str, bytes: &[u8]) -> String {
        format!("data:{mime};base64,{}", encode_base64(bytes))
    }

    fn encode_base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
        out
    }

    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 6, 0, 0, 0]);
        bytes
    }

    fn jpeg_header(width: u16, height: u16) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
        bytes.extend([0xFF, 0xC4, 0x00, 0x03, 0x00]);
        bytes.extend([0xFF, 0xC0, 0x00, 0x11, 0x08]);
        bytes.extend(height.to_be_bytes());
        bytes.extend(width.to_be_bytes());
        bytes.extend([0x03, 0x01, 0x22, 0x00]);
        bytes
    }

    fn webp_vp8x(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        bytes.extend(&(width - 1).to_le_bytes()[..3]);
        bytes.extend(&(height - 1).to_le_bytes()[..3]);
        bytes
    }
}
