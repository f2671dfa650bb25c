// Drives the embedded local model through the gateway with the official OpenAI Node SDK.
// Environment: OPENAI_BASE_URL (the gateway's /v1), OPENAI_API_KEY (any value).
// Generations are a few tokens: the model runs on the CPU. Prints "node local ok" at the end.
import OpenAI from 'openai';

const MODEL = 'local/smollm2-135m';
const MESSAGES = [{ role: 'user', content: 'What is the capital of France?' }];

const client = new OpenAI();

function check(condition, message) {
  if (!condition) {
    console.error('FAILED:', typeof message === 'string' ? message : JSON.stringify(message));
    process.exit(1);
  }
}

// Non-streaming, with the raw response for the routing header.
const { data: completion, response } = await client.chat.completions
  .create({ model: MODEL, messages: MESSAGES, max_tokens: 6, temperature: 0 })
  .withResponse();
check(response.headers.get('x-promptops-provider') === MODEL, [...response.headers]);
check(completion.object === 'chat.completion', completion);
check(completion.choices[0].message.role === 'assistant', completion);
check(completion.choices[0].message.content.trim() !== '', completion);
check(['length', 'stop'].includes(completion.choices[0].finish_reason), completion);
check(completion.usage.completion_tokens > 0 && completion.usage.completion_tokens <= 6, completion.usage);
check(completion.usage.prompt_tokens > 5, completion.usage);

// Streaming with usage.
let text = '';
let usage = null;
let finish = null;
const stream = await client.chat.completions.create({
  model: MODEL,
  messages: MESSAGES,
  max_tokens: 6,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.choices.length > 0 && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
  if (chunk.choices.length > 0 && chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  if (chunk.usage) usage = chunk.usage;
}
check(text.trim() !== '', text);
check(['length', 'stop'].includes(finish), String(finish));
check(usage !== null && usage.completion_tokens > 0 && usage.completion_tokens <= 6, usage);
// Greedy decoding: the stream says what the whole answer said.
check(text === completion.choices[0].message.content, [text, completion]);

console.log('node local ok');
