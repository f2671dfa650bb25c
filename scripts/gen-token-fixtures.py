#!/usr/bin/env python3
"""Writes the golden token fixture that crates/core/tests/tiktoken_parity.rs checks against.

The ids come from the real Python tiktoken (`pip install tiktoken`). tiktoken normally downloads
its vocabularies; this machine has no internet, so the script builds each `tiktoken.Encoding`
from tiktoken's own constructor in `tiktoken_ext.openai_public` (hence its exact `pat_str` and
special tokens) with the vocabulary read from the `.tiktoken` files that ship inside the
tiktoken-rs crate source in ~/.cargo/registry. tiktoken checks those files against the SHA-256
that OpenAI publishes for them, so a wrong or altered vocabulary fails loudly.

Usage:
    python3 scripts/gen-token-fixtures.py            # rewrite the fixture
    python3 scripts/gen-token-fixtures.py --check    # fail if the fixture is out of date
    python3 scripts/gen-token-fixtures.py --bench    # time Python tiktoken on the bench corpus
    python3 scripts/gen-token-fixtures.py --bench --runs 1 --input mixed --encoding o200k_base
        # one run of one input, e.g. under callgrind
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "core" / "tests" / "fixtures" / "tokens"
FIXTURE = FIXTURES / "tiktoken-python.jsonl"
ENCODINGS = ("o200k_base", "cl100k_base")
BENCH_BYTES = 1_000_000


def tiktoken_rs_assets() -> Path:
    """The assets folder of the tiktoken-rs version that Cargo.lock pins."""
    lock = (ROOT / "Cargo.lock").read_text(encoding="utf-8")
    match = re.search(r'name = "tiktoken-rs"\nversion = "([^"]+)"', lock)
    if not match:
        sys.exit("Cargo.lock does not pin tiktoken-rs")
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    pattern = str(cargo_home / "registry" / "src" / "*" / f"tiktoken-rs-{match.group(1)}" / "assets")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"no {pattern}: run `cargo fetch` first")
    return Path(found[0])


def local_encodings() -> dict:
    """tiktoken Encodings built from tiktoken's own specs with vocabularies read locally."""
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the local files directly, never a cache
    import tiktoken
    import tiktoken.load
    from tiktoken_ext import openai_public

    assets = tiktoken_rs_assets()

    def load_local(url: str, expected_hash: str | None = None) -> dict:
        local = assets / url.rsplit("/", 1)[-1]
        # With the cache disabled tiktoken skips its own hash check, so check here.
        actual = hashlib.sha256(local.read_bytes()).hexdigest()
        if expected_hash is None or actual != expected_hash:
            sys.exit(f"{local}: SHA-256 {actual} is not OpenAI's published {expected_hash}")
        return tiktoken.load.load_tiktoken_bpe(str(local), expected_hash=expected_hash)

    openai_public.load_tiktoken_bpe = load_local
    encodings = {}
    for name in ENCODINGS:
        spec = getattr(openai_public, name)()
        encodings[name] = tiktoken.Encoding(**spec)
    return encodings


