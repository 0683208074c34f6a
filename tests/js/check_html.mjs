// Opens HTML exports in headless Chromium (Debian's, through playwright-core)
// and checks that the flame graph draws, a click zooms, search matches and the
// page asks for nothing from the network.  One browser serves every file.
// Usage: node check_html.mjs FILE... -> prints a JSON list of reports, one per
// file; a screenshot of each page is left at FILE.png
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--no-first-run"],
});
const reports = [];
try {
  for (const file of process.argv.slice(2))
    reports.push(await check(file, file + ".png"));
} finally {
  await browser.close();
}
console.log(JSON.stringify(reports));
process.exit(reports.every((r) => r.errors.length === 0) ? 0 : 1);

async function check(file, shot) {
const report = { file, errors: [], requests: [] };
const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
try {
  page.on("pageerror", (e) => report.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") report.errors.push(m.text()); });
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (!url.startsWith("file:")) { report.requests.push(url); return route.abort(); }
    return route.continue();
  });
  await page.goto(pathToFileURL(file).href);
  await page.waitForFunction(() => window.vmprofView !== undefined, null, { timeout: 10000 });
  const before = await page.evaluate(() => ({
    drawn: window.vmprofView.drawn, zoom: window.vmprofView.zoom,
    threads: document.querySelectorAll("#thread option").length,
    rssPoints: window.vmprofView.rssPoints || 0,
    title: document.title,
  }));
  Object.assign(report, { drawn: before.drawn, threads: before.threads,
                          rss_points: before.rssPoints, title: before.title });
  // pixels: the canvas is not blank
  report.painted = await page.evaluate(() => {
    const c = document.getElementById("flame"), g = c.getContext("2d");
    const d = g.getImageData(0, 0, c.width, Math.min(c.height, 200)).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  // click the widest frame on the deepest row that still has a frame at least
  // 60 px wide, then check the zoom moved to it
  const target = await page.evaluate(() => {
    const v = window.vmprofView, c = document.getElementById("flame");
    const r = c.getBoundingClientRect();
    // rects are [x, y, w, node]; pick on the lowest row with a wide enough one
    const rects = window.vmprofView._rects ? window.vmprofView._rects() : null;
    return { left: r.left, top: r.top, rects };
  });
  let best = null;
  for (const q of target.rects || []) {
    if (q[2] >= 60 && q[3] !== 0 && (!best || q[1] > best[1] || (q[1] === best[1] && q[2] > best[2])))
      best = q;
  }
  report.zoom_before = before.zoom;
  if (best) {
    // zoom into a frame half-way down, so the zoom is visible
    const rows = (target.rects || []).filter((q) => q[2] >= 60 && q[3] !== 0).map((q) => q[1]);
    const midRow = rows.sort((a, b) => a - b)[Math.floor(rows.length / 2)];
    const pick = (target.rects || []).filter((q) => q[1] === midRow && q[2] >= 60)
      .sort((a, b) => b[2] - a[2])[0] || best;
    await page.mouse.move(target.left + pick[0] + 5, target.top + pick[1] + 8);
    report.tooltip = await page.evaluate(() => {
      const t = document.getElementById("tip");
      return t.style.display === "block" ? t.textContent : "";
    });
    await page.mouse.click(target.left + pick[0] + 5, target.top + pick[1] + 8);
    const after = await page.evaluate(() => ({ zoom: window.vmprofView.zoom,
      label: window.vmprofView.zoomLabel, drawn: window.vmprofView.drawn,
      trail: document.getElementById("trail").textContent }));
    report.clicked_node = pick[3];
    report.zoom_after = after.zoom;
    report.zoom_label = after.label;
    report.trail = after.trail;
    report.drawn_after_zoom = after.drawn;
  }
  // search for the hottest leaf's name
  const query = await page.evaluate(() => {
    const d = window.vmprofView.data;
    return d.funcs.length ? d.funcs[d.funcs.length - 1][0] : "";
  });
  if (query) {
    await page.fill("#search", query.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    report.search = query;
    report.search_matched = await page.evaluate(() => window.vmprofView.matched);
  }
  // the table of hottest functions: clicking a row highlights that function
  report.hot_rows = await page.evaluate(() => window.vmprofView.hotRows || 0);
  if (report.hot_rows) {
    await page.click("#hot tbody tr:first-child");
    report.hot_click = await page.evaluate(() => ({
      search: document.getElementById("search").value, matched: window.vmprofView.matched,
      self: Number(document.querySelector("#hot tbody tr:first-child td").textContent) }));
    await page.fill("#search", "");
  }
  // thread selection: the second entry (the first thread, after "All threads")
  if (before.threads > 1) {
    await page.selectOption("#thread", "1");
    report.thread_selected = await page.evaluate(() => ({
      thread: window.vmprofView.thread, drawn: window.vmprofView.drawn,
      samples: window.vmprofView.data.trees[window.vmprofView.thread].value[0],
      all: window.vmprofView.data.trees[0].value[0] }));
    await page.selectOption("#thread", "0");
  }
  await page.keyboard.press("Escape");
  await page.fill("#search", "");
  report.zoom_after_escape = await page.evaluate(() => window.vmprofView.zoom);
  await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  report.errors.push(String(e && e.stack || e));
} finally {
  await page.close();
}
return report;
}
