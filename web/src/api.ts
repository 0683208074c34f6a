// api.ts - the JSON API of vmprof-server as the UI reads it (docs/server.md is the
// server's own description; /work/notes/h-ui-api-needs.md what the UI asked for).
// Every request goes to the page's own origin: the UI never talks to anyone else.

export interface RunSummary {
  id: string;
  argv: string;
  name?: string | null;     // given by rename
  vm: string;
  owner: string | null;
  created: string | number;
  samples: number;
  duration?: number;        // seconds
}

export interface RunList { runs: RunSummary[]; next: string | null; }
export interface VmList { vms: { vm: string; runs: number }[]; }

export interface Thread { index?: number; id: number | string; samples: number; }

export interface Run extends RunSummary {
  interpreter?: string;
  start?: string | number | null;
  period?: number;          // seconds
  clock?: string;
  modes?: string[];         // memory, lines, native, real-time, rpython
  thread_count?: number;
  threads?: Thread[];
  may_change?: boolean;
  max_rss_kib?: number | null;
  exports?: string[];
  has_jitlog?: boolean;     // a PyPy jit log came with it (jitlog.ts shows it)
  raw_size?: number;        // bytes of the profile uploaded (0: a jit log alone)
}

export interface FuncInfo { name: string; file?: string; line?: number; kind?: string; }

export interface TreeNode {
  fn?: number;
  total: number;
  self: number;
  children?: TreeNode[];
  more?: boolean;
}

export interface TreeAnswer {
  total: number;
  path?: number[];
  chain?: TreeNode[];
  node: TreeNode;
  functions: Record<string, FuncInfo>;
}

export interface FuncRow extends FuncInfo { fn: number; self: number; total: number; }

export interface FunctionsAnswer {
  total: number;
  matched?: number;         // with q= or re=: samples with a match anywhere on the stack
  matching_fns?: number[];  // with q= or re=: every function that matches (absent when very many)
  functions: FuncRow[];
  function?: FuncRow;
  callers?: FuncRow[];
  callees?: FuncRow[];
}

export interface LinesAnswer {
  function?: FuncInfo & { fn: number };
  total: number;
  lines: { line: number; self: number; total: number }[];
}

export interface MemoryAnswer {
  duration_ms: number;
  max_kib: number;
  points: number[][];
}

export interface DiffNode extends FuncInfo {
  a: number;
  b: number;
  a_self?: number;
  b_self?: number;
  children?: DiffNode[];
}

export interface DiffAnswer {
  a: { id: string; total: number };
  b: { id: string; total: number };
  root: DiffNode;
  functions: (FuncInfo & { a_self: number; a_total: number; b_self: number; b_total: number })[];
}

export interface Session { user: string | null; admin?: boolean; csrf?: string; }

/** The session's CSRF token, repeated in every write (GET /api/me gives it). */
let csrf = "";
export function setCsrf(token: string | undefined): void { csrf = token || ""; }

export class ApiError extends Error {
  constructor(public status: number, message: string) { super(message); }
}

async function answer<T>(r: Response): Promise<T> {
  if (!r.ok) {
    let message = r.status + " " + r.statusText;
    try {
      const body = await r.json();
      if (body && (body.error || body.message)) message = body.error || body.message;
    } catch { /* not JSON */ }
    throw new ApiError(r.status, message);
  }
  if (r.status === 204) return undefined as T;
  const type = r.headers.get("content-type") || "";
  return (type.includes("json") ? r.json() : undefined) as Promise<T>;
}

/** GET /api/...; params with undefined, null or "" values are left out. */
export async function get<T>(path: string, params?: Record<string, unknown>): Promise<T> {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {}))
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const qs = q.toString();
  return answer<T>(await fetch("/api/" + path + (qs ? "?" + qs : ""), {
    credentials: "same-origin", headers: { Accept: "application/json" } }));
}

/** A write (POST, PATCH, DELETE) with a JSON body. */
export async function send<T>(method: string, path: string, body?: unknown): Promise<T> {
  return answer<T>(await fetch("/api/" + path, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json",
               "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
}

/** The run's duration in ms. */
export function runDuration(r: RunSummary): number | undefined {
  return r.duration === undefined || r.duration === null ? undefined : r.duration * 1000;
}
