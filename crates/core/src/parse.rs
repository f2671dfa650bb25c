//! Parsers for untrusted model output: JSON inside chatty text, fenced code blocks, and lists.
//!
//! Model output is untrusted: it may be huge, truncated or adversarial. Every parser here is
//! total (no panic on any input) and runs in time linear in the size of the text; the JSON search
//! in particular never re-parses a region it has already rejected, so deeply nested or
//! bracket-heavy text cannot make it quadratic.

use std::ops::Range;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::CoreError;

/// What [`extract_json`] looks for, as named in its errors.
const JSON_WHAT: &str = "JSON object or array";

/// Fence languages whose block is tried before any other JSON candidate.
const JSON_LANGUAGES: [&str; 3] = ["json", "jsonc", "json5"];

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// Finds the JSON object or array in a model reply.
///
/// Order of preference: the content of a ```` ```json ```` (or `jsonc`/`json5`) fenced block,
/// then the first balanced `{...}` or `[...]` anywhere in the text that parses. Trailing commas
/// and `//` / `/* */` comments inside the candidate are tolerated; prose around it is ignored.
/// When nothing parses, the error names the candidate that came closest (its char offset) and
/// why it failed, or says that no bracket was found or that one was never closed.
pub fn extract_json(text: &str) -> Result<Value, CoreError> {
    let mut search = JsonSearch::default();
    match search.run(text, &mut |value, _| Some(value)) {
        Some(value) => Ok(value),
        None => Err(search.no_json_error(text)),
    }
}

/// Like [`extract_json`], but returns the first candidate that deserialises into `T`.
///
/// Candidates that are valid JSON but do not fit `T` are skipped, so a stray `[1, 2]` in the
/// prose does not hide the object the caller wants; if none fits, the error quotes why the
/// first valid candidate did not.
pub fn extract_json_as<T: DeserializeOwned>(text: &str) -> Result<T, CoreError> {
    let mut search = JsonSearch::default();
    let mut first_mismatch: Option<(usize, String)> = None;
    let found = search.run(
        text,
        &mut |value, start| match serde_json::from_value::<T>(value) {
            Ok(typed) => Some(typed),
            Err(err) => {
                first_mismatch.get_or_insert((start, err.to_string()));
                None
            }
        },
    );
    if let Some(typed) = found {
        return Ok(typed);
    }
    match first_mismatch {
        Some((start, reason)) => Err(CoreError::OutputShape {
            target: std::any::type_name::<T>(),
            offset: char_offset(text, start),
            reason,
        }),
        None => Err(search.no_json_error(text)),
    }
}

/// A candidate that failed to parse, kept to explain the final error.
#[derive(Debug)]
struct Failure {
    /// Byte offset of the candidate's opening bracket in the whole text.
    start: usize,
    /// Bytes the parser got through before failing; the furthest wins.
    progress: usize,
    /// serde_json's error, with line and column relative to the candidate (formatted only
    /// for the final error, since hostile text can produce one failure per bracket).
    error: serde_json::Error,
}

/// State of one search, shared by the fenced-block pass and the whole-text pass.
#[derive(Debug, Default)]
struct JsonSearch {
    best_failure: Option<Failure>,
    first_unclosed: Option<usize>,
}

impl JsonSearch {
    /// Tries fenced JSON blocks, then the whole text; `accept` maps a parsed value (and its
    /// byte offset) to the result or rejects it.
    fn run<T>(
        &mut self,
        text: &str,
        accept: &mut dyn FnMut(Value, usize) -> Option<T>,
    ) -> Option<T> {
        for block in scan_fenced_blocks(text) {
            if block.language.as_deref().is_some_and(is_json_language) {
                let content = text.get(block.content.clone()).unwrap_or_default();
                if let Some(found) = self.search_spans(content, block.content.start, accept) {
                    return Some(found);
                }
            }
        }
        self.search_spans(text, 0, accept)
    }

