// logprobs.test.mjs -- logprobs and the trace through the official OpenAI client (npm
// "openai"). BT_SERVER: the base URL (http://127.0.0.1:PORT/v1) of a server started with
// --chat-template chatml; BT_CLI and BT_MODEL: the CLI and its model, whose Debug strategy
// prints the probabilities the logprobs must equal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';

const baseURL = process.env.BT_SERVER;
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 60000 });
const MODEL = 'stories260K.gguf';
const msgs = [{ role: 'user', content: 'Tell me a story about a cat.' }];

function checkEntry(e, nTop) {
  assert.equal(typeof e.token, 'string');
  assert.ok(e.logprob <= 0 && Number.isFinite(e.logprob), `logprob ${e.logprob}`);
  assert.ok(Array.isArray(e.bytes) && e.bytes.every((b) => b >= 0 && b < 256));
  assert.equal(Buffer.from(e.bytes).toString('utf8'), e.token.includes('\ufffd') ? Buffer.from(e.bytes).toString('utf8') : e.token);
  assert.equal(e.top_logprobs.length, nTop);
  for (let i = 1; i < e.top_logprobs.length; i++)
    assert.ok(e.top_logprobs[i - 1].logprob >= e.top_logprobs[i].logprob, 'top_logprobs sorted');
  // the drawn token is among its alternatives with the same logprob, unless it was not
  // among the most probable nTop
  if (nTop === 0) return;
  const self = e.top_logprobs.find((t) => t.token === e.token);
  if (self) assert.ok(Math.abs(self.logprob - e.logprob) < 1e-6);
  else assert.ok(e.logprob <= e.top_logprobs.at(-1).logprob + 1e-6);
}

test('chat logprobs: shape, one entry per token, the text they spell', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, messages: msgs, max_tokens: 30, seed: 5, logprobs: true, top_logprobs: 3,
  });
  const c = r.choices[0];
  assert.ok(c.logprobs && Array.isArray(c.logprobs.content));
  assert.equal(c.logprobs.refusal, null);
  const content = c.logprobs.content;
  // every released token but an end token has an entry
  assert.ok(content.length === r.usage.completion_tokens || content.length === r.usage.completion_tokens - 1);
  for (const e of content) checkEntry(e, 3);
  assert.equal(Buffer.concat(content.map((e) => Buffer.from(e.bytes))).toString('utf8'), c.message.content);
});

test('chat logprobs without top_logprobs; none when not asked; errors', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8, seed: 5, logprobs: true });
  for (const e of r.choices[0].logprobs.content) checkEntry(e, 0);
  const plain = await client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 8, seed: 5 });
  assert.equal(plain.choices[0].logprobs, null);
  assert.equal(plain.choices[0].message.content, r.choices[0].message.content); // observing changes nothing
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 4, top_logprobs: 2 }),
    (err) => err.status === 400 && /top_logprobs.*needs "logprobs": true/.test(err.message));
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: msgs, max_tokens: 4, logprobs: true, top_logprobs: 21 }),
    (err) => err.status === 400 && /top_logprobs/.test(err.message));
});

test('streamed chat logprobs equal the non-streamed ones, chunk by chunk with their text', async () => {
  const args = { model: MODEL, messages: msgs, max_tokens: 40, seed: 9, logprobs: true, top_logprobs: 2 };
  const whole = await client.chat.completions.create(args);
  const stream = await client.chat.completions.create({ ...args, stream: true });
  const entries = [];
  let text = '';
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (!c) continue;
    const got = c.logprobs?.content ?? [];
    entries.push(...got);
    text += c.delta?.content ?? '';
    // the entries of a chunk never run ahead of the text sent so far
    const spelled = Buffer.concat(entries.map((e) => Buffer.from(e.bytes))).toString('utf8');
    assert.ok(text.startsWith(spelled.replace(/\ufffd+$/, '')), `${JSON.stringify(spelled)} ahead of ${JSON.stringify(text)}`);
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.deepEqual(entries, whole.choices[0].logprobs.content);
});

