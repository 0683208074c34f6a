// Drives the browser UI (web/) in Debian's headless chromium against a server that
// holds real profiles, using each page and control by clicks and keys, and checks
// what is drawn against the API's own numbers.  Usage:
//   node ui/check_ui.mjs BASE_URL [SCREENSHOT_DIR]
// prints one JSON report {checks, failures, errors, outside}; exit status 1 when a
// check failed.  The runs are found through the API by their modes (threads,
// --mem, --lines, native), so any server holding such uploads will do.
import { api as apiOf, check as checkIn, session } from "./harness.mjs";

const base = process.argv[2].replace(/\/$/, "");
const shots = process.argv[3] || "";
const near = (a, b) => Math.abs(a - b) <= 1.5;

await session(base, async (page, context, report) => {
const check = (ok, what, detail) => checkIn(report, ok, what, detail);
const api = (path) => apiOf(base, path);
const ui = () => page.evaluate(() => { const s = window.vmprofUI.state; return { ...s, functions: undefined }; });
async function settle() {
  await page.waitForFunction(() => !document.querySelector("#status")?.textContent, null, { timeout: 10000 });
  await page.waitForTimeout(120);
}
async function shot(name) { if (shots) await page.screenshot({ path: `${shots}/${name}.png` }); }

  const list = await api("runs");
  const runs = await Promise.all(list.runs.map((r) => api("runs/" + encodeURIComponent(r.id))));
  const byMode = (m) => runs.find((r) => (r.modes || []).includes(m));
  const threaded = runs.find((r) => (r.threads || []).length > 1);
  const mem = byMode("memory"), lines = byMode("lines"), native = byMode("native");
  check(runs.length >= 2 && mem && lines && threaded && native, "the server holds runs of every kind",
        runs.map((r) => [r.id, r.modes, (r.threads || []).length]));

  // ---- runs list: rows, search, open a run
  await page.goto(base + "/");
  await page.waitForSelector("#runs-table tbody tr");
  check(await page.locator("#runs-table tbody tr").count() === list.runs.length, "one row per run of the API");
  await shot("runs");
  const word = list.runs[0].argv.split(/\s+/).pop().split("/").pop();
  await page.fill("#runs-q", word);
  await page.press("#runs-q", "Enter");
  await page.waitForFunction((w) => location.search.includes("q="), word);
  await page.waitForSelector("#runs-table tbody tr");
  const filtered = await api("runs?q=" + encodeURIComponent(word));
  check(await page.locator("#runs-table tbody tr").count() === filtered.runs.length, "search shows the API's matches");

  // ---- the address `python -m vmprof --web` prints (BASE/#/ID) opens the run
  await page.goto(`${base}/#/${mem.id}`);
  await page.waitForFunction((id) => location.pathname === "/runs/" + id, mem.id);
  check(true, "BASE/#/ID opens the run");
  await page.goto(base + "/");
  await page.waitForSelector("#runs-table tbody tr");

  // ---- a run: the flame graph starts at the program and fills the width
  const run = mem;
  await page.click(`#runs-table tr[data-run="${run.id}"] td.cmd a`);
  await page.waitForFunction(() => window.vmprofUI && window.vmprofUI.state.rects?.length > 0, null, { timeout: 15000 });
  await settle();
  let s = await ui();
  const cw = await page.evaluate(() => document.querySelector("#flame canvas").clientWidth);
  const top = s.rects.find((q) => q[3] === s.zoom);
  check(top && top[0] === 0 && near(top[2], cw), "the zoomed frame fills the width", { top, cw });
  const program = await page.evaluate((n) => window.vmprofUI.node(n), s.zoom);
  const script = (run.argv.split(/\s+/).find((w) => w.endsWith(".py")) || "").split("/").pop();
  check(program.name === "<module>" && script && program.file.endsWith("/" + script),
        "the graph starts at the program's first frame", { program, argv: run.argv });
  const treeAt = await api(`runs/${run.id}/tree?path=${s.zoomPath.join(".")}&depth=1`);
  check(treeAt.node.total === s.zoomTotal, "the zoomed node's count is the API's", [treeAt.node.total, s.zoomTotal]);
  report.facts.start_path = s.zoomPath;
  await shot("run");
  // the header's facts are the API's
  const facts = Object.fromEntries(await page.$$eval("#facts div", (ds) => ds.map((d) =>
    [d.querySelector("dt").textContent, d.querySelector("dd").textContent])));
  check(facts.samples === run.samples.toLocaleString("en-US") && facts.interpreter === run.vm &&
        facts.threads === String(run.thread_count || (run.threads || []).length || 1) &&
        facts.modes === (run.modes || []).join(", ") && facts.clock === "CPU time" && facts.duration && facts.period,
        "the header shows the run's facts as the API gives them", { facts, run: [run.samples, run.vm, run.modes] });

  // ---- every level is drawn (not a fixed number under the zoom): the frames drawn are
  // the API's nodes of at least 1/2000 of the zoomed frame, to the deepest
  /** The API's nodes of 1/2000 of the zoomed frame of view s: path -> count. */
  const apiView = async (id, s) => {
    const fine = await api(`runs/${id}/tree?path=${s.zoomPath.join(".")}&depth=128&min=${0.0005 * s.zoomTotal / s.total}`);
    const nodes = new Map();
    (function walk(node, path) {
      if (node.total < 0.0005 * s.zoomTotal) return;
      nodes.set(path.join("."), node.total);
      for (const c of node.children || []) walk(c, [...path, c.fn]);
    })(fine.node, s.zoomPath);
    return nodes;
  };
  /** The frames drawn (on page p) and the API's nodes of 1/2000 of the zoomed frame, as paths. */
  const drawnAndApi = async (id, s, p = page) => {
    const apiPaths = [...(await apiView(id, s)).keys()];
    const drawn = await p.evaluate(() => window.vmprofUI.state.rects.map((q) => window.vmprofUI.node(q[3]).path.join(".")));
    return { same: JSON.stringify([...drawn].sort()) === JSON.stringify([...apiPaths].sort()),
             rows: new Set(s.rects.map((q) => q[1])).size, drawn: drawn.length, api: apiPaths.length,
             missing: apiPaths.filter((p) => !drawn.includes(p)).slice(0, 3) };
  };
  const levels = await drawnAndApi(run.id, s);
  check(levels.rows > 20 && levels.same, "every level is drawn: the frames are the API's down to 1/2000 of the zoom", levels);


  // ---- call tree table: its first row is the zoomed frame; Right unfolds a row, Left folds it
  const firstTotal = Number((await page.locator("#tree-table tbody tr:first-child td:first-child").textContent()).replace(/,/g, ""));
  check(firstTotal === treeAt.node.total, "the call tree table starts at the zoomed frame", [firstTotal, treeAt.node.total]);
  // each unfolded row's children come heaviest first
  const treeRows = await page.$$eval("#tree-table tbody tr", (trs) => trs.map((tr) =>
    [parseInt(tr.querySelector(".fn").style.paddingLeft), Number(tr.cells[0].textContent.replace(/,/g, ""))]));
  const unsorted = treeRows.filter(([pad, total], i) => {
    for (let j = i + 1; j < treeRows.length && treeRows[j][0] >= pad; j++)  // the next sibling, if any
      if (treeRows[j][0] === pad) return treeRows[j][1] > total;
    return false;
  });
  check(treeRows.length > 3 && unsorted.length === 0, "the call tree table is sorted by total", { unsorted, rows: treeRows.length });
  const closed = page.locator('#tree-table tbody tr[aria-expanded="false"]').first();
  if (await closed.count()) {
    const node = await closed.getAttribute("data-node"), before = await page.locator("#tree-table tbody tr").count();
    await closed.focus();
    await page.keyboard.press("ArrowRight");
    await page.waitForSelector(`#tree-table tr[data-node="${node}"][aria-expanded="true"]`);
    const opened = await page.locator("#tree-table tbody tr").count();
    await page.keyboard.press("ArrowLeft");
    await page.waitForSelector(`#tree-table tr[data-node="${node}"][aria-expanded="false"]`);
    check(opened > before && await page.locator("#tree-table tbody tr").count() === before,
          "the call tree unfolds and folds by keys", [before, opened]);
  }

  // ---- downloads: every export and the raw file answer; speedscope (the server's) opens the run
  const links = await page.$$eval("details.menu a[download]", (as) => as.map((a) => a.getAttribute("href")));
  const sizes = await Promise.all(links.map(async (l) => { const r = await fetch(base + l); return r.ok ? (await r.arrayBuffer()).byteLength : -r.status; }));
  check(links.length >= 6 && sizes.every((n) => n > 0), "every download answers", Object.fromEntries(links.map((l, i) => [l, sizes[i]])));
  const [ss] = await Promise.all([context.waitForEvent("page"), page.click("#speedscope")]);
  ss.on("pageerror", (e) => report.errors.push("speedscope: " + e));
  await ss.waitForFunction(() => document.title.endsWith(" - speedscope"), null, { timeout: 15000 }).catch(() => null);
  check((await ss.title()).endsWith(" - speedscope"), "speedscope served by the server opens the run", await ss.title());
  await ss.close();

  // ---- hover: the tooltip's counts are the API's
  const box = await page.locator("#flame canvas").boundingBox();
  const second = s.rects.filter((q) => q[1] > 0 && q[2] > 80).sort((a, b) => b[2] - a[2])[0];
  await page.mouse.move(box.x + second[0] + 10, box.y + second[1] + 8);
  const tip = await page.locator(".flame-tip").textContent();
  const hovered = await page.evaluate((n) => window.vmprofUI.node(n), second[3]);
  const hoverApi = await api(`runs/${run.id}/tree?path=${hovered.path.join(".")}&depth=1`);
  const hoverFn = hoverApi.functions[String(hovered.fn)];
  check(tip.includes(`total ${hoverApi.node.total.toLocaleString("en-US")} samples`) &&
        tip.includes(`self ${hoverApi.node.self.toLocaleString("en-US")} samples`) && tip.includes(hovered.name) &&
        tip.includes(`${hoverFn.file}:${hoverFn.line}`),
        "the tooltip shows the name, file:line, total and self of the API", { tip, api: hoverApi.node, fn: hoverFn });

  // ---- click to zoom: the clicked frame fills the width, the breadcrumb names it, back returns
  await page.mouse.click(box.x + second[0] + 10, box.y + second[1] + 8);
  await settle();
  s = await ui();
  const z = s.rects.find((q) => q[3] === s.zoom);
  check(s.zoom === second[3] && z && z[0] === 0 && near(z[2], cw), "a click zooms: the frame fills the width", { z, cw });
  check(new URL(page.url()).searchParams.get("path") === hovered.path.join("."), "the address holds the zoom path");
  check((await page.locator("#trail").textContent()).includes(hovered.name), "the breadcrumb names the zoomed frame");
  await page.goBack();
  await settle();
  check((await ui()).zoomPath.join(".") === report.facts.start_path.join("."), "back returns to the previous zoom",
        (await ui()).zoomPath);
  await page.goForward();
  await settle();
  check((await ui()).zoom === second[3], "forward zooms again");
  // the breadcrumb's frame before the last zooms out to it
  await page.locator("#trail a:not(.here)").last().click();
  await settle();
  check((await ui()).zoomPath.join(".") === hovered.path.slice(0, -1).join("."), "a breadcrumb zooms out to its frame",
        (await ui()).zoomPath);
  await page.goBack();
  await settle();

  // ---- keyboard: Escape zooms out (the cursor stays where the zoom was), Enter zooms
  // into the cursor's frame, ArrowDown moves it to the heaviest child
  await page.locator("#flame canvas").focus();
  await page.keyboard.press("Escape");
  await settle();
  check((await ui()).zoomPath.join(".") === hovered.path.slice(0, -1).join("."), "Escape zooms out one level");
  await page.keyboard.press("Enter");
  await settle();
  check((await ui()).zoomPath.join(".") === hovered.path.join("."), "Enter zooms back into the frame the cursor is on",
        (await ui()).zoomPath);
  const heaviest = await page.evaluate(() => {
    const ui = window.vmprofUI, z = ui.state.zoom, kids = ui.state.rects.filter((q) => ui.node(q[3]).path.length === ui.state.zoomPath.length + 1);
    return kids.sort((a, b) => b[2] - a[2]).map((q) => ui.node(q[3]).path.join("."))[0];
  });
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter");
  await settle();
  check(heaviest && (await ui()).zoomPath.join(".") === heaviest, "ArrowDown then Enter zooms into the heaviest child",
        [(await ui()).zoomPath, heaviest]);
  await page.keyboard.press("Escape");
  await settle();

  // ---- search (for the busiest Python function): the share it reports is the API's
  const hot = (await api(`runs/${run.id}/functions?sort=self&limit=200`)).functions.find((f) => f.kind === "python");
  const term = hot.name.replace(/[^A-Za-z0-9_]/g, "");
  /** Types a search; the server's answer to it (param q or re) and what the page shows. */
  // It waits for the page to show this answer's count: the text of the search before
  // stays until the new answer arrives, so waiting for any "%" could read the old one.
  const search = async (text, param) => {
    const a = await api(`runs/${run.id}/functions?${param}=${encodeURIComponent(text)}&limit=1`);
    const pct = a.matched / a.total * 100, want = pct.toFixed(pct >= 10 ? 1 : 2) + "%";
    await page.fill("#search", text);
    const same = await page.waitForFunction((m) => document.querySelector("#match").dataset.matched === String(m),
                                            a.matched, { timeout: 10000 }).then(() => true, () => false);
    const shown = await page.locator("#match").textContent();
    return { a, shown, same: same && shown.includes(want) };
  };
  const { a: fq, shown, same } = await search(term, "q");
  check(fq.matched > 0 && same, "search reports the API's share", { shown, fq: [fq.matched, fq.total] });
  check(new URL(page.url()).searchParams.get("q") === term, "the address holds the search");
  // a regex: the server matches it over every sample; the share shown is the API's and
  // the frames highlighted are those of the functions the API says it matched
  const rxText = "^(" + hot.name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "|<module>)$";
  const { a: frx, shown: rxShown, same: rxSame } = await search(rxText, "re");
  check(frx.matched >= fq.matched && rxSame, "a regex search reports the API's share over every sample",
        { rxShown, frx: [frx.matched, frx.total], fq: fq.matched });
  await page.waitForTimeout(50);
  const lit = await page.evaluate(() => {
    const ui = window.vmprofUI;
    return ui.state.rects.filter((q) => ui.node(q[3]).fn >= 0).map((q) => [ui.node(q[3]).fn, ui.highlighted(q[3])]);
  });
  const wantFns = new Set(frx.matching_fns);
  check(lit.length > 0 && lit.some(([, on]) => on) && lit.every(([fn, on]) => on === wantFns.has(fn)),
        "the frames highlighted are the API's matching functions", lit.filter(([fn, on]) => on !== wantFns.has(fn)).slice(0, 5));
  // a pattern the server refuses: its one-line reason is shown, nothing is highlighted
  const errorsBefore = report.errors.length;
  await page.fill("#search", "(unclosed");
  await page.waitForFunction(() => document.querySelector("#match").dataset.matched === "error");
  const bad = await page.locator("#match").textContent();
  check(bad.includes("not a regular expression"), "a bad regex shows the server's reason", bad);
  // the browser logs that answer (a 400) as a failed load: expected here, and only here
  await page.waitForTimeout(50);
  const logged = report.errors.splice(errorsBefore);
  report.errors.push(...logged.filter((e) => !/status of 400/.test(e)));
  check(logged.length === 1, "the bad regex is the one request that failed", logged);
  // POSIX classes, which the browser's RegExp does not know, are the server's to match
  const { a: fposix, shown: posixShown, same: posixSame } = await search("[[:alpha:]]*" + term.slice(1), "re");
  check(fposix.matched >= fq.matched && posixSame, "a POSIX class search matches on the server",
        { posixShown, posix: fposix.matched, fq: fq.matched });
  await page.fill("#search", "");

  // ---- functions table, sandwich
  await page.click("#tab-functions");
  await page.waitForSelector("#functions-table tbody tr");
  const funcs = await api(`runs/${run.id}/functions?sort=self&limit=200`);
  const firstSelf = Number((await page.locator("#functions-table tbody tr:first-child td:first-child").textContent()).replace(/,/g, ""));
  check(firstSelf === funcs.functions[0].self, "the functions table's top self count is the API's", [firstSelf, funcs.functions[0].self]);
  // sorted by total, then by self again; a filter by name shows the API's matches
  const byTotal = await api(`runs/${run.id}/functions?sort=total&limit=200`);
  await page.click("#functions-table th button:has-text('total')");
  await page.waitForSelector("#functions-table th button.on:has-text('total')");
  const cellNum = (row, col) => page.locator(`#functions-table tbody tr:nth-child(${row}) td:nth-child(${col})`).textContent()
    .then((t) => Number(t.replace(/,/g, "")));
  const totals = [await cellNum(1, 3), await cellNum(2, 3)];
  check(totals[0] === byTotal.functions[0].total && totals[1] === byTotal.functions[1].total,
        "the functions table sorts by total as the API does", [totals, byTotal.functions.slice(0, 2).map((f) => f.total)]);
  await page.click("#functions-table th button:has-text('self')");
  await page.waitForSelector("#functions-table th button.on:has-text('self')");
  await page.fill("#fn-filter", term);
  await page.waitForFunction((t) => new URL(location.href).searchParams.get("fq") === t, term);
  const filteredApi = await api(`runs/${run.id}/functions?sort=self&limit=200&q=${encodeURIComponent(term)}`);
  await page.waitForFunction((n) => document.querySelectorAll("#functions-table tbody tr").length === n,
                             filteredApi.functions.length, { timeout: 10000 }).catch(() => null);
  const shownFns = await page.$$eval("#functions-table tbody tr", (trs) => trs.map((tr) => Number(tr.dataset.fn)));
  check(filteredApi.functions.length > 0 && filteredApi.functions.length < funcs.functions.length &&
        JSON.stringify(shownFns) === JSON.stringify(filteredApi.functions.map((f) => f.fn)),
        "the functions filter shows the API's matches", [shownFns.length, filteredApi.functions.length]);
  await page.fill("#fn-filter", "");
  await page.waitForFunction(() => new URL(location.href).searchParams.get("fq") === null);
  await page.waitForFunction((n) => document.querySelectorAll("#functions-table tbody tr").length === n, funcs.functions.length);
  const pick = funcs.functions.find((f) => f.fn === hot.fn) || funcs.functions[0];
  await page.click(`#functions-table tr[data-fn="${pick.fn}"]`);
  await page.waitForSelector("#callers-table");
  const sw = await api(`runs/${run.id}/functions?function=${pick.fn}&limit=1`);
  check(await page.locator("#callers-table tbody tr").count() === sw.callers.length &&
        await page.locator("#callees-table tbody tr").count() === sw.callees.length, "callers and callees are the API's",
        [sw.callers.length, sw.callees.length]);
  await page.evaluate(() => document.querySelector(".tabs").scrollIntoView());
  await shot("functions");

  // ---- keyboard in the table: down a row, Enter chooses that function
  await page.locator("#functions-table tbody tr.selected").focus();  // the chosen one: move off it
  const last = await page.evaluate(() => !document.activeElement.nextElementSibling);
  await page.keyboard.press(last ? "ArrowUp" : "ArrowDown");
  const secondFn = await page.evaluate(() => document.activeElement.dataset.fn);
  await page.keyboard.press("Enter");
  await page.waitForFunction((fn) => new URL(location.href).searchParams.get("fn") === fn, secondFn);
  await page.waitForSelector(`#functions-table tr.selected[data-fn="${secondFn}"]`);
  check(true, "arrows and Enter choose a function in the table");
  await page.goBack();
  await page.waitForFunction((fn) => new URL(location.href).searchParams.get("fn") === fn, String(pick.fn));

  // ---- lines of that function
  if ((run.modes || []).includes("lines")) {
    await page.click("#tab-lines");
    await page.waitForSelector("#lines-table tbody tr");
    const la = await api(`runs/${run.id}/lines?function=${pick.fn}`);
    check(await page.locator("#lines-table tbody tr").count() === la.lines.length && la.lines.length > 0,
          "the lines table has the API's lines", la.lines.length);
  }

  // ---- RSS: a dragged range narrows the functions table
  await page.click("#tab-functions");
  await page.waitForSelector("#functions-table tbody tr");
  await page.locator("#rss").scrollIntoViewIfNeeded();
  const rss = await page.locator("#rss").boundingBox();
  await page.mouse.move(rss.x + 64 + (rss.width - 72) * 0.1, rss.y + 40);
  await page.mouse.down();
  await page.mouse.move(rss.x + 64 + (rss.width - 72) * 0.45, rss.y + 40, { steps: 4 });
  await page.mouse.up();
  await page.waitForFunction(() => new URL(location.href).searchParams.get("from") !== null);
  await page.waitForSelector("#functions-table tbody tr");
  await settle();
  const u = new URL(page.url()).searchParams;
  const ranged = await api(`runs/${run.id}/functions?sort=self&limit=200&from=${u.get("from")}&to=${u.get("to")}`);
  const rangedSelf = Number((await page.locator("#functions-table tbody tr:first-child td:first-child").textContent()).replace(/,/g, ""));
  check(ranged.total < funcs.total && rangedSelf === ranged.functions[0].self,
        "a time range narrows the functions table to the API's numbers", [ranged.total, funcs.total, rangedSelf]);
  s = await ui();
  check(s.total === ranged.total, "and the flame graph", [s.total, ranged.total]);

  // ---- a link shows what its sender saw: the same address in a fresh page
  await page.locator("#flame canvas").focus();
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter");
  await settle();
  const sent = await ui(), link = page.url();
  const fresh = await context.newPage();
  fresh.on("pageerror", (e) => report.errors.push(String(e)));
  fresh.on("console", (m) => { if (m.type() === "error") report.errors.push(m.text()); });
  await fresh.goto(link);
  await fresh.waitForSelector("#functions-table tr.selected");
  await fresh.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0 && !document.querySelector("#status").textContent);
  const got = await fresh.evaluate(() => window.vmprofUI.state);
  // the same frames 5 px wide and more (slivers deeper down may differ by what was loaded)
  const picture = (rects) => rects.filter((q) => q[2] >= 5).map((q) => [Math.round(q[0]), q[1], Math.round(q[2])].join()).sort().join(";");
  check(got.zoomPath.join(".") === sent.zoomPath.join(".") && got.total === sent.total &&
        picture(got.rects) === picture(sent.rects), "a link opens the same view",
        { link, sent: [sent.zoomPath, sent.total, sent.rects.length], got: [got.zoomPath, got.total, got.rects.length] });
  await fresh.close();
  await page.click("#range-reset");
  await settle();

  // ---- threads: one thread's tree
  await page.goto(`${base}/runs/${threaded.id}`);
  await page.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0);
  const t1 = threaded.threads[1];
  await page.selectOption("#thread", String(t1.id));
  await page.waitForFunction((n) => window.vmprofUI.state.total === n, t1.samples, { timeout: 10000 }).catch(() => null);
  check((await ui()).total === t1.samples, "picking a thread shows its samples", [(await ui()).total, t1.samples]);
  // the address holds the thread: the same link opened afresh shows that thread
  const threadLink = page.url(), other = await context.newPage();
  other.on("pageerror", (e) => report.errors.push(String(e)));
  other.on("console", (m) => { if (m.type() === "error") report.errors.push(m.text()); });
  await other.goto(threadLink);
  await other.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0 && !document.querySelector("#status").textContent);
  const otherState = await other.evaluate(() => [window.vmprofUI.state.total, document.querySelector("#thread").value]);
  check(new URL(threadLink).searchParams.get("thread") === String(t1.id) && otherState[0] === t1.samples &&
        otherState[1] === String(t1.id), "a link holds the thread", { threadLink, otherState });
  await other.close();

  // ---- native frames off: no native frame is drawn
  await page.goto(`${base}/runs/${native.id}`);
  await page.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0);
  await settle();
  const kinds = async () => page.evaluate(() => window.vmprofUI.state.rects.map((q) => window.vmprofUI.node(q[3]).kind));
  check((await kinds()).includes("native"), "native frames are drawn by default");
  const names = async () => page.evaluate(() => window.vmprofUI.state.rects.map((q) => window.vmprofUI.node(q[3]).name));
  const evalLoop = (ns) => ns.some((n) => /^_PyEval_EvalFrameDefault/.test(n));
  check(!evalLoop(await names()), "the interpreter's own frames are hidden by default");
  await page.check("#interp");
  await page.waitForFunction(() => new URL(location.href).searchParams.get("interp") === "1");
  await settle();
  check(evalLoop(await names()), "the interpreter switch shows its frames");
  await page.uncheck("#interp");
  await page.waitForFunction(() => new URL(location.href).searchParams.get("interp") === null);
  await settle();
  await page.uncheck("#native");
  await page.waitForFunction(() => new URL(location.href).searchParams.get("native") === "0");
  await settle();
  check(!(await kinds()).includes("native"), "the native switch hides native frames");

  // ---- prefetch, on the run with the most samples (where a zoom can need levels finer
  // than those loaded): while the page is idle, the widest frames get the levels their zoom
  // needs; the frame under the pointer gets them while the pointer rests, so the click that
  // follows asks the server nothing
  const dense = runs.reduce((a, b) => (b.samples > a.samples ? b : a));
  const reusedBefore = (await api("health")).answers.reused;
  await page.goto(`${base}/runs/${dense.id}`);
  await page.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0, null, { timeout: 15000 });
  const reusedAfter = (await api("health")).answers.reused;
  // its first view is the question the server answered when the run arrived
  check(reusedAfter > reusedBefore, "the first view is answered from what the server prepared at upload",
        [reusedBefore, reusedAfter]);
  await settle();
  await page.waitForFunction(() => window.vmprofUI.prefetches > 0 && !window.vmprofUI.idlePrefetching &&
                                   window.vmprofUI.pendingTrees() === 0, null, { timeout: 10000 }).catch(() => null);
  const idleDone = await page.evaluate(() => {
    const ui = window.vmprofUI, z = ui.state.zoom;
    const wide = ui.state.rects.filter((q) => q[3] !== z && q[2] >= 8).sort((a, b) => b[2] - a[2]).slice(0, 2);
    return { samples: ui.state.total, prefetches: ui.prefetches, wide: wide.map((q) => [q[3], ui.zoomNeedsRequest(q[3])]) };
  });
  check(idleDone.prefetches > 0 && idleDone.wide.every(([, need]) => !need),
        "while idle, the widest frames' levels are loaded before any click", idleDone);
  const treeAsks = [];
  page.on("request", (r) => { if (r.url().includes("/tree?")) treeAsks.push(r.url()); });
  const asksFor = (path) => treeAsks.filter((u) => new URL(u).searchParams.get("path") === path).length;
  /** The widest frame drawn (4 px or more) whose zoom needs a request: [x, y, w, node, path]. */
  const needing = () => page.evaluate(() => {
    const ui = window.vmprofUI, z = ui.state.zoom;
    const q = ui.state.rects.filter((q) => q[3] !== z && q[2] >= 4 && ui.zoomNeedsRequest(q[3])).sort((a, b) => b[2] - a[2])[0];
    return q ? [...q, ui.node(q[3]).path.join(".")] : null;
  });
  /** Where on the page frame q is, scrolled into the graph's box. */
  const pointAt = async (q) => {
    await page.evaluate((y) => { document.querySelector("#flame").scrollTop = Math.max(0, y - 100); }, q[1]);
    const fb = await page.locator("#flame canvas").boundingBox();
    return [fb.x + q[0] + Math.min(q[2] / 2, 10), fb.y + q[1] + 8];
  };

  // a zoom clicked at once into a frame whose levels are not loaded: the frame fills the
  // width at once, drawn from the levels held, where each frame drawn is one of the API's
  // with its count, and stays where it is when the server's answer (one request) completes
  // the view to exactly the API's frames
  await page.evaluate(() => { window.vmprofUI.recordViews = true; });
  const quick = await needing();
  check(quick !== null, "a frame drawn needs more levels to be zoomed into", idleDone);
  if (quick) {
    const at = await pointAt(quick);
    // the server's answer is held back until the view drawn meanwhile is checked
    let release;
    const held = new Promise((res) => { release = res; });
    const hold = (u) => new URL(u.href).pathname.endsWith("/tree") && new URL(u.href).searchParams.get("path") === quick[4];
    await page.route(hold, async (route) => { await held; await route.continue(); });
    await page.mouse.click(at[0], at[1]);  // moved onto it, pressed and released at once
    await page.waitForFunction((n) => window.vmprofUI.zoomClock?.zoom === n, quick[3]);
    const meanwhile = { trail: await page.locator("#trail .here").textContent(),
                        status: await page.locator("#status").textContent() };
    release();
    await settle();
    await page.unroute(hold);
    const quickName = (await page.evaluate((n) => window.vmprofUI.node(n), quick[3])).name;
    check(meanwhile.trail === quickName && meanwhile.status !== "",
          "while its levels load, the breadcrumb names the frame and the page says it is loading", meanwhile);
    const first = await page.evaluate(() => window.vmprofUI.firstView);
    const done = await ui(), want = await apiView(dense.id, done);
    const final = new Map((await page.evaluate(() => window.vmprofUI.view())).frames.map((f) => [f.path, f]));
    const top = first.frames.find((f) => f.path === quick[4]);
    const wrong = first.frames.filter((f) => want.get(f.path) !== f.total).map((f) => [f.path, f.total, want.get(f.path)]);
    const moved = first.frames.filter((f) => { const g = final.get(f.path); return !g || g.x !== f.x || g.y !== f.y || g.w !== f.w; });
    check(first.zoom === quick[3] && top && top.x === 0 && near(top.w, cw) && done.zoom === quick[3],
          "a zoom clicked at once fills the width at once", { top, cw });
    check(wrong.length === 0 && moved.length === 0 && first.frames.length < final.size,
          "what it draws first are the API's frames with the API's counts, where they stay",
          { wrong: wrong.slice(0, 3), moved: moved.slice(0, 3), first: first.frames.length, final: final.size });
    const complete = await drawnAndApi(dense.id, done);
    check(complete.same && asksFor(quick[4]) === 1, "then its view is the API's frames of 1/2000 of it, from one request",
          { ...complete, asks: treeAsks.filter((u) => new URL(u).searchParams.get("path") === quick[4]) });
    // the same address opened afresh (a shared link deep in the tree): one tree request
    const deepAsks = [], fresh = await context.newPage();
    fresh.on("pageerror", (e) => report.errors.push(String(e)));
    fresh.on("console", (m) => { if (m.type() === "error") report.errors.push(m.text()); });
    fresh.on("request", (r) => { if (r.url().includes("/tree?")) deepAsks.push(r.url()); });
    await fresh.goto(page.url());
    await fresh.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0 && !document.querySelector("#status").textContent);
    const opened = await fresh.evaluate(() => window.vmprofUI.state);
    const linked = await drawnAndApi(dense.id, opened, fresh);
    // (the others are prefetches of frames inside the view)
    const forView = deepAsks.filter((u) => new URL(u).searchParams.get("path") === quick[4]);
    const inside = deepAsks.every((u) => (new URL(u).searchParams.get("path") + ".").startsWith(quick[4] + "."));
    check(forView.length === 1 && inside && opened.zoomPath.join(".") === quick[4] && linked.same,
          "a link deep in the tree opens its view from one tree request", { deepAsks, ...linked });
    await fresh.close();
    await page.goBack();
    await settle();
  }
  const target = await needing();
  check(target !== null, "another frame drawn needs more levels to be zoomed into", idleDone);
  if (target) {
    const at = await pointAt(target);
    await page.mouse.move(at[0], at[1]);
    await page.waitForFunction((n) => !window.vmprofUI.zoomNeedsRequest(n) && window.vmprofUI.pendingTrees() === 0,
                               target[3], { timeout: 10000 }).catch(() => null);
    const hovered = asksFor(target[4]);
    await page.mouse.click(at[0], at[1]);
    await settle();
    const zs = await ui(), zr = zs.rects.find((q) => q[3] === zs.zoom);
    const zApi = await api(`runs/${dense.id}/tree?path=${zs.zoomPath.join(".")}&depth=1`);
    check(hovered === 1 && asksFor(target[4]) === 1 && zs.zoom === target[3] && zr && near(zr[2], cw) &&
          zApi.node.total === zs.zoomTotal,
          "resting the pointer on a frame loads its levels: the click zooms without asking the server",
          { hovered, after: asksFor(target[4]), zoom: [zs.zoom, target[3]], total: [zs.zoomTotal, zApi.node.total] });
    // under a frame of a small share of the run, still every frame of 1/2000 of it (the
    // levels were once asked at 1/5000 of the whole run and missed the finer ones)
    const deep = await drawnAndApi(dense.id, zs);
    check(zs.zoomTotal < 0.4 * zs.total && deep.same, "a zoomed frame's view has the API's frames of 1/2000 of it",
          { ...deep, share: zs.zoomTotal / zs.total });
  }

  // ---- a time range without samples says so
  await page.goto(`${base}/runs/${dense.id}?from=1e12&to=2e12`);
  await page.waitForSelector("#empty:not([hidden])", { timeout: 10000 }).catch(() => null);
  check(await page.locator("#empty").isVisible(), "a selection without samples says so");

  // ---- compare two runs
  const natives = runs.filter((r) => (r.modes || []).includes("native"));
  const [ra, rb] = natives.length >= 2 ? natives : runs;  // alike runs: a fair comparison
  await page.goto(`${base}/`);
  await page.waitForSelector("#runs-table tbody tr");
  await page.check(`#runs-table tr[data-run="${ra.id}"] input`);
  await page.check(`#runs-table tr[data-run="${rb.id}"] input`);
  await page.click("#compare");
  await page.waitForSelector("#diff-table tbody tr");
  const diff = await api(`diff/${ra.id}/${rb.id}`);
  check(await page.locator("#legend .swatch").count() >= 3, "the differential graph has a legend");
  const rects = await page.evaluate(() => window.vmprofCompare ? 1 : 0);
  check(rects === 1 && diff.a.total === ra.samples && diff.b.total === rb.samples, "the diff covers both runs", [diff.a.total, diff.b.total]);
  // the table's first row: the function whose share changed most, by the API's counts
  const change = (f) => f.b_total / diff.b.total - f.a_total / diff.a.total;
  const most = [...diff.functions].sort((x, y) => Math.abs(change(y)) - Math.abs(change(x)))[0];
  const firstDiff = await page.$$eval("#diff-table tbody tr:first-child td", (tds) => tds.map((td) => td.textContent));
  check(firstDiff[0] === most.name && firstDiff[4] === (change(most) >= 0 ? "+" : "") + (change(most) * 100).toFixed(2) + " pt",
        "the biggest change of share is the API's", { firstDiff, most: [most.name, change(most)] });
  // a click zooms the differential graph: the frame fills the width, the address holds it
  const dz = await page.evaluate(() => {
    const g = window.vmprofCompare.graph, r = g.rects(), z = g.zoom;
    const q = r.filter((q) => q[3] !== z && q[2] > 40).sort((a, b) => a[1] - b[1] || b[2] - a[2])[0];
    return q || null;
  });
  if (dz) {
    const db = await page.locator("#flame canvas").boundingBox();
    await page.mouse.click(db.x + dz[0] + 10, db.y + dz[1] + 8);
    await page.waitForFunction(() => new URL(location.href).searchParams.get("path") !== null);
    const after = await page.evaluate(() => { const g = window.vmprofCompare.graph; return [g.zoom, g.rects().find((q) => q[3] === g.zoom)]; });
    check(after[0] === dz[3] && after[1][0] === 0 && near(after[1][2], db.width), "a click zooms the differential graph", after);
  } else check(false, "the differential graph has a frame to zoom into");
  await shot("compare");

  // ---- narrow window and dark mode
  await page.setViewportSize({ width: 420, height: 800 });
  await page.goto(`${base}/runs/${run.id}`);
  await page.waitForFunction(() => window.vmprofUI?.state.rects?.length > 0);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, "a narrow window needs no sideways scrolling", overflow);
  await page.emulateMedia({ colorScheme: "dark" });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(bg === "rgb(23, 23, 26)", "dark mode follows the system", bg);
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot("run-dark");
});
