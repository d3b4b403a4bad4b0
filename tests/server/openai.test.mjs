// openai.test.mjs -- `backtrack serve` driven by the official OpenAI client (npm "openai"),
// which nobody here wrote. BT_SERVER is the base URL (http://127.0.0.1:PORT/v1).
// Run by tests/test_server.sh with node's own test runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.BT_SERVER;
const root = baseURL.replace(/\/v1$/, '');
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 60000 });
const MODEL = 'stories260K.gguf';
const FAVOURITES = ['lily', 'little girl', 'park', 'ball'];

async function complete(seed, extra = {}) {
  const r = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 48, seed, ...extra,
  });
  return r.choices[0].text;
}

// A streamed completion: its text, the chunk with the finish reason (`last`, which carries
// the statistics) and, with stream_options.include_usage, the usage chunk after it.
async function streamText(seed, extra = {}, signal) {
  const stream = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 48, seed, stream: true, ...extra,
  }, signal ? { signal } : undefined);
  let text = '';
  let last;
  let usage;
  for await (const chunk of stream) {
    if (chunk.choices.length === 0) { usage = chunk; continue; }
    assert.equal(usage, undefined, 'the usage chunk comes last');
    text += chunk.choices[0].text ?? '';
    last = chunk;
  }
  return { text, last, usage };
}

test('models', async () => {
  const list = await client.models.list();
  assert.ok(list.data.some((m) => m.id === MODEL));
});

test('completion, non-streaming', async () => {
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 32, seed: 7 });
  assert.equal(r.object, 'text_completion');
  assert.ok(r.choices[0].text.length > 20);
  assert.equal(r.usage.completion_tokens, 32);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.backtrack.prompt_reevaluated, 0);
});

test('completion, streaming gives the same text as non-streaming', async () => {
  const whole = await complete(11);
  const { text, last, usage } = await streamText(11, { stream_options: { include_usage: true } });
  assert.equal(text, whole);
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.equal(last.usage, null);
  assert.equal(usage.usage.completion_tokens, 48);
});

test('stream_options.include_usage: a last chunk with no choices and the usage, as OpenAI', async () => {
  const msgs = [{ role: 'user', content: 'A story, please.' }];
  const plain = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 20, seed: 4 });
  for (const include of [true, false, undefined]) {
    const opts = include === undefined ? {} : { stream_options: { include_usage: include } };
    const stream = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 20, seed: 4, stream: true, ...opts });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, plain.choices[0].message.content);
    const fin = chunks.findIndex((c) => c.choices[0]?.finish_reason);
    assert.equal(chunks[fin].choices[0].finish_reason, plain.choices[0].finish_reason);
    assert.equal(chunks[fin].backtrack.stop_reason, plain.backtrack.stop_reason);
    if (include) {
      assert.equal(fin, chunks.length - 2, 'the usage chunk follows the finish reason');
      for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
      const last = chunks[chunks.length - 1];
      assert.deepEqual(last.choices, []);
      for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) assert.equal(last.usage[k], plain.usage[k], k);
      assert.equal(typeof last.usage.prompt_tokens_details.cached_tokens, 'number');
    } else {
      assert.equal(fin, chunks.length - 1);
      for (const c of chunks) assert.ok(!('usage' in c), 'no usage without include_usage');
    }
  }
});

test('content as an array of text parts: the parts joined by a newline', async () => {
  const ask = (content) => client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content }], max_tokens: 24, seed: 9,
  });
  const parts = await ask([{ type: 'text', text: 'A story' }, { type: 'text', text: 'about a cat.' }]);
  const joined = await ask('A story\nabout a cat.');
  assert.equal(parts.choices[0].message.content, joined.choices[0].message.content);
  assert.equal(parts.usage.prompt_tokens, joined.usage.prompt_tokens);
  const other = await ask('A story about a dog.');
  assert.notEqual(other.usage.prompt_tokens + other.choices[0].message.content,
    parts.usage.prompt_tokens + parts.choices[0].message.content);
  await assert.rejects(ask([{ type: 'image_url', image_url: { url: 'http://example.com/a.png' } }]),
    (e) => e.status === 400 && /image_url/.test(e.message));
});

test('max_completion_tokens (what current SDKs send instead of max_tokens)', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'Tell me a long story.' }],
    max_completion_tokens: 5, seed: 2, top_k: 1, logit_bias: { 2: -100 },
  });
  assert.equal(r.usage.completion_tokens, 5);
  assert.equal(r.choices[0].finish_reason, 'length');
  await assert.rejects(client.chat.completions.create({
    model: MODEL, messages: [{ role: 'user', content: 'x' }], max_completion_tokens: 0,
  }), (e) => e.status === 400 && e.error?.param === 'max_completion_tokens');
});

test('CORS: a browser preflight is answered, and answers carry the header', async () => {
  const pre = await fetch(`${baseURL}/chat/completions`, {
    method: 'OPTIONS',
    headers: {
      Origin: 'http://localhost:3000',
      'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'authorization,content-type,x-stainless-os',
    },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  assert.equal(pre.headers.get('access-control-allow-headers'), 'authorization,content-type,x-stainless-os');
  const { response } = await client.chat.completions.create(
    { model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 },
    { headers: { Origin: 'http://localhost:3000' } }).withResponse();
  assert.equal(response.headers.get('access-control-allow-origin'), '*');
});

test('chat, non-streaming and streaming', async () => {
  const msgs = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'A story, please.' }];
  const r = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 24, seed: 3 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  const stream = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 24, seed: 3, stream: true });
  let text = '';
  let role;
  for await (const chunk of stream) {
    role ??= chunk.choices[0].delta.role;
    text += chunk.choices[0].delta.content ?? '';
  }
  assert.equal(role, 'assistant');
  assert.equal(text, r.choices[0].message.content);
});

