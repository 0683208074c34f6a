// jitlog.ts - the trace viewer of a run's PyPy jit log: the list of traces
// (/runs/ID/traces?q=&sort=), filtered by the query language and sorted by entry
// count, and one trace (/runs/ID/traces/TRACE?stage=&op=): its stages op by op,
// merge points as source lines, the machine code the server disassembled, and
// links from each guard to its bridge and from a bridge back to its guard.
// The server's answers are described in docs/server.md ("A run's PyPy jit log").
import { ApiError, Run, get } from "./api";
import { bar, clear, errorBox, fmtCount, h } from "./dom";
import { navigate } from "./nav";
import type { Page } from "./main";

export interface JitLogFacts {
  run: string; version: number; word_size: number; machine: string; warning: string | null;
  traces: number; loops: number; bridges: number; ops: number; source_lines: number;
}

export interface TraceItem {
  id: number; type: "loop" | "bridge"; jd: string; entries: number;
  func: string | null; file: string | null; line: number | null; ops: number;
  parent: number | null; aborted?: boolean;
}

export interface TraceList {
  total: number; matched: number; offset: number; next: number | null; traces: TraceItem[];
}

export interface Insn { addr: string; bytes: string; text: string | null; }

export interface Op {
  i: number; name: string; result: string; args: string; descr: string | null;
  failargs: string | null; descr_number?: string; bridge?: number; count?: number; asm?: Insn[];
}

export interface MergePoint {
  at: number; scope: string | null; file: string | null; line: number | null;
  opcode: string | null; index: number | null; source: string | null; indent: number | null;
}

export interface Stage { ops: Op[]; merge_points: MergePoint[]; }

export interface Trace extends TraceItem {
  inputargs: string; machine: string; disassembled: boolean;
  addr: { start: string; end: string } | null;
  guard: { id: number; stage: string; op: number | null; descr: string } | null;
  stages: Partial<Record<StageName, Stage>>;
}

type StageName = "noopt" | "opt" | "asm";
const STAGES: StageName[] = ["noopt", "opt", "asm"];
const STAGE_TITLES: Record<StageName, string> = {
  noopt: "traced (noopt)", opt: "optimized (opt)", asm: "machine code (asm)" };
const PAGE = 500;

const enc = encodeURIComponent;
const tracesPath = (run: string) => `/runs/${enc(run)}/traces`;
const tracePath = (run: string, id: number, stage?: string, op?: number | null) =>
  `${tracesPath(run)}/${id}` + (stage ? `?stage=${stage}` + (op !== null && op !== undefined ? `&op=${op}` : "") : "");

function where(t: { file: string | null; line: number | null }): string {
  return t.file ? t.file + (t.line ? ":" + t.line : "") : "";
}

function crumbs(run: Run | null, runId: string, ...rest: (Node | string)[]): HTMLElement {
  return h("p", { class: "crumbs" }, h("a", { href: "/", "data-nav": true }, "Runs"), " › ",
    h("a", { href: "/runs/" + enc(runId), "data-nav": true }, run ? (run.name || run.argv || "run " + runId) : "run " + runId),
    ...rest);
}

/** The page for /runs/ID/traces[/TRACE]. */
export function jitlogPage(root: HTMLElement, runId: string, trace: string | undefined, url: URL): Page {
  return trace === undefined ? new TraceListPage(root, runId, url) : new TracePage(root, runId, trace, url);
}

// ---- the trace list ------------------------------------------------------------------

class TraceListPage implements Page {
  private query = h("input", { type: "search", id: "jit-q", placeholder: 'loops & func("name")',
                               "aria-label": "query", spellcheck: "false", autocomplete: "off" });
  private sort = h("select", { id: "jit-sort", "aria-label": "order" },
    h("option", { value: "entries" }, "most entered first"), h("option", { value: "log" }, "the log's order"));
  private problem = h("div", { id: "jit-q-error", role: "alert" });
  private status = h("p", { id: "jit-status", class: "muted", role: "status" });
  private list = h("div", { id: "traces" });
  private more = h("button", { type: "button", id: "more-traces", hidden: true }, "More traces");
  private shown: TraceItem[] = [];
  private max = 1;
  private seq = 0;

