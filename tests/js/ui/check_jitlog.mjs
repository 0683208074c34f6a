// Drives the jit log's trace viewer (web/src/jitlog.ts) in Debian's headless chromium
// against a server holding real jit logs, and checks what is shown against the API's
// own answers.  Usage:
//   node ui/check_jitlog.mjs BASE_URL PYPY_RUN CALC_RUN [SCREENSHOT_DIR]
// PYPY_RUN: a log uploaded by `pypy3 -m jitlog --web`; CALC_RUN: a profile and a jit
// log uploaded together with the source lines of their program (SOURCE_CODE records).
// Prints one JSON report {checks, failures, errors, outside}; exit status 1 when a
// check failed.
import { api as apiOf, check as checkIn, session } from "./harness.mjs";

const base = process.argv[2].replace(/\/$/, "");
const [pypyRun, calcRun] = [process.argv[3], process.argv[4]];
const shots = process.argv[5] || "";

await session(base, async (page, context, report) => {
  const check = (ok, what, detail) => checkIn(report, ok, what, detail);
  const api = (path) => apiOf(base, path);
  const ids = () => page.$$eval("#traces-table tbody tr", (rows) => rows.map((r) => Number(r.dataset.trace)));
  /** Runs fn, during which the browser's log of the HTTP status `status` is expected
   * (the check is about that answer), not an error of the UI. */
  async function expecting(status, fn) {
    const before = report.errors.length;
    await fn();
    const during = report.errors.slice(before);
    report.errors = report.errors.slice(0, before).concat(
      during.filter((e) => !e.includes(`status of ${status} `)));
  }
  async function shot(name) { if (shots) await page.screenshot({ path: `${shots}/${name}.png` }); }
  /** Waits for the list at pathname with exactly these query arguments. */
  async function listed(pathname, params = {}) {
    await page.waitForFunction(([p, want]) => {
      const u = new URL(location.href);
      return u.pathname === p && [...u.searchParams].length === Object.keys(want).length &&
        Object.entries(want).every(([k, v]) => u.searchParams.get(k) === v);
    }, [pathname, params]);
    await page.waitForSelector("#traces-table tbody tr, #jit-q-error .error, #traces p");
    await page.waitForTimeout(100);
  }

  // ---- the address `pypy3 -m jitlog --web` prints opens the list, most entered first
  await page.goto(`${base}/#/${pypyRun}/traces`);
  await listed(`/runs/${pypyRun}/traces`);
  const byEntries = await api(`runs/${pypyRun}/jitlog/traces?sort=entries`);
  check(JSON.stringify(await ids()) === JSON.stringify(byEntries.traces.map((t) => t.id)),
        "BASE/#/ID/traces lists the API's traces, most entered first", await ids());
  const firstEntries = await page.textContent("#traces-table tbody tr:first-child td.entries");
  check(firstEntries.replace(/,/g, "") === String(byEntries.traces[0].entries),
        "the first row's entry count is the API's", firstEntries);
  const facts = await api(`runs/${pypyRun}/jitlog`);
  check((await page.textContent("#jit-facts")).includes(facts.machine), "the log's machine is shown");
  check((await page.textContent("#jit-status")).includes(String(facts.traces)), "the trace count is shown");

  // ---- the log's order, from the order picker
  await page.selectOption("#jit-sort", "log");
  await listed(`/runs/${pypyRun}/traces`, { sort: "log" });
  const byLog = await api(`runs/${pypyRun}/jitlog/traces?sort=log`);
  check(JSON.stringify(await ids()) === JSON.stringify(byLog.traces.map((t) => t.id)),
        "the log's order is the API's");

  // ---- a query selects what the server selects
  const query = 'loops & func("branchy")';
  await page.fill("#jit-q", query);
  await page.press("#jit-q", "Enter");
  await listed(`/runs/${pypyRun}/traces`, { q: query, sort: "log" });
  const selected = await api(`runs/${pypyRun}/jitlog/traces?sort=log&q=${encodeURIComponent(query)}`);
  check(selected.matched > 0 && JSON.stringify(await ids()) === JSON.stringify(selected.traces.map((t) => t.id)),
        "a query shows the API's selection", { shown: await ids(), api: selected.traces.map((t) => t.id) });
  check((await page.textContent("#jit-status")).startsWith(`${selected.matched} of ${selected.total}`),
        "the status says how many of all are selected", await page.textContent("#jit-status"));
  await shot("jitlog-query");

  // ---- a mistake in the query: its column is shown, under the text
  await expecting(400, async () => {
    await page.fill("#jit-q", "loops & func(branchy)");
    await page.press("#jit-q", "Enter");
    await page.waitForSelector("#jit-q-message");
  });
  const message = await page.textContent("#jit-q-message");
  const caret = await page.textContent("#jit-q-error pre.caret");
  check(message.startsWith("column 14: "), "the syntax error names its column", message);
  check(caret.split("\n")[1] === " ".repeat(13) + "^", "a caret points at that column", caret);
  check(await page.locator("#traces-table").count() === 0, "no list is shown for a wrong query");
  await shot("jitlog-query-error");

  // ---- back: the previous selection again
  await page.goBack();
  await page.waitForSelector("#traces-table tbody tr");
  check(await page.inputValue("#jit-q") === query && JSON.stringify(await ids()) ===
        JSON.stringify(selected.traces.map((t) => t.id)), "back shows the previous selection");

  // ---- a trace: stages op by op, merge points as source lines, the machine code
  const calcList = await api(`runs/${calcRun}/jitlog/traces?sort=entries`);
  const loop = calcList.traces.find((t) => t.type === "loop");
  const detail = await api(`runs/${calcRun}/jitlog/traces/${loop.id}`);
  await page.goto(`${base}/runs/${calcRun}/traces?sort=entries`);
  await page.waitForSelector("#traces-table tbody tr");
  await shot("jitlog-traces");
  await page.click(`#traces-table tr[data-trace="${loop.id}"] td a`);
  await page.waitForSelector("#ops-opt");
  check(await page.locator("#ops-opt tr.op").count() === detail.stages.opt.ops.length,
        "the optimized stage shows every op of the API");
  check(await page.locator("#ops-opt tr.mp").count() === detail.stages.opt.merge_points.length,
        "and every merge point");
  const sources = await page.$$eval("#ops-opt tr.mp code.src", (c) => c.map((e) => e.textContent.trim()));
  const wantSources = detail.stages.opt.merge_points.map((m) => m.source).filter((s) => s !== null);
  check(wantSources.length > 0 && JSON.stringify(sources) === JSON.stringify(wantSources),
        "merge points read as their source lines", { sources: sources.slice(0, 3), wantSources: wantSources.slice(0, 3) });
  const firstOp = detail.stages.opt.ops[0];
  check((await page.textContent("#op-opt-0 td.optext")).includes(`${firstOp.name}(${firstOp.args}`),
        "an op reads name(args)");
  await shot("jitlog-trace");

  await page.click("#tab-asm");
  await page.waitForSelector("#ops-asm");
  const insns = detail.stages.asm.ops.flatMap((o) => o.asm || []);
  check(await page.locator("#ops-asm tr.insn").count() === insns.length, "every instruction of the API is shown");
  const firstInsn = await page.textContent("#ops-asm tr.insn td.insn");
  check(insns.length > 0 && firstInsn === insns[0].text && /^[a-z]/.test(firstInsn),
        "the machine code is disassembled", firstInsn);
  check(new URL(page.url()).searchParams.get("stage") === "asm", "the address holds the stage");
  await shot("jitlog-asm");

  // ---- guard -> bridge, and the bridge back to its guard
  const guard = detail.stages.asm.ops.find((o) => o.bridge !== undefined);
  check(guard, "the loop has a guard with a bridge");
  await page.click(`#op-asm-${guard.i} a.bridge`);
  await page.waitForSelector("#guard-link");
  check(new URL(page.url()).pathname === `/runs/${calcRun}/traces/${guard.bridge}`, "a guard links to its bridge");
  const bridge = await api(`runs/${calcRun}/jitlog/traces/${guard.bridge}`);
  check(bridge.guard && bridge.guard.id === loop.id, "the API agrees the bridge hangs off that loop");
  await page.click("#guard-link");
  await page.waitForSelector(`#op-${bridge.guard.stage}-${bridge.guard.op}.target`);
  const back = await page.$eval(`#op-${bridge.guard.stage}-${bridge.guard.op}`, (r) => r.querySelector("a.bridge")?.dataset.bridge);
  check(new URL(page.url()).pathname === `/runs/${calcRun}/traces/${loop.id}` && Number(back) === guard.bridge,
        "the bridge links back to its guard, which is marked", back);
  check(await page.evaluate(() => document.activeElement?.id), "the guard has the focus");

  // ---- the run's page links to its jit log
  await page.goto(`${base}/runs/${calcRun}`);
  await page.waitForSelector("#jitlog-link");
  await page.click("#jitlog-link");
  await listed(`/runs/${calcRun}/traces`);
  check(JSON.stringify(await ids()) === JSON.stringify(calcList.traces.map((t) => t.id)),
        "the run's page links to its traces");

  // ---- a run that is a jit log alone opens as its traces (its tree, asked at
  // once beside the run's facts, is a 404)
  await expecting(404, async () => {
    await page.goto(`${base}/runs/${pypyRun}`);
    await listed(`/runs/${pypyRun}/traces`);
  });
  check(JSON.stringify(await ids()) === JSON.stringify(byEntries.traces.map((t) => t.id)),
        "a run of a jit log alone opens as its traces");

  // ---- a run without a jit log says so
  await expecting(404, async () => {
    await page.goto(`${base}/runs/0123456789abcdef/traces`);
    await page.waitForSelector(".error");
    await page.waitForTimeout(200);
  });
  check((await page.textContent(".error")).includes("no run"), "a missing log is an error on the page");
});
