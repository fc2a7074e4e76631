/**
 * One object's match state. Bytes arrive in order, in chunks of any size; nothing the verdict depends
 * on may change with where the chunks are cut. How that holds:
 *  - the rolling 4-byte anchor value carries over between chunks, so anchors straddling a cut are seen;
 *  - a candidate part is verified only once every byte it covers (plus one after, for `::f`) has
 *    arrived ("ready"), from the current chunk and a kept tail of `window` bytes (longest part + 2),
 *    extended back to the oldest pending candidate's start;
 *  - candidates are verified in ready order (ties: lower part first), so when part i+1 is checked,
 *    every part i that could precede it has been; chains keep, per part, the merged windows where the
 *    next part may start ([end+min, end+max] of each occurrence): bounded by the gap, not the file.
 *  - offsets are absolute; the object's size is known up front, or only once the stream is over:
 *    hash digests, logical signatures' file sizes and a ::f match ending at the last byte are
 *    decided at the end. A pattern placed relative to the end (EOF-n) cannot be placed before, so
 *    without the size such patterns wait for a second pass (tailFrom/writeTail) over the last bytes
 *    once the size is known, with anchor tables of their own; every other pattern matches as the
 *    bytes arrive, so one of them can still decide early. The two passes look at disjoint patterns
 *    and every byte of an EOF-n pattern lies in the tail, so the matches are the one-pass matches.
 */
import { startWindow } from '../signatures/offset.js';
import type { AnchorTable } from './anchors.js';
import type { AnchorTables, CompiledDb, CPart, KeyEntry } from './compile.js';
import { ObjectHashes } from './hashing.js';
import type { MatchSession } from './index.js';
import { sessionNames } from './names.js';
import { specialsMatch } from './specials.js';

const HEAD_BYTES = 4096;

interface Cand {
  /** The position by which every byte the candidate needs has arrived. */
  ready: number;
  /** Its bytes were already checked (they were all here when the anchor was seen). */
  verified: boolean;
  start: number;
  pat: number;
  part: number;
}

const isAlnum = (b: number) => (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122);

export class BodyMatchSession implements MatchSession {
  /** Infinity until end() when the size was not given. */
  private size: number;
  private readonly sizeKnown: boolean;
  private readonly all: boolean;
  private pos = 0;
  private h = 0;
  private tail: Buffer = Buffer.alloc(0);
  private tailStart = 0;
  private chunk: Buffer = Buffer.alloc(0);
  private chunkStart = 0;
  private pending: Cand[] = [];
  private cands: Cand[] = [];
  private readonly chains = new Map<number, number[][]>();
  private readonly bodyHit = new Set<number>();
  private readonly found: string[] = [];
  private readonly lsigCounts = new Map<number, Uint32Array>();
  private head: Buffer | null;
  private headLen = 0;
  private readonly hashes: ObjectHashes;
  private readonly mayAllow: boolean;
  /** The signature that decided the verdict early (see `decided`); matching stops once set. */
  private decidedBy: string | null = null;
  private ended = false;
  /** The tables the current pass probes: every pattern's, or the EOF-n patterns' in the tail pass. */
  private tables: AnchorTables;
  /** No pattern may start before this: 0, or where the tail pass starts (its first bytes only precede). */
  private floor = 0;
  /** The EOF-n pass: none needed, to come (after the stream), given its bytes, or done. */
  private tailPass: 'none' | 'due' | 'open' | 'done';

  constructor(
    private readonly db: CompiledDb,
    opts: { size?: number; allMatches?: boolean },
  ) {
    this.tables = db;
    this.tailPass = opts.size === undefined && db.eof ? 'due' : 'none';
    this.sizeKnown = opts.size !== undefined;
    this.size = opts.size ?? Number.POSITIVE_INFINITY;
    this.all = opts.allMatches ?? false;
    this.head = db.needHead ? Buffer.alloc(Math.min(HEAD_BYTES, Math.max(0, this.size))) : null;
    this.hashes = new ObjectHashes(db, opts.size);
    this.mayAllow = this.hashes.mayAllow;
  }

