// main.ts - the UI's entry: the header (who is logged in), client-side routes and the
// small pages (runs list, log in, token).  The run page is run.ts, the comparison
// compare.ts.  The address holds every view's state, so each change of view is a
// history entry (back and forward work) and a link shows what its sender saw.
import { ApiError, RunList, RunSummary, VmList, Session, get, runDuration, send, setCsrf } from "./api";
import { clear, errorBox, fmtCount, fmtMs, fmtWhen, h } from "./dom";
import { RunPage } from "./run";
import { ComparePage } from "./compare";
import { jitlogPage } from "./jitlog";
import { navigate, setRouter } from "./nav";

export interface Page { update?(url: URL): boolean; destroy?(): void; }

const app = document.getElementById("app") as HTMLElement;
const who = document.getElementById("who") as HTMLElement;
let session: Session = { user: null };
let page: Page | null = null;
let pageKey = "";

setRouter(route);

/** Links with data-nav are followed without reloading. */
document.addEventListener("click", (ev) => {
  const a = (ev.target as Element).closest?.("a[data-nav]") as HTMLAnchorElement | null;
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  ev.preventDefault();
  navigate(a.getAttribute("href") || "/");
});
window.addEventListener("popstate", () => route());

function route(): void {
  // the address `python -m vmprof --web` prints is BASE/#/ID (the original's form),
  // and `python -m jitlog --web`'s BASE/#/ID/traces
  const legacy = /^#\/([0-9A-Za-z_-]+)(\/traces)?$/.exec(location.hash);
  if (location.pathname === "/" && legacy) history.replaceState(null, "", "/runs/" + legacy[1] + (legacy[2] || ""));
  const url = new URL(location.href);
  const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const key = parts[0] === "runs" || parts[0] === "compare" ? parts.join("/") : parts[0] || "";
  if (page && key === pageKey && page.update && page.update(url)) return;
  page?.destroy?.();
  page = null;
  pageKey = key;
  clear(app);
  window.scrollTo(0, 0);
  if (parts[0] === "runs" && parts[1] && parts[2] === "traces") page = jitlogPage(app, parts[1], parts[3], url);
  else if (parts[0] === "runs" && parts[1]) page = new RunPage(app, parts[1], url, session);
  else if (parts[0] === "compare" && parts[1] && parts[2]) page = new ComparePage(app, parts[1], parts[2], url);
  else if (parts[0] === "login") loginPage(url);
  else if (parts[0] === "token") tokenPage();
  else page = runsPage(url);
}

function renderWho(): void {
  clear(who);
  if (session.user) {
    who.append(h("a", { href: "/token", "data-nav": true }, session.user),
      h("button", { type: "button", class: "link", onclick: async () => {
        try { await send("POST", "logout"); } catch { /* the session is gone either way */ }
        session = { user: null };
        setCsrf("");
        renderWho();
        route();
      } }, "Log out"));
  } else {
    who.append(h("a", { href: "/login?next=" + encodeURIComponent(location.pathname + location.search),
                        "data-nav": true }, "Log in"));
  }
}

// ---- runs list ----------------------------------------------------------------

