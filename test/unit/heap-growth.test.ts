import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { HEAP_GROWING_PERCENT, heapGrowthFlag, LARGE_HEAP_BYTES } from '../../src/util/heap.js';

const HEAP = join(import.meta.dirname, '../../src/util/heap.ts');

/**
 * Runs node with `nodeArgs`, holds `liveMb` MB of small objects (a loaded database's shape), applies
 * tuneHeapGrowth() as scangate does once its database is loaded, then collects twice; returns the
 * growth factors V8 used for the old generation's next limit (its own trace, --trace-gc-verbose:
 * "[HeapController] Limit: old size: …, new limit: … (F)").
 */
function factorsAfterTuning(nodeArgs: string[], liveMb: number): number[] {
  const script = `
    import { tuneHeapGrowth } from ${JSON.stringify(HEAP)};
    const keep = [];
    for (let i = 0; i < ${liveMb} * 12_000; i++) keep.push({ i, s: 'x' + i });
    tuneHeapGrowth();
    console.log('tuned');
    globalThis.gc();
    globalThis.gc();
    console.log('kept', keep.length);`;
  const r = spawnSync(
    process.execPath,
    [
      ...nodeArgs,
      '--expose-gc',
      '--trace-gc-verbose',
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      script,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const after = r.stdout.slice(r.stdout.indexOf('tuned'));
  return [...after.matchAll(/\[HeapController\] Limit: .*\(([\d.]+)\)/g)].map((m) => Number(m[1]));
}

test('the growth is fixed at 50 % for a large heap only, and never over the node command line', () => {
  const big = LARGE_HEAP_BYTES;
  assert.equal(heapGrowthFlag([], big), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  assert.equal(heapGrowthFlag(['--max-old-space-size=4096'], big), '--heap-growing-percent=50');
  // A small heap (built-in signatures) gets V8's own choice back, also after a reload shrank it.
  assert.equal(heapGrowthFlag([], big - 1), '--heap-growing-percent=0');
  assert.equal(heapGrowthFlag(['--heap-growing-percent=20'], big), null);
  assert.equal(heapGrowthFlag(['--heap_growing_percent', '20'], 0), null);
});

test('the growth set at run time is the one V8 applies at the next full collections', () => {
  // V8 picks its own factor per collection (4.0 for a small heap like the built-in database's, down
  // to 1.1 for a large one); tuned, a large heap's every limit is 1.5 × its live size.
  const tuned = factorsAfterTuning([], 100);
  assert.ok(tuned.length >= 2, 'two full collections traced');
  assert.deepEqual(new Set(tuned), new Set([1 + HEAP_GROWING_PERCENT / 100]));
  const small = factorsAfterTuning([], 5);
  assert.ok(small.length >= 2);
  assert.ok(!small.includes(1 + HEAP_GROWING_PERCENT / 100), `V8's own factors: ${small}`);
  // An operator's own choice on the node command line is left in force.
  const given = factorsAfterTuning(['--heap-growing-percent=20'], 100);
  assert.ok(given.length >= 2);
  assert.deepEqual(new Set(given), new Set([1.2]));
});
