import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { HEAP_GROWING_PERCENT, heapGrowthFlag } from '../../src/util/heap.js';

const HEAP = join(import.meta.dirname, '../../src/util/heap.ts');

/**
 * Runs node with `nodeArgs`, applies tuneHeapGrowth() as `scangate run` does, builds a heap and
 * collects it twice; returns the growth factors V8 then used for the old generation's next limit
 * (its own trace, --trace-gc-verbose: "[HeapController] Limit: old size: …, new limit: … (F)").
 */
function factorsAfterTuning(nodeArgs: string[]): number[] {
  const script = `
    import { tuneHeapGrowth } from ${JSON.stringify(HEAP)};
    tuneHeapGrowth();
    console.log('tuned');
    const keep = [];
    for (let i = 0; i < 200_000; i++) keep.push({ i, s: 'x' + i });
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

test('scangate run fixes the old generation growth at 50 %, unless node was given a growth', () => {
  assert.equal(heapGrowthFlag([]), `--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  assert.equal(heapGrowthFlag(['--max-old-space-size=4096']), '--heap-growing-percent=50');
  assert.equal(heapGrowthFlag(['--heap-growing-percent=20']), null);
  assert.equal(heapGrowthFlag(['--heap_growing_percent', '20']), null);
});

test('the growth set at run time is the one V8 applies at the next full collections', () => {
  // Without the tuning V8 picks its own factor per collection (4.0 for a small young heap like this
  // one, down to 1.1 for a large database); with it, every limit is 1.5 × the live size.
  const tuned = factorsAfterTuning([]);
  assert.ok(tuned.length >= 2, 'two full collections traced');
  assert.deepEqual(new Set(tuned), new Set([1 + HEAP_GROWING_PERCENT / 100]));
  // An operator's own choice on the node command line is left in force.
  const given = factorsAfterTuning(['--heap-growing-percent=20']);
  assert.ok(given.length >= 2);
  assert.deepEqual(new Set(given), new Set([1.2]));
});
