// replay.test.mjs -- `backtrack replay` and the page it writes, in a real browser: Debian's
// headless Chromium driven by puppeteer-core (no browser download). Run by
// tests/test_replay.sh with BT_BIN (the backtrack binary), BT_MODEL (stories260K.gguf),
// BT_OUT (a folder for the pages, screenshots and timings) and CHROMIUM set.
//
// What the page shows is checked against what this file rebuilds on its own from the
// JSON Lines trace (docs/trace.md), not against the page's own arithmetic.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import puppeteer from "puppeteer-core";
import { toPalette } from "./png8.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.BT_BIN;
const MODEL = process.env.BT_MODEL;
const OUT = process.env.BT_OUT || join(here, "out");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(OUT, { recursive: true });
assert.ok(BIN && existsSync(BIN), "BT_BIN must name the backtrack binary");

/* ==== The trace, rebuilt here ==== */
const readTrace = (path) => readFileSync(path, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const bytesOf = (t) => (t.hex !== undefined ? Buffer.from(t.hex, "hex") : Buffer.from(t.text, "utf8"));
const decode = (toks) => new TextDecoder().decode(Buffer.concat(toks.map(bytesOf)));
const releasedText = (evs) => evs.filter((e) => e.ev === "release").map((e) => e.text).join("");
const steps = (evs) => evs.at(-1).step;

/* The state after step k: the released text; the held text (continuation tokens not yet
 * released); the text step k removed (rewinds, or a draw over tokens). */
function stateAt(evs, k) {
  const cont = [], gone = [];
  let released = "", relTok = 0;
  for (const e of evs) {
    if (e.step > k) break;
    if (e.ev === "draw") {
      if (e.pos < cont.length && e.step === k) gone.push(decode(cont.slice(e.pos)));
      cont.length = e.pos;
      cont.push(e);
    } else if (e.ev === "rewind") {
      if (e.step === k) gone.push(decode(cont.slice(e.pos)));
      cont.length = e.pos;
    } else if (e.ev === "release") {
      released += e.text;
      relTok = e.pos + e.n;
    }
  }
  return { released, held: decode(cont.slice(relTok)), gone: gone.join("") };
}
/* How many times tokens were removed: rewind events, and draws over existing tokens. */
function removals(evs) {
  let len = 0, n = 0;
  for (const e of evs) {
    if (e.ev === "draw") { if (e.pos < len) n++; len = e.pos + 1; }
    else if (e.ev === "rewind") { n++; len = e.pos; }
  }
  return n;
}

/* ==== The command ==== */
function replay(trace, page, extra = []) {
  const r = spawnSync(BIN, ["replay", trace, "-o", page, ...extra], { encoding: "utf8", timeout: 60000 });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}
function render(trace, name) {
  const page = join(OUT, name);
  const r = replay(trace, page);
  assert.equal(r.status, 0, `backtrack replay ${trace}: ${r.stderr}`);
  return page;
}

/* ==== The browser ==== */
let browser;
before(async () => {
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"],
  });
});
after(async () => { if (browser) await browser.close(); });

/* Open a page; `problems` collects console errors and warnings, script errors, dialogs
 * (a script that escaped the data would alert) and every request but the page itself. */
async function open(file, hash = "") {
  const page = await browser.newPage();
  const problems = [];
  const url = pathToFileURL(file).href;
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warn") problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", async (d) => { problems.push(`dialog: ${d.message()}`); await d.dismiss(); });
  page.on("request", (r) => { if (r.url() !== url + hash && !r.url().startsWith("data:")) problems.push(`request: ${r.url()}`); });
  await page.setViewport({ width: 1000, height: 800 });
  const t = Date.now();
  await page.goto(url + hash, { waitUntil: "load", timeout: 120000 });
  await page.waitForSelector("html[data-ready]", { timeout: 120000 });
  return { page, problems, loadMs: Date.now() - t };
}

