// run.ts - one run: its facts, then one selection shared by a flame graph, a call
// tree table, a functions table with callers and callees, the lines of a function
// (--lines runs) and the RSS plot (--mem runs), whose time range narrows the rest.
//
// The call tree comes from the server a piece at a time (GET tree with a path, a
// depth and a minimum share): the first answer has every level down to a share of
// the whole, and zooming into a node finer than that asks for that node's subtree,
// so a million-sample run opens as fast as a small one.  The pieces are merged into
// one client tree whose node numbers never change, which the flame graph draws.
// What a zoom would need is loaded before the click when it can be guessed: the
// frame under the pointer or the keyboard's cursor, and, while the page is idle, the
// widest frames drawn whose zoom would need a request.
//
// The address holds the view: ?thread=&native=&interp=&from=&to= (the selection),
// path= (the zoomed node as function ids from the root; absent: the program's first
// frame), fn= (the chosen function), q= (search), tab=.
import {
  FuncInfo, FunctionsAnswer, FuncRow, LinesAnswer, MemoryAnswer, Run, Session,
  TreeAnswer, TreeNode, get, runDuration,
} from "./api";
import { bar, clear, errorBox, fmtCount, fmtKiB, fmtMs, fmtWhen, h } from "./dom";
import { FlameGraph, FlameTree, createFlameGraph, fmtPct, kindColour } from "./flamegraph";
import { navigate } from "./nav";
import { findProgram } from "./program";

// A view shows the zoomed node's subtree down to DRAW_MIN of it (under a pixel at
// 1280 px), at most DRAW_DEPTH levels (a canvas browsers still draw), and only that,
// so a link shows what its sender saw whatever else either had loaded.  The first
// view and a zoom waiting for its levels ask just that (vmprof-server computes the
// first question from the root when a profile arrives, srv_query_prepare, so the
// first view of a large run waits for no tree query); a prefetch asks finer
// (FETCH_MIN of the node asked), so zooming on into a child of 40% or more needs
// nothing more.
const DRAW_DEPTH = 128, DRAW_MIN = 0.0005;
const FETCH_DEPTH = 128, FETCH_MIN = 0.0002;
// Prefetch: after the pointer rests this long on a frame; this many frames when idle.
const HOVER_MS = 40, IDLE_PREFETCHES = 4;
// The search asks the server once the text has not changed for this long.
const SEARCH_REST_MS = 150;
// What makes a search a regular expression (else it is plain text).
const REGEX_CHARS = /[.*+?^${}()|[\]\\]/, REGEX_CHARS_ALL = /[.*+?^${}()|[\]\\]/g;
const EXPORTS = ["collapsed", "speedscope", "pprof", "firefox", "html"];

/** The call tree as far as it has been loaded; node 0 is the root.  Its layout for
 * the flame graph (children heaviest first, depths, left offsets) is kept up to date
 * by each merge over the part the merge changed, in the same object, so the graph
 * draws only what a merge added (FlameGraph.grow). */
class ClientTree {
  parent: number[] = [-1];
  value: number[] = [0];
  self: number[] = [0];
  fn: number[] = [-1];
  /** children are all known down to this many samples (Infinity: not loaded) */
  complete: number[] = [Infinity];
  funcs = new Map<number, FuncInfo>();
  /** the flame graph's colour of each node drawn so far */
  colour: string[] = [];
  private byKey = new Map<number, number>();  // parent * 2^22 + fn -> child (fn < 2^22)
  private kids: number[][] = [[]];
  private depth: number[] = [0];
  private start: number[] = [0];
  readonly layout: FlameTree = { n: 1, parent: this.parent, value: this.value, kids: this.kids,
                                 depth: this.depth, start: this.start, maxDepth: 0 };

  child(p: number, fn: number): number {
    const key = p * 4194304 + fn;
    let c = this.byKey.get(key);
    if (c === undefined) {
      c = this.parent.length;
      this.parent.push(p); this.value.push(0); this.self.push(0); this.fn.push(fn);
      this.complete.push(Infinity);
      this.kids.push([]); this.depth.push(this.depth[p] + 1); this.start.push(0);
      this.kids[p].push(c);
      this.byKey.set(key, c);
    }
    return c;
  }
  /** Lays out the subtree of r again (its children sorted heaviest first, ties in
   * the order they came, as layoutTree does; depths and offsets below r). */
  private relayout(r: number): void {
    const { kids, value, depth, start } = this, L = this.layout;
    const todo = [r];
    while (todo.length) {
      const n = todo.pop() as number, k = kids[n];
      if (k.length > 1) k.sort((a, b) => value[b] - value[a] || a - b);
      let x = start[n];
      for (const c of k) {
        depth[c] = depth[n] + 1;
        if (depth[c] > L.maxDepth) L.maxDepth = depth[c];
        start[c] = x;
        x += value[c];
        todo.push(c);
      }
    }
    L.n = this.parent.length;
  }
  find(path: number[]): number {
    let n = 0;
    for (const fn of path) {
      const c = this.byKey.get(n * 4194304 + fn);
      if (c === undefined) return -1;
      n = c;
    }
    return n;
  }
  pathOf(n: number): number[] {
    const out: number[] = [];
    for (; n > 0; n = this.parent[n]) out.push(this.fn[n]);
    return out.reverse();
  }
  /** Bumped by each merge. */
  version = 0;
  /** Merges an answer whose nodes are every one of at least `least` samples. */
  merge(a: TreeAnswer, path: number[], least: number): number {
    this.version++;
    for (const [k, f] of Object.entries(a.functions || {})) this.funcs.set(Number(k), f);
    // what the layout must redo: the subtree of the answer's node, or all of it when
    // a count above that node changed or a node on the way to it is new
    const nodesBefore = this.parent.length;
    let top = this.value[0] === a.total ? -1 : 0;
    this.value[0] = a.total;
    let n = 0;
    path.forEach((fn, i) => {
      n = this.child(n, fn);
      const c = a.chain && i < path.length - 1 ? a.chain[i] : null;  // chain[i]: the node at path[i]
      if (c && (this.value[n] !== c.total || this.self[n] !== c.self)) {
        this.value[n] = c.total; this.self[n] = c.self; top = 0;
      }
    });
    if (this.parent.length !== nodesBefore) top = 0;
    if (top < 0) top = this.value[n] === a.node.total ? n : this.parent[n];
    // every child at least this big came; under one sample, every child there is
    const threshold = least <= 1 ? 0 : least;
    const put = (n: number, node: TreeNode) => {
      this.value[n] = node.total;
      this.self[n] = node.self;
      if (node.more) return;
      this.complete[n] = Math.min(this.complete[n], threshold);
      for (const k of node.children || []) put(this.child(n, k.fn as number), k);
    };
    put(n, a.node);
    this.relayout(Math.max(top, 0));
    return n;
  }
  func(n: number): FuncInfo {
    return n === 0 ? { name: "all samples", kind: "root" } :
      this.funcs.get(this.fn[n]) || { name: "function " + this.fn[n], kind: "unknown" };
  }
}

