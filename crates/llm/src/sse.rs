//! An incremental Server-Sent Events parser (the WHATWG event-stream rules).
//!
//! Bytes arrive in arbitrary chunks: a line, a CRLF pair or a UTF-8 character may be split
//! across two chunks, and the parser gives the same events however the stream is cut. Lines end
//! with CRLF, LF or CR; `:` lines are comments (keep-alives); `data` lines of one event are joined
//! with `\n`; a blank line dispatches the event; an event with no data is dropped.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event` field, `None` for the default type (`message`).
    pub event: Option<String>,
    /// The data lines joined with `\n`.
    pub data: String,
    /// The last `id` field seen so far in the stream.
    pub id: Option<String>,
}

/// Longest line the parser holds before giving up on the stream (guards memory).
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Feeds bytes, yields events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unterminated line.
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next one belongs to it.
    after_cr: bool,
    /// Whether the first line has started (a BOM is only stripped there).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

/// Why the parser refused the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseError {
    /// What went wrong.
    pub reason: String,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Feeds a chunk, returning the events it completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(position) = memchr::memchr2(b'\n', b'\r', rest) {
            let (line, terminator) = (&rest[..position], rest[position]);
            rest = &rest[position + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            let event = if self.line.is_empty() {
                // The whole line is in this chunk: no copy.
                self.process_line(line)
            } else {
                let mut pending = std::mem::take(&mut self.line);
                pending.extend_from_slice(line);
                let event = self.process_line(&pending);
                pending.clear();
                self.line = pending;
                event
            };
            events.extend(event);
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(SseError {
                reason: format!("an event-stream line is longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        Ok(events)
    }

    /// Whether bytes of an unfinished event are pending: a stream that ends here was cut off
    /// (the spec drops such an event).
    pub fn has_partial_event(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn process_line(&mut self, raw: &[u8]) -> Option<SseEvent> {
        let mut raw = raw;
        if !self.started {
            self.started = true;
            if let Some(stripped) = raw.strip_prefix(b"\xEF\xBB\xBF") {
                raw = stripped;
            }
        }
        if raw.is_empty() {
            return self.dispatch();
        }
        if raw[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(raw);
        let (field, value) = match line.find(':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !self.has_data {
            self.data.clear();
            return None;
        }
        self.has_data = false;
        Some(SseEvent {
            event: event.filter(|name| !name.is_empty()),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.feed(chunk).unwrap());
        }
        events
    }

    fn event(name: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
            id: None,
        }
    }

    #[test]
    fn parses_the_spec_examples() {
        let input = b"data: first\r\n\r\n: keep-alive\n\nevent: ping\ndata\n\ndata:YHOO\ndata: +2\ndata: 10\n\nevent: lonely\n\ndata: cr only\r\r";
        assert_eq!(
            parse_all(&[input]),
            vec![
                event(None, "first"),
                event(Some("ping"), ""),
                event(None, "YHOO\n+2\n10"),
                event(None, "cr only"),
            ]
        );
    }

    #[test]
    fn strips_a_bom_and_drops_an_unterminated_event() {
        let mut parser = SseParser::new();
        let events = parser.feed(b"\xEF\xBB\xBFdata: a\n\ndata: b").unwrap();
        assert_eq!(events, vec![event(None, "a")]);
        assert!(parser.has_partial_event());
    }

    #[test]
    fn keeps_the_last_id() {
        let events = parse_all(&[b"id: 7\ndata: a\n\ndata: b\n\n"]);
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].id.as_deref(), Some("7"));
    }

    #[test]
    fn refuses_endless_lines() {
        let mut parser = SseParser::new();
        let error = parser.feed(&vec![b'x'; MAX_LINE_BYTES + 1]).unwrap_err();
        assert!(error.reason.contains("longer than"));
    }

    /// One generated event and how to write it.
    #[derive(Debug, Clone)]
    struct Generated {
        name: Option<String>,
        data_lines: Vec<String>,
        comment_before: Option<String>,
    }

    fn generated_event() -> impl Strategy<Value = Generated> {
        (
            proptest::option::of("[a-z_]{1,12}"),
            proptest::collection::vec("[ -9;-~é€😀]{0,20}", 1..4),
            proptest::option::of("[ -~]{0,10}"),
        )
            .prop_map(|(name, data_lines, comment_before)| Generated {
                name,
                data_lines,
                comment_before,
            })
    }

    /// Writes `events` with line endings cycling through `endings`. A CR followed by an LF
    /// would read as one CRLF, so an LF right after a CR is written as CRLF.
    fn write(events: &[Generated], endings: &[&str]) -> (Vec<u8>, Vec<SseEvent>) {
        let mut out = String::new();
        let mut expected = Vec::new();
        let mut ending = endings.iter().cycle();
        let mut end_line = |out: &mut String| {
            let next = *ending.next().unwrap();
            if next == "\n" && out.ends_with('\r') {
                out.push_str("\r\n");
            } else {
                out.push_str(next);
            }
        };
        for generated in events {
            if let Some(comment) = &generated.comment_before {
                out.push(':');
                out.push_str(comment);
                end_line(&mut out);
            }
            if let Some(name) = &generated.name {
                out.push_str("event: ");
                out.push_str(name);
                end_line(&mut out);
            }
            for line in &generated.data_lines {
                out.push_str("data: ");
                out.push_str(line);
                end_line(&mut out);
            }
            end_line(&mut out);
            expected.push(SseEvent {
                event: generated.name.clone(),
                data: generated.data_lines.join("\n"),
                id: None,
            });
        }
        (out.into_bytes(), expected)
    }

    proptest! {
        #[test]
        fn same_events_however_the_bytes_are_split(
            events in proptest::collection::vec(generated_event(), 1..6),
            endings in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 1..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let (bytes, expected) = write(&events, &endings);
            prop_assert_eq!(&parse_all(&[&bytes]), &expected);
            for split in 0..=bytes.len() {
                prop_assert_eq!(&parse_all(&[&bytes[..split], &bytes[split..]]), &expected, "split at {}", split);
            }
            let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&bytes[start..point]);
                start = point;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(&parse_all(&chunks), &expected);
            let single_bytes: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(&parse_all(&single_bytes), &expected);
        }
    }
}