    /// Tries every balanced bracket span of `text` in order of its start.
    ///
    /// A span that parses consumes everything up to its end; a span that fails consumes
    /// everything up to the point where the parser gave up, because a nested span starting
    /// before that point is either a fragment of the broken candidate or fails the same way.
    /// Each byte is therefore parsed about once.
    fn search_spans<T>(
        &mut self,
        text: &str,
        base: usize,
        accept: &mut dyn FnMut(Value, usize) -> Option<T>,
    ) -> Option<T> {
        let scan = scan_brackets(text);
        let mut resume_at = 0;
        for span in &scan.spans {
            if span.start < resume_at {
                continue;
            }
            let Some(candidate) = scan.cleaned.get(span.clone()) else {
                continue;
            };
            match serde_json::from_slice::<Value>(candidate) {
                Ok(value) => {
                    resume_at = span.end;
                    if let Some(found) = accept(value, base + span.start) {
                        return Some(found);
                    }
                }
                Err(err) => {
                    let progress = error_offset(candidate, err.line(), err.column());
                    resume_at = span.start + progress.max(1);
                    self.record_failure(Failure {
                        start: base + span.start,
                        progress,
                        error: err,
                    });
                }
            }
        }
        if let Some(unclosed) = scan.first_unclosed {
            let unclosed = base + unclosed;
            if self.first_unclosed.is_none_or(|seen| unclosed < seen) {
                self.first_unclosed = Some(unclosed);
            }
        }
        None
    }

    /// Keeps the failure that got furthest; on a tie, the earliest candidate.
    fn record_failure(&mut self, failure: Failure) {
        let better = match &self.best_failure {
            None => true,
            Some(best) => {
                failure.progress > best.progress
                    || (failure.progress == best.progress && failure.start < best.start)
            }
        };
        if better {
            self.best_failure = Some(failure);
        }
    }

    /// The error for a search that found nothing, naming the closest candidate.
    fn no_json_error(&self, text: &str) -> CoreError {
        let (offset, reason) = if let Some(failure) = &self.best_failure {
            let at = char_offset(text, failure.start);
            (
                Some(at),
                format!("candidate at char {at} failed: {}", failure.error),
            )
        } else if let Some(unclosed) = self.first_unclosed {
            let at = char_offset(text, unclosed);
            let bracket = text.get(unclosed..unclosed + 1).unwrap_or("{");
            (
                Some(at),
                format!("`{bracket}` at char {at} is never closed (truncated output?)"),
            )
        } else if text.trim().is_empty() {
            (None, "the text is empty".to_owned())
        } else {
            (None, "the text contains no `{` or `[`".to_owned())
        };
        CoreError::OutputParse {
            what: JSON_WHAT,
            offset,
            reason,
        }
    }
}

fn is_json_language(language: &str) -> bool {
    JSON_LANGUAGES
        .iter()
        .any(|json| language.eq_ignore_ascii_case(json))
}

/// Number of chars before byte offset `byte` (clamped to the text).
fn char_offset(text: &str, byte: usize) -> usize {
    let mut end = byte.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).map_or(0, |prefix| prefix.chars().count())
}

/// Byte offset inside `candidate` of serde_json's 1-based `line` and `column` (the column is
/// the 1-based byte index of the offending character, so a nested candidate starting right
/// there is still tried).
fn error_offset(candidate: &[u8], line: usize, column: usize) -> usize {
    let mut line_start = 0;
    let mut current_line = 1;
    for (index, byte) in candidate.iter().enumerate() {
        if current_line >= line {
            break;
        }
        if *byte == b'\n' {
            current_line += 1;
            line_start = index + 1;
        }
    }
    (line_start + column.saturating_sub(1)).min(candidate.len())
}

/// Balanced bracket spans of a text, with JSON leniencies blanked out.
#[derive(Debug)]
struct BracketScan {
    /// The text with trailing commas and comments replaced by spaces (same byte length, still
    /// UTF-8 because whole characters are replaced), so offsets agree with the original.
    cleaned: Vec<u8>,
    /// Byte ranges `{...}` / `[...]` (brackets included), sorted by start.
    spans: Vec<Range<usize>>,
    /// The earliest opening bracket that never found its match.
    first_unclosed: Option<usize>,
}

