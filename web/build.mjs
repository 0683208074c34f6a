// Builds the UI into dist/: app.js (TypeScript bundled and minified by esbuild),
// app.css and index.html.  Run by `npm run build` (scripts/setup.sh does it).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
mkdirSync(here + "dist", { recursive: true });
await build({
  entryPoints: [here + "src/main.ts"],
  bundle: true, minify: true, format: "esm", target: "es2020", sourcemap: false,
  outfile: here + "dist/app.js", logLevel: "warning",
});
copyFileSync(here + "src/app.css", here + "dist/app.css");
copyFileSync(here + "index.html", here + "dist/index.html");
