// The run page of the server's UI in headless chromium: how long until the flame
// graph is drawn (interactive), how many bytes went over the wire until then, and
// how long a zoom takes: zoom_drawn_ms until the graph is redrawn from what is
// loaded (in the click handler), zoom_ms until the deeper levels it needed have been
// fetched and drawn.  Each repeat is a fresh browser context (cold cache).
//   node bench/ui_bench.mjs BASE_URL RUN_ID [REPEATS]  -> one JSON line
// Needs playwright-core (tests/js/node_modules) and Debian's chromium.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "js", "package.json"));
const { chromium } = require("playwright-core");

const [base, id, repeatsArg] = process.argv.slice(2);
const repeats = Number(repeatsArg || 5);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"],
});
const runs = [];
try {
  for (let i = 0; i < repeats; i++) runs.push(await once());
} finally {
  await browser.close();
}
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
console.log(JSON.stringify({
  run: id, repeats,
  interactive_ms: median(runs.map((r) => r.interactive_ms)),
  interactive_min_ms: Math.min(...runs.map((r) => r.interactive_ms)),
  interactive_max_ms: Math.max(...runs.map((r) => r.interactive_ms)),
  bytes_before_zoom: median(runs.map((r) => r.bytes)),
  requests_before_zoom: median(runs.map((r) => r.requests)),
  zoom_ms: median(runs.map((r) => r.zoom_ms)),
  zoom_drawn_ms: median(runs.map((r) => r.zoom_drawn_ms)),
  zoom_fetched: runs.some((r) => r.zoom_fetched),
  deep_zoom_ms: median(runs.map((r) => r.deep_zoom_ms ?? NaN)),
  deep_zoom_drawn_ms: median(runs.map((r) => r.deep_zoom_drawn_ms ?? NaN)),
  runs,
}));

async function once() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  let bytes = 0, requests = 0;
  cdp.on("Network.loadingFinished", (e) => { bytes += e.encodedDataLength; requests++; });
  await page.goto(`${base}/runs/${id}`);
  await page.waitForFunction(() => window.vmprofUI && window.vmprofUI.firstDrawMs > 0 &&
                                   !document.querySelector("#status").textContent, null,
                             { timeout: 60000, polling: 5 });
  const interactive = await page.evaluate(() => window.vmprofUI.firstDrawMs);
  const before = { bytes, requests };
  // zoom into the widest frame of the second row (what a person clicks first), then
  // into the widest frame of the deepest row drawn (a zoom that must fetch its levels)
  const zoom = await clickZoom(page, (ui, rects, rows) =>
    rects.filter((q) => q[1] === rows[Math.min(1, rows.length - 1)] && q[3] !== ui.state.zoom));
  const deep = await clickZoom(page, (ui, rects, rows) => rects.filter((q) => {
    const d = ui.node(q[3]);
    return q[1] === rows[rows.length - 1] && d.total > d.self;
  }));
  await context.close();
  return { interactive_ms: interactive, bytes: before.bytes, requests: before.requests,
           zoom_ms: zoom.ms, zoom_drawn_ms: zoom.drawn, zoom_fetched: zoom.fetched,
           deep_zoom_ms: deep ? deep.ms : null, deep_zoom_drawn_ms: deep ? deep.drawn : null };
}

/** Clicks the widest of the drawn frames pick() returns; times the redraw and the
 * complete zoom (deeper levels fetched).  null when pick() returns none. */
async function clickZoom(page, pick) {
  return page.evaluate(async (pickSrc) => {
    const ui = window.vmprofUI, rects = ui.state.rects;
    const rows = [...new Set(rects.map((q) => q[1]))].sort((a, b) => a - b);
    const target = eval(pickSrc)(ui, rects, rows).filter((q) => q[2] >= 3).sort((a, b) => b[2] - a[2])[0];
    if (!target) return null;
    const c = document.querySelector("#flame canvas"), r = c.getBoundingClientRect();
    const nodesBefore = ui.state.nodes;
    const t0 = performance.now();
    c.dispatchEvent(new MouseEvent("click", { clientX: r.left + target[0] + 1, clientY: r.top + target[1] + 5, bubbles: true }));
    const drawn = performance.now() - t0;  // the click handler redraws at once from what is loaded
    while (ui.state.zoom !== target[3] || document.querySelector("#status").textContent)
      await new Promise((res) => setTimeout(res, 1));
    return { ms: performance.now() - t0, drawn, fetched: ui.state.nodes !== nodesBefore };
  }, pick.toString());
}