  constructor(private root: HTMLElement, private runId: string, url: URL) {
    const facts = h("dl", { id: "jit-facts" });
    const title = h("h1", { id: "title" }, "JIT log of run " + runId);
    const crumb = h("div", null, crumbs(null, runId, " › JIT log"));
    root.append(h("section", { class: "page jitlog" }, crumb, title, facts,
      h("form", { class: "controls", role: "search", onsubmit: (ev: Event) => { ev.preventDefault(); this.apply(); } },
        this.query, h("button", { type: "submit" }, "Select"), h("label", null, "Order ", this.sort),
        h("span", { class: "muted small" }, "loops, bridges, func(\"…\"), op(\"…\"), & | ~ ( )")),
      this.problem, this.status, this.list, this.more));
    this.sort.addEventListener("change", () => this.apply());
    this.more.addEventListener("click", () => this.load(this.shown.length));
    get<Run>("runs/" + enc(runId)).then((run) => {
      clear(crumb);
      crumb.append(crumbs(run, runId, " › JIT log"));
      title.textContent = "JIT log of " + (run.name || run.argv || "run " + runId);
      document.title = "JIT log — " + (run.name || run.argv || runId) + " — vmprof";
    }).catch(() => undefined);
    get<JitLogFacts>(`runs/${enc(runId)}/jitlog`).then((f) => {
      const items: [string, string][] = [["machine", f.machine], ["traces", fmtCount(f.traces)],
        ["loops", fmtCount(f.loops)], ["bridges", fmtCount(f.bridges)], ["ops", fmtCount(f.ops)],
        ["format", `version ${f.version}, ${f.word_size * 8}-bit`]];
      facts.append(...items.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v))));
      if (f.warning) facts.after(h("p", { class: "error", id: "jit-warning" }, "The log is damaged: " + f.warning +
        " (the traces before that are shown)."));
    }).catch((e) => { clear(this.list); this.list.append(errorBox(e)); });
    this.update(url);
  }

  update(url: URL): boolean {
    const p = url.searchParams;
    (this.query as HTMLInputElement).value = p.get("q") || "";
    (this.sort as HTMLSelectElement).value = p.get("sort") === "log" ? "log" : "entries";
    this.load(0);
    return true;
  }

  private apply(): void {
    const u = new URL(tracesPath(this.runId), location.origin);
    const q = (this.query as HTMLInputElement).value.trim();
    if (q) u.searchParams.set("q", q);
    if ((this.sort as HTMLSelectElement).value === "log") u.searchParams.set("sort", "log");
    navigate(u.pathname + u.search);
  }

  private async load(offset: number): Promise<void> {
    const seq = ++this.seq;
    const q = (this.query as HTMLInputElement).value.trim();
    const sort = (this.sort as HTMLSelectElement).value;
    let data: TraceList;
    try {
      data = await get<TraceList>(`runs/${enc(this.runId)}/jitlog/traces`, { q, sort, offset, limit: PAGE });
    } catch (e) {
      if (seq !== this.seq) return;
      clear(this.problem);
      if (e instanceof ApiError && e.status === 400 && /^column (\d+)/.test(e.message)) {
        // the query's mistake, pointed at under the text
        const col = Number(/^column (\d+)/.exec(e.message)![1]);
        this.problem.append(h("div", { class: "error" }, h("pre", { class: "caret" }, q + "\n" + " ".repeat(Math.max(0, col - 1)) + "^"),
          h("span", { id: "jit-q-message" }, e.message)));
      } else {
        this.problem.append(errorBox(e));
      }
      clear(this.list);
      this.status.textContent = "";
      this.more.hidden = true;
      return;
    }
    if (seq !== this.seq) return;
    clear(this.problem);
    if (offset === 0) this.shown = [];
    this.shown.push(...data.traces);
    this.max = Math.max(1, ...this.shown.map((t) => t.entries));
    this.status.textContent = q
      ? `${fmtCount(data.matched)} of ${fmtCount(data.total)} traces selected`
      : `${fmtCount(data.total)} traces`;
    this.more.hidden = data.next === null;
    this.render();
  }

  private render(): void {
    clear(this.list);
    if (!this.shown.length) {
      this.list.append(h("p", { class: "muted" }, "No trace is selected."));
      return;
    }
    const body = h("tbody");
    for (const t of this.shown) {
      body.append(h("tr", { "data-trace": t.id },
        h("td", { class: "num" }, h("a", { href: tracePath(this.runId, t.id), "data-nav": true }, String(t.id))),
        h("td", null, t.type + (t.aborted ? " (aborted)" : "")),
        h("td", null, t.jd || h("span", { class: "muted" }, "—")),
        h("td", { class: "num entries" }, fmtCount(t.entries), bar(t.entries / this.max)),
        h("td", { class: "fn" }, t.func || ""),
        h("td", { class: "where" }, where(t)),
        h("td", { class: "num" }, fmtCount(t.ops)),
        h("td", { class: "num" }, t.parent !== null
          ? h("a", { href: tracePath(this.runId, t.parent), "data-nav": true }, String(t.parent)) : "")));
    }
    this.list.append(h("div", { class: "scroll" }, h("table", { class: "grid", id: "traces-table" },
      h("thead", null, h("tr", null, h("th", { class: "num" }, "trace"), h("th", null, "type"),
        h("th", null, "jit driver"), h("th", { class: "num" }, "entries"), h("th", null, "function"),
        h("th", null, "file"), h("th", { class: "num" }, "ops"), h("th", { class: "num" }, "from"))),
      body)));
  }
}