/** A tree question asked (key: its selection and path): its answer, the min= it was
 * asked with, and the client tree it was merged into (once per tree). */
interface Asked {
  key: string; answer: Promise<TreeAnswer>; min: number; ofNode: boolean; settled: boolean; merged: ClientTree | null;
}

interface Selection { thread?: string; native: boolean; interp: boolean; from?: string; to?: string; }

function selectionOf(url: URL): Selection {
  const p = url.searchParams;
  return { thread: p.get("thread") || undefined, native: p.get("native") !== "0",
           interp: p.get("interp") === "1", from: p.get("from") || undefined, to: p.get("to") || undefined };
}

function where(f: FuncInfo, line?: number): string {
  if (!f.file) return f.kind === "native" ? "(native)" : "";
  return f.file + (line || f.line ? ":" + (line || f.line) : "");
}

/** A table cell with the end of a long file path (the whole of it on hover). */
function whereCell(f: FuncInfo): HTMLElement {
  const full = where(f), parts = full.split("/");
  return h("td", { class: "where muted", title: full }, parts.length > 3 ? "…/" + parts.slice(-2).join("/") : full);
}

export class RunPage {
  private run: Run | null = null;
  private sel: Selection;
  private tree = new ClientTree();
  private graph: FlameGraph | null = null;
  private url: URL;
  private gen = 0;  // bumped when the selection changes, so late answers are dropped
  private search: RegExp | null = null;
  /** The functions the server matched, and the search and selection it answered. */
  private matchFns: { key: string; fns: Set<number> } | null = null;
  /** The highlight rule set on the graph, and the tree it was set for. */
  private matchRule = "";
  private matchTree: ClientTree | null = null;
  private fnRows: FunctionsAnswer | null = null;
  private expanded = new Set<number>();
  private sortBy: "self" | "total" = "self";
  private programPath: number[] | null = null;
  private el: Record<string, HTMLElement> = {};

  constructor(private root: HTMLElement, private id: string, url: URL, private session: Session) {
    this.url = url;
    this.sel = selectionOf(url);
    this.start();
  }

  private q(name: string): string | null { return this.url.searchParams.get(name); }

  /** The selection's query parameters for the API. */
  private selParams(): Record<string, unknown> {
    const s = this.sel;
    return { thread: s.thread, native: s.native ? 1 : 0, interp: s.interp ? 1 : 0, from: s.from, to: s.to };
  }

