// reuse.test.mjs -- prompt reuse in `backtrack serve`, driven by the official OpenAI client:
// a chat client re-sends the whole conversation every turn, and each slot keeps its last
// conversation in its cache. BT_SERVER is the base URL of a server with --parallel 2 and
// the chatml template. Run by tests/test_server.sh with node's own test runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = process.env.BT_SERVER;
const client = new OpenAI({ baseURL, apiKey: 'none', maxRetries: 0, timeout: 60000 });
const MODEL = 'stories260K.gguf';

async function chat(messages, seed, extra = {}) {
  return client.chat.completions.create({ model: MODEL, messages, max_tokens: 24, seed, ...extra });
}

// One turn: the reply, with what the server says it reused; the cold run of the same
// request (cache_prompt: false) must give the same text. Greedy: llama.cpp's logits depend
// on batch shapes by ~1e-3, so a sampled draw could differ on a near tie (README).
async function turn(messages, seed) {
  const warm = await chat(messages, seed, { top_k: 1 });
  const cold = await chat(messages, seed, { top_k: 1, cache_prompt: false });
  assert.equal(warm.choices[0].message.content, cold.choices[0].message.content);
  assert.equal(cold.usage.prompt_tokens_details.cached_tokens, 0);
  assert.equal(warm.backtrack.prompt_reevaluated, 0);
  return warm;
}

function conversation(topic) {
  return [{ role: 'system', content: `You tell short stories about ${topic}.` }];
}

test('three chat turns: the cached prefix grows, the text equals a cold run', async () => {
  // a cold run of turn 1 first, so that the warm one finds another conversation cached
  const msgs = conversation('a red dog');
  let prevPrompt = 0;
  let prevCached = -1;
  let slot;
  for (let t = 0; t < 3; t++) {
    msgs.push({ role: 'user', content: `Tell me part ${t + 1}.` });
    const r = await turn(msgs, 40 + t);
    const cached = r.usage.prompt_tokens_details.cached_tokens;
    if (t > 0) {
      // everything the last turn sent and most of its reply came from the cache
      assert.ok(cached >= prevPrompt - 1, `turn ${t + 1}: cached ${cached} < ${prevPrompt - 1}`);
      assert.ok(cached > prevCached);
      assert.equal(r.backtrack.slot, slot);
      // the evaluated positions: the new part of the prompt plus one per drawn token
      assert.ok(r.backtrack.evaluated_positions <= r.usage.prompt_tokens - cached + r.backtrack.steps);
    }
    slot = r.backtrack.slot;
    prevPrompt = r.usage.prompt_tokens;
    prevCached = cached;
    msgs.push({ role: 'assistant', content: r.choices[0].message.content });
  }
});

test('two interleaved conversations each return to their own slot', async () => {
  const a = conversation('a small cat');
  const b = conversation('a big green frog who lives in a pond');
  const slots = { a: new Set(), b: new Set() };
  const cached = { a: [], b: [] };
  for (let t = 0; t < 3; t++) {
    for (const [name, msgs] of [['a', a], ['b', b]]) {
      msgs.push({ role: 'user', content: `And then, part ${t + 1}?` });
      const r = await chat(msgs, 7 + t);
      slots[name].add(r.backtrack.slot);
      cached[name].push(r.usage.prompt_tokens_details.cached_tokens);
      msgs.push({ role: 'assistant', content: r.choices[0].message.content });
    }
  }
  assert.equal(slots.a.size, 1);
  assert.equal(slots.b.size, 1);
  assert.notEqual([...slots.a][0], [...slots.b][0]);
  for (const name of ['a', 'b']) {
    assert.ok(cached[name][1] > 10 && cached[name][2] > cached[name][1], `${name}: ${cached[name]}`);
  }
});

test('a slot whose stream was cancelled is reused correctly', async () => {
  const msgs = conversation('a brave mouse');
  msgs.push({ role: 'user', content: 'Begin.' });
  const first = await chat(msgs, 5);
  msgs.push({ role: 'assistant', content: first.choices[0].message.content });
  msgs.push({ role: 'user', content: 'Go on, at length.' });
  // a long stream on that slot, dropped after a few chunks
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    { model: MODEL, messages: msgs, max_tokens: 400, seed: 6, stream: true }, { signal: ac.signal });
  let chunks = 0;
  try {
    for await (const _ of stream) { if (++chunks === 3) ac.abort(); }
  } catch (e) {
    assert.ok(ac.signal.aborted, String(e));
  }
  // the server notices at its next token and frees the slot; then the same turn again
  // goes to that slot, whose cache holds the prompt and the start of the dropped reply
  for (let i = 0; i < 100; i++) {
    const h = await (await fetch(baseURL.replace(/\/v1$/, '/health'))).json();
    if (h.slots_busy === 0) break;
    await new Promise((res) => setTimeout(res, 20));
  }
  const r = await turn(msgs, 9);
  assert.equal(r.backtrack.slot, first.backtrack.slot);
  assert.ok(r.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens);
});

test('cache_prompt: false starts cold and leaves nothing behind', async () => {
  const msgs = conversation('a tall tree');
  msgs.push({ role: 'user', content: 'Once more.' });
  const cold = await chat(msgs, 3, { cache_prompt: false });
  assert.equal(cold.usage.prompt_tokens_details.cached_tokens, 0);
  assert.ok(cold.backtrack.evaluated_positions >= cold.usage.prompt_tokens);
  // had the cold request left its conversation in a slot, this one would find it there
  // (it may find the start of the template in another conversation's slot)
  const warm = await chat(msgs, 3);
  assert.ok(warm.usage.prompt_tokens_details.cached_tokens < warm.usage.prompt_tokens / 2);
  // and with the cache on, the next one does
  const again = await chat(msgs, 3);
  assert.equal(again.usage.prompt_tokens_details.cached_tokens, again.usage.prompt_tokens - 1);
});
