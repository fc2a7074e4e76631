import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  HEAP_GROWING_PERCENT,
  heapGrowthFlag,
  LARGE_HEAP_BYTES,
  SMALL_HEAP_GROWING_PERCENT,
} from '../../src/util/heap.js';

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

test('the growth is 50 % for a large heap, 300 % for a small one, never over the node command line', () => {
  const big = LARGE_HEAP_BYTES;
  assert.equal(heapGrowthFlag([], big), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  assert.equal(heapGrowthFlag(['--max-old-space-size=4096'], big), '--heap-growing-percent=50');
  // A small heap (built-in signatures) gets 4×, also after a reload shrank it.
  assert.equal(heapGrowthFlag([], big - 1), `--heap-growing-percent=${SMALL_HEAP_GROWING_PERCENT}`);
  assert.equal(heapGrowthFlag([], 0), '--heap-growing-percent=300');
  assert.equal(heapGrowthFlag(['--heap-growing-percent=20'], big), null);
  assert.equal(heapGrowthFlag(['--heap_growing_percent', '20'], 0), null);
});

test('the growth set at run time is the one V8 applies at the next full collections', () => {
  // V8 picks its own factor per collection (1.1 to 4.0, low when marking looks cheap); tuned, a large
  // heap's every limit is 1.5 × its live size, a small heap's 4 ×.
  const tuned = factorsAfterTuning([], 100);
  assert.ok(tuned.length >= 2, 'two full collections traced');
  assert.deepEqual(new Set(tuned), new Set([1 + HEAP_GROWING_PERCENT / 100]));
  const small = factorsAfterTuning([], 5);
  assert.ok(small.length >= 2);
  assert.deepEqual(new Set(small), new Set([1 + SMALL_HEAP_GROWING_PERCENT / 100]));
  // An operator's own choice on the node command line is left in force.
  const given = factorsAfterTuning(['--heap-growing-percent=20'], 100);
  assert.ok(given.length >= 2);
  assert.deepEqual(new Set(given), new Set([1.2]));
});
