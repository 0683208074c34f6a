// The run page of the server's UI in headless chromium: how long until the flame
// graph is drawn (interactive), how many bytes went over the wire until then, how
// many levels it draws, and how long zooms take, from the button going down: until
// the zoomed frame is drawn filling the width (from the levels the page holds), and
// until the view is complete (levels fetched and drawn).  The zooms: into a frame of
// the second row, into a frame whose levels are not loaded clicked at once, and into
// another after the pointer rested on it.  Each repeat is a fresh browser context
// (cold cache).  Builds before the UI kept its zoom clock (RunPage.zoomClock) give
// the complete time only, polled.
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
  bytes_before_zoom: median(runs.map((r) => r.bytes)),
  zoom_ms: median(runs.map((r) => r.zoom_ms)),
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
  const levels = await page.evaluate(() => new Set(window.vmprofUI.state.rects.map((q) => q[1])).size);
  const before = { bytes, requests };
  // the widest frame of the second row (what a person clicks first, after looking)
  await page.waitForTimeout(300);
  const zoom = await clickZoom(page, 0, (ui, rects, rows) =>
    rects.filter((q) => q[1] === rows[Math.min(1, rows.length - 1)] && q[3] !== ui.state.zoom));
  // the widest frame whose zoom needs levels not loaded, clicked at once; then another,
  // after the pointer rested on it 300 ms
  const needs = (ui, q) => q[3] !== ui.state.zoom &&
    (ui.zoomNeedsRequest ? ui.zoomNeedsRequest(q[3]) : ui.needsMore(q[3]));  // (older builds: the same test, unexposed)
  const fetch = await clickZoom(page, 0, (ui, rects, rows, needs) => rects.filter((q) => needs(ui, q)), needs.toString());
  const hover = await clickZoom(page, 300, (ui, rects, rows, needs) => rects.filter((q) => needs(ui, q)), needs.toString());
  await context.close();
  return { interactive_ms: interactive, bytes: before.bytes, requests: before.requests, levels,
           zoom_drawn_ms: zoom ? zoom.drawn : null, zoom_ms: zoom ? zoom.ms : null,
           fetch_zoom_drawn_ms: fetch ? fetch.drawn : null, fetch_zoom_ms: fetch ? fetch.ms : null,
           hover_zoom_drawn_ms: hover ? hover.drawn : null, hover_zoom_ms: hover ? hover.ms : null };
}

/** Zooms into the widest (3 px or more) of the drawn frames pick() returns: after the
 * pointer rested `hoverMs` on it (none: clicked at once), pressed, released and clicked
 * as a browser does; the times from the press until the zoomed frame is drawn filling
 * the width (drawn) and until the view is complete (ms: its levels fetched and drawn).
 * null when pick() returns none. */
async function clickZoom(page, hoverMs, pick, needsSrc = "null") {
  return page.evaluate(async ([pickSrc, needsSrc, hoverMs]) => {
    const ui = window.vmprofUI, rects = ui.state.rects, needs = eval(needsSrc);
    const rows = [...new Set(rects.map((q) => q[1]))].sort((a, b) => a - b);
    const target = eval(pickSrc)(ui, rects, rows, needs).filter((q) => q[2] >= 3).sort((a, b) => b[2] - a[2])[0];
    if (!target) return null;
    const c = document.querySelector("#flame canvas"), r = c.getBoundingClientRect();
    const at = { clientX: r.left + target[0] + 1, clientY: r.top + target[1] + 5, bubbles: true };
    if (hoverMs) {
      c.dispatchEvent(new MouseEvent("mousemove", at));
      await new Promise((res) => setTimeout(res, hoverMs));
    }
    const t0 = performance.now();
    for (const type of ["mousedown", "mouseup", "click"]) c.dispatchEvent(new MouseEvent(type, at));
    const clock = () => ui.zoomClock && ui.zoomClock.zoom === target[3] ? ui.zoomClock : null;
    while (ui.state.zoom !== target[3] || document.querySelector("#status").textContent ||
           ("zoomClock" in ui && !(clock() && clock().complete)))
      await new Promise((res) => setTimeout(res, 1));
    const t1 = performance.now(), k = clock();
    return k ? { drawn: k.drawn - t0, ms: k.complete - t0 } : { drawn: null, ms: t1 - t0 };
  }, [pick.toString(), needsSrc, hoverMs]);
}