/// One linear pass pairing brackets. Outside any bracket, quotes are prose and ignored;
/// inside, strings are skipped so that brackets in them do not count. A closing bracket with
/// no matching opener is ignored; one that matches a deeper opener discards the openers above it.
fn scan_brackets(text: &str) -> BracketScan {
    let bytes = text.as_bytes();
    let mut cleaned = bytes.to_vec();
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut open_counts = [0usize; 2];
    let mut spans = Vec::new();
    let mut first_unclosed: Option<usize> = None;
    let mut pending_comma: Option<usize> = None;
    let mut previous_significant = b' ';
    let mut block_comment_can_close = true;
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        if stack.is_empty() {
            if let Some(slot) = opener_slot(byte) {
                stack.push((byte, index));
                open_counts[slot] += 1;
                previous_significant = byte;
            }
            index += 1;
            continue;
        }
        match byte {
            b'"' => {
                index = skip_string(bytes, index);
                pending_comma = None;
                previous_significant = b'"';
                continue;
            }
            b'/' if bytes.get(index + 1) == Some(&b'/') => {
                let end = find_byte(bytes, index, b'\n').unwrap_or(bytes.len());
                blank(&mut cleaned, index..end);
                index = end;
                continue;
            }
            b'/' if bytes.get(index + 1) == Some(&b'*') && block_comment_can_close => {
                match find_block_comment_end(bytes, index + 2) {
                    Some(end) => {
                        blank(&mut cleaned, index..end);
                        index = end;
                        continue;
                    }
                    // No `*/` anywhere after this point, so no later `/*` can close either.
                    None => {
                        block_comment_can_close = false;
                        pending_comma = None;
                    }
                }
            }
            b'{' | b'[' => {
                if let Some(slot) = opener_slot(byte) {
                    stack.push((byte, index));
                    open_counts[slot] += 1;
                }
                pending_comma = None;
            }
            b'}' | b']' => {
                if let Some(comma) = pending_comma.take() {
                    blank(&mut cleaned, comma..comma + 1);
                }
                let wanted = if byte == b'}' { b'{' } else { b'[' };
                let wanted_slot = usize::from(byte == b']');
                if open_counts[wanted_slot] > 0 {
                    while let Some((open, start)) = stack.pop() {
                        if let Some(slot) = opener_slot(open) {
                            open_counts[slot] -= 1;
                        }
                        if open == wanted {
                            spans.push(start..index + 1);
                            break;
                        }
                        first_unclosed = Some(first_unclosed.map_or(start, |seen| seen.min(start)));
                    }
                }
            }
            b',' => {
                let after_value = !matches!(previous_significant, b'{' | b'[' | b',');
                pending_comma = after_value.then_some(index);
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => pending_comma = None,
        }
        if !byte.is_ascii_whitespace() {
            previous_significant = byte;
        }
        index += 1;
    }
    if let Some(&(_, start)) = stack.first() {
        first_unclosed = Some(first_unclosed.map_or(start, |seen| seen.min(start)));
    }
    spans.sort_unstable_by_key(|span| span.start);
    BracketScan {
        cleaned,
        spans,
        first_unclosed,
    }
}

/// Index of `{` (0) or `[` (1) in the per-kind open counters.
fn opener_slot(byte: u8) -> Option<usize> {
    match byte {
        b'{' => Some(0),
        b'[' => Some(1),
        _ => None,
    }
}

/// From an opening quote, the index just past the closing quote. A raw newline ends the string
/// early (JSON forbids it, and it stops a stray quote in prose from swallowing the rest).
fn skip_string(bytes: &[u8], open: usize) -> usize {
    let mut index = open + 1;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'\\' => index += 2,
            b'"' => return index + 1,
            b'\n' => return index,
            _ => index += 1,
        }
    }
    bytes.len()
}

fn find_byte(bytes: &[u8], from: usize, wanted: u8) -> Option<usize> {
    let tail = bytes.get(from..)?;
    tail.iter()
        .position(|&byte| byte == wanted)
        .map(|at| from + at)
}

/// The index just past the `*/` that closes a block comment whose body starts at `from`.
fn find_block_comment_end(bytes: &[u8], from: usize) -> Option<usize> {
    let tail = bytes.get(from..)?;
    tail.windows(2)
        .position(|pair| pair == b"*/")
        .map(|at| from + at + 2)
}

/// Replaces a byte range with spaces (ranges always cover whole characters).
fn blank(bytes: &mut [u8], range: Range<usize>) {
    if let Some(region) = bytes.get_mut(range) {
        region.fill(b' ');
    }
}

// ---------------------------------------------------------------------------------------------
// Fenced code blocks
// ---------------------------------------------------------------------------------------------

/// A fenced code block found in model output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBlock {
    /// First word of the info string (`python` for ```` ```python title="x" ````), as written.
    pub language: Option<String>,
    /// The code: no fences, the fence's indentation removed, no final newline.
    pub code: String,
    /// Whether a closing fence was found; an unterminated block runs to the end of the text.
    pub closed: bool,
}