  write(chunk: Buffer): void {
    if (this.ended || this.tailPass === 'open' || this.tailPass === 'done')
      throw new Error('MatchSession.write after the end of the stream');
    if (chunk.length === 0) return;
    this.hashes.update(chunk, this.pos);
    if (this.head && this.headLen < this.head.length) {
      this.headLen += chunk.copy(
        this.head,
        this.headLen,
        0,
        Math.min(chunk.length, this.head.length - this.headLen),
      );
    }
    this.match(chunk);
  }

  /** One chunk through the current pass: anchors probed, candidates settled, the tail kept. */
  private match(chunk: Buffer): void {
    if (this.decidedBy !== null) {
      this.pos += chunk.length;
      return;
    }
    this.chunk = chunk;
    this.chunkStart = this.pos;
    this.scan(chunk, this.pos);
    this.pos += chunk.length;
    this.settle(this.pos);
    this.keepTail();
  }

  /**
   * Hot loop: `h` holds the last 4 bytes; one filter probe per byte and key length in use.
   * (JS shifts count mod 32, so `>>> f` is `>>> (f & 31)`.)
   */
  private scan(buf: Buffer, base: number): void {
    const db = this.tables;
    const f4 = db.anchors4.filter;
    const s4 = db.anchors4.filterShift;
    let h = this.h;
    const n = buf.length;
    const pairs = db.anchors4.pairs;
    const needles = db.anchors4.needles;
    if (
      needles &&
      db.anchors3.size === 0 &&
      db.anchors2.size === 0 &&
      n >= 8 &&
      db.anchors4.needlesSuit(buf)
    ) {
      this.scanNeedles(buf, base, needles);
      return;
    }
    if (pairs && db.anchors3.size === 0 && db.anchors2.size === 0 && n >= 8) {
      this.scanPairs(buf, base, pairs);
      return;
    }
    if (db.anchors3.size === 0 && db.anchors2.size === 0) {
      for (let i = 0; i < n; i++) {
        h = (h << 8) | buf[i]!;
        const f = Math.imul(h, 0x9e3779b1) >>> s4;
        if ((f4[f >>> 5]! >>> f) & 1) this.probe(db.anchors4, h, base + i + 1);
      }
    } else {
      const f3 = db.anchors3.filter;
      const f2 = db.anchors2.filter;
      const s3 = db.anchors3.filterShift;
      const has3 = db.anchors3.size > 0;
      const has2 = db.anchors2.size > 0;
      for (let i = 0; i < n; i++) {
        h = (h << 8) | buf[i]!;
        let f = Math.imul(h, 0x9e3779b1) >>> s4;
        if ((f4[f >>> 5]! >>> f) & 1) this.probe(db.anchors4, h, base + i + 1);
        if (has3) {
          const h3 = h & 0xffffff;
          f = Math.imul(h3, 0x9e3779b1) >>> s3;
          if ((f3[f >>> 5]! >>> f) & 1) this.probe(db.anchors3, h3, base + i + 1);
        }
        if (has2) {
          const h2 = h & 0xffff;
          if ((f2[h2 >>> 5]! >>> h2) & 1) this.probe(db.anchors2, h2, base + i + 1);
        }
      }
    }
    this.h = h;
  }

  /**
   * The same probes as the byte loop for a small table of 4-byte keys, at a third of the steps: a
   * key covers the byte pairs at 3 consecutive offsets, one of them a multiple of 3, so only pairs
   * there are looked up and a hit checks the keys that could start 0, 1 or 2 bytes before it. Keys
   * ending in the first 3 bytes (straddling the previous chunk) go through the rolling value first,
   * so probes stay in position order.
   */
  private scanPairs(buf: Buffer, base: number, pairs: Int32Array): void {
    const t = this.tables.anchors4;
    const f4 = t.filter;
    const s4 = t.filterShift;
    let h = this.h;
    for (let i = 0; i < 3; i++) {
      h = (h << 8) | buf[i]!;
      const f = Math.imul(h, 0x9e3779b1) >>> s4;
      if ((f4[f >>> 5]! >>> f) & 1) this.probe(t, h, base + i + 1);
    }
    const n = buf.length;
    for (let j = 0; j + 1 < n; j += 3) {
      const pair = (buf[j]! << 8) | buf[j + 1]!;
      if (((pairs[pair >>> 5]! >>> pair) & 1) === 0) continue;
      // Candidates start at j - 2 (pair = its bytes 2-3), j - 1 (bytes 1-2) and j (bytes 0-1).
      for (let s = j < 2 ? 0 : j - 2; s <= j && s + 4 <= n; s++) {
        const k = (buf[s]! << 24) | (buf[s + 1]! << 16) | (buf[s + 2]! << 8) | buf[s + 3]!;
        const f = Math.imul(k, 0x9e3779b1) >>> s4;
        if ((f4[f >>> 5]! >>> f) & 1) this.probe(t, k, base + s + 4);
      }
    }
    this.h = (buf[n - 4]! << 24) | (buf[n - 3]! << 16) | (buf[n - 2]! << 8) | buf[n - 1]!;
  }

