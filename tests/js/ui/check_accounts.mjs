// Drives the UI's runs list and account pages in headless chromium against a real
// vmprof-server holding uploads made by `python -m vmprof --web` (some with a
// user's token, some anonymous): log in, "my runs", rename and delete one's own
// run, the token page (a new token that then works), log out.  Usage:
//   node ui/check_accounts.mjs BASE_URL USER PASSWORD [SCREENSHOT_DIR]
// prints one JSON report {checks, failures, errors, outside}.
import { api as apiOf, check as checkIn, session } from "./harness.mjs";

const [baseArg, user, password, shots] = process.argv.slice(2);
const base = baseArg.replace(/\/$/, "");
const rows = (page) => page.locator("#runs-table tbody tr");

await session(base, async (page, context, report) => {
const check = (ok, what, detail) => checkIn(report, ok, what, detail);
const api = (path, headers) => apiOf(base, path, headers);
page.on("dialog", (d) => d.type() === "prompt" ? d.accept("renamed by the test") : d.accept());

  const all = await api("runs");
  const mine = all.runs.filter((r) => r.owner === user);
  check(mine.length >= 2 && all.runs.some((r) => r.owner === null), "the server holds the user's and anonymous runs",
        all.runs.map((r) => r.owner));

  // anonymous visitor: every run listed, nothing to change
  await page.goto(base + "/");
  await page.waitForSelector("#runs-table tbody tr");
  check(await rows(page).count() === all.runs.length, "every run is listed");
  check(await page.locator("#runs-table button:has-text('delete')").count() === 0, "a visitor cannot delete");
  // newest first, each row with the API's command, interpreter, samples and owner
  const shown = await page.$$eval("#runs-table tbody tr", (trs) => trs.map((tr) => tr.dataset.run));
  const when = all.runs.map((r) => Date.parse(r.created) || Number(r.created));
  check(JSON.stringify(shown) === JSON.stringify(all.runs.map((r) => r.id)) && when.every((t, i) => !i || t <= when[i - 1]),
        "runs are listed newest first, as the API gives them", when.slice(0, 5));
  const cells = await page.$$eval("#runs-table tbody tr:first-child td", (tds) => tds.map((td) => td.textContent));
  const newest = all.runs[0];
  check(cells[1].includes(newest.name || newest.argv) && cells[2] === newest.vm && cells[5] === newest.samples.toLocaleString("en-US") &&
        cells[6] === (newest.owner || "anonymous") && cells[3] !== "" && cells[4] !== "",
        "a row shows command, interpreter, when, duration, samples and owner", { cells, newest });
  // the interpreter filter offers every interpreter of the stored runs (GET
  // /api/vms), one the first page does not show among them
  const known = (await api("vms")).vms.map((v) => v.vm);
  const offered = await page.$$eval("#runs-vm option", (os) => os.map((o) => o.value).filter(Boolean));
  check(JSON.stringify(offered) === JSON.stringify([...known].sort()) &&
        known.some((v) => !all.runs.some((r) => r.vm === v)),
        "the interpreter filter offers every interpreter of /api/vms, beyond the page shown", { offered, known });
  // the interpreter filter shows the API's runs of that interpreter
  const vms = [...new Set(all.runs.map((r) => r.vm))];
  const other = vms.find((v) => v !== newest.vm);
  check(vms.length > 1, "the runs are of more than one interpreter", vms);
  if (other) {
    const ofVm = await api("runs?vm=" + encodeURIComponent(other));
    await page.selectOption("#runs-vm", other);
    await page.waitForFunction((v) => new URL(location.href).searchParams.get("vm") === v, other);
    await page.waitForFunction((n) => document.querySelectorAll("#runs-table tbody tr").length === n, ofVm.runs.length,
                               { timeout: 10000 }).catch(() => null);
    const vmRows = await page.$$eval("#runs-table tbody tr td:nth-child(3)", (tds) => tds.map((td) => td.textContent));
    check(ofVm.runs.length > 0 && vmRows.length === ofVm.runs.length && vmRows.every((v) => v === other),
          "the interpreter filter shows the API's runs of it", { vmRows, api: ofVm.runs.length });
    await page.selectOption("#runs-vm", "");
    await page.waitForFunction(() => new URL(location.href).searchParams.get("vm") === null);
    await page.waitForFunction((n) => document.querySelectorAll("#runs-table tbody tr").length === n, all.runs.length);
  }

  // paging: older runs on the next page, and back
  if (all.next !== null) {
    const older = await api("runs?page=" + all.next);
    await page.click("#next-page");
    await page.waitForFunction((p) => new URL(location.href).searchParams.get("page") === String(p), all.next);
    await page.waitForFunction((n) => document.querySelectorAll("#runs-table tbody tr").length === n, older.runs.length);
    check(await page.locator(`#runs-table tr[data-run="${older.runs[0].id}"]`).count() === 1, "the next page shows the API's older runs");
    await page.click("button:has-text('Newest')");
    await page.waitForFunction(() => !new URL(location.href).searchParams.get("page") || new URL(location.href).searchParams.get("page") === "1");
    await page.waitForFunction((n) => document.querySelectorAll("#runs-table tbody tr").length === n, all.runs.length);
  }
  check(all.next !== null, "the server holds more than a page of runs");

  // log in through the form
  await page.click("#who a");
  await page.fill("#login-user", user);
  await page.fill("#login-password", "not the password");
  await page.click("form button[type=submit]");
  await page.waitForSelector(".error");
  check((await page.locator(".error").textContent()).includes("Wrong"), "a wrong password is refused");
  report.errors = report.errors.filter((e) => !e.includes("401"));  // the refused login's own 401
  await page.fill("#login-password", password);
  await page.click("form button[type=submit]");
  await page.waitForSelector("#runs-table tbody tr");
  check((await page.locator("#who").textContent()).includes(user), "the header names the logged-in user");

  // my runs
  await page.selectOption("#runs-user", "me");
  await page.waitForFunction(() => location.search.includes("user=me"));
  await page.waitForFunction((n) => document.querySelectorAll("#runs-table tbody tr").length === n, mine.length);
  check(await rows(page).count() === mine.length, "'my runs' shows the user's runs", mine.length);
  if (shots) await page.screenshot({ path: `${shots}/runs.png` });

  // rename then delete one's own run
  const [first, second] = mine;
  await page.click(`#runs-table tr[data-run="${first.id}"] button:has-text('rename')`);
  await page.waitForFunction((id) => document.querySelector(`#runs-table tr[data-run="${id}"] td.cmd a`)?.textContent === "renamed by the test", first.id);
  check((await api("runs/" + first.id)).name === "renamed by the test", "rename reaches the server");
  const vmOptions = await page.$$eval("#runs-vm option", (os) => os.map((o) => o.value));
  check(new Set(vmOptions).size === vmOptions.length, "the list loaded again keeps one option per interpreter", vmOptions);
  await page.click(`#runs-table tr[data-run="${second.id}"] button:has-text('delete')`);
  await page.waitForFunction((id) => !document.querySelector(`#runs-table tr[data-run="${id}"]`), second.id);
  const after = await fetch(`${base}/api/runs/${second.id}`);
  check(after.status === 404, "delete reaches the server", after.status);
  report.errors = report.errors.filter((e) => !e.includes("404"));

  // token page: a new token, which authenticates API calls
  await page.click("#who a:has-text('" + user + "')");
  await page.waitForSelector("button:has-text('Make a new token')");
  await page.click("button:has-text('Make a new token')");
  await page.waitForSelector("#token");
  const token = await page.locator("#token").textContent();
  check((await page.locator("#token-use").textContent()).includes("--web-auth " + token), "the token page shows how to pass it");
  check((await api("me", { Authorization: "Token " + token })).user === user, "the new token authenticates");
  if (shots) await page.screenshot({ path: `${shots}/token.png` });

  // log out
  await page.click("#who button:has-text('Log out')");
  await page.waitForFunction(() => document.querySelector("#who").textContent.includes("Log in"));
  check((await (await page.request.get(base + "/api/me")).json()).user === null, "logged out");
});
