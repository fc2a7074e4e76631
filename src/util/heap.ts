/**
 * How far V8 lets the old generation grow past the live heap before the next full collection, for a
 * process that holds a signature database.
 *
 * V8 picks that factor after each full collection from its marking speed against the program's
 * allocation speed. Marking runs on helper threads, concurrently, so the main-thread speed it sees
 * is huge (~500 MB/ms against 1–4 MB/ms allocated) and it settles on its minimum, 1.1–1.4 (seen with
 * --trace-gc-verbose). With a ClamAV-sized database (bench/workers: ~130 MB live, ~1.8 million
 * objects) the limit then sits 15–50 MB above the live size, about what a burst of downloads promotes
 * from the young generation, so the next full marking starts as soon as the last one ends: runs of
 * 10–15 back-to-back mark-compacts in 3 s, each tracing the whole database on the helper threads,
 * 3–9 ms CPU per downloaded MB against ~1.5 between them. A cluster worker pays it per process, and
 * on a machine whose cores the workers fill, the helper threads take their time from the workers.
 *
 * A fixed 50 % growth (limit ≈ 1.5 × live) took bench/workers from 36 full collections in six rounds
 * of downloads to 2, for at most half the live heap of extra garbage. Only for a large heap, though:
 * for a small one V8 picks up to 4× itself, and a fixed 1.5 doubled the tunnel gateway's CPU per
 * message (bench/tunnel, built-in signatures: ~30 % of it in full collections). An operator who
 * wants another trade-off starts node with --heap-growing-percent=N, which is then left alone.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 50;
/** Heap in use once the database is loaded above which the growth is fixed (built-in only: ~15 MB). */
export const LARGE_HEAP_BYTES = 64 * 1024 * 1024;

/**
 * The V8 flag to set for a heap of `usedBytes` (0 gives V8 its own choice back), or null when the
 * node command line already chose a growth.
 */
export function heapGrowthFlag(execArgv: readonly string[], usedBytes: number): string | null {
  const given = execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a));
  if (given) return null;
  return `--heap-growing-percent=${usedBytes >= LARGE_HEAP_BYTES ? HEAP_GROWING_PERCENT : 0}`;
}

/**
 * Applies the growth that suits the heap now. Call it once the database is loaded (at start and after
 * each reload): the flag is read at each full collection, so the following ones use it.
 */
export function tuneHeapGrowth(
  execArgv: readonly string[] = process.execArgv,
  usedBytes = getHeapStatistics().used_heap_size,
): void {
  const flag = heapGrowthFlag(execArgv, usedBytes);
  if (flag) setFlagsFromString(flag);
}