  /**
   * The same probes for one or two 4-byte keys, found by Buffer.indexOf (a native search) instead of
   * a loop over the bytes. Keys straddling the previous chunk go through the rolling value first;
   * with two keys the hits are merged so probes stay in position order.
   */
  private scanNeedles(buf: Buffer, base: number, needles: Buffer[]): void {
    const t = this.tables.anchors4;
    let h = this.h;
    for (let i = 0; i < 3; i++) {
      h = (h << 8) | buf[i]!;
      if (t.get(h) !== undefined) this.probe(t, h, base + i + 1);
    }
    const n = buf.length;
    if (needles.length === 1) {
      const needle = needles[0]!;
      const key = needle.readInt32BE(0);
      for (let p = buf.indexOf(needle); p >= 0; p = buf.indexOf(needle, p + 1))
        this.probe(t, key, base + p + 4);
    } else {
      const ends: number[] = [];
      const keys: number[] = [];
      for (const needle of needles) {
        for (let p = buf.indexOf(needle); p >= 0; p = buf.indexOf(needle, p + 1)) {
          ends.push(p + 4);
          keys.push(needle.readInt32BE(0));
        }
      }
      const order = ends.map((_, i) => i).sort((a, b) => ends[a]! - ends[b]!);
      for (const i of order) this.probe(t, keys[i]!, base + ends[i]!);
    }
    this.h = (buf[n - 4]! << 24) | (buf[n - 3]! << 16) | (buf[n - 2]! << 8) | buf[n - 1]!;
  }

  /** Filter hit: is it a real anchor? (Kept out of the hot loop so that stays small.) */
  private probe(t: AnchorTable, key: number, keyEnd: number): void {
    const e = t.get(key);
    if (e !== undefined) this.hit(e, keyEnd, t.len);
  }

  private hit(entries: KeyEntry[], keyEnd: number, keyLen: number): void {
    // The rolling value starts at 0: the first bytes of an object are not a full key yet.
    if (keyEnd < keyLen) return;
    const received = this.chunkStart + this.chunk.length;
    for (const e of entries) {
      const pat = this.db.patterns[e.pat]!;
      if (pat.owner < 0 || (pat.sub < 0 && this.bodyHit.has(pat.owner))) continue;
      const part = pat.parts[e.part]!;
      const start = keyEnd - keyLen - part.keyOff;
      if (start < this.floor) continue;
      const end = start + part.len;
      if (end > this.size) continue;
      if (e.part === 0 && pat.offset.kind !== 'any') {
        // Size unknown yet (Infinity): an EOF-n window starts at Infinity, so such a first part
        // waits for the tail pass, and its later parts, finding no window open, go with it.
        const w = startWindow(pat.offset, this.size);
        if (!w || start < w[0] || start > w[1]) continue;
      }
      // Bytes only: checking them now (when they are here) is order-independent and keeps the
      // queue to real part matches; the chain/offset logic still runs in ready order in settle().
      let verified = false;
      if (end <= received) {
        if (!this.verifyPart(part, start)) continue;
        verified = true;
        // Shortcuts that cannot depend on ordering (so chunking cannot change them), which keeps a
        // file of endlessly repeated anchors from queueing a candidate per byte:
        //  - the first part of a multi-part pattern only opens a window for the next part, which a
        //    candidate could use only if it starts after this end, i.e. comes later in ready order;
        //  - a logical subsignature only counts, and counts are read at end().
        if (pat.fullword && start > 0 && isAlnum(this.byteAt(start - 1))) {
          if (e.part === 0) continue;
        } else if (e.part === 0 && pat.parts.length > 1) {
          this.openWindow(e.pat, 0, end);
          continue;
        } else if (
          pat.parts.length === 1 &&
          pat.sub >= 0 &&
          (!pat.fullword || end === this.size || end < received)
        ) {
          if (pat.fullword && end < this.size && isAlnum(this.byteAt(end))) continue;
          this.matched(pat.owner, pat.sub, pat.target);
          continue;
        }
      }
      const last = e.part === pat.parts.length - 1;
      const ready = last && pat.fullword && end < this.size ? end + 1 : end;
      this.cands.push({ ready, start, pat: e.pat, part: e.part, verified });
    }
  }

