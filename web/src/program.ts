// program.ts - where the program starts in a call tree.  Above a profiled program's
// own first frame sit the interpreter's start-up (native frames), vmprof's runner
// (vmprof/__main__.py) and runpy; the views open at the program itself, as a person
// would, and the breadcrumb leads back out.
import { FuncInfo } from "./api";

// vmprof's own runner and Python's runpy: the frames above the program's first frame
const RUNNER_FILE = /(^|[\\/])vmprof[\\/](__main__|cli|profiler|measure)\.py$|(^|[\\/])runpy\.py$|^<frozen runpy>$|^<string>$/;

/**
 * Follows the busiest child from the root and answers the first Python frame that is
 * not the runner's (native start-up frames and the runner's own are passed over),
 * with the node where the search stopped.  found is -1 when the loaded part holds none.
 */
export function findProgram(kids: (n: number) => number[], func: (n: number) => FuncInfo):
    { found: number; last: number } {
  let n = 0;
  for (;;) {
    if (n > 0) {
      const f = func(n);
      if (f.kind === "python" && !RUNNER_FILE.test(f.file || "")) return { found: n, last: n };
    }
    const k = kids(n);
    if (!k || !k.length) return { found: -1, last: n };
    n = k[0];
  }
}