function runsPage(url: URL): Page {
  const p = url.searchParams;
  const q = h("input", { type: "search", id: "runs-q", placeholder: "command line contains…",
                         value: p.get("q") || "", "aria-label": "search command lines" });
  const vm = h("select", { id: "runs-vm", "aria-label": "interpreter" },
    h("option", { value: "" }, "any interpreter"));
  const owner = h("select", { id: "runs-user", "aria-label": "owner" },
    h("option", { value: "" }, "everyone's runs"),
    session.user ? h("option", { value: "me" }, "my runs") : null);
  owner.value = p.get("user") || "";
  const compare = h("button", { type: "button", id: "compare", disabled: true }, "Compare 2 selected");
  const list = h("div", { id: "runs-list" }, "Loading…");
  const pager = h("nav", { class: "pager" });
  const picked: string[] = [];
  app.append(h("section", { class: "page runs" },
    h("h1", null, "Runs"),
    h("form", { class: "controls", role: "search", onsubmit: (ev: Event) => { ev.preventDefault(); apply(); } },
      q, vm, owner, h("button", { type: "submit" }, "Search"), compare),
    list, pager));

  function apply(page?: string): void {
    const u = new URL("/", location.origin);
    if (q.value) u.searchParams.set("q", q.value);
    if (vm.value) u.searchParams.set("vm", vm.value);
    if (owner.value) u.searchParams.set("user", owner.value);
    if (page) u.searchParams.set("page", page);
    navigate(u.pathname + u.search);
  }
  vm.addEventListener("change", () => apply());
  owner.addEventListener("change", () => apply());
  compare.addEventListener("click", () => navigate(`/compare/${picked[0]}/${picked[1]}`));

  async function load(): Promise<void> {
    let data: RunList, known: VmList;
    try {
      // The filter offers every interpreter of the stored runs (GET /api/vms),
      // not only those of the page shown.
      [data, known] = await Promise.all([
        get<RunList>("runs", { q: p.get("q"), vm: p.get("vm"), user: p.get("user"), page: p.get("page") }),
        get<VmList>("vms")]);
    } catch (e) { clear(list); list.append(errorBox(e)); return; }
    const counts = new Map(known.vms.map((v) => [v.vm, v.runs]));
    const chosen = p.get("vm");
    if (chosen && !counts.has(chosen)) counts.set(chosen, 0);
    while (vm.options.length > 1) vm.remove(1);  // load() runs again after a rename or a delete
    for (const v of [...counts.keys()].sort())
      vm.append(h("option", { value: v }, `${v} (${counts.get(v)})`));
    vm.value = chosen || "";
    clear(list);
    if (!data.runs.length) {
      list.append(h("p", { class: "muted" }, "No runs yet. Profile a program with ",
        h("code", null, `python -m vmprof --web --web-url ${location.origin} program.py`), "."));
    } else list.append(runTable(data.runs));
    clear(pager);
    // A page is named by where the one before it ended (the API's "next"),
    // so the way back is the browser's; this goes to the newest runs.
    const page = p.get("page");
    if (page && page !== "1") pager.append(h("button", { type: "button", onclick: () => apply() }, "← Newest"));
    if (data.next !== null && data.next !== undefined)
      pager.append(h("button", { type: "button", id: "next-page", onclick: () => apply(String(data.next)) }, "Older →"));
  }

  function runTable(runs: RunSummary[]): HTMLElement {
    const body = h("tbody");
    for (const r of runs) {
      const pick = h("input", { type: "checkbox", "aria-label": "select for comparison" });
      pick.addEventListener("change", () => {
        const i = picked.indexOf(r.id);
        if (pick.checked && i < 0) picked.push(r.id);
        if (!pick.checked && i >= 0) picked.splice(i, 1);
        while (picked.length > 2) picked.shift();
        for (const box of body.querySelectorAll<HTMLInputElement>("input[type=checkbox]"))
          box.checked = picked.includes(box.dataset.id || "");
        compare.disabled = picked.length !== 2;
      });
      pick.dataset.id = r.id;
      const name = r.name || r.argv || "(no command line)";
      const actions = h("td", { class: "actions" });
      if (session.user && (session.admin || r.owner === session.user)) {
        actions.append(
          h("button", { type: "button", class: "link", onclick: async () => {
            const label = prompt("New name for this run", name);
            if (label === null) return;
            try { await send("PATCH", "runs/" + encodeURIComponent(r.id), { name: label || null }); load(); }
            catch (e) { alert(String((e as Error).message)); }
          } }, "rename"),
          h("button", { type: "button", class: "link danger", onclick: async () => {
            if (!confirm(`Delete run ${r.id} (${name})?`)) return;
            try { await send("DELETE", "runs/" + encodeURIComponent(r.id)); load(); }
            catch (e) { alert(String((e as Error).message)); }
          } }, "delete"));
      }
      body.append(h("tr", { "data-run": r.id },
        h("td", null, pick),
        h("td", { class: "cmd" }, h("a", { href: "/runs/" + encodeURIComponent(r.id), "data-nav": true }, name),
          " ", h("span", { class: "muted small" }, "#" + r.id),
          r.name && r.argv ? h("div", { class: "muted small" }, r.argv) : null),
        h("td", null, r.vm || ""),
        h("td", { class: "num" }, fmtWhen(r.created)),
        h("td", { class: "num" }, fmtMs(runDuration(r))),
        h("td", { class: "num" }, fmtCount(r.samples)),
        h("td", null, r.owner || h("span", { class: "muted" }, "anonymous")),
        actions));
    }
    return h("div", { class: "scroll" }, h("table", { class: "grid", id: "runs-table" },
      h("thead", null, h("tr", null, h("th", null, ""), h("th", null, "command"), h("th", null, "interpreter"),
        h("th", { class: "num" }, "when"), h("th", { class: "num" }, "duration"),
        h("th", { class: "num" }, "samples"), h("th", null, "owner"), h("th", null, ""))),
      body));
  }

  load();
  return {};
}

