/**
 * Anchor lookup for one key length (2, 3 or 4 bytes). The scan loop keeps the last 4 bytes as an
 * int32; per byte it probes a 2^22-bit filter (512 KiB, stays in L2) indexed by a multiplicative hash
 * of the key, and only on a filter hit looks the key up in an open-addressing table held in typed
 * arrays (no allocation, no Map of boxed numbers). Measured on random data: an exact 2^24-bit table
 * ran at 180-240 MB/s (cache misses), this filter at ~330 MB/s.
 *
 * The filter is sized when the table is sealed: 2^22 bits for a large database, down to 2^15 bits
 * (4 KiB, stays in L1) for a small one such as the built-in signatures, with ~256 bits per key so
 * false hits stay rare. With 512 KiB for one key the scan loop was bound on L2 misses (~2 ns/byte).
 */
import type { KeyEntry } from './compile.js';

export const FILTER_BITS = 22;
const MIN_FILTER_BITS = 15;
const BITS_PER_KEY_LOG2 = 8;
/** Up to this many 4-byte keys set at most 3,072 of the 65,536 pair bits (a pair hit on ~5% of positions). */
const MAX_PAIR_KEYS = 1024;
/**
 * Up to this many 4-byte keys are searched with Buffer.indexOf, one native pass per key (~0.11
 * ns/byte each on random data, against ~0.65 for the pair loop): the built-in database has one key.
 */
const MAX_NEEDLE_KEYS = 2;
const GOLDEN = 0x9e3779b1;
/** Bytes of a chunk sampled by needlesSuit, and how many may equal a needle's first byte. */
const SAMPLES = 64;
const MAX_SAMPLE_HITS = 3;

export class AnchorTable {
  /** Bit set of key hashes; 2-byte keys index it directly (2^16 bits). Built by seal(). */
  filter = new Int32Array(1);
  /** The hash is `Math.imul(key, GOLDEN) >>> filterShift` (unused for 2-byte keys). */
  filterShift = 32 - MIN_FILTER_BITS;
  /**
   * For a small table of 4-byte keys, a direct 2^16-bit set of each key's byte pairs 0-1, 1-2, 2-3.
   * Every occurrence of a key holds one of those pairs at an offset of the data that is a multiple
   * of 3, so the scan need only look at every third position and check the keys that could start
   * there where a pair hits. Null for large tables, where the pairs would fill the set.
   */
  pairs: Int32Array | null = null;
  /** For a table of at most MAX_NEEDLE_KEYS 4-byte keys: each key's bytes (big-endian), else null. */
  needles: Buffer[] | null = null;
  private readonly lists = new Map<number, KeyEntry[]>();
  private slotKeys = new Int32Array(0);
  private slotVals = new Int32Array(0);
  private entries: KeyEntry[][] = [];
  private mask = 0;
  private shift = 32;

  constructor(readonly len: 2 | 3 | 4) {}

  get size(): number {
    return this.lists.size;
  }

  add(key: number, entry: KeyEntry): void {
    const k = key | 0;
    const l = this.lists.get(k);
    if (l) l.push(entry);
    else this.lists.set(k, [entry]);
  }

  /** Freezes the keys into the typed-array hash table. */
  seal(): void {
    let bits = MIN_FILTER_BITS;
    while (bits < FILTER_BITS && 2 ** bits < this.lists.size * 2 ** BITS_PER_KEY_LOG2) bits++;
    // 2-byte keys index the filter directly (exact, and its 8 KiB stay in L1).
    if (this.len === 2) bits = 16;
    this.filterShift = 32 - bits;
    this.filter = new Int32Array(1 << (bits - 5));
    for (const k of this.lists.keys()) {
      const f = this.len === 2 ? k : Math.imul(k, GOLDEN) >>> this.filterShift;
      this.filter[f >>> 5]! |= 1 << f;
    }
    this.pairs = null;
    if (this.len === 4 && this.lists.size > 0 && this.lists.size <= MAX_PAIR_KEYS) {
      this.pairs = new Int32Array(1 << 11);
      for (const k of this.lists.keys()) {
        for (const pair of [k >>> 16, (k >>> 8) & 0xffff, k & 0xffff]) this.pairs[pair >>> 5]! |= 1 << pair;
      }
    }
    this.needles = null;
    if (this.len === 4 && this.lists.size > 0 && this.lists.size <= MAX_NEEDLE_KEYS) {
      this.needles = [...this.lists.keys()].map((k) => {
        const b = Buffer.alloc(4);
        b.writeInt32BE(k);
        return b;
      });
    }
    let cap = 16;
    while (cap < this.lists.size * 2) cap <<= 1;
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.slotKeys = new Int32Array(cap);
    this.slotVals = new Int32Array(cap);
    this.entries = [];
    for (const [k, list] of this.lists) {
      let i = Math.imul(k, GOLDEN) >>> this.shift;
      while (this.slotVals[i] !== 0) i = (i + 1) & this.mask;
      this.slotKeys[i] = k;
      this.slotVals[i] = this.entries.push(list);
    }
  }

  /**
   * Whether Buffer.indexOf suits this chunk: its search stops at every byte equal to the needle's
   * first one (memchr, then a compare), so on data full of that byte (a file of 'X's for EICAR's
   * key) it costs ~5 ns/byte against the pair loop's ~0.65. A sample of 64 bytes spread over the
   * chunk holding more than 3 of them (over ~5%) sends the chunk to the pair loop; either way the
   * probes, and so the verdict, are the same. (Data that avoids exactly the sampled bytes still
   * gets the indexOf path: linear, ~5 ns/byte at worst.)
   */
  needlesSuit(buf: Buffer): boolean {
    const needles = this.needles;
    const step = Math.floor(buf.length / SAMPLES);
    if (!needles || step === 0) return false;
    for (const needle of needles) {
      const first = needle[0]!;
      let hits = 0;
      for (let i = step >> 1; i < buf.length; i += step) if (buf[i] === first) hits++;
      if (hits > MAX_SAMPLE_HITS) return false;
    }
    return true;
  }

  /** The entries anchored on `key` (already masked to this table's length), or undefined. */
  get(key: number): KeyEntry[] | undefined {
    const m = this.mask;
    let i = Math.imul(key, GOLDEN) >>> this.shift;
    for (;;) {
      const v = this.slotVals[i]!;
      if (v === 0) return undefined;
      if (this.slotKeys[i] === key) return this.entries[v - 1];
      i = (i + 1) & m;
    }
  }
}