  /** A new address with `changes` applied to the current one (null removes). */
  private go(changes: Record<string, string | null>, replace = false): void {
    const u = new URL(location.href);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null) u.searchParams.delete(k); else u.searchParams.set(k, v);
    }
    navigate(u.pathname + u.search, replace);
  }

  private async start(): Promise<void> {
    const r = this.root;
    r.append(h("section", { class: "page run" }, h("p", { class: "muted" }, "Loading run " + this.id + "…")));
    // the first tree is asked at once, beside the run's facts, not after them
    const raw = this.q("path");
    this.ask(raw ? raw.split(".").map(Number) : []).answer.catch(() => undefined);  // its error is shown when used
    try {
      this.run = await get<Run>("runs/" + encodeURIComponent(this.id));
    } catch (e) {
      clear(r);
      r.append(h("section", { class: "page" }, errorBox(e), h("a", { href: "/", "data-nav": true }, "All runs")));
      return;
    }
    if (this.run.has_jitlog && !this.run.samples && !this.run.raw_size) {
      // a jit log uploaded alone (pypy3 -m jitlog --web): its traces are the run
      navigate(`/runs/${encodeURIComponent(this.id)}/traces`, true);
      return;
    }
    clear(r);
    this.build();
    this.reload();
  }

  private build(): void {
    const run = this.run as Run, modes = run.modes || [];
    document.title = (run.name || run.argv || run.id) + " — vmprof";
    const E = this.el;
    const facts: [string, string][] = [
      ["interpreter", run.vm || run.interpreter || "?"], ["started", fmtWhen(run.start || run.created)],
      ["duration", fmtMs(runDuration(run))],
      ["samples", fmtCount(run.samples)], ["period", fmtMs(run.period === undefined ? undefined : run.period * 1000)],
      ["clock", run.clock === "wall" || modes.includes("real-time") ? "wall clock" : "CPU time"],
      ["threads", String(run.thread_count || (run.threads || []).length || 1)],
    ];
    if (modes.length) facts.push(["modes", modes.join(", ")]);
    if (run.max_rss_kib) facts.push(["peak RSS", fmtKiB(run.max_rss_kib)]);
    if (run.owner) facts.push(["owner", run.owner]);
    const api = "/api/runs/" + encodeURIComponent(run.id);
    const downloads = h("details", { class: "menu" }, h("summary", null, "Download"),
      h("ul", null, ...(run.exports || EXPORTS).map((f) =>
        h("li", null, h("a", { href: `${api}/export/${f}`, download: true }, f))),
        h("li", null, h("a", { href: `${api}/raw`, download: true }, "raw profile"))));
    const speedscope = h("a", { class: "button", id: "speedscope", target: "_blank", rel: "noopener",
      href: "/speedscope/index.html#profileURL=" + encodeURIComponent(`${location.origin}${api}/export/speedscope`) +
            "&title=" + encodeURIComponent(run.name || run.argv || run.id) }, "Open in speedscope");

    E.thread = h("select", { id: "thread", "aria-label": "thread" }, h("option", { value: "" }, "all threads"),
      ...(run.threads || []).map((t) => h("option", { value: String(t.id) },
        `thread ${t.index !== undefined ? t.index + 1 : ""} (${t.id}) — ${fmtCount(t.samples)} samples`)));
    E.native = h("input", { type: "checkbox", id: "native" });
    E.interp = h("input", { type: "checkbox", id: "interp" });
    E.search = h("input", { type: "search", id: "search", placeholder: "search function or file (text or regex)",
                            "aria-label": "search functions" });
    E.match = h("span", { id: "match", role: "status" });
    E.trail = h("nav", { id: "trail", "aria-label": "zoom path" });
    E.flame = h("div", { id: "flame", class: "flamebox" });
    E.memory = h("div", { id: "memory", class: "memory", hidden: !modes.includes("memory") });
    E.tabs = h("div", { class: "tabs", role: "tablist" });
    E.panel = h("div", { id: "panel", role: "tabpanel" });
    E.status = h("div", { id: "status", class: "muted", role: "status" });
    E.empty = h("p", { id: "empty", class: "muted", hidden: true },
      "No samples in this selection: choose another thread or time range.");
    this.root.append(h("section", { class: "page run" },
      h("header", { class: "facts" },
        h("p", { class: "crumbs" }, h("a", { href: "/", "data-nav": true }, "Runs"), " › run " + run.id),
        h("h1", { id: "title" }, run.name || run.argv || "run " + run.id),
        run.name ? h("p", { class: "muted" }, run.argv) : null,
        h("dl", { id: "facts" }, ...facts.map(([k, v]) => h("div", null, h("dt", null, k), h("dd", null, v)))),
        h("div", { class: "actions" }, downloads, speedscope,
          run.has_jitlog ? h("a", { class: "button", id: "jitlog-link", href: `/runs/${encodeURIComponent(run.id)}/traces`,
                                    "data-nav": true }, "JIT log traces") : null)),
      h("div", { class: "controls" },
        h("label", null, "Thread ", E.thread),
        modes.includes("native") ? h("label", null, E.native, " native frames") : null,
        modes.includes("native") ? h("label", null, E.interp, " interpreter's frames") : null,
        E.search, E.match, E.status),
      E.memory, E.trail, E.flame, E.empty, E.tabs, E.panel));

    E.thread.addEventListener("change", () => this.go({ thread: (E.thread as HTMLSelectElement).value || null, path: null }));
    E.native.addEventListener("change", () => this.go({ native: (E.native as HTMLInputElement).checked ? null : "0", path: null }));
    E.interp.addEventListener("change", () => this.go({ interp: (E.interp as HTMLInputElement).checked ? "1" : null, path: null }));
    E.search.addEventListener("input", () => this.go({ q: (E.search as HTMLInputElement).value || null }, true));

    this.graph = createFlameGraph(E.flame, {
      label: (n) => this.tree.func(n).name,
      colour: (n) => {
        const t = this.tree;
        let c = t.colour[n];
        if (c === undefined) {
          const f = t.func(n);
          c = t.colour[n] = n === 0 ? "#c9c9d1" : kindColour(f.kind || "", f.name + (f.file || ""));
        }
        return c;
      },
      // children not drawn: cut by the depth, or not loaded yet down to what the view draws
      more: (n, last, least) => (last || this.tree.complete[n] > least) && this.tree.value[n] > this.tree.self[n],
      known: (n) => { const t = this.tree; return t.complete[n] === Infinity && t.value[n] === t.self[n] ? 0 : t.complete[n]; },
      maxDepth: DRAW_DEPTH,
      minShare: DRAW_MIN,
      tooltip: (n) => {
        const t = this.tree, f = t.func(n), all = t.value[0] || 1;
        return [f.name, where(f),
          `total ${fmtCount(t.value[n])} samples (${fmtPct(t.value[n] / all)})`,
          `self ${fmtCount(t.self[n])} samples (${fmtPct(t.self[n] / all)})`].filter(Boolean);
      },
      onZoom: (n) => {
        this.zoomClock = { zoom: n, drawn: performance.now(), complete: 0 };
        this.shown = [this.tree, n, this.tree.version];
        if (this.recordViews) this.firstView = this.view();
        this.go({ path: this.tree.pathOf(n).join(".") });
      },
      // a click is coming: what its zoom needs is asked now, before the view is drawn
      onPress: (n) => { this.prefetch(n, DRAW_MIN); },
      onHover: (n) => {
        clearTimeout(this.hoverTimer);
        this.hoverTimer = window.setTimeout(() => this.prefetch(n), HOVER_MS);
      },
      onFocus: (n) => { this.prefetch(n); },
    });
    (window as unknown as { vmprofUI: unknown }).vmprofUI = this;
    this.syncControls();
  }

  private syncControls(): void {
    const E = this.el;
    (E.thread as HTMLSelectElement).value = this.sel.thread || "";
    (E.native as HTMLInputElement).checked = this.sel.native;
    (E.interp as HTMLInputElement).checked = this.sel.interp;
    (E.interp as HTMLInputElement).disabled = !this.sel.native;
    const q = this.q("q") || "";
    if ((E.search as HTMLInputElement).value !== q) (E.search as HTMLInputElement).value = q;
  }

  /** Called by the router when only the query of this run's address changed. */
  update(url: URL): boolean {
    const before = this.url;
    this.url = url;
    if (!this.run) return true;
    const sel = selectionOf(url), same = JSON.stringify(sel) === JSON.stringify(this.sel);
    this.sel = sel;
    this.syncControls();
    if (!same) {
      this.reload();
      return true;
    }
    const changed = (k: string) => before.searchParams.get(k) !== url.searchParams.get(k);
    if (changed("path")) this.showPath();
    if (changed("q")) this.applySearch();
    if (changed("fn") || changed("tab")) { this.renderTabs(); this.applySearch(); }
    else if (changed("fq") && this.tab() === "functions") this.renderFunctions(true);
    return true;
  }

  /** A new selection: everything is asked again. */
  private async reload(): Promise<void> {
    this.gen++;
    this.tree = new ClientTree();
    this.expanded.clear();
    this.fnRows = null;
    this.programPath = null;
    this.graph?.setTree(null);
    this.drawMemory();
    await this.showPath();
    this.applySearch();
    this.renderTabs();
  }

  /** The tree answers asked and not merged yet, by question: a zoom waits for the
   * prefetch of the same node instead of asking again. */
  private inflight = new Map<string, Asked>();

  /** The tree question about `path` down to `share` of its node: min= is a share of
   * the selection, `share` of the node scaled by its count when known; else (a link
   * deep in a tree not loaded yet) of=node makes it a share of the node, so one
   * answer has all the view draws.  The counts of the nodes on the way (chain) are
   * asked only when not known.  key: the question but for its min. */
  private question(path: number[], share: number) {
    const t = this.tree, n = t.value[0] ? t.find(path) : -1, ofNode = n < 0 && path.length > 0;
    // scaled, rounded down: the answer must hold every node the view needs (needsMore);
    // unscaled, exact: the first view's question is the one the server prepared
    const min = ofNode || n <= 0 ? share : Number((share * t.value[n] / t.value[0] * (1 - 1e-5)).toPrecision(6));
    const params = { ...this.selParams(), path: path.join("."), depth: FETCH_DEPTH, min,
                     of: ofNode ? "node" : undefined, chain: path.length > 1 && n >= 0 ? 0 : undefined };
    return { params, min, ofNode, key: JSON.stringify({ ...params, min: undefined }) };
  }

  /** Asks for the subtree at `path`, unless a question of it at least as fine is in
   * flight (question()). */
  private ask(path: number[], share = DRAW_MIN): Asked {
    const { params, min, ofNode, key } = this.question(path, share);
    let q = this.inflight.get(key);
    if (!q || q.min > min) {
      const asked: Asked = { key, answer: get<TreeAnswer>(`runs/${encodeURIComponent(this.id)}/tree`, params),
                             min, ofNode, settled: false, merged: null };
      asked.answer.then(() => { asked.settled = true; }, () => { asked.settled = true; });
      this.inflight.set(key, q = asked);
    }
    return q;
  }

  /** Fetches the subtree at `path` and merges it; false when the answer came too late
   * or failed.  quiet: a prefetch, which says nothing on the page. */
  private async fetchTree(path: number[], quiet = false, share = quiet ? FETCH_MIN : DRAW_MIN): Promise<boolean> {
    const gen = this.gen;
    if (!quiet) this.el.status.textContent = "loading…";
    const q = this.ask(path, share);
    try {
      const a = await q.answer;
      if (gen !== this.gen) return false;  // an older selection's (kept: the same question may come back)
      if (q.merged !== this.tree) {  // the first to see it merges it
        q.merged = this.tree;
        this.tree.merge(a, a.path || path, q.min * (q.ofNode ? a.node.total : a.total));
        if (this.inflight.get(q.key) === q) this.inflight.delete(q.key);
      }
      if (!quiet) this.el.status.textContent = "";
      return true;
    } catch (e) {
      if (this.inflight.get(q.key) === q) this.inflight.delete(q.key);
      if (!quiet && gen === this.gen) { this.el.status.textContent = ""; this.el.flame.replaceChildren(errorBox(e)); }
      return false;
    }
  }

  /** Loads, in the background, what a zoom into node n would need (`share` of n, as
   * finely as a prefetch asks unless told); null when nothing. */
  private prefetch(n: number, share = FETCH_MIN): Promise<boolean> | null {
    if (n <= 0 || n >= this.tree.parent.length || !this.needsMore(n)) return null;
    const path = this.tree.pathOf(n), asked = this.inflight.get(this.question(path, share).key);
    if (asked && !asked.settled) return null;  // on its way already (e.g. pressed, then hovered)
    this.prefetches++;
    return this.fetchTree(path, true, share);
  }
  /** Prefetches asked so far, for tests and bench/. */
  prefetches = 0;
  /** Whether the idle prefetches of the view are still going, for tests. */
  idlePrefetching = false;
  private hoverTimer = 0;
  private idleToken = 0;

  /** While the page is idle after a view is drawn: prefetches for the widest frames
   * drawn whose zoom would need a request, one at a time, IDLE_PREFETCHES at most. */
  private prefetchWhenIdle(): void {
    const token = ++this.idleToken, gen = this.gen;
    const idle = () => new Promise<void>((res) => {
      const w = window as unknown as { requestIdleCallback?: (f: () => void, o: unknown) => void };
      if (w.requestIdleCallback) w.requestIdleCallback(() => res(), { timeout: 500 }); else setTimeout(res, 50);
    });
    const still = () => token === this.idleToken && gen === this.gen;
    this.idlePrefetching = true;
    (async () => {
      await idle();
      if (!still() || !this.graph) return;
      const t = this.tree, z = this.graph.zoom, wide = this.incompleteBelow();
      const need = (n: number) => t.value[n] * DRAW_MIN < wide[n];  // a quick test, confirmed by needsMore
      const targets = this.graph.rects().filter((q) => q[3] !== z && q[2] >= 8 && need(q[3]))
        .sort((a, b) => b[2] - a[2]);
      let done = 0;
      for (const q of targets) {
        if (done >= IDLE_PREFETCHES || !still()) return;
        const p = this.prefetch(q[3]);
        if (p) { done++; await p; await idle(); }
      }
    })().finally(() => { if (token === this.idleToken) this.idlePrefetching = false; });
  }

  /** Per node, the largest count, within its subtree, of a node with children not all
   * loaded (the least of its count and of what its loaded children are complete to):
   * a zoom into n needs a request when DRAW_MIN of n is under it.  One pass, children
   * after parents. */
  private incompleteBelow(): Float64Array {
    const t = this.tree, n = t.parent.length, out = new Float64Array(n);
    for (let i = n - 1; i >= 0; i--) {
      if (t.value[i] > t.self[i]) out[i] = Math.max(out[i], Math.min(t.value[i], t.complete[i]));
      if (i > 0) out[t.parent[i]] = Math.max(out[t.parent[i]], out[i]);
    }
    return out;
  }

  /** The program's first frame (program.ts), loading deeper levels when needed. */
  private async findProgram(): Promise<number[]> {
    if (this.programPath) return this.programPath;
    const t = this.tree;
    for (let tries = 0; tries < 4; tries++) {
      const { found, last } = findProgram((n) => t.layout.kids[n], (n) => t.func(n));
      if (found >= 0) return (this.programPath = t.pathOf(found));
      if (t.complete[last] !== Infinity || t.value[last] <= t.self[last]) break;  // a leaf: no program frame
      if (!(await this.fetchTree(t.pathOf(last)))) break;
    }
    return (this.programPath = []);
  }

  /** Zooms to the address's path, loading what is missing below it. */
  private async showPath(): Promise<void> {
    const gen = this.gen, raw = this.q("path");
    const t = this.tree;
    if (t.value[0] === 0 && !(await this.fetchTree(raw ? raw.split(".").map(Number) : []))) return;
    const path = raw === null ? await this.findProgram() : raw ? raw.split(".").map(Number) : [];
    let n = t.find(path);
    if (n < 0 || this.needsMore(n)) {
      if (n >= 0) this.renderTrail(n);  // of the view drawn from the levels held meanwhile
      if (!(await this.fetchTree(path))) return;
      n = t.find(path);
    }
    if (gen !== this.gen) return;
    if (n < 0) { this.el.status.textContent = "that frame is not in this selection; showing all"; n = 0; }
    const s = this.shown;
    if (!s || s[0] !== t || s[1] !== n || s[2] !== t.version) {
      this.graph?.setTree(t.layout, n, true);
      this.shown = [t, n, t.version];
    }
    this.el.empty.hidden = t.value[0] > 0;
    this.applySearch(false);
    const clock = this.zoomClock;
    if (clock && clock.zoom === n && !clock.complete) clock.complete = performance.now();
    this.renderTrail(n);
    if (this.tab() === "tree") this.renderTabs();
    this.exposeState();
    this.prefetchWhenIdle();
  }

  /** The last zoom made by the user, for bench/: the node, when its view was first
   * drawn (from the levels held), and when it was complete (performance.now()). */
  zoomClock: { zoom: number; drawn: number; complete: number } | null = null;

  /** Whether a node the view of zoom node z draws (DRAW_DEPTH levels, DRAW_MIN of z)
   * lacks children it would draw. */
  private needsMore(z: number): boolean {
    const t = this.tree, memo = this.needs;
    if (memo.tree !== t || memo.version !== t.version) { memo.tree = t; memo.version = t.version; memo.of.clear(); }
    const known = memo.of.get(z);
    if (known !== undefined) return known;  // (a press, then its click, ask the same)
    const need = t.value[z] * DRAW_MIN;
    const todo: [number, number][] = [[z, 0]];
    let more = false;
    while (todo.length && !more) {
      const [n, d] = todo.pop() as [number, number];
      if (t.value[n] < need || d >= DRAW_DEPTH) continue;
      if (t.complete[n] > need && t.value[n] > t.self[n]) more = true;
      for (const c of t.layout.kids[n] || []) todo.push([c, d + 1]);
    }
    memo.of.set(z, more);
    return more;
  }
  /** needsMore's answers for one state of one client tree. */
  private needs = { tree: null as ClientTree | null, version: -1, of: new Map<number, boolean>() };
  /** What the graph shows: its client tree, zoom and that tree's version, so a view
   * drawn already (by the click that zoomed) is not gone over again. */
  private shown: [ClientTree, number, number] | null = null;

  private renderTrail(z: number): void {
    const t = this.tree, trail = this.el.trail;
    clear(trail);
    const chain: number[] = [];
    for (let n = z; n > 0; n = t.parent[n]) chain.unshift(n);
    const crumb = (n: number, text: string) => h("a", {
      href: "?" + this.withParams({ path: t.pathOf(n).join(".") }), class: n === z ? "here" : "",
      onclick: (ev: Event) => { ev.preventDefault(); this.go({ path: t.pathOf(n).join(".") }); } }, text);
    trail.append(crumb(0, "all"));
    // long chains: the first two and the last six
    chain.forEach((n, i) => {
      if (chain.length > 9 && i >= 2 && i < chain.length - 6) {
        if (i === 2) trail.append(" › … ");
        return;
      }
      trail.append(" › ", crumb(n, t.func(n).name));
    });
  }

  private withParams(changes: Record<string, string | null>): string {
    const p = new URLSearchParams(this.url.search);
    for (const [k, v] of Object.entries(changes)) if (v === null) p.delete(k); else p.set(k, v);
    return p.toString();
  }

  // ---- search -----------------------------------------------------------------

  /** The highlight and the share of the search in the address (q=).  Text containing
   * regex characters is a regular expression, matched by the server (POSIX extended,
   * case-insensitive, over name and file) over every sample; the frames it matched
   * come back with the share, so the graph highlights exactly what was counted.  The
   * browser's own RegExp only previews the highlight until the answer arrives. */
  private async applySearch(ask = true): Promise<void> {
    const q = this.q("q") || "", t = this.tree, regex = REGEX_CHARS.test(q);
    this.search = null;
    if (q) {
      try { this.search = new RegExp(regex ? q : q.replace(REGEX_CHARS_ALL, "\\$&"), "i"); }
      catch { this.search = null; }  // e.g. [[:alpha:]]: POSIX only; the server's answer highlights
    }
    const key = JSON.stringify([q, this.selParams()]), fn = this.q("fn");
    const known = this.matchFns && this.matchFns.key === key ? this.matchFns.fns : null;
    const s = this.search;
    // the highlight is set (and the graph drawn again) only when it changed: a view
    // that grew draws its new frames by the same rule
    const rule = JSON.stringify([known ? key : null, s ? s.source : null, q, fn]);
    if (rule !== this.matchRule || t !== this.matchTree) {
      this.matchRule = rule;
      this.matchTree = t;
      if (known) this.graph?.setMatch((n) => known.has(t.fn[n]));
      else if (s) this.graph?.setMatch((n) => { const f = t.func(n); return s.test(f.name) || s.test(f.file || ""); });
      else if (q) this.graph?.setMatch(() => false);
      else if (fn !== null) this.graph?.setMatch((n) => t.fn[n] === Number(fn));
      else this.graph?.setMatch(null);
    }
    if (!q) {
      this.el.match.textContent = "";
      delete this.el.match.dataset.matched;
      this.exposeState();
      return;
    }
    if (!ask || known) return;
    const gen = this.gen;
    this.el.match.textContent = "searching…";
    delete this.el.match.dataset.matched;
    // typing: one request once the text rests, not one per key
    await new Promise((res) => setTimeout(res, SEARCH_REST_MS));
    if (gen !== this.gen || q !== (this.q("q") || "")) return;
    try {
      const a = await get<FunctionsAnswer>(`runs/${encodeURIComponent(this.id)}/functions`,
        { ...this.selParams(), [regex ? "re" : "q"]: q, limit: 1 });
      if (gen !== this.gen || q !== (this.q("q") || "")) return;
      const matched = a.matched || 0;
      this.el.match.textContent = `matches ${fmtPct(a.total ? matched / a.total : 0)} of samples`;
      this.el.match.dataset.matched = String(matched);
      this.el.match.dataset.total = String(a.total);
      if (a.matching_fns) {
        this.matchFns = { key, fns: new Set(a.matching_fns) };
        this.applySearch(false);
      }
    } catch (e) {
      if (gen !== this.gen || q !== (this.q("q") || "")) return;
      this.el.match.textContent = (e as Error).message;
      this.el.match.dataset.matched = "error";
      this.graph?.setMatch(() => false);
    }
    this.exposeState();
  }

  // ---- tabs: call tree, functions, lines ---------------------------------------

  private tab(): string {
    const t = this.q("tab") || "tree";
    return t === "lines" && !(this.run?.modes || []).includes("lines") ? "tree" : t;
  }

  private renderTabs(): void {
    const tabs = this.el.tabs, cur = this.tab();
    clear(tabs);
    const names: [string, string][] = [["tree", "Call tree"], ["functions", "Functions"]];
    if ((this.run?.modes || []).includes("lines")) names.push(["lines", "Lines"]);
    for (const [k, label] of names)
      tabs.append(h("button", { type: "button", role: "tab", id: "tab-" + k, "aria-selected": String(k === cur),
                                class: k === cur ? "on" : "", onclick: () => this.go({ tab: k === "tree" ? null : k }) }, label));
    if (cur === "functions") this.renderFunctions();
    else if (cur === "lines") this.renderLines();
    else this.renderTreeTable();
  }

  private renderTreeTable(): void {
    const t = this.tree, panel = this.el.panel, z = this.graph ? this.graph.zoom : 0;
    clear(panel);
    if (!t.value[0]) return;
    const all = t.value[0];
    // open the busiest path a few levels on first sight
    if (!this.expanded.has(z)) {
      let n = z;
      for (let i = 0; i < 4 && n >= 0; i++) { this.expanded.add(n); n = (t.layout.kids[n] || [])[0] ?? -1; }
    }
    const body = h("tbody");
    const row = (n: number, depth: number) => {
      const f = t.func(n), kids = t.layout.kids[n] || [], open = this.expanded.has(n);
      const hasKids = kids.length > 0 || (t.complete[n] === Infinity && t.value[n] > t.self[n]);
      const tr = h("tr", { tabindex: 0, "data-node": n, "aria-expanded": hasKids ? String(open) : null },
        h("td", { class: "num" }, fmtCount(t.value[n])), h("td", { class: "num" }, fmtPct(t.value[n] / all), bar(t.value[n] / all)),
        h("td", { class: "num" }, fmtCount(t.self[n])), h("td", { class: "num" }, fmtPct(t.self[n] / all)),
        h("td", { class: "fn" }, h("span", { class: "toggle" }, hasKids ? (open ? "▾ " : "▸ ") : "  "), f.name),
        whereCell(f));
      (tr.querySelector(".fn") as HTMLElement).style.paddingLeft = 6 + depth * 14 + "px";
      body.append(tr);
      if (open) for (const c of kids) row(c, depth + 1);
    };
    row(z, 0);
    const toggle = async (n: number, open?: boolean) => {
      const want = open === undefined ? !this.expanded.has(n) : open;
      if (want) {
        this.expanded.add(n);
        if (t.complete[n] === Infinity && t.value[n] > t.self[n]) await this.fetchTree(t.pathOf(n));
      } else this.expanded.delete(n);
      this.graph?.setTree(t.layout, this.graph.zoom, true);
      this.renderTreeTable();
      (panel.querySelector(`tr[data-node="${n}"]`) as HTMLElement | null)?.focus();
    };
    body.addEventListener("click", (ev) => {
      const tr = (ev.target as Element).closest("tr");
      if (tr) toggle(Number(tr.dataset.node));
    });
    body.addEventListener("keydown", (ev) => {
      const tr = (ev.target as Element).closest("tr") as HTMLElement | null;
      if (!tr) return;
      const n = Number(tr.dataset.node);
      if (ev.key === "ArrowDown") (tr.nextElementSibling as HTMLElement | null)?.focus();
      else if (ev.key === "ArrowUp") (tr.previousElementSibling as HTMLElement | null)?.focus();
      else if (ev.key === "ArrowRight") toggle(n, true);
      else if (ev.key === "ArrowLeft") toggle(n, false);
      else if (ev.key === "Enter") this.go({ path: t.pathOf(n).join(".") });
      else return;
      ev.preventDefault();
    });
    panel.append(h("p", { class: "muted small" }, "Click or ←/→ to fold; Enter zooms the flame graph to a row."),
      h("div", { class: "scroll" }, h("table", { class: "grid tree", id: "tree-table" },
        h("thead", null, h("tr", null, h("th", { class: "num" }, "total"), h("th", { class: "num" }, "total %"),
          h("th", { class: "num" }, "self"), h("th", { class: "num" }, "self %"), h("th", null, "function"),
          h("th", null, "where"))), body)));
  }

  /** The functions tab; filtered: only the filter (fq=) changed, so the filter box,
   * being typed in, stays and the rows are replaced when the answer comes. */
  private async renderFunctions(filtered = false): Promise<void> {
    const panel = this.el.panel, gen = this.gen, fn = this.q("fn"), fq = this.q("fq");
    let list = panel.querySelector<HTMLElement>("#fn-list"), sandwich = panel.querySelector<HTMLElement>("#sandwich");
    if (!filtered || !list || !sandwich) {
      clear(panel);
      const filter = h("input", { type: "search", id: "fn-filter", placeholder: "filter by name",
                                  value: fq || "", "aria-label": "filter functions" });
      list = h("div", { class: "scroll", id: "fn-list" }, "Loading…");
      sandwich = h("div", { id: "sandwich" });
      panel.append(h("div", { class: "controls" }, filter), h("div", { class: "split" }, list, sandwich));
      filter.addEventListener("input", () => this.go({ fq: filter.value || null }, true));
    }
    let a: FunctionsAnswer;
    try {
      a = await get<FunctionsAnswer>(`runs/${encodeURIComponent(this.id)}/functions`, {
        ...this.selParams(), sort: this.sortBy, q: fq, limit: 200, function: fn });
    } catch (e) { clear(list); list.append(errorBox(e)); return; }
    if (gen !== this.gen || fq !== this.q("fq")) return;  // (typing on: a later answer comes)
    this.fnRows = a;
    clear(list);
    clear(sandwich);
    list.append(this.funcTable(a.functions, a.total, "functions-table", true));
    if (fn !== null && a.function) {
      const f = a.function;
      sandwich.append(h("h2", null, f.name, " ", h("span", { class: "muted small" }, where(f))),
        h("p", null, `self ${fmtCount(f.self)} (${fmtPct(f.self / a.total)}), total ${fmtCount(f.total)} (${fmtPct(f.total / a.total)})`),
        h("h3", null, "Called by"), this.funcTable(a.callers || [], f.total, "callers-table", false),
        h("h3", null, "Calls"), this.funcTable(a.callees || [], f.total, "callees-table", false),
        (this.run?.modes || []).includes("lines") ? h("p", null, h("a", { href: "?" + this.withParams({ tab: "lines" }),
          onclick: (ev: Event) => { ev.preventDefault(); this.go({ tab: "lines" }); } }, "Hits per line →")) : "");
    } else sandwich.append(h("p", { class: "muted" }, "Choose a function to see its callers and callees."));
    this.exposeState();
  }

  /** A table of functions; shares are of `whole`. */
  private funcTable(rows: FuncRow[], whole: number, id: string, sortable: boolean): HTMLElement {
    const th = (k: "self" | "total") => sortable
      ? h("th", { class: "num" }, h("button", { type: "button", class: "link" + (this.sortBy === k ? " on" : ""),
          onclick: () => { this.sortBy = k; this.renderFunctions(); } }, k + (this.sortBy === k ? " ▾" : "")))
      : h("th", { class: "num" }, k);
    const body = h("tbody");
    const sel = this.q("fn");
    for (const r of rows) {
      const share = (v: number) => whole ? v / whole : 0;
      body.append(h("tr", { tabindex: 0, "data-fn": r.fn, class: String(r.fn) === sel ? "selected" : "" },
        sortable ? h("td", { class: "num" }, fmtCount(r.self)) : null,
        sortable ? h("td", { class: "num" }, fmtPct(share(r.self))) : null,
        h("td", { class: "num" }, fmtCount(r.total)), h("td", { class: "num" }, fmtPct(share(r.total)), bar(share(r.total))),
        h("td", { class: "fn" }, r.name), whereCell(r)));
    }
    const choose = (tr: HTMLElement | null) => { if (tr && Number(tr.dataset.fn) >= 0) this.go({ fn: tr.dataset.fn as string, tab: "functions" }); };
    body.addEventListener("click", (ev) => choose((ev.target as Element).closest("tr")));
    body.addEventListener("keydown", (ev) => {
      const tr = (ev.target as Element).closest("tr") as HTMLElement | null;
      if (ev.key === "ArrowDown") (tr?.nextElementSibling as HTMLElement | null)?.focus();
      else if (ev.key === "ArrowUp") (tr?.previousElementSibling as HTMLElement | null)?.focus();
      else if (ev.key === "Enter") choose(tr);
      else return;
      ev.preventDefault();
    });
    return h("table", { class: "grid", id },
      h("thead", null, h("tr", null, sortable ? th("self") : null, sortable ? h("th", { class: "num" }, "self %") : null,
        sortable ? th("total") : h("th", { class: "num" }, "samples"), h("th", { class: "num" }, "%"),
        h("th", null, "function"), h("th", null, "where"))), body);
  }

  private async renderLines(): Promise<void> {
    const panel = this.el.panel, fn = this.q("fn"), gen = this.gen;
    clear(panel);
    if (fn === null) {
      panel.append(h("p", { class: "muted" }, "Choose a function (Functions tab, or a row below) to see its hits per line."));
      this.go({ tab: "functions" }, true);
      return;
    }
    let a: LinesAnswer;
    try {
      a = await get<LinesAnswer>(`runs/${encodeURIComponent(this.id)}/lines`, { ...this.selParams(), function: fn });
    } catch (e) { panel.append(errorBox(e)); return; }
    if (gen !== this.gen) return;
    const most = Math.max(1, ...a.lines.map((l) => l.total));
    const f = a.function || this.tree.funcs.get(Number(fn)) || { name: "function " + fn };
    panel.append(h("h2", null, f.name, " ", h("span", { class: "muted small" }, f.file || "")),
      h("div", { class: "scroll" }, h("table", { class: "grid", id: "lines-table" },
        h("thead", null, h("tr", null, h("th", { class: "num" }, "line"), h("th", { class: "num" }, "total"),
          h("th", { class: "num" }, "self"), h("th", null, ""))),
        h("tbody", null, ...a.lines.map((l) => h("tr", { tabindex: 0 }, h("td", { class: "num" }, l.line),
          h("td", { class: "num" }, fmtCount(l.total)), h("td", { class: "num" }, fmtCount(l.self)),
          h("td", { class: "wide" }, bar(l.total / most))))))));
  }

  // ---- memory -------------------------------------------------------------------

  private async drawMemory(): Promise<void> {
    const box = this.el.memory;
    if (box.hidden) return;
    clear(box);
    const canvas = h("canvas", { id: "rss", tabindex: 0, "aria-label": "RSS over time: drag to choose a time range" });
    const info = h("span", { class: "muted" });
    const reset = h("button", { type: "button", id: "range-reset", hidden: !this.sel.from && !this.sel.to,
      onclick: () => this.go({ from: null, to: null }) }, "Whole run");
    box.append(h("div", { class: "controls" }, h("strong", null, "Resident memory (RSS)"), info, reset), canvas);
    let m: MemoryAnswer;
    try {
      m = await get<MemoryAnswer>(`runs/${encodeURIComponent(this.id)}/memory`, { width: 600 });
    } catch (e) { box.append(errorBox(e)); return; }
    const L = 64, R = 8, T = 8, B = 18;
    const paint = (drag?: [number, number]) => {
      const W = canvas.clientWidth || 800, H = 90, dpr = window.devicePixelRatio || 1;
      canvas.width = W * dpr; canvas.height = H * dpr;
      canvas.style.height = H + "px";
      const g = canvas.getContext("2d") as CanvasRenderingContext2D;
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      const dur = m.duration_ms || 1, max = m.max_kib || 1, pw = W - L - R, ph = H - T - B;
      const X = (ms: number) => L + ms / dur * pw, Y = (k: number) => T + ph - k / max * ph;
      const fg = getComputedStyle(document.body).color;
      g.fillStyle = fg; g.font = "11px system-ui, sans-serif";
      g.fillText(fmtKiB(max), 2, T + 8); g.fillText("0", 2, T + ph);
      g.fillText(fmtMs(dur), W - R - 50, H - 4); g.fillText("0", L, H - 4);
      const from = drag ? Math.min(...drag) : this.sel.from ? Number(this.sel.from) : null;
      const to = drag ? Math.max(...drag) : this.sel.to ? Number(this.sel.to) : null;
      if (from !== null || to !== null) {
        g.fillStyle = "rgba(10,88,202,.18)";
        g.fillRect(X(from || 0), T, X(to ?? dur) - X(from || 0), ph);
      }
      g.strokeStyle = "#e08a00"; g.lineWidth = 1.5; g.beginPath();
      m.points.forEach((p, i) => { const k = p[p.length - 1]; if (i) g.lineTo(X(p[0]), Y(k)); else g.moveTo(X(p[0]), Y(k)); });
      g.stroke();
      info.textContent = from !== null || to !== null ? `showing ${fmtMs(from || 0)} – ${fmtMs(to ?? dur)}` : "drag to narrow every view to a time range";
    };
    paint();
    const msAt = (ev: MouseEvent) => {
      const r = canvas.getBoundingClientRect();
      return Math.max(0, Math.min(m.duration_ms, (ev.clientX - r.left - L) / (r.width - L - R) * m.duration_ms));
    };
    let down: number | null = null;
    canvas.addEventListener("mousedown", (ev) => { down = msAt(ev); });
    canvas.addEventListener("mousemove", (ev) => { if (down !== null) paint([down, msAt(ev)]); });
    canvas.addEventListener("mouseup", (ev) => {
      if (down === null) return;
      const a = down, b = msAt(ev);
      down = null;
      if (Math.abs(b - a) < m.duration_ms / 500) { paint(); return; }
      this.go({ from: Math.min(a, b).toFixed(1), to: Math.max(a, b).toFixed(1), path: null });
    });
    canvas.addEventListener("keydown", (ev) => {  // keyboard: halves of the current range
      const f = Number(this.sel.from || 0), t = Number(this.sel.to || m.duration_ms), mid = (f + t) / 2;
      if (ev.key === "ArrowLeft") this.go({ from: f.toFixed(1), to: mid.toFixed(1), path: null });
      else if (ev.key === "ArrowRight") this.go({ from: mid.toFixed(1), to: t.toFixed(1), path: null });
      else if (ev.key === "Escape") this.go({ from: null, to: null });
      else return;
      ev.preventDefault();
    });
    if (this.onResize) window.removeEventListener("resize", this.onResize);
    this.onResize = () => paint();  // one listener, however often the plot is made again
    window.addEventListener("resize", this.onResize);
    (box as HTMLElement & { memory?: MemoryAnswer }).memory = m;
  }

  /** What is on screen, for tests (window.vmprofUI.state). */
  state: Record<string, unknown> = {};
  /** When the flame graph was first drawn (ms since the page began loading), for bench/. */
  firstDrawMs = 0;
  private exposeState(): void {
    const g = this.graph, t = this.tree;
    if (!this.firstDrawMs && g && g.rects().length) this.firstDrawMs = performance.now();
    this.state = {
      zoom: g ? g.zoom : 0, zoomPath: g ? t.pathOf(g.zoom) : [], zoomTotal: g ? t.value[g.zoom] : 0,
      total: t.value[0], nodes: t.parent.length, rects: g ? g.rects() : [],
      matched: this.el.match?.dataset.matched, functions: this.fnRows,
    };
  }
  /** Tests set this to keep, at each zoom by the user, what was drawn first (firstView). */
  recordViews = false;
  firstView: ReturnType<RunPage["view"]> | null = null;
  /** The frames drawn: each with its path, its count and where it is. */
  view() {
    const t = this.tree, g = this.graph;
    return { zoom: g ? g.zoom : 0, frames: (g ? g.rects() : []).map(([x, y, w, n]) =>
      ({ path: t.pathOf(n).join("."), total: t.value[n], x, y, w })) };
  }
  /** Whether zooming into node n would wait for a request, for tests and bench/. */
  zoomNeedsRequest(n: number): boolean { return this.needsMore(n); }
  /** Tree requests in flight, for tests and bench/. */
  pendingTrees(): number { return [...this.inflight.values()].filter((q) => !q.settled).length; }
  /** Whether the flame graph draws node n highlighted, for tests. */
  highlighted(n: number): boolean { return this.graph ? this.graph.isMatch(n) : false; }
  /** Node details, for tests. */
  node(n: number): Record<string, unknown> {
    const t = this.tree;
    return { fn: t.fn[n], total: t.value[n], self: t.self[n], path: t.pathOf(n),
             loaded: t.complete[n] !== Infinity, ...t.func(n) };
  }

  private onResize: (() => void) | null = null;

  destroy(): void {
    this.gen++;
    this.graph?.destroy();
    if (this.onResize) window.removeEventListener("resize", this.onResize);
  }
}
