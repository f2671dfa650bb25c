// Drives the gateway with the official OpenAI Node SDK, unchanged.
// Environment: OPENAI_BASE_URL (the gateway's /v1), OPENAI_API_KEY (any value).
// Exits non-zero on the first mismatch; prints "node sdk ok" at the end.
import OpenAI from 'openai';

const client = new OpenAI();

function check(condition, message) {
  if (!condition) {
    console.error('FAILED:', typeof message === 'string' ? message : JSON.stringify(message));
    process.exit(1);
  }
}

const user = (content) => [{ role: 'user', content }];

const completion = await client.chat.completions.create({
  model: 'up/gpt-4o-mini',
  messages: user('Capital of France?'),
  temperature: 0,
  seed: 7,
});
check(completion.choices[0].message.content === 'Paris is the capital of France.', completion);
check(completion.usage.total_tokens === 32, completion.usage);

let text = '';
let usage = null;
const stream = await client.chat.completions.create({
  model: 'up/gpt-4o-mini',
  messages: user('Capital of France?'),
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.choices.length && chunk.choices[0].delta.content) text += chunk.choices[0].delta.content;
  if (chunk.usage) usage = chunk.usage;
}
check(text === 'Paris is the capital of France.', text);
check(usage && usage.completion_tokens === 8, usage);

const helper = client.chat.completions.stream({
  model: 'up/gpt-4o-mini',
  messages: user('Capital of France?'),
});
const final = await helper.finalChatCompletion();
check(final.choices[0].message.content === 'Paris is the capital of France.', final);

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];
const whole = await client.chat.completions.create({
  model: 'up/gpt-4o-mini-tools',
  messages: user('Weather in Paris and Tokyo?'),
  tools,
  tool_choice: 'auto',
});
const calls = whole.choices[0].message.tool_calls;
check(whole.choices[0].finish_reason === 'tool_calls', whole);
check(calls.map((c) => c.function.arguments).join('|') === '{"city":"Paris"}|{"city":"Tokyo"}', calls);

const toolStream = client.chat.completions.stream({
  model: 'up/gpt-4o-mini-tools',
  messages: user('Weather in Paris and Tokyo?'),
  tools,
});
const toolFinal = await toolStream.finalChatCompletion();
const streamed = toolFinal.choices[0].message.tool_calls;
check(streamed.map((c) => c.id).join('|') === calls.map((c) => c.id).join('|'), streamed);
check(streamed.map((c) => c.function.arguments).join('|') === '{"city":"Paris"}|{"city":"Tokyo"}', streamed);

const embeddings = await client.embeddings.create({ model: 'up/text-embedding-3-small', input: ['a', 'b'] });
check(JSON.stringify(embeddings.data.map((d) => Array.from(d.embedding))) === '[[0,0.5,-0.25],[1,0.5,-0.25]]', embeddings);
const floats = await client.embeddings.create({ model: 'up/text-embedding-3-small', input: 'a', encoding_format: 'float' });
check(JSON.stringify(floats.data[0].embedding) === '[0,0.5,-0.25]', floats);

try {
  await client.chat.completions.create({ model: 'nosuch', messages: user('x') });
  check(false, 'unknown model accepted');
} catch (error) {
  check(error instanceof OpenAI.NotFoundError, String(error));
  check(error.code === 'model_not_found', error.error);
}

console.log('node sdk ok');