/// All fenced code blocks (```` ``` ```` or `~~~`, three or more) in document order.
///
/// A block closes at a line holding only the same fence character, at least as many times
/// as the opening fence; an unterminated final block (truncated output) is still returned.
pub fn extract_code_blocks(text: &str) -> Vec<CodeBlock> {
    scan_fenced_blocks(text)
        .into_iter()
        .map(|block| CodeBlock {
            code: dedent(text.get(block.content).unwrap_or_default(), block.indent),
            language: block.language,
            closed: block.closed,
        })
        .collect()
}

/// The code of the first block in `language` (ASCII case-insensitive), or of the first block
/// at all when `language` is `None`.
pub fn extract_code(text: &str, language: Option<&str>) -> Option<String> {
    extract_code_blocks(text)
        .into_iter()
        .find(|block| match language {
            None => true,
            Some(wanted) => block
                .language
                .as_deref()
                .is_some_and(|lang| lang.eq_ignore_ascii_case(wanted)),
        })
        .map(|block| block.code)
}

/// An opening fence: its character, its length and its indentation in bytes.
#[derive(Debug, Clone, Copy)]
struct Fence {
    marker: u8,
    len: usize,
    indent: usize,
}

/// A fenced block located in the text, before its code is dedented.
#[derive(Debug)]
struct RawBlock {
    language: Option<String>,
    /// Byte range of the lines between the fences.
    content: Range<usize>,
    indent: usize,
    closed: bool,
}

fn scan_fenced_blocks(text: &str) -> Vec<RawBlock> {
    let mut blocks = Vec::new();
    let mut open: Option<(Fence, Option<String>, usize)> = None;
    let mut offset = 0;
    for raw_line in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw_line.len();
        let line = raw_line.trim_end_matches(['\n', '\r']);
        match open.take() {
            Some((fence, language, start)) if is_closing_fence(line, fence) => {
                blocks.push(RawBlock {
                    language,
                    content: start..line_start,
                    indent: fence.indent,
                    closed: true,
                });
            }
            Some(still_open) => open = Some(still_open),
            None => {
                if let Some((fence, info)) = opening_fence(line) {
                    open = Some((fence, language_of(info), offset));
                }
            }
        }
    }
    if let Some((fence, language, start)) = open {
        blocks.push(RawBlock {
            language,
            content: start.min(text.len())..text.len(),
            indent: fence.indent,
            closed: false,
        });
    }
    blocks
}

/// Parses a line as an opening fence, returning it and its info string.
fn opening_fence(line: &str) -> Option<(Fence, &str)> {
    let trimmed = line.trim_start_matches([' ', '\t']);
    let indent = line.len() - trimmed.len();
    let marker = *trimmed.as_bytes().first()?;
    if marker != b'`' && marker != b'~' {
        return None;
    }
    let len = trimmed.bytes().take_while(|&byte| byte == marker).count();
    if len < 3 {
        return None;
    }
    let info = trimmed.get(len..).unwrap_or_default().trim();
    // CommonMark: a backtick fence's info string has no backticks (```x``` is inline code).
    if marker == b'`' && info.contains('`') {
        return None;
    }
    Some((
        Fence {
            marker,
            len,
            indent,
        },
        info,
    ))
}

fn is_closing_fence(line: &str, fence: Fence) -> bool {
    let trimmed = line.trim();
    trimmed.len() >= fence.len && trimmed.bytes().all(|byte| byte == fence.marker)
}

/// The language of an info string: its first word, without `{`/`.` decoration or `,attrs`.
fn language_of(info: &str) -> Option<String> {
    let info = info.trim_start_matches(['{', '.']);
    let end = info
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}'))
        .unwrap_or(info.len());
    let language = info.get(..end).unwrap_or_default();
    (!language.is_empty()).then(|| language.to_owned())
}

/// Removes up to `indent` leading spaces or tabs from every line and joins with `\n`.
fn dedent(content: &str, indent: usize) -> String {
    let lines: Vec<&str> = content
        .lines()
        .map(|line| {
            let removable = line
                .bytes()
                .take(indent)
                .take_while(|byte| matches!(byte, b' ' | b'\t'))
                .count();
            line.get(removable..).unwrap_or(line)
        })
        .collect();
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// One list item, with how deeply it is nested (0 = top level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// Nesting depth derived from indentation: 0 for the outermost items.
    pub depth: usize,
    /// The item text without its marker; continuation lines are joined with a space.
    pub text: String,
}

