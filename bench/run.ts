/**
 * `npm run bench`: runs every benchmark module in bench/ in turn, each in its own process (so one
 * bench's heap never colours the next), and lists the result files. Each bench prints its own
 * table of ratios against a peer measured in the same run, and writes bench/results/NAME.json.
 * `npm run bench -- match https` runs only those.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

const dir = import.meta.dirname;
const wanted = process.argv.slice(2);
const benches = readdirSync(dir)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('-memory.ts'))
  .map((f) => f.slice(0, -3))
  .filter((n) => wanted.length === 0 || wanted.includes(n))
  .sort();

let failed = 0;
for (const name of benches) {
  console.log(`\n=== bench: ${name} ===`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(dir, `${name}.ts`)], {
    stdio: 'inherit',
    timeout: 15 * 60_000,
  });
  if (r.status !== 0) {
    failed++;
    console.error(`bench ${name} failed (exit ${r.status ?? r.signal})`);
  }
}
console.log(`\nresults: ${join(dir, 'results')}`);
process.exit(failed ? 1 : 0);
