// compare.ts - two runs side by side: a differential flame graph (width: the mean of
// the two shares, so what vanished and what appeared both show; colour: the change
// of share, red grown and blue shrunk in B, with a legend) and a table of the
// functions whose share of samples changed most.  The zoom is in the address as
// the child positions from the root (?path=0.2.1).
import { DiffAnswer, DiffNode, FuncInfo, Run, get } from "./api";
import { clear, errorBox, fmtCount, fmtWhen, h } from "./dom";
import { FlameGraph, createFlameGraph, fmtPct, layoutTree } from "./flamegraph";
import { navigate } from "./nav";
import { findProgram } from "./program";

const FULL_CHANGE = 0.05;  // a change of 5 points of share gets the strongest colour

export function diffColour(d: number): string {
  const t = Math.min(1, Math.abs(d) / FULL_CHANGE);
  if (t < 0.02) return "hsl(0,0%,80%)";
  return d > 0 ? `hsl(2,${55 + 30 * t}%,${86 - 34 * t}%)` : `hsl(214,${55 + 30 * t}%,${86 - 34 * t}%)`;
}

export class ComparePage {
  private graph: FlameGraph | null = null;
  private nodes: DiffNode[] = [];
  private parent: number[] = [];
  private diff: DiffAnswer | null = null;

  constructor(private root: HTMLElement, private a: string, private b: string, private url: URL) {
    this.start();
  }

  private async start(): Promise<void> {
    const page = h("section", { class: "page compare" },
      h("p", { class: "crumbs" }, h("a", { href: "/", "data-nav": true }, "Runs"), " › compare"),
      h("h1", null, "Run ", h("a", { href: "/runs/" + this.a, "data-nav": true }, this.a), " (A) against ",
        h("a", { href: "/runs/" + this.b, "data-nav": true }, this.b), " (B)"));
    this.root.append(page);
    const facts = h("p", { class: "muted", id: "compare-runs" });
    page.append(facts);
    Promise.all([this.a, this.b].map((id) => get<Run>("runs/" + encodeURIComponent(id)))).then((runs) => {
      facts.textContent = runs.map((r, i) => `${"AB"[i]}: ${r.name || r.argv} (${fmtCount(r.samples)} samples, ` +
        `${fmtWhen(r.created)})`).join(" · ");
    }, () => undefined);
    let d: DiffAnswer;
    try {
      d = await get<DiffAnswer>(`diff/${encodeURIComponent(this.a)}/${encodeURIComponent(this.b)}`);
    } catch (e) { page.append(errorBox(e)); return; }
    this.diff = d;
    const A = d.a.total || 1, B = d.b.total || 1;
    // flatten the nested tree into arrays, parents first
    const todo: [DiffNode, number][] = [[d.root, -1]];
    while (todo.length) {
      const [n, p] = todo.shift() as [DiffNode, number];
      const i = this.nodes.length;
      this.nodes.push(n); this.parent.push(p);
      for (const c of n.children || []) todo.push([c, i]);
    }
    const value = this.nodes.map((n) => (n.a / A + n.b / B) / 2);
    const tree = layoutTree(this.parent, value);
    const legend = h("div", { class: "legend", id: "legend" },
      h("span", { class: "swatch", style: `background:${diffColour(-FULL_CHANGE)}` }), " shrunk in B ",
      h("span", { class: "swatch", style: `background:${diffColour(-FULL_CHANGE / 4)}` }),
      h("span", { class: "swatch", style: `background:${diffColour(0)}` }), " unchanged ",
      h("span", { class: "swatch", style: `background:${diffColour(FULL_CHANGE / 4)}` }),
      h("span", { class: "swatch", style: `background:${diffColour(FULL_CHANGE)}` }), " grown in B",
      h("span", { class: "muted" }, ` · width: mean share of A (${fmtCount(d.a.total)} samples) and B (${fmtCount(d.b.total)}); ` +
        `full colour at ±${FULL_CHANGE * 100} points`));
    const box = h("div", { class: "flamebox", id: "flame" });
    const trail = h("nav", { id: "trail" });
    page.append(legend, trail, box);
    const share = (n: number) => [this.nodes[n].a / A, this.nodes[n].b / B];
    this.graph = createFlameGraph(box, {
      label: (n) => this.nodes[n].name,
      colour: (n) => { const [x, y] = share(n); return diffColour(y - x); },
      tooltip: (n) => {
        const x = this.nodes[n], [sa, sb] = share(n);
        return [x.name, x.file ? x.file + (x.line ? ":" + x.line : "") : "",
          `A: ${fmtCount(x.a)} samples (${fmtPct(sa)})`, `B: ${fmtCount(x.b)} samples (${fmtPct(sb)})`,
          `change: ${sb >= sa ? "+" : ""}${((sb - sa) * 100).toFixed(2)} points`].filter(Boolean);
      },
      onZoom: (n) => this.zoomed(n),
    });
    this.graph.setTree(tree, 0);
    this.program = findProgram((n) => tree.kids[n], (n) => this.nodes[n]).found;
    this.trail = trail;
    this.update(this.url);
    page.append(h("h2", null, "Biggest changes of share"), this.table(d, A, B));
    (window as unknown as { vmprofCompare: unknown }).vmprofCompare = this;
  }