/// The texts of all bullet and numbered list items, nested ones flattened in document order.
///
/// See [`parse_list_items`] for what counts as an item; use it when the nesting matters.
pub fn parse_list(text: &str) -> Vec<String> {
    parse_list_items(text)
        .into_iter()
        .map(|item| item.text)
        .collect()
}

/// All list items with their depth.
///
/// Items start with a bullet (`-`, `*`, `+`, `•`, `◦`, `▪`, `‣`) or a number (`1.`, `1)`,
/// `(1)`) followed by whitespace. A following line indented deeper than the marker continues
/// the item; a blank line or unindented prose ends it. Lines inside fenced code blocks and
/// thematic breaks (`---`, `* * *`) are not items.
pub fn parse_list_items(text: &str) -> Vec<ListItem> {
    let mut items: Vec<ListItem> = Vec::new();
    let mut indents: Vec<usize> = Vec::new();
    // Indentation of the marker of the item that may still take continuation lines.
    let mut open_item: Option<usize> = None;
    let mut fence: Option<Fence> = None;
    for line in text.lines() {
        if let Some(open) = fence {
            if is_closing_fence(line, open) {
                fence = None;
            }
            continue;
        }
        if let Some((opened, _)) = opening_fence(line) {
            fence = Some(opened);
            open_item = None;
            continue;
        }
        if line.trim().is_empty() {
            open_item = None;
            continue;
        }
        let indent = indent_width(line);
        if let Some(item_text) = list_item_text(line.trim_start()) {
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
            items.push(ListItem {
                depth: indents.len().saturating_sub(1),
                text: item_text.to_owned(),
            });
            open_item = Some(indent);
            continue;
        }
        match (open_item, items.last_mut()) {
            (Some(marker_indent), Some(item)) if indent > marker_indent => {
                item.text.push(' ');
                item.text.push_str(line.trim());
            }
            _ => {
                open_item = None;
                if indent == 0 {
                    indents.clear();
                }
            }
        }
    }
    items
}

