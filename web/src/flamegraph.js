// flamegraph.js - the one flame graph (icicle) drawing of vmprof: used by the
// server's browser UI (web/src/app.ts imports it) and meant to be embedded as is
// into the `vmprofshow --format html` page, so it is plain JavaScript (an ES
// module with no imports, no build step needed) and knows nothing about where
// its tree comes from.
//
// A tree is arrays indexed by node, node 0 the root, parents before children:
// `parent[i]` and `value[i]` (samples through node i).  layoutTree() adds the
// children lists (heaviest first), depths and left offsets once (a caller that
// loads the tree piece by piece may keep that layout itself, and say grow() when
// nodes came); the graph then draws the subtree of the zoomed node across the
// full width, one row per level, skipping what would be narrower than half a
// pixel.  What a node is called, its colour, its tooltip and whether it has
// unloaded children are the caller's business (callbacks), so the UI can load
// deeper levels lazily and the differential view can colour by change.
//
// Mouse: hover shows the tooltip, click zooms.  Keyboard (the canvas takes
// focus): arrows move a cursor (up: parent, down: heaviest child, left/right:
// neighbours on the row), Enter zooms into it, Escape zooms out one level.

/** @typedef {{n: number, parent: ArrayLike<number>, value: ArrayLike<number>,
 *   kids: number[][], depth: ArrayLike<number>, start: ArrayLike<number>,
 *   maxDepth: number}} FlameTree */

/**
 * Lays a tree out: children sorted heaviest first, each node's depth and its left
 * offset in samples from the root's left edge.
 * @param {ArrayLike<number>} parent parent[0] is ignored (-1)
 * @param {ArrayLike<number>} value
 * @returns {FlameTree}
 */
export function layoutTree(parent, value) {
  const n = parent.length;
  const t = { n, parent, value, kids: new Array(n), depth: new Int32Array(n),
              start: new Float64Array(n), maxDepth: 0 };
  for (let i = 0; i < n; i++) t.kids[i] = [];
  for (let i = 1; i < n; i++) t.kids[parent[i]].push(i);
  for (let i = 0; i < n; i++) {
    const kids = t.kids[i];
    kids.sort((a, b) => value[b] - value[a]);
    let x = t.start[i];
    for (const c of kids) {
      t.depth[c] = t.depth[i] + 1;
      if (t.depth[c] > t.maxDepth) t.maxDepth = t.depth[c];
      t.start[c] = x;
      x += value[c];
    }
  }
  return t;
}

/** A stable hue from a string, so a function keeps its colour across views. */
export function hashHue(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(h);
}

/** The usual colours: Python warm, native cool, anything else grey. */
export function kindColour(kind, key) {
  const h = hashHue(key);
  if (kind === "python") return hslHex(15 + h % 40, 70 + h % 20, 58 + h % 12);
  if (kind === "native") return hslHex(195 + h % 30, 55, 62 + h % 12);
  return hslHex(0, 0, 68 + h % 12);
}

/** hsl(h, s%, l%) as #rrggbb: a canvas reads a hex colour much faster than an hsl()
 * one, and a flame graph sets one per frame. */
export function hslHex(h, s, l) {
  s /= 100;
  l /= 100;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    const c = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(c * 255).toString(16).padStart(2, "0");
  };
  return "#" + f(0) + f(8) + f(4);
}

/** The share a/b as a short percentage. */
export function fmtPct(x) {
  if (!isFinite(x)) return "0%";
  return (x * 100).toFixed(Math.abs(x) >= 0.1 ? 1 : 2) + "%";
}

/**
 * Creates a flame graph inside `box` (a positioned element): a canvas and a
 * tooltip.  opts:
 *   label(n) -> string           text in the frame (node 0 included)
 *   colour(n) -> css colour
 *   tooltip(n) -> string[]       first line bold, the rest plain
 *   more(n, last, least) -> bool has children not drawn (last: n is on the deepest
 *                                row drawn; least: the smallest count the view
 *                                draws); marked with a bar at the frame's foot
 *   known(n) -> number           n's children are all loaded down to this count
 *                                (default 0): a child under it is not drawn, as a
 *                                heavier sibling may still be missing and would move
 *                                it; so what a tree still loading draws stays where
 *                                it is when the rest arrives (grow())
 *   maxDepth, minShare           draw at most maxDepth levels under the zoomed node,
 *                                and no node under minShare of it (default: all
 *                                levels, down to half a pixel)
 *   onZoom(n), onFocus(n)        after the user zoomed (the new view is drawn) / moved
 *                                the cursor
 *   onHover(n)                   the pointer came onto frame n (a likely zoom: the
 *                                UI loads what that zoom would need)
 *   onPress(n)                   a button went down on frame n (a click, so a zoom,
 *                                is coming)
 *   ancestors: bool              draw the zoomed node's ancestors, faded, above it
 *   rowHeight: number            default 18
 */
