//! Invariants shared by the guard fuzz targets.

/// Checks detector spans given as (start, end, byte_start, byte_end, confidence): non-empty,
/// inside the text, on character boundaries, scalar offsets equal to the scalar count of the
/// byte prefix, confidence in [0, 1], sorted and non-overlapping.
pub fn check_spans(text: &str, spans: &[(usize, usize, usize, usize, f32)], what: &str) {
    let mut previous_end = 0;
    for &(start, end, byte_start, byte_end, confidence) in spans {
        assert!(byte_start < byte_end && byte_end <= text.len(), "{what} bytes {byte_start}..{byte_end}");
        assert!(text.is_char_boundary(byte_start) && text.is_char_boundary(byte_end), "{what} split a char");
        assert_eq!(text[..byte_start].chars().count(), start, "{what} start");
        assert_eq!(text[..byte_end].chars().count(), end, "{what} end");
        assert!((0.0..=1.0).contains(&confidence), "{what} confidence {confidence}");
        assert!(byte_start >= previous_end, "{what} spans overlap or are unsorted");
        previous_end = byte_end;
    }
}