/// Indentation in columns (a tab counts as four).
fn indent_width(line: &str) -> usize {
    line.chars()
        .take_while(|c| c.is_whitespace())
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// The text after a list marker, if the (left-trimmed) line is a list item.
fn list_item_text(line: &str) -> Option<&str> {
    if is_thematic_break(line) {
        return None;
    }
    let rest = strip_bullet(line).or_else(|| strip_number(line))?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let text = rest.trim();
    (!text.is_empty()).then_some(text)
}

fn strip_bullet(line: &str) -> Option<&str> {
    let first = line.chars().next()?;
    if !matches!(first, '-' | '*' | '+' | '•' | '◦' | '▪' | '‣') {
        return None;
    }
    line.get(first.len_utf8()..)
}

/// Strips `1.`, `1)` or `(1)` (at most nine digits).
fn strip_number(line: &str) -> Option<&str> {
    let (inner, parenthesised) = match line.strip_prefix('(') {
        Some(inner) => (inner, true),
        None => (line, false),
    };
    let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let after = inner.get(digits..)?;
    if parenthesised {
        after.strip_prefix(')')
    } else {
        after.strip_prefix('.').or_else(|| after.strip_prefix(')'))
    }
}

/// `---`, `***`, `___`, `- - -`: a horizontal rule, not a list.
fn is_thematic_break(line: &str) -> bool {
    let marks = line.chars().filter(|c| !c.is_whitespace());
    let mut count = 0;
    let mut first = None;
    for mark in marks {
        if !matches!(mark, '-' | '*' | '_') || first.is_some_and(|f| f != mark) {
            return false;
        }
        first = Some(mark);
        count += 1;
    }
    count >= 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// `expected` is JSON text for a hit, or `Err(substring of the error message)`.
    fn check_json(input: &str, expected: Result<&str, &str>) {
        match (extract_json(input), expected) {
            (Ok(value), Ok(want)) => {
                let want: Value = serde_json::from_str(want).unwrap();
                assert_eq!(value, want, "input: {input:?}");
            }
            (Err(err), Err(want)) => {
                let message = err.to_string();
                assert!(message.contains(want), "input: {input:?}\nerror: {message}");
            }
            (got, want) => panic!("input: {input:?}\ngot {got:?}\nwanted {want:?}"),
        }
    }

    #[test]
    fn json_is_found_in_prose_and_fences() {
        check_json(r#"{"a": 1}"#, Ok(r#"{"a": 1}"#));
        check_json(
            r#"Sure! Here it is: {"a": [1, 2]} Hope that helps."#,
            Ok(r#"{"a": [1, 2]}"#),
        );
        check_json("The list: [1, 2, 3].", Ok("[1, 2, 3]"));
        check_json("```json\n{\"x\": true}\n```", Ok(r#"{"x": true}"#));
        check_json("```JSON\n[\"x\"]\n```\n", Ok(r#"["x"]"#));
        // The fenced json block wins over an earlier bare object.
        check_json(
            "e.g. {\"demo\": 0}\n```json\n{\"real\": 1}\n```",
            Ok(r#"{"real": 1}"#),
        );
        // An unlabeled fence is just text: its first balanced object is found.
        check_json("```\n{\"plain\": 1}\n```", Ok(r#"{"plain": 1}"#));
        // Template placeholders and broken fragments before the JSON are skipped.
        check_json(
            r#"Use {name} and {x: 1}, result: {"ok": true}"#,
            Ok(r#"{"ok": true}"#),
        );
        // A broken json fence falls back to the text.
        check_json(
            "```json\n{oops}\n```\nFixed: {\"fixed\": 1}",
            Ok(r#"{"fixed": 1}"#),
        );
        // Brackets and quotes inside strings do not confuse the pairing.
        check_json(
            r#"Result: {"text": "a } b ] c \" {", "n": 1} done"#,
            Ok(r#"{"text": "a } b ] c \" {", "n": 1}"#),
        );
        // Smart quotes in prose, and inside strings.
        check_json(
            "I’d say “this”: {\"quote\": \"he said “hi”\"}",
            Ok(r#"{"quote": "he said “hi”"}"#),
        );
        // Unbalanced closers in prose are ignored.
        check_json(r#"Oops :) ] } {"a": 2}"#, Ok(r#"{"a": 2}"#));
        // A stray quote in prose inside brackets ends at the line break.
        check_json("(see [the \"docs)\n{\"b\": 3}", Ok(r#"{"b": 3}"#));
        // The outermost parseable value is returned, not a nested one.
        check_json(r#"x [{"a": 1}, {"b": 2}] y"#, Ok(r#"[{"a": 1}, {"b": 2}]"#));
        // CRLF line endings.
        check_json("```json\r\n{\"a\": 1}\r\n```\r\n", Ok(r#"{"a": 1}"#));
    }

    #[test]
    fn json_leniencies() {
        check_json(r#"{"a": 1, "b": [1, 2,],}"#, Ok(r#"{"a": 1, "b": [1, 2]}"#));
        check_json(
            "{\n  \"a\": 1,\n  \"b\": 2,\n}\n",
            Ok(r#"{"a": 1, "b": 2}"#),
        );
        check_json(
            "{\n  \"a\": 1, // the answer\n  /* block */ \"b\": \"//not a comment\"\n}",
            Ok(r#"{"a": 1, "b": "//not a comment"}"#),
        );
        check_json("[1, /* two */ 2, // end\n]", Ok("[1, 2]"));
        // Only trailing commas are forgiven, not empty elements.
        check_json("[,]", Err("candidate at char 0 failed"));
        check_json("[1,,2]", Err("candidate at char 0 failed"));
    }

    #[test]
    fn json_errors_are_precise() {
        check_json("", Err("no JSON object or array found: the text is empty"));
        check_json("no structure here", Err("the text contains no `{` or `[`"));
        check_json(
            r#"Result: {"a": 1, "b": 2"#,
            Err("`{` at char 8 is never closed"),
        );
        check_json(
            r#"Here: {"a": 1 "b": 2}"#,
            Err(
                "no JSON object or array found: candidate at char 6 failed: expected `,` or `}` at line 1 column 9",
            ),
        );
        // The best candidate is the one that got furthest, and offsets count chars.
        check_json(
            r#"ééé {x} then {"long": [1, 2, 3 4]}"#,
            Err("candidate at char 13 failed: expected `,` or `]`"),
        );
        let err = extract_json(r#"abc {"a" 1}"#).unwrap_err();
        assert!(matches!(
            err,
            CoreError::OutputParse {
                offset: Some(4),
                what: JSON_WHAT,
                ..
            }
        ));
    }

    #[test]
    fn json_as_type_skips_values_of_the_wrong_shape() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Verdict {
            label: String,
            score: f64,
        }
        let text = r#"Scores [1, 2] then {"label": "spam", "score": 0.9}"#;
        let verdict: Verdict = extract_json_as(text).unwrap();
        assert_eq!(
            verdict,
            Verdict {
                label: "spam".into(),
                score: 0.9
            }
        );

        let err = extract_json_as::<Verdict>(r#"Got {"label": "x"}"#).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, CoreError::OutputShape { offset: 4, .. }),
            "{message}"
        );
        assert!(message.contains("missing field `score`"), "{message}");

        let err = extract_json_as::<Verdict>("nothing").unwrap_err();
        assert!(matches!(err, CoreError::OutputParse { .. }));
    }

    #[test]
    fn json_search_is_linear_on_hostile_input() {
        let depth = 200_000;
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        // Too deep for the parser: the search ends with the innermost parseable part.
        assert!(extract_json(&nested).is_ok());
        let unclosed = "{".repeat(depth);
        assert!(extract_json(&unclosed).is_err());
        let braces = "{x}".repeat(depth);
        assert!(extract_json(&braces).is_err());
        let comments = format!("[{}", "/*".repeat(depth));
        assert!(extract_json(&comments).is_err());
        let long_strings = format!("{}{}", "[\"aaaaaaaaaaaaaaaa\",".repeat(depth / 2), "x");
        assert!(extract_json(&long_strings).is_err());
    }

    /// Renders a value with a trailing comma after the last element of every non-empty container.
    fn with_trailing_commas(value: &Value) -> String {
        match value {
            Value::Array(items) if !items.is_empty() => {
                let inner: Vec<String> = items.iter().map(with_trailing_commas).collect();
                format!("[{},]", inner.join(", "))
            }
            Value::Object(map) if !map.is_empty() => {
                let inner: Vec<String> = map
                    .iter()
                    .map(|(key, item)| {
                        format!(
                            "{}: {}",
                            Value::String(key.clone()),
                            with_trailing_commas(item)
                        )
                    })
                    .collect();
                format!("{{\n  {},\n}}", inner.join(",\n  "))
            }
            other => other.to_string(),
        }
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Quarter steps are exact in binary and short in decimal, so they round-trip.
            (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
            any::<String>().prop_map(Value::String),
            "[{}\\[\\]\"/*,: a-z]{0,12}".prop_map(Value::String),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn container() -> impl Strategy<Value = Value> {
        any_value().prop_map(|value| match value {
            Value::Array(_) | Value::Object(_) => value,
            scalar => json!({ "value": scalar }),
        })
    }

    proptest! {
        #[test]
        fn parsers_never_panic(text in any::<String>()) {
            let _ = extract_json(&text);
            let _ = extract_code_blocks(&text);
            let _ = parse_list_items(&text);
        }

        #[test]
        fn parsers_never_panic_on_structured_noise(text in "[{}\\[\\]\"\\\\/*,:`~\n -1.()a]{0,200}") {
            let _ = extract_json(&text);
            let _ = extract_code_blocks(&text);
            let _ = parse_list_items(&text);
        }

        #[test]
        fn embedded_json_is_recovered(value in container(), pretty in any::<bool>()) {
            let rendered = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let text = format!("Here you go: {rendered} hope it helps");
            prop_assert_eq!(extract_json(&text).unwrap(), value.clone());
            let fenced = format!("Sure.\n```json\n{rendered}\n```\nAnything else?");
            prop_assert_eq!(extract_json(&fenced).unwrap(), value);
        }

        #[test]
        fn trailing_commas_are_tolerated(value in container()) {
            let text = format!("Output:\n{}\n", with_trailing_commas(&value));
            prop_assert_eq!(extract_json(&text).unwrap(), value);
        }

        #[test]
        fn code_blocks_round_trip(code in "[a-z =(){}\n]{0,80}", lang in "[a-z]{1,8}") {
            let code = code.trim_end_matches('\n').to_owned();
            let text = format!("Intro\n```{lang}\n{code}\n```\nOutro");
            let blocks = extract_code_blocks(&text);
            prop_assert_eq!(blocks, vec![CodeBlock { language: Some(lang), code, closed: true }]);
        }
    }

    fn check_blocks(input: &str, expected: &[(Option<&str>, &str, bool)]) {
        let got: Vec<(Option<String>, String, bool)> = extract_code_blocks(input)
            .into_iter()
            .map(|block| (block.language, block.code, block.closed))
            .collect();
        let want: Vec<(Option<String>, String, bool)> = expected
            .iter()
            .map(|(lang, code, closed)| (lang.map(str::to_owned), (*code).to_owned(), *closed))
            .collect();
        assert_eq!(got, want, "input: {input:?}");
    }

    #[test]
    fn code_blocks() {
        check_blocks("no code", &[]);
        check_blocks(
            "```python\nprint(1)\n```",
            &[(Some("python"), "print(1)", true)],
        );
        check_blocks(
            "```python title=\"x.py\"\na = 1\n\nb = 2\n```\ntext\n~~~rust,ignore\nfn f() {}\n~~~",
            &[
                (Some("python"), "a = 1\n\nb = 2", true),
                (Some("rust"), "fn f() {}", true),
            ],
        );
        check_blocks("```\nplain\n```", &[(None, "plain", true)]);
        check_blocks("```{r}\nx <- 1\n```", &[(Some("r"), "x <- 1", true)]);
        // A longer fence contains a shorter one.
        check_blocks(
            "````md\n```js\nx\n```\n````",
            &[(Some("md"), "```js\nx\n```", true)],
        );
        // A tilde fence is not closed by backticks.
        check_blocks("~~~\na\n```\nb\n~~~", &[(None, "a\n```\nb", true)]);
        // Indented fences (inside a list) lose their indentation.
        check_blocks(
            "1. Run:\n   ```sh\n   cargo test\n     --lib\n   ```",
            &[(Some("sh"), "cargo test\n  --lib", true)],
        );
        // Truncated output: the final block has no closing fence.
        check_blocks(
            "```go\nfunc main() {\n",
            &[(Some("go"), "func main() {", false)],
        );
        check_blocks("```", &[(None, "", false)]);
        // Inline triple backticks are not a fence.
        check_blocks("use ```x``` here", &[]);
        check_blocks("```py\r\nx = 1\r\n```\r\n", &[(Some("py"), "x = 1", true)]);
        check_blocks("``\nnot a fence\n``", &[]);
    }

    #[test]
    fn code_by_language() {
        let text = "```js\nconsole.log(1)\n```\n```Python\nprint(1)\n```";
        assert_eq!(
            extract_code(text, Some("python")).as_deref(),
            Some("print(1)")
        );
        assert_eq!(extract_code(text, None).as_deref(), Some("console.log(1)"));
        assert_eq!(extract_code(text, Some("rust")), None);
    }

    fn check_list(input: &str, expected: &[(usize, &str)]) {
        let got: Vec<(usize, String)> = parse_list_items(input)
            .into_iter()
            .map(|item| (item.depth, item.text))
            .collect();
        let want: Vec<(usize, String)> = expected
            .iter()
            .map(|(depth, text)| (*depth, (*text).to_owned()))
            .collect();
        assert_eq!(got, want, "input: {input:?}");
    }

    #[test]
    fn lists() {
        check_list(
            "- a\n* b\n+ c\n• d",
            &[(0, "a"), (0, "b"), (0, "c"), (0, "d")],
        );
        check_list(
            "1. one\n2) two\n(3) three",
            &[(0, "one"), (0, "two"), (0, "three")],
        );
        check_list(
            "Here are ideas:\n\n1. First idea\n2. Second idea\n\nThat's all!",
            &[(0, "First idea"), (0, "Second idea")],
        );
        // Continuation lines are joined; unindented prose is not.
        check_list(
            "- a long item that\n  wraps onto two lines\n- next\nProse after.",
            &[(0, "a long item that wraps onto two lines"), (0, "next")],
        );
        // Nesting by indentation.
        check_list(
            "- fruit\n  - apple\n    1. red\n  - pear\n- veg\n\t- leek",
            &[
                (0, "fruit"),
                (1, "apple"),
                (2, "red"),
                (1, "pear"),
                (0, "veg"),
                (1, "leek"),
            ],
        );
        // Not items: numbers without space, emphasis, rules, empty markers, code.
        check_list("1.5 million\n**bold**\n---\n* * *\n-\n2024", &[]);
        check_list("- a\n```\n- not an item\n```\n- b", &[(0, "a"), (0, "b")]);
        check_list(
            "  - indented start\n  - sibling",
            &[(0, "indented start"), (0, "sibling")],
        );
        assert_eq!(
            parse_list("- x\n  - y"),
            vec!["x".to_owned(), "y".to_owned()]
        );
    }
}
