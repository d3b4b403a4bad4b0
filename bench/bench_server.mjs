// bench_server.mjs URL REQUESTS CONCURRENCY MAX_TOKENS LABEL
// Sends REQUESTS completions from CONCURRENCY clients to a running `backtrack serve` and
// prints one Markdown row: requests/s, generated tokens/s, latency percentiles, errors.
const [url, nReq, conc, maxTok, label] = process.argv.slice(2);
const N = Number(nReq), C = Number(conc), T = Number(maxTok);
let next = 0, errors = 0, tokens = 0;
const lat = [];
async function worker() {
  while (next < N) {
    const i = next++;
    const t = performance.now();
    try {
      const r = await fetch(`${url}/v1/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: T, seed: i + 1, temperature: 1 }),
      });
      const j = await r.json();
      if (!r.ok) { errors++; continue; }
      tokens += j.usage.completion_tokens;
      lat.push(performance.now() - t);
    } catch (e) { errors++; }
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, worker));
const secs = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const p = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] : NaN).toFixed(0);
console.log(`| ${label} | ${N} | ${C} | ${T} | ${(N / secs).toFixed(2)} | ${(tokens / secs).toFixed(1)} | ${p(0.5)} | ${p(0.9)} | ${p(0.99)} | ${errors} |`);
