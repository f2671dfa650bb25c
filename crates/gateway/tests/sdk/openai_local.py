"""Drives the embedded local model through the gateway with the official OpenAI Python SDK.

Environment: OPENAI_BASE_URL (the gateway's /v1), OPENAI_API_KEY (any value).
Generations are a few tokens: the model runs on the CPU. Prints "python local ok" at the end.
"""

import sys

import openai

MODEL = "local/smollm2-135m"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]

client = openai.OpenAI()


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


# Non-streaming, with the raw response for the routing header.
raw = client.chat.completions.with_raw_response.create(
    model=MODEL, messages=MESSAGES, max_tokens=6, temperature=0
)
check(raw.headers.get("x-promptops-provider") == MODEL, dict(raw.headers))
completion = raw.parse()
check(completion.object == "chat.completion", completion)
check(completion.choices[0].message.role == "assistant", completion)
check(completion.choices[0].message.content.strip() != "", completion)
check(completion.choices[0].finish_reason in ("length", "stop"), completion)
check(0 < completion.usage.completion_tokens <= 6, completion.usage)
check(completion.usage.prompt_tokens > 5, completion.usage)

# Streaming with usage.
pieces = []
usage = None
finish = None
for chunk in client.chat.completions.create(
    model=MODEL,
    messages=MESSAGES,
    max_tokens=6,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
    if chunk.usage is not None:
        usage = chunk.usage
check("".join(pieces).strip() != "", pieces)
check(finish in ("length", "stop"), finish)
check(usage is not None and 0 < usage.completion_tokens <= 6, usage)
# Greedy decoding: the stream says what the whole answer said.
check("".join(pieces) == completion.choices[0].message.content, (pieces, completion))

print("python local ok")
