"""Drives the gateway with the official OpenAI Python SDK, unchanged.

Environment: OPENAI_BASE_URL (the gateway's /v1), OPENAI_API_KEY (any value).
Exits non-zero with a message on the first mismatch; prints "python sdk ok" at the end.
"""

import sys

import openai

client = openai.OpenAI()


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


# Non-streaming.
completion = client.chat.completions.create(
    model="up/gpt-4o-mini",
    messages=[{"role": "user", "content": "Capital of France?"}],
    temperature=0,
    seed=7,
)
check(completion.choices[0].message.content == "Paris is the capital of France.", completion)
check(completion.usage.total_tokens == 32, completion.usage)
check(completion.object == "chat.completion", completion)

# Raw response headers.
raw = client.chat.completions.with_raw_response.create(
    model="up/gpt-4o-mini",
    messages=[{"role": "user", "content": "hi"}],
    extra_headers={"x-request-id": "py-sdk-1"},
)
check(raw.headers.get("x-request-id") == "py-sdk-1", dict(raw.headers))
check(raw.headers.get("x-promptops-provider") == "up/gpt-4o-mini", dict(raw.headers))

# Streaming with usage.
pieces = []
usage = None
for chunk in client.chat.completions.create(
    model="up/gpt-4o-mini",
    messages=[{"role": "user", "content": "Capital of France?"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage is not None:
        usage = chunk.usage
check("".join(pieces) == "Paris is the capital of France.", pieces)
check(usage is not None and usage.completion_tokens == 8, usage)

# The SDK's stream helper and its accumulator.
with client.chat.completions.stream(
    model="up/gpt-4o-mini",
    messages=[{"role": "user", "content": "Capital of France?"}],
) as stream:
    final = stream.get_final_completion()
check(final.choices[0].message.content == "Paris is the capital of France.", final)

tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]

# Tool calls, whole.
completion = client.chat.completions.create(
    model="up/gpt-4o-mini-tools",
    messages=[{"role": "user", "content": "Weather in Paris and Tokyo?"}],
    tools=tools,
    tool_choice="auto",
)
calls = completion.choices[0].message.tool_calls
check(completion.choices[0].finish_reason == "tool_calls", completion)
check([c.function.arguments for c in calls] == ['{"city":"Paris"}', '{"city":"Tokyo"}'], calls)

# Tool calls, streamed through the SDK's accumulator.
with client.chat.completions.stream(
    model="up/gpt-4o-mini-tools",
    messages=[{"role": "user", "content": "Weather in Paris and Tokyo?"}],
    tools=tools,
) as stream:
    final = stream.get_final_completion()
streamed = final.choices[0].message.tool_calls
check([c.id for c in streamed] == [c.id for c in calls], streamed)
check([c.function.parsed_arguments for c in streamed] == [{"city": "Paris"}, {"city": "Tokyo"}], streamed)

# Embeddings (the SDK asks for base64 by default and decodes it).
embeddings = client.embeddings.create(model="up/text-embedding-3-small", input=["a", "b"])
check([d.embedding for d in embeddings.data] == [[0.0, 0.5, -0.25], [1.0, 0.5, -0.25]], embeddings)
floats = client.embeddings.create(
    model="up/text-embedding-3-small", input="a", encoding_format="float"
)
check(floats.data[0].embedding == [0.0, 0.5, -0.25], floats)

# Errors surface as the SDK's typed exceptions.
try:
    client.chat.completions.create(model="nosuch", messages=[{"role": "user", "content": "x"}])
    check(False, "unknown model accepted")
except openai.NotFoundError as error:
    check(error.body["code"] == "model_not_found", error.body)
try:
    client.chat.completions.create(
        model="up/gpt-4o-mini", messages=[{"role": "user", "content": "x"}], temperature=9
    )
    check(False, "temperature 9 accepted")
except openai.BadRequestError as error:
    check(error.body["param"] == "temperature", error.body)

models = [m.id for m in client.models.list()]
check("fallback" in models and "up/gpt-4o-mini" in models, models)

print("python sdk ok")
