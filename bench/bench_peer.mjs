// bench_peer.mjs URL LABEL turns -- one OpenAI-compatible server (backtrack serve or
// llama-server), measured the way a chat front-end uses it. Prints a Markdown row.
// A 1,500-token conversation (8 runs, each its own conversation): turn 1 sends the
// history, turn 2 the history, the reply and one new message. Time to first token of each
// turn (streaming, median), and the prompt positions the server says it evaluated in turn
// 2 (backtrack: prompt_tokens - cached_tokens; llama-server: timings.prompt_n).
// The same sampling settings are sent to both servers. (The load half of bench/peer.sh is
// bench/load_client.c: a client in node costs the 2 cores too much.)

const [url, label, mode] = process.argv.slice(2);
const SAMPLING = { temperature: 1, top_k: 40, top_p: 0.95, min_p: 0.05 };

const WORDS = ('the quiet harbour town woke slowly as fishing boats returned with silver ' +
  'catches while gulls circled above old stone walls and children ran along the pier ' +
  'laughing at waves that broke against weathered wooden posts near the market square').split(' ');

// A deterministic history of about `tokens` tokens (Llama 3's tokenizer: about one word a
// token here), as alternating user and assistant messages.
function history(tokens, salt) {
  const msgs = [{ role: 'system', content: `You are a storyteller. Session ${salt}.` }];
  let n = 0, k = salt * 7;
  while (n < tokens) {
    const words = [];
    for (let i = 0; i < 60; i++) words.push(WORDS[(k++ * 13 + i) % WORDS.length]);
    msgs.push({ role: msgs.length % 2 ? 'user' : 'assistant', content: words.join(' ') + '.' });
    n += 64;
  }
  if (msgs[msgs.length - 1].role !== 'user') msgs.push({ role: 'user', content: 'Go on.' });
  return msgs;
}

async function post(body, path = '/v1/chat/completions') {
  const r = await fetch(`${url}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r;
}

// Stream one chat request: time to the first content, the text and the final usage.
async function streamChat(messages, seed, maxTokens) {
  const t0 = performance.now();
  const r = await post({ messages, seed, max_tokens: maxTokens, stream: true,
    stream_options: { include_usage: true }, ...SAMPLING });
  const dec = new TextDecoder();
  let buf = '', ttft = NaN, text = '', last = null, usage = null, timings = null;
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i).trim();
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      const c = j.choices?.[0]?.delta?.content;
      if (c && Number.isNaN(ttft)) ttft = performance.now() - t0;
      if (c) text += c;
      if (j.usage) usage = j.usage;
      if (j.timings) timings = j.timings;
      if (j.backtrack) last = j.backtrack;
    }
  }
  return { ttft, text, usage, timings, extra: last };
}

// median of the numbers of a (NaN, a turn without content, left out; an even count: the
// mean of the two middle ones)
const median = (a) => {
  const s = a.filter((x) => !Number.isNaN(x)).sort((x, y) => x - y);
  if (s.length === 0) return NaN;
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};

if (mode !== 'turns') {
  console.error('usage: node bench/bench_peer.mjs URL LABEL turns');
  process.exit(2);
}
const t1 = [], t2 = [], evaluated = [], prompt2 = [];
for (let run = 0; run < 8; run++) {
  const msgs = history(1500, run + 1);
  const a = await streamChat(msgs, run + 1, 16);
  t1.push(a.ttft);
  msgs.push({ role: 'assistant', content: a.text });
  msgs.push({ role: 'user', content: 'And what happened next?' });
  const b = await streamChat(msgs, run + 100, 16);
  t2.push(b.ttft);
  const pt = b.usage?.prompt_tokens ?? NaN;
  prompt2.push(pt);
  if (b.timings && b.timings.prompt_n !== undefined) evaluated.push(b.timings.prompt_n);
  else evaluated.push(pt - (b.usage?.prompt_tokens_details?.cached_tokens ?? 0));
}
console.log(`| ${label} | ${median(prompt2)} | ${median(t1).toFixed(0)} | ${median(t2).toFixed(0)} | ${median(evaluated)} |`);