test('banned strings: the stream never contains them', async () => {
  let rewinds = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const { text, last } = await streamText(seed, { max_tokens: 120, banned_strings: ['Lily', 'little girl', 'park', 'ball'] });
    for (const f of FAVOURITES) assert.ok(!text.toLowerCase().includes(f), `seed ${seed}: "${f}" in ${text}`);
    rewinds += last.backtrack.rewinds;
  }
  assert.ok(rewinds > 0, 'the model never reached for a banned word');
});

test('strategies extension field: replace', async () => {
  const r = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 40, top_k: 1,
    strategies: [{ name: 'replace', find: [' Lily'], replace: ' Zed' }],
  });
  assert.ok(r.choices[0].text.includes('named Zed'), r.choices[0].text);
  assert.ok(!r.choices[0].text.includes('Lily'));
});

test('stop strings cut the text and are never sent', async () => {
  const { text, last } = await streamText(2, { top_k: 1, max_tokens: 60, stop: ['park'] });
  assert.ok(!text.includes('park'));
  assert.equal(last.choices[0].finish_reason, 'stop');
});

test('bad requests are 400 with an OpenAI error', async () => {
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', temperature: -1 }),
    (e) => e.status === 400 && /temperature/.test(e.message));
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', strategies: [{ name: 'nope' }] }),
    (e) => e.status === 400 && /unknown strategy/.test(e.message));
});

// Greedy, with 8 different prompts: batched and solo logits differ in the last bits
// (test_pool.c), so sampled texts could part ways by chance; greedy ones on this model do
// not, and different prompts make a stream that got another's tokens show.
test('8 simultaneous streams: each the text it gives alone', async () => {
  const prompts = ['Once upon a time', 'One day', 'The cat', 'Tom and Sue', 'It was a sunny day',
    'The little dog', 'Mom said', 'In the park'];
  const one = (prompt) => streamText(1, { prompt, max_tokens: 64, top_k: 1 });
  const alone = [];
  for (const p of prompts) alone.push((await one(p)).text);
  assert.ok(new Set(alone).size >= 6, `the prompts should give different texts: ${alone}`);
  const together = await Promise.all(prompts.map(one));
  together.forEach((r, i) => assert.equal(r.text, alone[i], `prompt ${prompts[i]}`));
});

test('a client that disconnects mid-stream frees its slot', async () => {
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: MODEL, prompt: 'Once upon a time', max_tokens: 2000, stream: true, seed: 1 },
    { signal: ac.signal });
  let n = 0;
  try {
    for await (const chunk of stream) { if (++n === 3) ac.abort(); }
  } catch (e) { /* aborted */ }
  const before = (await (await fetch(`${root}/health`)).json()).cancelled;
  let h = { slots_busy: -1 };
  for (let i = 0; i < 250 && h.slots_busy !== 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    h = await (await fetch(`${root}/health`)).json();
  }
  assert.equal(h.slots_busy, 0);
  assert.ok(h.cancelled >= 1, 'the generation was cancelled, not run to its end');
  void before;
  assert.ok((await complete(5)).length > 0);
});

test('a non-streaming client that gives up frees its slot within a step', async () => {
  const metric = async (name) => {
    const text = await (await fetch(`${root}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(name + ' '));
    return Number(line.split(' ')[1]);
  };
  const cancelled = 'backtrack_requests_total{outcome="cancelled"}';
  const before = await metric(cancelled);
  const ac = new AbortController();
  // thousands of tokens, all held back by the strategy: seconds, with no byte sent
  const pending = client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 2000, seed: 1,
    strategies: [{ name: 'antislop', slops: ['zzqx'], keep_index_buffer: 100000 }],
  }, { signal: ac.signal });
  let h = { slots_busy: 0 };
  for (let i = 0; i < 100 && h.slots_busy === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
    h = await (await fetch(`${root}/health`)).json();
  }
  assert.equal(h.slots_busy, 1);
  ac.abort();
  await assert.rejects(pending);
  const t0 = performance.now();
  for (let i = 0; i < 100 && (h.slots_busy !== 0 || (await metric(cancelled)) === before); i++) {
    await new Promise((r) => setTimeout(r, 10));
    h = await (await fetch(`${root}/health`)).json();
  }
  assert.equal(h.slots_busy, 0);
  assert.equal(await metric(cancelled), before + 1);
  assert.ok(performance.now() - t0 < 1000, `freed after ${performance.now() - t0} ms`);
});

test('load: 200 requests from 16 clients', async () => {
  const latencies = [];
  let next = 0;
  let errors = 0;
  const t0 = performance.now();
  async function worker() {
    while (next < 200) {
      const i = next++;
      const t = performance.now();
      try {
        await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 32, seed: i });
        latencies.push(performance.now() - t);
      } catch (e) { errors++; }
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker));
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const p = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1);
  console.log(`# load: 200 requests, 16 clients: ${(200 / secs).toFixed(1)} requests/s, ` +
              `latency p50 ${p(0.5)} ms, p90 ${p(0.9)} ms, p99 ${p(0.99)} ms, errors ${errors}`);
  assert.equal(errors, 0);
  assert.equal(latencies.length, 200);
});
