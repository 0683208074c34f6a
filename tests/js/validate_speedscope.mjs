// Validates a speedscope export against the file-format schema that the npm
// package `speedscope` ships, then checks what a schema cannot: every frame
// index exists and each profile has one weight per sample.
// Usage: node validate_speedscope.mjs FILE   -> prints a JSON report; exit 1 if invalid
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Ajv from "ajv";

const require = createRequire(import.meta.url);
const schema = require("speedscope/dist/release/file-format-schema.json");
const file = JSON.parse(readFileSync(process.argv[2], "utf8"));

const ajv = new Ajv({ allErrors: true, strict: false });
const validate = ajv.compile(schema);
const report = { valid: validate(file), errors: validate.errors || [], profiles: 0, frames: 0 };
if (report.valid) {
  const nFrames = file.shared.frames.length;
  report.frames = nFrames;
  report.profiles = file.profiles.length;
  report.total_weight = 0;
  for (const p of file.profiles) {
    if (p.samples.length !== p.weights.length)
      report.errors.push(`${p.name}: ${p.samples.length} samples, ${p.weights.length} weights`);
    for (const s of p.samples)
      for (const f of s)
        if (!Number.isInteger(f) || f < 0 || f >= nFrames)
          report.errors.push(`${p.name}: frame index ${f} out of range`);
    for (const w of p.weights) report.total_weight += w;
  }
  report.valid = report.errors.length === 0;
}
console.log(JSON.stringify(report));
process.exit(report.valid ? 0 : 1);