def read_fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def corpus() -> list[tuple[str, str]]:
    """(label, text) pairs covering what tends to break tokenizers."""
    items: list[tuple[str, str]] = [
        ("empty", ""),
        ("english", "The quick brown fox jumps over the lazy dog."),
        ("contractions", "I'm sure you're right: they've gone, we'll see, he'd know, it's DON'T and CAN'T, 'S 'T 'Re 'VE 'M 'LL 'D"),
        ("curly apostrophes", "It\u2019s the dog\u2019s bowl \u2018quoted\u2019 \u201cdouble\u201d"),
        ("mixed case", "HELLO World hELLo McDonald's iPhone XMLHttpRequest camelCaseWord snake_case_word SCREAMING_CASE"),
        ("code rust", "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n"),
        ("code python", "def f(x):\n\tif x:\n\t\treturn [i**2 for i in range(x)]  # squares\n\treturn None\n"),
        ("json", '{"a": [1, 2.5, -3e10, true, null], "b": {"c": "d\\n"}}'),
        ("html", "<!DOCTYPE html><html><body><p class=\"x\">Hi &amp; bye</p></body></html>"),
        ("url and email", "https://example.com/path/to?q=1&r=%20x#frag mail me at first.last+tag@example.co.uk"),
        ("hashes", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 uuid 123e4567-e89b-12d3-a456-426614174000"),
        ("base64", "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="),
        ("chinese", "我们今天去公园散步，天气很好。人工智能正在改变世界。"),
        ("japanese", "お誕生日おめでとう！今日は良い天気ですね。カタカナとひらがなと漢字。ｶﾀｶﾅ"),
        ("korean", "안녕하세요. 오늘 날씨가 정말 좋네요! 한국어 형태소 분석."),
        ("arabic rtl", "مرحبا بالعالم! هذا نص عربي مع أرقام ١٢٣٤٥ ونقاط."),
        ("hebrew rtl", "שלום עולם, זה טקסט בעברית עם ניקוד: בְּרֵאשִׁית"),
        ("devanagari", "नमस्ते दुनिया! हिन्दी में संयुक्ताक्षर क्ष त्र ज्ञ"),
        ("thai", "สวัสดีครับ ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ"),
        ("cyrillic greek", "Привет, мир! Ελληνικά γράμματα αβγδε ΑΒΓΔΕ"),
        ("vietnamese", "Tiếng Việt có nhiều dấu: ắ ằ ẳ ẵ ặ ế ề ể ễ ệ"),
        ("emoji zwj", "family 👩\u200d👩\u200d👧\u200d👦 rainbow 🏳\ufe0f\u200d🌈 pirate 🏴\u200d☠\ufe0f"),
        ("emoji skin tones", "👍🏻👍🏼👍🏽👍🏾👍🏿 🧑🏽\u200d💻 👩🏿\u200d🔬"),
        ("emoji flags keycaps", "🇫🇷🇯🇵🇺🇸 1\ufe0f\u20e3 #\ufe0f\u20e3 ❤\ufe0f ☺\ufe0e"),
        ("emoji run", "😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉😌😍🥰😘"),
        ("whitespace newline run", "\n\n\n   \t"),
        ("whitespace before word", "a    b\t\tc \n d  \n\n  e"),
        ("whitespace trailing", "end with spaces   "),
        ("whitespace newline then spaces at end", "line\n   "),
        ("whitespace crlf", "a\r\nb\r\n\r\n  c\r"),
        ("whitespace unicode", "a\u00a0b\u3000c\u2003d\u2009e\u200af\u2028g\u2029h\u0085i\u000bj\u000ck"),
        ("whitespace unicode after newline", "x\n\u3000y\n\u00a0\n\u2003"),
        ("whitespace only", " \t \n \r\n \u00a0 "),
        ("digits", "0 1 12 123 1234 12345 123456 1234567890 3.14159 1,000,000 -42 +7 1e-9 0x1F 0b1010"),
        ("digits other scripts", "٠١٢٣٤٥٦٧٨٩ ०१२३ 一二三 ①②③ ½ ¾ Ⅻ ²³"),
        ("accents precomposed", "café naïve façade résumé Ångström"),
        ("accents combining", "cafe\u0301 nai\u0308ve a\u0308\u0301\u0323 o\u0302\u0303"),
        ("zalgo", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333"),
        ("bidi controls", "abc\u200fdef\u202eolleh\u202c \u200b zero\u200bwidth \ufeffbom \u200d lone zwj \u2066iso\u2069"),
        ("replacement char", "bad \ufffd bytes \ufffd\ufffd\ufffd"),
        ("nul and controls", "a\x00b\x01\x02\x03\x07\x08\x1b[31mred\x1b[0m\x7f\x1f"),
        ("c1 controls", "\x80\x81\x8d\x9f text"),
        ("noncharacters", "\ufffe\uffff\ufdd0\ufdef\U0001fffe\U0010ffff end"),
        ("private use", "\ue000\uf8ff\U000f0000\U00100000"),
        ("astral", "𝐀𝐁𝐂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀𓀁 𠀀𠀁 🂡"),
        ("fullwidth", "ＡＢＣ１２３！？"),
        ("special token text", "<|endoftext|> <|endofprompt|> <|fim_prefix|> <|im_start|>user<|im_end|>"),
        ("punctuation runs", "!!!??? ... --- === *** /// \\\\\\ ((( ))) [[[ ]]] {{{ }}} ||| ~~~ ``` '''"),
        ("slashes and newlines", "a/\nb//\r\n/c"),
        ("repeated a 10k", "a" * 10_000),
        ("repeated space 5k", " " * 5_000),
        ("repeated newline 2k", "\n" * 2_000),
        ("repeated tab 1k", "\t" * 1_000),
        ("repeated dot 3k", "." * 3_000),
        ("repeated ab 2k", "ab" * 2_000),
        ("repeated digit 1k", "7" * 1_000),
        ("repeated cjk 2k", "日" * 2_000),
        ("repeated emoji 500", "🙂" * 500),
        ("repeated space then word", " " * 3_000 + "word"),
        ("repeated newline space", "\n " * 1_000),
        ("fixture english", read_fixture_text("english.txt")),
        ("fixture code", read_fixture_text("code.txt")),
        ("fixture cjk", read_fixture_text("cjk.txt")),
    ]
    rng = random.Random(20240601)
    pool = list("aAzZ09 '\t\n\r.,!?-_/\\\"") + [
        "s", "t", "re", "ve", "ll", "d", "m", "S", "T", "LL",
        "\u00a0", "\u3000", "\u2003", "\u0301", "\u200d", "\ufe0f", "é", "ß", "日", "本", "한",
        "🙂", "👍🏽", "\ufffd", "\x00", "\x1b", "\ufffe", "123", "4567", "<|endoftext|>",
    ]
    for index in range(150):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))
        items.append((f"random pool {index}", text))
    for index in range(50):
        chars = []
        for _ in range(rng.randint(1, 30)):
            code = rng.choice([rng.randint(0x20, 0x7E), rng.randint(0, 0xFFFF), rng.randint(0, 0x10FFFF)])
            if 0xD800 <= code <= 0xDFFF:  # a str holding a lone surrogate is not valid UTF-8
                code = 0xFFFD
            chars.append(chr(code))
        items.append((f"random code points {index}", "".join(chars)))
    return items