  /** Verifies, in ready order, every queued candidate whose bytes are all here. */
  private settle(received: number): void {
    if (this.cands.length === 0 && this.pending.length === 0) return;
    const all = this.pending.length ? this.pending.concat(this.cands) : this.cands;
    this.cands = [];
    const now: Cand[] = [];
    const later: Cand[] = [];
    for (const c of all) (c.ready <= received ? now : later).push(c);
    this.pending = later;
    let sorted = true;
    for (let i = 1; i < now.length && sorted; i++) {
      const a = now[i - 1]!;
      const b = now[i]!;
      if (a.ready > b.ready || (a.ready === b.ready && a.part > b.part)) sorted = false;
    }
    if (!sorted) now.sort((a, b) => a.ready - b.ready || a.part - b.part);
    for (const c of now) {
      if (this.decidedBy !== null) break;
      this.handle(c);
    }
  }

  /** The byte at absolute position `p` if still held (current chunk or kept tail), else -1. */
  byteAt(p: number): number {
    if (p >= this.chunkStart) {
      const i = p - this.chunkStart;
      return i < this.chunk.length ? this.chunk[i]! : -1;
    }
    const i = p - this.tailStart;
    return i >= 0 && i < this.tail.length ? this.tail[i]! : -1;
  }

  private verifyPart(part: CPart, start: number): boolean {
    const { mask, value } = part;
    const len = mask.length;
    const off = start - this.chunkStart;
    if (off >= 0 && off + len <= this.chunk.length) {
      // Common case: the whole part lies in the current chunk.
      const c = this.chunk;
      for (let i = 0; i < len; i++) if ((c[off + i]! & mask[i]!) !== value[i]) return false;
    } else {
      for (let i = 0; i < len; i++) {
        const b = this.byteAt(start + i);
        if (b < 0 || (b & mask[i]!) !== value[i]) return false;
      }
    }
    return part.specials.length === 0 || specialsMatch(part, start, this);
  }

  private handle(c: Cand): void {
    const db = this.db;
    const pat = db.patterns[c.pat]!;
    if (pat.sub < 0 && this.bodyHit.has(pat.owner)) return;
    const part = pat.parts[c.part]!;
    const lastIdx = pat.parts.length - 1;
    if (c.part === 0) {
      // (The offset window was checked when the candidate was queued.)
      if (pat.fullword && c.start > 0 && isAlnum(this.byteAt(c.start - 1))) return;
    } else {
      // prev = flat [lo0, hi0, lo1, hi1, …]: ascending, disjoint windows of allowed starts for this part.
      const prev = this.chains.get(c.pat)?.[c.part - 1];
      if (!prev || prev.length === 0) return;
      let drop = 0;
      while (drop < prev.length && prev[drop + 1]! < c.start) drop += 2;
      if (drop) prev.splice(0, drop);
      if (prev.length === 0 || prev[0]! > c.start) return;
    }
    if (!c.verified && !this.verifyPart(part, c.start)) return;
    const end = c.start + part.len;
    if (c.part < lastIdx) {
      this.openWindow(c.pat, c.part, end);
      return;
    }
    if (pat.fullword && end < this.size && isAlnum(this.byteAt(end))) return;
    this.matched(pat.owner, pat.sub, pat.target);
  }

  /**
   * Part `part` of pattern `pat` ended at `end`: the next part may start anywhere in
   * [end+min, end+max]. Merged with the previous window when they touch, so memory is bounded by the
   * gap, not by how often the part occurs.
   */
  private openWindow(pat: number, part: number, end: number): void {
    const p = this.db.patterns[pat]!;
    let chain = this.chains.get(pat);
    if (!chain) {
      chain = p.parts.slice(0, p.parts.length - 1).map(() => []);
      this.chains.set(pat, chain);
    }
    const gap = p.gaps[part]!;
    const w = chain[part]!;
    const lo = end + gap.min;
    const hi = end + gap.max;
    const n = w.length;
    if (n && lo <= w[n - 1]! + 1) w[n - 1] = Math.max(w[n - 1]!, hi);
    else w.push(lo, hi);
  }