test('completion logprobs equal the probabilities the CLI\'s Debug strategy prints', async () => {
  const seed = 3, n = 30;
  // cache_prompt false: the prompt is evaluated whole, as the CLI does (a reused slot would
  // evaluate its last token alone, with logits equal only to the last bits, and this
  // sampled text could then part from the CLI's)
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: n, seed, logprobs: 2, cache_prompt: false });
  const lp = r.choices[0].logprobs;
  assert.equal(lp.tokens.length, n);
  assert.equal(lp.tokens.join(''), r.choices[0].text);
  assert.deepEqual(lp.text_offset, lp.tokens.map((_, i) => Buffer.byteLength(lp.tokens.slice(0, i).join(''))));
  // the same generation in the CLI with Debug: before each pick, the two most probable
  // tokens and their probabilities ("[debug] step N: 'a' 0.9688 | 'b' 0.0288")
  const cli = spawnSync(process.env.BT_CLI, ['-m', process.env.BT_MODEL, '-p', 'Once upon a time',
    '-n', String(n), '--seed', String(seed), '-s', 'debug'], { encoding: 'utf8' });
  assert.equal(cli.status, 0);
  assert.equal(cli.stdout, r.choices[0].text + '\n'); // the same generation
  const out = cli.stderr; // Debug's lines go to the log (stderr)
  const lines = [...out.matchAll(/\[debug\] step (\d+): '((?:[^'\\]|\\.)*)' ([0-9.]+) \| '((?:[^'\\]|\\.)*)' ([0-9.]+)/g)];
  assert.ok(lines.length >= n, `only ${lines.length} debug lines`);
  let compared = 0;
  for (let i = 0; i < n; i++) {
    const [, , tok1, p1] = lines[i];
    const top = Object.entries(lp.top_logprobs[i]).sort((a, b) => b[1] - a[1]);
    assert.equal(top[0][0], tok1.replace(/\\n/g, '\n'), `step ${i}: the most probable token`);
    assert.ok(Math.abs(Math.exp(top[0][1]) - Number(p1)) < 6e-5, `step ${i}: p ${Math.exp(top[0][1])} vs ${p1}`);
    if (lp.tokens[i] === top[0][0]) { // the greedy pick: its own logprob is log p1
      assert.ok(Math.abs(Math.exp(lp.token_logprobs[i]) - Number(p1)) < 6e-5);
      compared++;
    }
  }
  assert.ok(compared > n / 2, `${compared} greedy picks compared`);
  // more alternatives than OpenAI's 5 (SillyTavern asks for 10), at most 20
  const ten = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 3, seed, logprobs: 10 });
  assert.equal(Object.keys(ten.choices[0].logprobs.top_logprobs[0]).length, 10);
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 3, logprobs: 21 }),
    (err) => err.status === 400 && /logprobs/.test(err.message));
});

test('"backtrack": {"trace": true}: the events of the generation, streamed too', async () => {
  const args = { model: MODEL, prompt: 'Once upon a time', max_tokens: 60, seed: 3,
    strategies: [{ name: 'antislop', slops: ['Lily', 'park'] }], backtrack: { trace: true } };
  const r = await client.completions.create(args);
  const ev = r.backtrack.trace;
  assert.equal(ev[0].ev, 'begin');
  assert.equal(ev.at(-1).ev, 'end');
  assert.equal(ev.filter((e) => e.ev === 'release').map((e) => e.text).join(''), r.choices[0].text);
  assert.equal(ev.filter((e) => e.ev === 'rewind').length, r.backtrack.rewinds);
  assert.ok(r.backtrack.rewinds > 0, 'the generation rewinds');
  assert.ok(ev.some((e) => e.ev === 'rewind' && e.strategy === 'antislop' && /phrase/.test(e.reason)));
  const stream = await client.completions.create({ ...args, stream: true });
  const streamed = [];
  for await (const chunk of stream) streamed.push(...(chunk.backtrack?.trace ?? []));
  assert.deepEqual(streamed, ev);
  await assert.rejects(client.completions.create({ ...args, backtrack: { trace: true, what: 1 } }),
    (err) => err.status === 400 && /unknown field 'what' in 'backtrack'/.test(err.message));
});
