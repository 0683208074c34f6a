// What the browser checks of the UI share: Debian's chromium through playwright-core,
// one page whose console errors and requests outside the server are recorded, a
// report of checks, and the API read from node for the numbers to compare with.
import { chromium } from "playwright-core";

/** Starts the browser on a page of `base`; run(page, context) does the checks. */
export async function session(base, run) {
  const report = { checks: 0, failures: [], errors: [], outside: [], facts: {} };
  const outside = (url) => !url.startsWith(base + "/") && !url.startsWith("data:");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage"],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    context.on("request", (r) => { if (outside(r.url())) report.outside.push(r.url()); });
    await context.route((url) => outside(url.href), (route) => route.abort());
    const page = await context.newPage();
    page.on("pageerror", (e) => report.errors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") report.errors.push(m.text()); });
    await run(page, context, report);
  } catch (e) {
    report.failures.push(String(e && e.stack || e));
  } finally {
    await browser.close();
  }
  check(report, report.errors.length === 0, "no console error", report.errors);
  check(report, report.outside.length === 0, "no request outside the server", report.outside);
  console.log(JSON.stringify(report));
  process.exit(report.failures.length ? 1 : 0);
}

export function check(report, ok, what, detail) {
  report.checks++;
  if (!ok) report.failures.push(what + (detail === undefined ? "" : ": " + JSON.stringify(detail)));
  return ok;
}

/** GET /api/PATH from node (not through the page), parsed. */
export async function api(base, path, headers) {
  const r = await fetch(base + "/api/" + path, { headers });
  if (!r.ok) throw new Error(`GET /api/${path}: ${r.status}`);
  return r.json();
}