// ---- log in, token ------------------------------------------------------------

function loginPage(url: URL): void {
  const user = h("input", { name: "user", autocomplete: "username", required: true, id: "login-user" });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password",
                            required: true, id: "login-password" });
  const msg = h("div", { role: "status" });
  app.append(h("section", { class: "page narrow" }, h("h1", null, "Log in"),
    h("form", { class: "stack", onsubmit: async (ev: Event) => {
      ev.preventDefault();
      try {
        await send<Session>("POST", "login", { name: user.value, password: pass.value });
        session = await get<Session>("me");
        setCsrf(session.csrf);
        renderWho();
        const next = url.searchParams.get("next") || "/";
        navigate(next.startsWith("/") && !next.startsWith("//") ? next : "/");
      } catch (e) {
        clear(msg);
        msg.append(errorBox(e instanceof ApiError && e.status === 401 ? "Wrong user name or password." : e));
      }
    } },
      h("label", null, "User ", user), h("label", null, "Password ", pass),
      h("button", { type: "submit" }, "Log in"), msg)));
  user.focus();
}

function tokenPage(): void {
  const box = h("div", null);
  app.append(h("section", { class: "page narrow" }, h("h1", null, "Your API token"), box));
  if (!session.user) {
    box.append(h("p", null, h("a", { href: "/login?next=/token", "data-nav": true }, "Log in"),
      " to see your token."));
    return;
  }
  const show = (token: string | null) => {
    clear(box);
    box.append(
      h("p", null, "Uploads and API calls authenticate with this token. Pass it to the profiler:"),
      h("pre", { id: "token-use" }, `python -m vmprof --web --web-url ${location.origin} ` +
        `--web-auth ${token || "YOUR_TOKEN"} program.py`),
      token ? h("p", null, "Token: ", h("code", { id: "token" }, token)) :
        h("p", { class: "muted" }, "Tokens are stored hashed, so the server shows one only when it is made."),
      h("p", null, "Or in a request: ", h("code", null, "Authorization: Token " + (token || "YOUR_TOKEN"))),
      h("button", { type: "button", onclick: async () => {
        if (!confirm("Make a new token? The old one stops working.")) return;
        try { show((await send<{ token: string }>("POST", "tokens")).token); }
        catch (e) { box.append(errorBox(e)); }
      } }, "Make a new token"));
  };
  show(null);
}

async function start(): Promise<void> {
  try { session = await get<Session>("me"); } catch { session = { user: null }; }
  setCsrf(session.csrf);
  renderWho();
  route();
}
start();
