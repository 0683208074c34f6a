// dom.ts - small helpers to build elements and format numbers; text always goes in
// as text (names come from profiled programs and are never trusted as HTML).

type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs?: Record<string, unknown> | null, ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function")
      e.addEventListener(k.slice(2), v as EventListener);
    else if (k === "class") e.className = String(v);
    else if (k === "value") (e as HTMLInputElement).value = String(v);
    else if (k === "checked") (e as HTMLInputElement).checked = Boolean(v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function clear(e: Element): void {
  while (e.firstChild) e.removeChild(e.firstChild);
}

export function fmtMs(ms: number | undefined | null): string {
  if (ms === undefined || ms === null || !isFinite(ms)) return "?";
  if (ms >= 60000) return Math.floor(ms / 60000) + " min " + ((ms % 60000) / 1000).toFixed(0) + " s";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  return ms.toFixed(ms >= 10 ? 0 : 2) + " ms";
}

const COUNT = new Intl.NumberFormat("en-US");  // one formatter: toLocaleString makes one per call
export function fmtCount(n: number): string {
  return COUNT.format(n);
}

export function fmtKiB(k: number): string {
  if (k >= 1048576) return (k / 1048576).toFixed(2) + " GiB";
  if (k >= 1024) return (k / 1024).toFixed(1) + " MiB";
  return k + " KiB";
}

export function fmtWhen(t: string | number | null | undefined): string {
  if (t === undefined || t === null || t === "") return "?";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  if (isNaN(d.getTime())) return String(t);
  const pad = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
         `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A horizontal bar of share x in [0, 1], for table cells. */
export function bar(x: number, cls = ""): HTMLElement {
  const b = h("span", { class: "bar " + cls });
  b.style.width = Math.max(0, Math.min(1, x)) * 100 + "%";
  return h("span", { class: "barbox" }, b);
}

export function errorBox(e: unknown): HTMLElement {
  return h("div", { class: "error", role: "alert" }, String(e instanceof Error ? e.message : e));
}
