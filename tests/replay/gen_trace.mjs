// gen_trace.mjs STEPS [SEED] > TRACE.jsonl -- a synthetic trace in the docs/trace.md format
// (version 1) with exactly STEPS draws, deterministic for a seed: rewinds by two strategies
// (AntiSlop's bans before its rewinds, some reaching further back; CreativeWriting's
// "flat distribution" and its forced argmax), now and then a draw over tokens without a
// rewind, characters split across tokens ("hex"), texts that try to close the page's
// script element, text held back and released token by token the way the sampler does,
// and a final flush of an incomplete character. For the replay page's size and
// responsiveness tests: no model could give 10,000 steps of this in a test's time.
const steps = Number(process.argv[2] || 10000);
let seed = Number(process.argv[3] || 1) >>> 0;
const rand = () => { // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (a) => a[Math.floor(rand() * a.length)];

// the vocabulary: id -> bytes; some characters come in pieces that must follow each other
const words = [" the", " a", " little", " girl", " boy", " named", " Lily", " Tom", " park", " went",
  " to", " play", " with", " her", " his", " friend", " dog", " cat", " ball", " happy", " sad",
  " day", " sun", " tree", " big", " red", " and", " saw", " said", ",", ".", "!", "\n", " \"",
  " </script>", " <!--", " &amp;", " caf", " na", "ve", " tab\tbed"];
const pieces = [[[0xc3], [0xa9]], [[0xe2, 0x80], [0x94]], [[0xf0, 0x9f], [0x99, 0x82]], [[0xc3, 0xaf]]];
const vocab = []; // {id, bytes}
const enc = new TextEncoder();
for (const w of words) vocab.push({ id: 100 + vocab.length, bytes: enc.encode(w) });
const pieceIds = pieces.map((seq) => seq.map((b) => { vocab.push({ id: 100 + vocab.length, bytes: Uint8Array.from(b) }); return vocab.length - 1; }));
const hex = (b) => Buffer.from(b).toString("hex");
const tokJson = (v) => {
  const text = new TextDecoder().decode(v.bytes);
  const exact = Buffer.from(enc.encode(text)).equals(Buffer.from(v.bytes));
  return exact ? { token: v.id, text } : { token: v.id, text, hex: hex(v.bytes) };
};

const out = [];
const emit = (o) => out.push(JSON.stringify(o));
emit({ ev: "begin", step: 0, v: 1, n_prompt: 6, cached: 0, seed: 1, prompt: "Once upon a time", model: "synthetic", strategy: "chain" });

const cont = []; // vocab indices
let step = 0, released = 0, rewinds = 0, discarded = 0, queue = [];
const relDec = new TextDecoder();
const draw = (pos, vi, forced) => {
  step++;
  cont.length = pos;
  cont.push(vi);
  const p = forced ? 1 : 0.05 + rand() * 0.9;
  const top = [{ ...tokJson(vocab[vi]), p }];
  let left = 1 - p;
  for (let k = 0; k < 7 && !forced; k++) {
    const o = Math.floor(rand() * words.length);
    if (o === vi) continue;
    const q = left * rand() * 0.6;
    left -= q;
    top.push({ ...tokJson(vocab[o]), p: q });
  }
  top.sort((x, y) => y.p - x.p);
  emit({ ev: "draw", step, pos, ...tokJson(vocab[vi]), p, top });
};
const releaseTo = (upto, flush) => {
  while (released < upto) {
    let text = relDec.decode(vocab[cont[released]].bytes, { stream: true });
    if (flush && released + 1 === cont.length) text += relDec.decode();
    emit({ ev: "release", step, pos: released, n: 1, text });
    released++;
  }
};
const textOf = (from) => new TextDecoder().decode(Buffer.concat(cont.slice(from).map((v) => vocab[v].bytes)));

while (step < steps) {
  const pos = cont.length;
  if (queue.length) { draw(pos, queue.shift(), false); }
  else if (rand() < 0.02) {
    const vi = Math.floor(rand() * words.length);
    emit({ ev: "force", step, pos, ...tokJson(vocab[vi]), strategy: "creative_writing", reason: "the remembered argmax" });
    draw(pos, vi, true);
  } else if (rand() < 0.04) {
    const seq = pick(pieceIds);
    draw(pos, seq[0], false);
    queue = seq.slice(1);
  } else if (rand() < 0.004 && pos - released > 2) { // a draw over the last tokens, no rewind event
    discarded += 2;
    draw(pos - 2, Math.floor(rand() * words.length), false);
  } else draw(pos, Math.floor(rand() * words.length), false);

  const held = cont.length - released;
  if (held > 0 && rand() < 0.07) {
    const n = 1 + Math.floor(rand() * Math.min(held, 6));
    const at = cont.length - n;
    if (rand() < 0.7) {
      const phrase = textOf(at);
      emit({ ev: "ban", step, pos: at, ...tokJson(vocab[cont[at]]), factor: rand() < 0.8 ? 0 : 0.5, strategy: "antislop", reason: `phrase ${JSON.stringify(phrase.trim())}` });
      emit({ ev: "rewind", step, n, pos: at, strategy: "antislop", reason: `phrase ${JSON.stringify(phrase.trim())}` });
    } else {
      emit({ ev: "rewind", step, n, pos: at, strategy: "creative_writing", reason: "flat distribution" });
    }
    cont.length = at;
    queue = [];
    rewinds++;
    discarded += n;
  }
  if (step === steps) break;
  releaseTo(Math.max(released, cont.length - 8), false); // hold back up to 8 tokens
}
releaseTo(cont.length, true);
emit({ ev: "end", step, stop: "max_new_tokens", released, discarded, rewinds, steps: step, evaluated: step + rewinds });
process.stdout.write(out.join("\n") + "\n");