/* What the player shows now. */
const liveState = (page) => page.evaluate(() => {
  const live = document.getElementById("live"), held = live.querySelector(".held").cloneNode(true);
  const gone = [...held.querySelectorAll(".gone")].map((e) => e.textContent).join("");
  held.querySelectorAll(".gone").forEach((e) => e.remove());
  return {
    step: +document.getElementById("slider").value,
    hidden: +(live.querySelector(".cut").dataset.hidden || 0),
    released: live.querySelector(".rel").textContent, held: held.textContent, gone,
  };
});
/* The final text: what is left of #out without the rewound attempts and unreleased text. */
const finalView = (page) => page.evaluate(() => {
  const out = document.getElementById("out").cloneNode(true);
  const marks = out.querySelectorAll(".rw").length, rewinds = out.querySelectorAll('.rw[data-kind="rewind"]').length;
  const attempts = [...out.querySelectorAll(".rw")].map((e) => e.textContent);
  const titles = [...out.querySelectorAll(".rw")].map((e) => e.title);
  out.querySelectorAll(".rw, .unrel").forEach((e) => e.remove());
  return { text: out.textContent, marks, rewinds, attempts, titles, prompt: document.querySelector("#final .prompt").textContent };
});
function sameState(dom, want, what) {
  assert.equal(dom.hidden + dom.released.length, want.released.length, `${what}: released length`);
  assert.equal(dom.released, want.released.slice(dom.hidden), `${what}: released text`);
  assert.equal(dom.held, want.held, `${what}: held text`);
  assert.equal(dom.gone, want.gone, `${what}: rewound text`);
}
const slideTo = (page, s) => page.evaluate((s) => {
  const sl = document.getElementById("slider");
  sl.value = s;
  sl.dispatchEvent(new Event("input", { bubbles: true }));
}, s);