  private trail: HTMLElement | null = null;
  private program = -1;  // the program's first frame: where the graph opens

  update(url: URL): boolean {
    this.url = url;
    if (!this.graph) return true;
    const path = url.searchParams.get("path");
    let n = path === null && this.program > 0 ? this.program : 0;
    for (const p of (path || "").split(".").filter(Boolean)) {
      const kids = this.nodes[n].children || [];
      const c = kids[Number(p)];
      if (!c) break;
      n = this.nodes.indexOf(c, n);
    }
    this.graph.zoomTo(n);
    if (this.trail) {
      clear(this.trail);
      const chain: number[] = [];
      for (let k = n; k > 0; k = this.parent[k]) chain.unshift(k);
      const crumb = (k: number, text: string) => h("a", { href: "#", class: k === n ? "here" : "",
        onclick: (ev: Event) => { ev.preventDefault(); this.graph?.zoomTo(k); this.zoomed(k); } }, text);
      this.trail.append(crumb(0, "all"));
      for (const k of chain) this.trail.append(" › ", crumb(k, this.nodes[k].name));
    }
    return true;
  }

  private table(d: DiffAnswer, A: number, B: number): HTMLElement {
    type Row = FuncInfo & { a_self: number; a_total: number; b_self: number; b_total: number };
    const change = (f: Row) => f.b_total / B - f.a_total / A;
    const rows = [...d.functions].sort((x, y) => Math.abs(change(y)) - Math.abs(change(x))).slice(0, 50);
    return h("div", { class: "scroll" }, h("table", { class: "grid", id: "diff-table" },
      h("thead", null, h("tr", null, h("th", null, "function"), h("th", null, "where"),
        h("th", { class: "num" }, "A total"), h("th", { class: "num" }, "B total"), h("th", { class: "num" }, "change"),
        h("th", { class: "num" }, "A self"), h("th", { class: "num" }, "B self"))),
      h("tbody", null, ...rows.map((f) => {
        const c = change(f);
        return h("tr", { tabindex: 0 }, h("td", { class: "fn" }, f.name), h("td", { class: "where muted" }, f.file || ""),
          h("td", { class: "num" }, fmtPct(f.a_total / A)), h("td", { class: "num" }, fmtPct(f.b_total / B)),
          h("td", { class: "num " + (c > 0 ? "grown" : "shrunk") }, (c >= 0 ? "+" : "") + (c * 100).toFixed(2) + " pt"),
          h("td", { class: "num" }, fmtPct(f.a_self / A)), h("td", { class: "num" }, fmtPct(f.b_self / B)));
      }))));
  }

  /** The zoom goes into the address as child positions from the root. */
  private zoomed(n: number): void {
    const pos: number[] = [];
    for (let k = n; k > 0; k = this.parent[k]) {
      const p = this.parent[k];
      pos.unshift((this.nodes[p].children || []).indexOf(this.nodes[k]));
    }
    const u = new URL(location.href);
    u.searchParams.set("path", pos.join("."));
    navigate(u.pathname + u.search);
  }

  destroy(): void { this.graph?.destroy(); }
}