// ---- one trace -------------------------------------------------------------------

class TracePage implements Page {
  private trace: Trace | null = null;
  private tabs = h("div", { class: "tabs", role: "tablist" });
  private panel = h("div", { id: "stage", role: "tabpanel" });

  constructor(private root: HTMLElement, private runId: string, private traceId: string, url: URL) {
    root.append(h("section", { class: "page jittrace" }, h("p", { class: "muted" }, "Loading trace " + traceId + "…")));
    this.start(url);
  }

  private async start(url: URL): Promise<void> {
    let t: Trace;
    const runAnswer = get<Run>("runs/" + enc(this.runId)).catch(() => null);
    try {
      t = await get<Trace>(`runs/${enc(this.runId)}/jitlog/traces/${enc(this.traceId)}`);
    } catch (e) {
      clear(this.root);
      this.root.append(h("section", { class: "page" }, errorBox(e),
        h("a", { href: tracesPath(this.runId), "data-nav": true }, "All traces")));
      return;
    }
    const run = await runAnswer;
    this.trace = t;
    clear(this.root);
    document.title = `${t.type} ${t.id}${t.func ? " " + t.func : ""} — vmprof`;
    const facts: [string, Node | string][] = [
      ["type", t.type + (t.aborted ? " (aborted)" : "")], ["jit driver", t.jd || "—"],
      ["entries", fmtCount(t.entries)], ["input", t.inputargs || "—"],
      ["machine code", t.addr ? `${t.addr.start}–${t.addr.end} (${t.machine})` : "none"]];
    if (t.guard) {
      facts.push(["bridge of", h("a", { id: "guard-link", href: tracePath(this.runId, t.guard.id, t.guard.stage, t.guard.op),
        "data-nav": true }, `guard ${t.guard.op !== null ? "#" + t.guard.op + " " : ""}of trace ${t.guard.id}`)]);
    } else if (t.parent !== null) {
      facts.push(["bridge of", h("a", { href: tracePath(this.runId, t.parent), "data-nav": true }, "trace " + t.parent)]);
    }
    // each bridge once, at its guard in the machine code when the log has it
    const bridges = new Map<number, [StageName, Op]>();
    for (const name of [...STAGES].reverse())
      for (const op of t.stages[name]?.ops || [])
        if (op.bridge !== undefined && !bridges.has(op.bridge)) bridges.set(op.bridge, [name, op]);
    this.root.append(h("section", { class: "page jittrace" },
      crumbs(run, this.runId, " › ", h("a", { href: tracesPath(this.runId), "data-nav": true }, "JIT log"),
        ` › ${t.type} ${t.id}`),
      h("h1", { id: "title" }, `${t.type} ${t.id}`, t.func ? " — " + t.func : "",
        t.file ? h("span", { class: "muted" }, " " + where(t)) : ""),
      h("dl", { id: "trace-facts" }, ...facts.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v)))),
      bridges.size ? h("p", { id: "bridges" }, "Bridges from its guards: ",
        ...[...bridges.entries()].flatMap(([b, [stage, op]], k) => [k ? ", " : "",
          h("a", { href: tracePath(this.runId, b), "data-nav": true }, `${b}`),
          h("span", { class: "muted" }, " (",
            h("a", { href: tracePath(this.runId, t.id, stage, op.i), "data-nav": true }, `${op.name} #${op.i}`),
            op.count ? ", " + fmtCount(op.count) + "×" : "", ")")])) : null,
      this.tabs, this.panel));
    this.update(url);
  }

  update(url: URL): boolean {
    const t = this.trace;
    if (!t) return true;
    const present = STAGES.filter((s) => t.stages[s]);
    let stage = url.searchParams.get("stage") as StageName;
    if (!present.includes(stage)) stage = present.includes("opt") ? "opt" : present[0];
    const opArg = url.searchParams.get("op");
    const target = opArg !== null && opArg !== "" ? Number(opArg) : null;
    clear(this.tabs);
    for (const s of present)
      this.tabs.append(h("button", { type: "button", role: "tab", id: "tab-" + s, class: s === stage ? "on" : "",
        "aria-selected": s === stage ? "true" : "false",
        onclick: () => navigate(tracePath(this.runId, t.id, s), true) }, STAGE_TITLES[s] + ` · ${t.stages[s]!.ops.length} ops`));
    clear(this.panel);
    if (stage) this.panel.append(this.stageView(t, stage, target));
    if (target !== null) {
      const row = document.getElementById(`op-${stage}-${target}`);
      if (row) { row.classList.add("target"); row.scrollIntoView({ block: "center" }); row.focus(); }
    }
    return true;
  }

  private stageView(t: Trace, name: StageName, target: number | null): HTMLElement {
    const stage = t.stages[name]!;
    const rows: HTMLElement[] = [];
    let m = 0;
    const mps = stage.merge_points;
    const mergeRow = (mp: MergePoint) => h("tr", { class: "mp" }, h("td", null, ""),
      h("td", { colspan: 3 },
        h("span", { class: "where" }, where(mp) || "?"), " ", h("span", { class: "fn" }, mp.scope || ""),
        mp.opcode ? h("span", { class: "muted" }, ` ${mp.opcode}${mp.index !== null ? " @" + mp.index : ""}`) : "",
        mp.source !== null ? h("code", { class: "src" }, " ".repeat(mp.indent || 0) + mp.source) : ""));
    for (const op of stage.ops) {
      while (m < mps.length && mps[m].at <= op.i) rows.push(mergeRow(mps[m++]));
      rows.push(this.opRow(t, name, op, target));
      for (const insn of op.asm || [])
        rows.push(h("tr", { class: "insn" }, h("td", { class: "num muted" }, insn.addr),
          h("td", { class: "bytes muted" }, insn.bytes), h("td", { class: "insn" }, insn.text ?? "(.byte)"), h("td", null, "")));
    }
    while (m < mps.length) rows.push(mergeRow(mps[m++]));
    const note = name === "asm" && !t.disassembled
      ? h("p", { class: "muted" }, `The server does not disassemble ${t.machine}: machine code is shown as bytes.`) : null;
    return h("div", null, note, h("div", { class: "scroll" },
      h("table", { class: "grid ops", id: "ops-" + name }, h("tbody", null, ...rows))));
  }

  private opRow(t: Trace, stage: StageName, op: Op, target: number | null): HTMLElement {
    const result = op.result && op.result !== "?" ? op.result + " = " : "";
    const text = `${result}${op.name}(${op.args}${op.descr !== null ? (op.args ? ", " : "") + "@" + op.descr : ""})`;
    const link = op.bridge !== undefined
      ? h("a", { class: "bridge", href: tracePath(this.runId, op.bridge), "data-nav": true, "data-bridge": op.bridge },
          `→ bridge ${op.bridge}` + (op.count ? ` (${fmtCount(op.count)}×)` : ""))
      : null;
    return h("tr", { id: `op-${stage}-${op.i}`, class: "op" + (op.i === target ? " target" : ""), tabindex: -1,
                     "data-op": op.i },
      h("td", { class: "num muted" }, String(op.i)),
      h("td", { class: "optext", colspan: 2 }, text,
        op.failargs ? h("span", { class: "muted small" }, ` [${op.failargs}]`) : ""),
      h("td", null, link));
  }
}