/* ==== Bad traces ==== */
test("bad traces and bad usage: a clear error, a non-zero exit, no page", () => {
  const dir = join(OUT, "bad");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const begin = '{"ev":"begin","step":0,"v":1,"n_prompt":1,"cached":0,"seed":1,"strategy":""}';
  const draw = (step, pos, extra = "") => `{"ev":"draw","step":${step},"pos":${pos},"token":5,"text":"a","p":0.5,"top":[]${extra}}`;
  const end = (step) => `{"ev":"end","step":${step},"stop":"eog","released":0,"discarded":0,"rewinds":0,"steps":${step},"evaluated":1}`;
  const cases = [
    ["empty", "", /the trace is empty/],
    ["blank lines only", "\n  \n", /the trace is empty/],
    ["not JSON", '{"ev":"begin",', /line 1: malformed JSON/],
    ["garbage bytes", "\x00\xff\xfe{{{", /line 1: malformed JSON/],
    ["two values on a line", `${begin} {}`, /line 1: more than one JSON value/],
    ["an array", "[1,2]", /line 1: an event must be a JSON object/],
    ["unknown version", begin.replace('"v":1', '"v":2'), /line 1: unknown trace version 2/],
    ["version missing", begin.replace('"v":1,', ""), /line 1: 'begin' event: missing field 'v'/],
    ["first is not begin", draw(1, 0), /line 1: the first event must be 'begin'/],
    ["missing field", [begin, '{"ev":"draw","step":1,"token":5,"text":"a","p":0.5,"top":[]}'].join("\n"), /line 2: 'draw' event: missing field 'pos'/],
    ["wrong type", [begin, draw(1, 0).replace('"p":0.5', '"p":"high"')].join("\n"), /line 2: 'draw' event: 'p' must be a number/],
    ["bad top entry", [begin, draw(1, 0).replace('"top":[]', '"top":[{"token":1,"text":"b"}]')].join("\n"), /line 2: 'draw' event, top\[0\]: missing field 'p'/],
    ["unknown event", [begin, '{"ev":"teleport","step":0}'].join("\n"), /line 2: unknown event type 'teleport'/],
    // found by fuzz_replay: the type's own line break made the message two lines
    ["event type with a line break", [begin, '{"ev":"tele\\nport\\u00e9","step":0}'].join("\n"), /line 2: unknown event type 'tele\?port\?\?'/],
    ["long event type", [begin, `{"ev":"${"x".repeat(100)}","step":0}`].join("\n"), /line 2: unknown event type 'x{20}\.\.\.'/],
    ["steps out of order", [begin, draw(2, 0)].join("\n"), /line 2: 'draw' event: 'step' is 2, but 0 draws came before/],
    ["draw past the end", [begin, draw(1, 3)].join("\n"), /line 2: draw at pos 3, but the continuation is only 0 tokens long/],
    ["rewind too far", [begin, draw(1, 0), '{"ev":"rewind","step":1,"n":5,"pos":0,"strategy":"x","reason":""}'].join("\n"), /line 3: rewind of 5 tokens to pos 0, but the continuation is 1 tokens long/],
    ["release out of order", [begin, draw(1, 0), '{"ev":"release","step":1,"pos":1,"n":0,"text":""}'].join("\n"), /line 3: release from pos 1, but 0 tokens were released before/],
    ["rewind of released text", [begin, draw(1, 0), '{"ev":"release","step":1,"pos":0,"n":1,"text":"a"}', '{"ev":"rewind","step":1,"n":1,"pos":0,"strategy":"x","reason":""}'].join("\n"), /line 4: rewind to pos 0 undoes released text/],
    ["bad hex", [begin, draw(1, 0, ',"hex":"C3"')].join("\n"), /line 2: 'draw' event: 'hex' must be lowercase hexadecimal/],
    ["odd hex", [begin, draw(1, 0, ',"hex":"c"')].join("\n"), /line 2: 'draw' event: 'hex' must have an even number of digits/],
    ["invalid UTF-8", [begin, draw(1, 0).replace('"text":"a"', '"text":"\xc3("')].join("\n"), /line 2: 'draw' event: 'text' is not valid UTF-8/],
    ["unknown stop", [begin, end(0).replace('"eog"', '"bored"')].join("\n"), /line 2: 'end' event: unknown 'stop'/],
    ["cut short", [begin, draw(1, 0)].join("\n"), /the trace ends at line 2 without an 'end' event/],
    ["after the end", [begin, end(0), begin].join("\n"), /line 3: an event after 'end'/],
    ["a second begin", [begin, begin].join("\n"), /line 2: a second 'begin' event/],
    ["huge number", [begin, draw(1, 0).replace('"pos":0', '"pos":1e300')].join("\n"), /line 2: 'draw' event: 'pos' must be an integer/],
  ];
  for (const [name, text, want] of cases) {
    const trace = join(dir, name.replace(/ /g, "_") + ".jsonl"), page = trace.replace(/jsonl$/, "html");
    writeFileSync(trace, Buffer.from(text, "latin1"));
    const r = replay(trace, page);
    assert.equal(r.status, 1, `${name}: exit ${r.status} (${r.stderr})`);
    assert.match(r.stderr, want, `${name}`);
    assert.match(r.stderr, new RegExp("^backtrack: error: replay: " + trace.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + ": "), `${name}: names the file`);
    assert.equal(r.stderr.trim().split("\n").length, 1, `${name}: one line`);
    assert.ok(!existsSync(page), `${name}: no page written`);
  }
  // a good trace, the cases' own begin and end: accepted (the cases fail for their reason)
  writeFileSync(join(dir, "ok.jsonl"), [begin, draw(1, 0), end(1)].join("\n") + "\n");
  assert.equal(replay(join(dir, "ok.jsonl"), join(dir, "ok.html")).status, 0);
  // usage
  const run = (args) => spawnSync(BIN, ["replay", ...args], { encoding: "utf8" });
  let r = run([join(dir, "ok.jsonl")]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no page given \(-o PAGE.html\)/);
  r = run(["-o", join(dir, "x.html")]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no trace given/);
  r = run([join(dir, "ok.jsonl"), "-o", join(dir, "x.html"), "--colour"]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown option '--colour'/);
  r = run(["--help"]);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /usage: backtrack replay TRACE.jsonl -o PAGE.html/);
  r = run([join(dir, "nonexistent.jsonl"), "-o", join(dir, "x.html")]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot open '.*nonexistent.jsonl': No such file/);
  r = run([join(dir, "ok.jsonl"), "-o", join(dir, "no/such/dir/x.html")]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot write '.*x.html'/);
  r = spawnSync(BIN, ["replay", "-", "-o", "-"], { input: [begin, draw(1, 0), end(1)].join("\n"), encoding: "utf8" });
  assert.equal(r.status, 0, "stdin to stdout");
  assert.match(r.stdout, /^<!DOCTYPE html>/);
});