export function createFlameGraph(box, opts) {
  const ROW = opts.rowHeight || 18;
  const canvas = document.createElement("canvas");
  canvas.className = "flame-canvas";
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", "flame graph: arrows move, Enter zooms, Escape zooms out");
  canvas.style.display = "block";
  canvas.style.width = "100%";
  const tip = document.createElement("div");
  tip.className = "flame-tip";
  tip.setAttribute("role", "tooltip");
  tip.style.position = "fixed";
  tip.style.pointerEvents = "none";
  tip.style.display = "none";
  box.appendChild(canvas);
  box.appendChild(tip);
  const ctx = canvas.getContext("2d");
  /** @type {FlameTree|null} */
  let tree = null;
  let zoom = 0, hover = -1, cursor = -1;
  let match = null; // (n) => bool, or null
  let rects = [];   // [x, y, w, node] as drawn, in CSS pixels
  let least = 0;    // the smallest count the view drawn draws
  let drawnAs = new Map();  // node -> [x, w, y, faded, last, more mark]: to paint one frame again

  function rowOf(n) {
    let r = tree.depth[n] - tree.depth[zoom];
    if (opts.ancestors) r += tree.depth[zoom];
    return r;
  }

  /** The view of the zoomed node: the nodes to draw (parents first) and the canvas
   * size.  What is drawn depends only on the zoomed node, never on what else is
   * loaded: at most maxDepth levels, nothing under half a pixel or minShare of the
   * zoom, and only children at least as heavy as every child not loaded (known). */
  function view() {
    const W = canvas.clientWidth || box.clientWidth || 800, dpr = window.devicePixelRatio || 1;
    const top = opts.ancestors ? tree.depth[zoom] : 0;
    let deepest = 0;
    const scale = W / tree.value[zoom];
    const maxDepth = opts.maxDepth || Infinity;
    const least = Math.max(0.5 / scale, (opts.minShare || 0) * tree.value[zoom]);
    const visible = [];
    const stack = [zoom];
    while (stack.length) {
      const n = stack.pop();
      visible.push(n);
      const d = tree.depth[n] - tree.depth[zoom];
      if (d > deepest) deepest = d;
      if (d >= maxDepth) continue;
      const kids = tree.kids[n], floor = Math.max(least, opts.known ? opts.known(n) : 0);
      for (let i = kids.length - 1; i >= 0; i--)
        if (tree.value[kids[i]] >= floor) stack.push(kids[i]);
    }
    // rows used: only as deep as something is drawn
    const H = (top + deepest + 1) * ROW + 2;
    return { visible, W, H, dpr, top, scale, maxDepth, least, x0: tree.start[zoom] };
  }

  /** Sizes the canvas for view v; true when that emptied it. */
  function size(v) {
    canvas.style.height = v.H + "px";
    // a size set again, even the same, makes the browser allocate the canvas anew:
    // only when it changed
    const cw = Math.round(v.W * v.dpr), ch = Math.round(v.H * v.dpr);
    const emptied = canvas.width !== cw || canvas.height !== ch;
    if (canvas.width !== cw) canvas.width = cw;
    if (canvas.height !== ch) canvas.height = ch;
    ctx.setTransform(v.dpr, 0, 0, v.dpr, 0, 0);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    return emptied;
  }

  /** Draws node n of view v (x, width and row from the layout). */
  function place(v, n) {
    box1(n, (tree.start[n] - v.x0) * v.scale, tree.value[n] * v.scale, rowOf(n) * ROW, false,
         tree.depth[n] - tree.depth[zoom] >= v.maxDepth);
  }

  /** Draws the view anew (v: the view, when just computed). */
  function draw(v) {
    rects = [];
    drawnAs = new Map();
    if (!tree || !tree.value[zoom]) {
      canvas.style.height = "0px";
      canvas.width = 0;
      return;
    }
    if (!v) v = view();
    least = v.least;
    size(v);
    ctx.clearRect(0, 0, v.W, v.H);
    for (let a = zoom, r = v.top - 1; opts.ancestors && a > 0; r--) {
      a = tree.parent[a];
      box1(a, 0, v.W, r * ROW, true);
    }
    for (const n of v.visible) place(v, n);
  }

  /** The tree grew (the same object: nodes added, none moved, counts the same):
   * draws what the view gained and paints again the frames whose mark of children
   * not drawn changed; the frames already drawn stay as they are.  A view that
   * changed otherwise (a frame moved) is drawn anew. */
  function grow() {
    if (!tree || !tree.value[zoom] || !rects.length) { draw(); return; }
    const v = view();
    if (v.least !== least) { draw(v); return; }
    const fresh = [];
    for (const n of v.visible) {
      const d = drawnAs.get(n);
      if (!d) { fresh.push(n); continue; }
      const x = (tree.start[n] - v.x0) * v.scale, w = tree.value[n] * v.scale;
      if (Math.abs(x - d[0]) > 1e-6 || Math.abs(w - d[1]) > 1e-6 || d[2] !== rowOf(n) * ROW) { draw(v); return; }
    }
    if (drawnAs.size + fresh.length - (opts.ancestors ? tree.depth[zoom] : 0) !== v.visible.length) { draw(v); return; }
    // a canvas of another size starts empty (copying the frames over costs about as
    // much as drawing them)
    if (Math.round(v.H * v.dpr) !== canvas.height || Math.round(v.W * v.dpr) !== canvas.width) { draw(v); return; }
    for (const [n, d] of drawnAs)
      if (!d[3] && d[5] !== hasMore(n, d[4], d[1])) repaint(n);
    for (const n of fresh) place(v, n);
  }

  /** Whether frame n (width w) gets the mark of children not drawn. */
  function hasMore(n, last, w) {
    return !!(opts.more && w > 6 && opts.more(n, !!last, least));
  }

  function box1(n, x, w, y, faded, last, again) {
    const hit = match !== null && n !== 0 && match(n);
    ctx.globalAlpha = faded ? 0.45 : (match !== null && !hit ? 0.35 : 1);
    ctx.fillStyle = hit ? "#e0409b" : opts.colour(n);
    ctx.fillRect(x, y, Math.max(w - 0.5, 0.5), ROW - 1);
    const more = !faded && hasMore(n, last, w);
    if (more) {
      ctx.fillStyle = "rgba(0,0,0,.25)";
      ctx.fillRect(x, y + ROW - 4, Math.max(w - 0.5, 0.5), 3);
    }
    ctx.globalAlpha = 1;
    if (n === hover || n === cursor) {
      ctx.save();  // inside the frame's own box, which repaint() clears
      ctx.beginPath();
      ctx.rect(x, y, Math.max(w - 0.5, 0.5), ROW - 1);
      ctx.clip();
      ctx.strokeStyle = n === cursor ? "#0a58ca" : "#222";
      ctx.lineWidth = n === cursor ? 2 : 1;
      ctx.strokeRect(x + 1, y + 1, Math.max(w - 2.5, 0.5), ROW - 3);
      ctx.restore();
    }
    if (w > 28) {
      let label = opts.label(n);
      const max = Math.floor((w - 8) / 6.6);
      if (label.length > max) label = label.slice(0, Math.max(max - 1, 1)) + "\u2026";
      ctx.globalAlpha = faded ? 0.6 : 1;
      ctx.fillStyle = "#111";
      ctx.fillText(label, x + 4, y + ROW / 2);
      ctx.globalAlpha = 1;
    }
    if (again) { drawnAs.get(n)[5] = more; return; }
    rects.push([x, y, w, n]);
    drawnAs.set(n, [x, w, y, faded, last, more]);
  }

  /** Paints frame n again (its outline follows hover and cursor): a hover moving over
   * a deep graph repaints two frames, not thousands. */
  function repaint(n) {
    const d = drawnAs.get(n);
    if (!d) return;
    ctx.clearRect(d[0], d[2], Math.max(d[1] - 0.5, 0.5), ROW - 1);
    box1(n, d[0], d[1], d[2], d[3], d[4], true);
  }

  function nodeAt(ev) {
    const r = canvas.getBoundingClientRect(), x = ev.clientX - r.left, y = ev.clientY - r.top;
    for (let i = rects.length - 1; i >= 0; i--) {
      const q = rects[i];
      if (x >= q[0] && x < q[0] + q[2] && y >= q[1] && y < q[1] + ROW) return q[3];
    }
    return -1;
  }

  function showTip(n, cx, cy) {
    if (n < 0 || !opts.tooltip) { tip.style.display = "none"; return; }
    const lines = opts.tooltip(n);
    tip.textContent = "";
    lines.forEach((line, i) => {
      const part = document.createElement(i === 0 ? "b" : "div");
      part.textContent = line;
      tip.appendChild(part);
    });
    tip.style.display = "block";
    let x = cx + 14, y = cy + 14;
    if (x + tip.offsetWidth > window.innerWidth) x = Math.max(cx - tip.offsetWidth - 10, 0);
    if (y + tip.offsetHeight > window.innerHeight) y = Math.max(cy - tip.offsetHeight - 10, 0);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }

  function rectOf(n) {
    for (const q of rects) if (q[3] === n) return q;
    return null;
  }

  function setCursor(n) {
    if (n < 0 || !tree) return;
    cursor = n;
    draw();
    const q = rectOf(n), r = canvas.getBoundingClientRect();
    if (q) showTip(n, r.left + q[0] + Math.min(q[2], 40), r.top + q[1]);
    if (opts.onFocus) opts.onFocus(n);
  }

  function zoomTo(n, fromUser) {
    if (!tree || n < 0 || n >= tree.n) return;
    zoom = n;
    if (cursor >= 0 && !isUnder(cursor, n)) cursor = n;
    draw();
    if (fromUser && opts.onZoom) opts.onZoom(n);
  }

  function isUnder(n, a) {
    while (n > 0 && n !== a) n = tree.parent[n];
    return n === a;
  }

  canvas.addEventListener("mousemove", (ev) => {
    const n = nodeAt(ev);
    if (n !== hover) {
      const was = hover;
      hover = n;
      repaint(was);
      repaint(n);
      if (opts.onHover && n >= 0) opts.onHover(n);
    }
    showTip(n, ev.clientX, ev.clientY);
  });
  canvas.addEventListener("mouseleave", () => {
    const was = hover;
    hover = -1;
    tip.style.display = "none";
    repaint(was);
  });
  canvas.addEventListener("mousedown", (ev) => {
    const n = nodeAt(ev);
    if (n >= 0 && opts.onPress) opts.onPress(n);
  });
  canvas.addEventListener("click", (ev) => {
    const n = nodeAt(ev);
    if (n >= 0) { cursor = n; zoomTo(n, true); }
  });
  canvas.addEventListener("blur", () => { tip.style.display = "none"; });
  canvas.addEventListener("keydown", (ev) => {
    if (!tree) return;
    const c = cursor >= 0 ? cursor : zoom;
    let to = -1;
    if (ev.key === "ArrowUp") to = c > 0 && c !== zoom ? tree.parent[c] : (opts.ancestors && c > 0 ? tree.parent[c] : -1);
    else if (ev.key === "ArrowDown") to = tree.kids[c].length ? tree.kids[c][0] : -1;
    else if (ev.key === "ArrowLeft" || ev.key === "ArrowRight") {
      const y = rectOf(c);
      if (y) {
        const row = rects.filter((q) => q[1] === y[1] && q[2] >= 1).sort((a, b) => a[0] - b[0]);
        const i = row.findIndex((q) => q[3] === c) + (ev.key === "ArrowLeft" ? -1 : 1);
        if (i >= 0 && i < row.length) to = row[i][3];
      }
    } else if (ev.key === "Enter" || ev.key === " ") {
      zoomTo(c, true);
      ev.preventDefault();
      return;
    } else if (ev.key === "Escape" || ev.key === "Backspace") {
      if (zoom > 0) { const back = tree.parent[zoom]; zoomTo(back, true); }
      ev.preventDefault();
      return;
    } else return;
    ev.preventDefault();
    if (to >= 0) {
      if (!isUnder(to, zoom)) zoomTo(to, true);
      setCursor(to);
    }
  });
  const resize = () => draw();
  window.addEventListener("resize", resize);

  return {
    canvas,
    tip,
    /** Draws tree `t` zoomed to `z`.  A new tree forgets the hover and the cursor,
     * unless `grown`: t is the tree before with nodes added (the same numbers).  The
     * tree and zoom drawn already: draws what the tree gained since (grow). */
    setTree(t, z, grown) {
      if (t === tree && (z || 0) === zoom) { grow(); return; }  // drawn already, but for what came since
      if (t !== tree && !grown) { hover = -1; cursor = -1; }
      tree = t; zoom = z || 0; draw();
    },
    zoomTo(n) { zoomTo(n, false); },
    /** The tree drawn grew (see grow() above): draws what the view gained. */
    grow,
    /** match: (n) => bool highlights the nodes it accepts; null for none. */
    setMatch(m) { if (m !== null || match !== null) { match = m; draw(); } },
    /** Whether node n is drawn highlighted. */
    isMatch(n) { return match !== null && n !== 0 && !!match(n); },
    redraw() { draw(); },
    get zoom() { return zoom; },
    get cursor() { return cursor; },
    /** What is drawn: [x, y, w, node] in CSS pixels, for tests and hit checks. */
    rects() { return rects.slice(); },
    destroy() { window.removeEventListener("resize", resize); box.removeChild(canvas); box.removeChild(tip); },
  };
}
