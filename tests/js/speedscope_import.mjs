// Loads files into the real speedscope app (the npm package's offline build)
// in headless Chromium, the way `speedscope FILE` does, and reports whether
// speedscope imported them: once a profile is in, its view switcher ("Left
// Heavy") and the profile's name with "(1/N)" for N profiles are shown; a
// file it cannot read ends in an alert.
// Usage: node speedscope_import.mjs FILE... -> prints a JSON list of reports
import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { pathToFileURL } from "node:url";

const require = createRequire(import.meta.url);
const app = join(dirname(require.resolve("speedscope/package.json")), "dist", "release",
                 "index.html");
const work = mkdtempSync(join(tmpdir(), "vmprof-speedscope-"));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-dev-shm-usage", "--no-first-run", "--allow-file-access-from-files"],
});
const reports = [];
try {
  for (const [i, file] of process.argv.slice(2).entries()) {
    const name = basename(file);
    const js = join(work, `load${i}.js`);
    writeFileSync(js, `speedscope.loadFileFromBase64(${JSON.stringify(name)}, ` +
                      `${JSON.stringify(readFileSync(file).toString("base64"))})`);
    const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
    const report = { file, errors: [], requests: [] };
    page.on("pageerror", (e) => report.errors.push(String(e)));
    await page.route("**/*", (route) => {
      const url = route.request().url();
      if (!url.startsWith("file:")) { report.requests.push(url); return route.abort(); }
      return route.continue();
    });
    const alerted = new Promise((resolve) => page.on("dialog", async (d) => {
      report.errors.push("speedscope: " + d.message());
      await d.dismiss();
      resolve();
    }));
    await page.goto(pathToFileURL(app).href + "#localProfilePath=" + js);
    const loaded = page.waitForFunction(() => document.body.innerText.includes("Left Heavy"),
                                        null, { timeout: 20000 })
      .catch(() => report.errors.push("speedscope showed no profile"));
    await Promise.race([loaded, alerted]);
    if (!report.errors.length) {
      const text = await page.evaluate(() => document.body.innerText);
      const m = /\((\d+)\/(\d+)\)/.exec(text);
      report.profiles = m ? Number(m[2]) : 1;
      report.title = await page.title();
    }
    await page.screenshot({ path: file + ".speedscope.png" });
    await page.close();
    reports.push(report);
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(reports));
process.exit(reports.every((r) => r.errors.length === 0) ? 0 : 1);
