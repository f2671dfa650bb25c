//! Per-type precision and recall of the PII detector on labelled JSONL
//! (`{"text", "spans": [{"start", "end", "type"}]}`, offsets in Unicode scalar values).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::GuardError;
use crate::pii::{PiiDetector, PiiType};

/// A labelled span.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledSpan {
    /// Start (scalar offset).
    pub start: usize,
    /// End (scalar offset).
    pub end: usize,
    /// Type name.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A labelled text.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledPii {
    /// The text.
    pub text: String,
    /// Its PII spans.
    pub spans: Vec<LabelledSpan>,
}

/// Parses PII JSONL, naming the line at fault.
pub fn parse_pii(jsonl: &str) -> Result<Vec<LabelledPii>, GuardError> {
    let mut out = Vec::new();
    for (index, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: LabelledPii = serde_json::from_str(line).map_err(|e| GuardError::BadDataLine {
            line: index + 1,
            message: e.to_string(),
        })?;
        out.push(row);
    }
    Ok(out)
}

/// Counts for one type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TypeCounts {
    /// Labelled spans of this type.
    pub gold: usize,
    /// Predicted spans of this type.
    pub predicted: usize,
    /// Predictions with exactly the labelled span.
    pub exact: usize,
    /// Predictions overlapping a labelled span of the same type.
    pub overlap: usize,
}

impl TypeCounts {
    /// Exact-span precision.
    pub fn precision(&self) -> f64 {
        ratio(self.exact, self.predicted)
    }
    /// Exact-span recall.
    pub fn recall(&self) -> f64 {
        ratio(self.exact, self.gold)
    }
    /// Exact-span F1.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    /// Overlap precision (a prediction touching a gold span of its type counts).
    pub fn overlap_precision(&self) -> f64 {
        ratio(self.overlap, self.predicted)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The evaluation: per type, plus predictions on texts labelled with no PII at all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PiiEvaluation {
    /// Counts per type name (only types the detector emits).
    pub per_type: BTreeMap<String, TypeCounts>,
    /// Texts with no labelled span.
    pub negative_texts: usize,
    /// Of those, texts where the detector found something of a core type.
    pub negative_texts_fired: usize,
}

/// Runs the detector over every text and scores it per type.
pub fn evaluate_pii(rows: &[LabelledPii]) -> PiiEvaluation {
    let mut evaluation = PiiEvaluation::default();
    for kind in PiiType::ALL {
        evaluation
            .per_type
            .insert(kind.as_str().to_owned(), TypeCounts::default());
    }
    for row in rows {
        let predicted = PiiDetector.detect(&row.text);
        if row.spans.is_empty() {
            evaluation.negative_texts += 1;
            if !predicted.is_empty() {
                evaluation.negative_texts_fired += 1;
            }
        }
        for gold in &row.spans {
            if let Some(counts) = evaluation.per_type.get_mut(&gold.kind) {
                counts.gold += 1;
            }
        }
        for prediction in &predicted {
            let Some(counts) = evaluation.per_type.get_mut(prediction.kind.as_str()) else {
                continue;
            };
            counts.predicted += 1;
            let same_type = row
                .spans
                .iter()
                .filter(|g| g.kind == prediction.kind.as_str());
            let mut overlapped = false;
            for gold in same_type {
                if gold.start == prediction.start && gold.end == prediction.end {
                    counts.exact += 1;
                }
                if gold.start < prediction.end && prediction.start < gold.end {
                    overlapped = true;
                }
            }
            if overlapped {
                counts.overlap += 1;
            }
        }
    }
    evaluation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_exact_and_overlapping_spans() {
        let rows = parse_pii(concat!(
            "{\"text\": \"mail bob@example.com now\", \"spans\": [{\"start\": 5, \"end\": 20, \"type\": \"EMAIL\"}]}\n",
            "{\"text\": \"Batch 690181837226917 contains 169 items.\", \"spans\": []}\n",
            "{\"text\": \"ip 10.0.0.1\", \"spans\": [{\"start\": 0, \"end\": 11, \"type\": \"IP\"}]}\n",
        ))
        .unwrap();
        let evaluation = evaluate_pii(&rows);
        let email = evaluation.per_type["EMAIL"];
        assert_eq!((email.gold, email.predicted, email.exact), (1, 1, 1));
        let ip = evaluation.per_type["IP"];
        assert_eq!((ip.gold, ip.predicted, ip.exact, ip.overlap), (1, 1, 0, 1));
        assert_eq!(
            (evaluation.negative_texts, evaluation.negative_texts_fired),
            (1, 0)
        );
        assert!(
            parse_pii("{\"text\": 3}")
                .unwrap_err()
                .to_string()
                .starts_with("line 1")
        );
    }
}