def fixture_lines(encodings: dict) -> list[str]:
    import tiktoken

    meta = {
        "meta": {
            "generator": "scripts/gen-token-fixtures.py",
            "tiktoken": tiktoken.__version__,
            "vocabularies": "tiktoken-rs crate assets, checked against OpenAI's published SHA-256",
        }
    }
    lines = [json.dumps(meta, ensure_ascii=False)]
    for label, text in corpus():
        for name in ENCODINGS:
            ids = encodings[name].encode_ordinary(text)
            record = {"label": label, "encoding": name, "text": text, "ids": ids}
            lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    return lines


def bench_corpus() -> dict[str, str]:
    """The inputs of crates/core/benches/tokens.rs: each seed text repeated to >= 1 MB."""
    english, code, cjk = (read_fixture_text(f"{n}.txt") for n in ("english", "code", "cjk"))
    mixed_unit = english + "\n" + code + "\n" + cjk + "\n"
    units = {"english": english, "code": code, "cjk": cjk, "mixed": mixed_unit}
    corpus = {}
    for name, unit in units.items():
        unit_bytes = len(unit.encode("utf-8"))
        corpus[name] = unit * -(-BENCH_BYTES // unit_bytes)
    return corpus


def bench(encodings: dict, runs: int, only: str | None, only_encoding: str | None) -> None:
    for name, text in bench_corpus().items():
        if only and name != only:
            continue
        size = len(text.encode("utf-8"))
        for encoding in ENCODINGS:
            if only_encoding and encoding != only_encoding:
                continue
            enc = encodings[encoding]
            best = float("inf")
            count = 0
            for _ in range(runs):
                start = time.perf_counter()
                count = len(enc.encode_ordinary(text))
                best = min(best, time.perf_counter() - start)
            mb_per_s = size / best / 1e6
            print(f"{name:8} {encoding:12} {size:>8} bytes {count:>7} tokens  best {best * 1e3:8.2f} ms  {mb_per_s:6.2f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the fixture differs from a fresh run")
    parser.add_argument("--bench", action="store_true", help="time Python tiktoken on the bench corpus")
    parser.add_argument("--runs", type=int, default=5, help="--bench: runs per input (best is kept)")
    parser.add_argument("--input", choices=["english", "code", "cjk", "mixed"], help="--bench: only this input")
    parser.add_argument("--encoding", choices=ENCODINGS, help="--bench: only this encoding")
    args = parser.parse_args()
    encodings = local_encodings()
    if args.bench:
        bench(encodings, args.runs, args.input, args.encoding)
        return
    content = "\n".join(fixture_lines(encodings)) + "\n"
    if args.check:
        if FIXTURE.read_text(encoding="utf-8") != content:
            sys.exit(f"{FIXTURE} is out of date: run scripts/gen-token-fixtures.py")
        print(f"{FIXTURE} is up to date")
        return
    FIXTURE.write_text(content, encoding="utf-8")
    print(f"wrote {FIXTURE} ({len(content.encode('utf-8'))} bytes)")


if __name__ == "__main__":
    main()
