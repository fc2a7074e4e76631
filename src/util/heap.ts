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
 * a fixed 1.5 doubled the tunnel gateway's CPU per message (bench/tunnel, built-in signatures: ~30 %
 * of it in full collections). A small heap (built-in signatures, ~25 MB live) has the same problem
 * on a smaller scale: V8 picks 1.1–2.4 under load (bench/smtp's gateway: a mark-compact every
 * ~100 ms, 76 of them in 9,000 messages, ~20 % of its CPU in marking and sweeping). So a small heap gets 300 % (4×), the top of the range V8 itself picks for a small heap:
 * 76 -> 19 mark-compacts, 0.61–0.89 -> 0.47–0.52 ms CPU per 100 KB message, for up to three times
 * the live heap (~75 MB with built-in signatures) of garbage held. (A growth computed to leave a
 * fixed room above the heap in use at start came out lower: that figure counts start-up garbage.)
 * An operator who wants another trade-off starts node with --heap-growing-percent=N, which is then
 * left alone.
 */
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 50;
/** Heap in use once the database is loaded from which the growth is 50 % (built-in only: ~15-25 MB). */
export const LARGE_HEAP_BYTES = 64 * 1024 * 1024;
/** A small heap's growth (4×, V8's own largest factor for a small heap). */
export const SMALL_HEAP_GROWING_PERCENT = 300;

/**
 * The V8 flag to set for a heap of `usedBytes`, or null when the node command line already chose a
 * growth.
 */
export function heapGrowthFlag(execArgv: readonly string[], usedBytes: number): string | null {
  const given = execArgv.some((a) => /^--heap[-_]growing[-_]percent(=|$)/.test(a));
  if (given) return null;
  const percent = usedBytes >= LARGE_HEAP_BYTES ? HEAP_GROWING_PERCENT : SMALL_HEAP_GROWING_PERCENT;
  return `--heap-growing-percent=${percent}`;
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