  private matched(owner: number, sub: number, target: number): void {
    if (sub >= 0) {
      const l = this.db.logicals[owner]!;
      let counts = this.lsigCounts.get(owner);
      if (!counts) {
        counts = new Uint32Array(l.subsigs.length);
        this.lsigCounts.set(owner, counts);
      }
      counts[sub]!++;
      return;
    }
    this.bodyHit.add(owner);
    this.found.push(this.db.bodies[owner]!.name);
    // A type-gated hit is only decided at end (needs the head); everything else can stop early.
    if (!this.all && target === 0 && !this.mayAllow) this.decidedBy ??= this.db.bodies[owner]!.name;
  }

  get decided(): string | null {
    return this.decidedBy;
  }

  private keepTail(): void {
    let from = this.pos - this.db.window;
    for (const c of this.pending) if (c.start - 1 < from) from = c.start - 1;
    from = Math.max(0, from, this.tailStart);
    if (from >= this.chunkStart) {
      this.tail = Buffer.from(this.chunk.subarray(from - this.chunkStart));
    } else {
      const keepOld = this.tail.subarray(from - this.tailStart);
      this.tail = Buffer.concat([keepOld, this.chunk]);
    }
    this.tailStart = from;
    this.chunk = Buffer.alloc(0);
    this.chunkStart = this.pos;
  }

  tailFrom(): number | null {
    if (this.ended || this.tailPass === 'open' || this.tailPass === 'done')
      throw new Error('MatchSession.tailFrom called twice or after end');
    if (this.tailPass === 'none') return null;
    this.finishStream();
    const eof = this.db.eof!;
    if (this.decidedBy !== null) {
      this.tailPass = 'done';
      return null;
    }
    // Candidates still waiting need bytes past the end: none can match now.
    this.pending = [];
    this.cands = [];
    // One byte before the earliest start, for a fullword check on the byte before a match.
    const from = Math.max(0, this.size - eof.eofBack - 1);
    this.tables = eof;
    this.floor = from;
    this.h = 0;
    this.pos = from;
    this.tail = Buffer.alloc(0);
    this.tailStart = from;
    this.chunkStart = from;
    this.tailPass = from < this.size ? 'open' : 'done';
    return from;
  }

  /** The bytes from tailFrom() on, in order, in chunks of any size (hashes and head are done). */
  writeTail(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.tailPass !== 'open') throw new Error('MatchSession.writeTail without a tail pass open');
    if (this.pos + chunk.length > this.size) throw new Error('MatchSession.writeTail past the end');
    this.match(chunk);
    if (this.pos === this.size) this.tailPass = 'done';
  }

  /**
   * No more bytes: without a declared size the object is `pos` bytes, and a ::f match ending at the
   * last byte, queued to wait for the byte after it (as if more could come), needs none now.
   */
  private finishStream(): void {
    this.chunk = Buffer.alloc(0);
    this.chunkStart = this.pos;
    if (!this.sizeKnown) {
      this.size = this.pos;
      for (const c of this.pending) {
        const pat = this.db.patterns[c.pat]!;
        if (pat.fullword && c.part === pat.parts.length - 1 && c.start + pat.parts[c.part]!.len === this.pos)
          c.ready = this.pos;
      }
    }
    if (this.decidedBy === null) this.settle(this.pos);
  }

  end(): string[] {
    if (this.ended) throw new Error('MatchSession.end called twice');
    if (this.tailPass === 'due' || this.tailPass === 'open')
      throw new Error('MatchSession.end before the EOF-n pass (tailFrom/writeTail) was given its bytes');
    if (this.tailPass === 'none') this.finishStream();
    else if (this.decidedBy === null) this.settle(this.pos);
    this.ended = true;
    const names = sessionNames(this.db, {
      size: this.size,
      digests: this.hashes.digests(),
      head: this.head ? this.head.subarray(0, this.headLen) : Buffer.alloc(0),
      bodyHit: this.bodyHit,
      found: this.found,
      lsigCounts: this.lsigCounts,
      mayAllow: this.mayAllow,
    });
    return this.all ? names : names.slice(0, 1);
  }
}
