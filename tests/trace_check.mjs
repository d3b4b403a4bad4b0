// trace_check.mjs TRACE STDOUT STATS -- a --trace file against what the CLI printed:
//   - the release events' texts concatenate to the CLI's output (without its newline);
//   - draws and rewinds, re-applied, rebuild the continuation, whose token texts (with
//     "hex" where given) concatenate to the same bytes;
//   - one rewind event per rewind of --stats, each with a strategy and a reason, and the
//     end event's counts equal to --stats'.
// Exits 1 with a reason on the first difference.
import { readFileSync } from "node:fs";

const [tracePath, outPath, statsPath] = process.argv.slice(2);
const fail = (msg) => { console.error(`trace_check: ${msg}`); process.exit(1); };
const lines = readFileSync(tracePath, "utf8").split("\n").filter((l) => l.length);
const ev = lines.map((l, i) => { try { return JSON.parse(l); } catch (e) { fail(`line ${i + 1}: ${e.message}`); } });
const out = readFileSync(outPath).toString("utf8").replace(/\n$/, "");
const stats = Object.fromEntries(
  readFileSync(statsPath, "utf8").split("\n").filter((l) => l.startsWith("stats: prompt="))
    .flatMap((l) => l.slice(7).split(" ").map((kv) => kv.split("="))));

if (ev[0]?.ev !== "begin" || ev[0].v !== 1) fail("the first event is not a version-1 begin");
if (ev.at(-1).ev !== "end") fail("the last event is not end");

const released = ev.filter((e) => e.ev === "release").map((e) => e.text).join("");
if (released !== out) fail(`released text differs from the output:\n  ${JSON.stringify(released)}\n  ${JSON.stringify(out)}`);

const cont = [];
for (const e of ev) {
  if (e.ev === "draw") {
    if (e.pos > cont.length) fail(`draw at ${e.pos} beyond the continuation (${cont.length})`);
    cont.length = e.pos;
    cont.push(e);
    const sum = e.top.reduce((s, t) => s + t.p, 0);
    if (!(e.p > 0 && e.p <= 1.000001) || sum > 1.0001) fail(`draw ${e.step}: bad probabilities`);
  } else if (e.ev === "rewind") {
    if (e.pos !== cont.length - e.n) fail(`rewind at step ${e.step}: pos ${e.pos}, n ${e.n}, continuation ${cont.length}`);
    cont.length = e.pos;
  }
}
const bytes = Buffer.concat(cont.map((d) => (d.hex !== undefined ? Buffer.from(d.hex, "hex") : Buffer.from(d.text, "utf8"))));
const rebuilt = new TextDecoder("utf-8").decode(bytes); // replacement characters as the CLI's
if (rebuilt !== out) fail(`rebuilt continuation differs:\n  ${JSON.stringify(rebuilt)}\n  ${JSON.stringify(out)}`);

const rewinds = ev.filter((e) => e.ev === "rewind");
if (String(rewinds.length) !== stats.rewinds) fail(`${rewinds.length} rewind events, --stats says ${stats.rewinds}`);
for (const r of rewinds) if (!r.strategy || !r.reason) fail(`rewind at step ${r.step} without strategy or reason`);
const end = ev.at(-1);
for (const k of ["released", "discarded", "rewinds", "steps"])
  if (String(end[k]) !== stats[k]) fail(`end.${k} = ${end[k]}, --stats says ${stats[k]}`);
if (ev.filter((e) => e.ev === "draw").length !== end.steps) fail("one draw per step expected");
console.log(`trace_check: ${ev.length} events, ${rewinds.length} rewinds, ${cont.length} tokens: ok`);