/* ==== A hand-written trace: every kind of event ==== */
test("hand-written trace: marks, final text, </script> inside, hover, stepping", async (t) => {
  const trace = join(here, "small.jsonl"), evs = readTrace(trace);
  const file = render(trace, "small.html");
  // the data element: its text up to the first </script> is the whole trace, still JSON
  const data = readFileSync(file, "utf8").split('<script type="application/json" id="trace">')[1].split("</script>")[0];
  assert.ok(!data.includes("</"), "no </ inside the data");
  assert.ok(JSON.parse(data).toks.some((x) => x[1] === " </script><script>alert(1)</script>"), "the data holds the text");
  const { page, problems } = await open(file);
  try {
    const f = await finalView(page);
    assert.equal(f.rewinds, evs.filter((e) => e.ev === "rewind").length, "one mark per rewind");
    assert.equal(f.marks, removals(evs), "one mark per removal");
    assert.equal(f.text, releasedText(evs), "the final text is the released text");
    assert.equal(f.prompt, evs[0].prompt, "the prompt, </script> and all");
    assert.ok(f.attempts.some((a) => a.includes(" </script><script>alert(1)</script>")), "the rewound </script> text shows as text");
    assert.ok(f.attempts.some((a) => a.includes(' <!-- tags --> & "quotes"')), "the drawn-over text shows as text");
    assert.ok(f.titles.some((x) => x.startsWith('antislop: phrase "Lily"')), "the reason on the mark");
    assert.ok(f.titles.some((x) => x.startsWith("creative_writing: flat distribution")));
    // the split character: one span for its two tokens
    assert.equal(await page.$eval('#out [data-i="12,13"]', (e) => e.textContent), "é");
    // hover a rewound token: its alternatives and why it was undone
    await page.hover("#out .rw [data-i]");
    const tip = await page.$eval("#tip", (e) => ({ hidden: e.hidden, text: e.textContent }));
    assert.equal(tip.hidden, false);
    assert.match(tip.text, /rewound at step 10 by antislop: phrase "named Lily"/);
    assert.match(tip.text, /90\.0%/);
    // a banned token shows in the alternatives of the draw it applied to (step 9: " Li")
    await page.hover('#out [data-i="8"]');
    assert.match(await page.$eval("#tip", (e) => e.textContent), /“ L”banned by antislop: phrase "Lily"/);
    await page.screenshot({ path: join(OUT, "small.png"), fullPage: true });

    // the controls: start, forward one by one, back
    await page.click("#first");
    sameState(await liveState(page), stateAt(evs, 0), "step 0");
    for (let i = 0; i < 8; i++) await page.click("#fwd");
    const at8 = await liveState(page);
    assert.equal(at8.step, 8);
    sameState(at8, stateAt(evs, 8), "step 8");
    assert.equal(at8.gone, " Lily", "the rewound tokens struck at the step that undid them");
    await page.click("#back");
    sameState(await liveState(page), stateAt(evs, 7), "step 7");
    // every step through the slider
    for (let s = 0; s <= steps(evs); s++) {
      await slideTo(page, s);
      sameState(await liveState(page), stateAt(evs, s), `step ${s}`);
    }
    await page.click("#last");
    assert.equal((await liveState(page)).step, steps(evs));
    // play from the start: the steps go by, then it stops at the end by itself
    await page.select("#speed", "50");
    await page.click("#play");
    await page.waitForFunction(() => replay.playing && replay.step >= 5, { timeout: 20000 });
    await page.waitForFunction(() => !replay.playing, { timeout: 20000 });
    const end = await liveState(page);
    assert.equal(end.step, steps(evs));
    sameState(end, stateAt(evs, steps(evs)), "after playing");
    // the keyboard: Home, then the right arrow
    await page.keyboard.press("Home");
    await page.keyboard.press("ArrowRight");
    assert.equal((await liveState(page)).step, 1);
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
  t.diagnostic(`small.jsonl: ${steps(evs)} steps, ${removals(evs)} marks`);
});

/* ==== Edge cases: nothing drawn, everything undone ==== */
test("edge traces: no draw at all; every token undone, nothing released", async () => {
  const begin = '{"ev":"begin","step":0,"v":1,"n_prompt":1,"cached":0,"seed":18446744073709551615,"strategy":"x"}';
  const traces = {
    empty: [begin, '{"ev":"end","step":0,"stop":"eog","released":0,"discarded":0,"rewinds":0,"steps":0,"evaluated":1}'],
    undone: [begin,
      '{"ev":"draw","step":1,"pos":0,"token":1,"text":"a","p":1,"top":[]}',
      '{"ev":"draw","step":2,"pos":1,"token":2,"text":"\\ufffd","hex":"e2","p":1,"top":[]}',
      '{"ev":"rewind","step":2,"n":2,"pos":0,"strategy":"x","reason":""}',
      '{"ev":"end","step":2,"stop":"step_cap","released":0,"discarded":2,"rewinds":1,"steps":2,"evaluated":3}'],
  };
  for (const [name, lines] of Object.entries(traces)) {
    const trace = join(OUT, `edge-${name}.jsonl`);
    writeFileSync(trace, lines.join("\n") + "\n");
    const evs = readTrace(trace);
    const { page, problems } = await open(render(trace, `edge-${name}.html`));
    try {
      const f = await finalView(page);
      assert.equal(f.text, "", name);
      assert.equal(f.prompt, "", `${name}: no prompt in the trace`);
      // a random seed uses all 64 bits: shown as written, not rounded to a double
      assert.match(await page.$eval("#meta", (e) => e.textContent), /seed 18446744073709551615 ·/, name);
      assert.equal(f.rewinds, evs.filter((e) => e.ev === "rewind").length, name);
      for (let s = 0; s <= steps(evs); s++) {
        await slideTo(page, s);
        sameState(await liveState(page), stateAt(evs, s), `${name} step ${s}`);
      }
      assert.deepEqual(problems, [], name);
    } finally {
      await page.close();
    }
  }
});

/* ==== A real generation: AntiSlop banning words on stories260K ==== */
test("a real generation: the page's text is the CLI's output, one mark per rewind", { skip: !MODEL && "BT_MODEL not set" }, async (t) => {
  const trace = join(OUT, "real.jsonl");
  const args = ["-m", MODEL, "-p", "Once upon a time", "-s", "antislop", "--slop", "Lily", "--slop", "park",
    "--seed", "3", "-n", "120", "--trace", trace];
  const gen = spawnSync(BIN, args, { encoding: "utf8", timeout: 120000 });
  assert.equal(gen.status, 0, gen.stderr);
  const evs = readTrace(trace);
  const nRewinds = evs.filter((e) => e.ev === "rewind").length;
  assert.ok(nRewinds >= 1, "this generation rewinds");
  const { page, problems } = await open(render(trace, "real.html"));
  try {
    const f = await finalView(page);
    assert.equal(f.text, gen.stdout.replace(/\n$/, ""), "the page's final text is what the CLI printed");
    assert.equal(f.rewinds, nRewinds);
    assert.equal(f.marks, removals(evs));
    for (const a of f.attempts) assert.match(a, /Lily|park/, "each attempt holds a banned word");
    for (let s = 0; s <= steps(evs); s += 7) {
      await slideTo(page, s);
      sameState(await liveState(page), stateAt(evs, s), `step ${s}`);
    }
    assert.deepEqual(problems, []);
  } finally {
    await page.close();
  }
  t.diagnostic(`real: ${steps(evs)} steps, ${nRewinds} rewinds`);
});

/* ==== The README's picture ==== */
test("screenshot for the README (docs/replay.png)", { skip: !MODEL && "BT_MODEL not set" }, async (t) => {
  const trace = join(OUT, "shot.jsonl");
  const gen = spawnSync(BIN, ["-m", MODEL, "-p", "Once upon a time", "-s", "antislop", "--slop", "Lily", "--slop", "Mia",
    "--slop", "saw", "--slop", "day", "--seed", "3", "-n", "80", "--trace", trace], { encoding: "utf8", timeout: 120000 });
  assert.equal(gen.status, 0, gen.stderr);
  const evs = readTrace(trace);
  // at the step of the first rewind: the player shows the undone text struck
  const first = evs.find((e) => e.ev === "rewind");
  assert.ok(first, "the picture's generation rewinds");
  const { page, problems } = await open(render(trace, "shot.html"), `#step=${first.step}`);
  try {
    await page.setViewport({ width: 760, height: 660 });
    const live = await liveState(page);
    assert.equal(live.step, first.step, "#step= opens the page at that step");
    sameState(live, stateAt(evs, first.step), "the opening step");
    const png = join(OUT, "replay.png");
    const shot = Buffer.from(await page.screenshot({ clip: { x: 0, y: 0, width: 760, height: 660 } }));
    writeFileSync(png, toPalette(shot));
    const size = readFileSync(png).length;
    assert.ok(size > 5000 && size < 80000, `a small picture (${size} bytes, ${shot.length} before the palette)`);
    assert.deepEqual(problems, []);
    // the browser reads the palette PNG back at its size
    const img = await browser.newPage();
    await img.goto(pathToFileURL(png).href);
    assert.deepEqual(await img.evaluate(() => [document.images[0].naturalWidth, document.images[0].naturalHeight]), [760, 660]);
    await img.close();
    t.diagnostic(`${png}: ${size} bytes (copy it to docs/replay.png: see README)`);
  } finally {
    await page.close();
  }
});

/* ==== 10,000 steps: still responsive ==== */
test("10,000 steps: the page stays responsive", async (t) => {
  const trace = join(OUT, "big.jsonl");
  const g = spawnSync(process.execPath, [join(here, "gen_trace.mjs"), "10000", "7"], { maxBuffer: 64 << 20 });
  assert.equal(g.status, 0);
  writeFileSync(trace, g.stdout);
  const evs = readTrace(trace);
  assert.equal(steps(evs), 10000);
  let ms = Date.now();
  const file = render(trace, "big.html");
  const renderMs = Date.now() - ms;
  const { page, problems, loadMs } = await open(file);
  try {
    const timings = await page.evaluate(() => replay.timings);
    // jumps across the slider: each one's time, the DOM updated and laid out
    const jumps = await page.evaluate(() => {
      const sl = document.getElementById("slider"), ts = [];
      let x = 12345;
      for (let i = 0; i < 200; i++) {
        x = (x * 1103515245 + 12345) % 2147483648;
        const t0 = performance.now();
        sl.value = x % (replay.steps + 1);
        sl.dispatchEvent(new Event("input", { bubbles: true }));
        void document.getElementById("live").offsetHeight;
        ts.push(performance.now() - t0);
      }
      ts.sort((a, b) => a - b);
      return { median: ts[100], p95: ts[190], max: ts[199] };
    });
    // one sweep end to end and back
    const sweep = await page.evaluate(() => {
      const t0 = performance.now();
      for (const s of [0, replay.steps, 0, replay.steps]) replay.seek(s);
      void document.getElementById("live").offsetHeight;
      return (performance.now() - t0) / 4;
    });
    const f = await finalView(page);
    assert.equal(f.text, releasedText(evs));
    assert.equal(f.rewinds, evs.filter((e) => e.ev === "rewind").length);
    assert.equal(f.marks, removals(evs));
    for (const s of [0, 1, 2, 5000, 9999, 10000, 1234, 4321, 7777, 8888]) {
      await slideTo(page, s);
      sameState(await liveState(page), stateAt(evs, s), `step ${s}`);
    }
    // playing at 1000 steps/s moves on
    await page.click("#first");
    await page.select("#speed", "1000");
    await page.click("#play");
    await new Promise((r) => setTimeout(r, 1000));
    await page.click("#play");
    const played = (await liveState(page)).step;
    assert.ok(played > 50, `played ${played} steps in a second`);
    sameState(await liveState(page), stateAt(evs, played), `paused at ${played}`);
    assert.deepEqual(problems, []);
    const report = { steps: 10000, events: evs.length, traceBytes: readFileSync(trace).length, pageBytes: readFileSync(file).length,
      renderMs, loadMs, timings, jumps, sweep, playedInOneSecond: played };
    writeFileSync(join(OUT, "timings.json"), JSON.stringify(report, null, 2));
    t.diagnostic(`10k steps: backtrack replay ${renderMs} ms, page load ${loadMs} ms (script ${timings.ready.toFixed(0)} ms), ` +
      `slider jump median ${jumps.median.toFixed(1)} ms, p95 ${jumps.p95.toFixed(1)} ms, max ${jumps.max.toFixed(1)} ms, ` +
      `end-to-end jump ${sweep.toFixed(1)} ms, ${played} steps played in 1 s`);
    // generous bounds (a loaded 2-core machine): an O(n) rebuild per move would miss them
    assert.ok(jumps.median < 60, `median jump ${jumps.median} ms`);
    assert.ok(timings.ready < 20000, `page script ${timings.ready} ms`);
  } finally {
    await page.close();
  }
});
