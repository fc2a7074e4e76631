/**
 * LZMA and LZMA2 decoders for 7z (Igor Pavlov's LZMA SDK, lzma-specification.txt; LZMA2 chunk
 * framing as in xz-file-format / Lzma2Dec.c). Generators over an InputBuffer (see bitreader.ts):
 * output leaves in chunks of at most 64 KiB; the dictionary grows with the output up to its declared
 * size, so a small stream never allocates a big declared dictionary.
 */
import { type DecoderStep, type InputBuffer, NEED_INPUT } from './bitreader.js';

export class LzmaDataError extends Error {}

/**
 * Largest declared dictionary accepted. Refusing big dictionaries would let an archive dodge scanning
 * (7-Zip allows up to 1.5 GiB; xz up to 4 GiB), and the window only grows with the output (doubling
 * from 1 MiB), which limitOutput stops at maxFileSize, so memory stays near min(dictionary, output).
 */
export const MAX_DICT = 0xffffffff;
const OUT = 64 * 1024;
const PROB_INIT = 1024;

class RangeDecoder {
  range = 0xffffffff;
  code = 0;
  constructor(private readonly inp: InputBuffer) {}
  private byte(): number {
    const i = this.inp;
    if (i.pos >= i.buf.length) throw new LzmaDataError('unexpected end of data');
    return i.buf[i.pos++]!;
  }
  init(): void {
    if (this.byte() !== 0) throw new LzmaDataError('bad range coder start');
    this.range = 0xffffffff;
    this.code = 0;
    for (let k = 0; k < 4; k++) this.code = ((this.code << 8) | this.byte()) >>> 0;
    if (this.code === this.range) throw new LzmaDataError('bad range coder start');
  }
  bit(p: Uint16Array, i: number): number {
    const prob = p[i]!;
    const bound = (this.range >>> 11) * prob;
    let b: number;
    if (this.code < bound) {
      this.range = bound;
      p[i] = prob + ((2048 - prob) >> 5);
      b = 0;
    } else {
      this.range -= bound;
      this.code -= bound;
      p[i] = prob - (prob >> 5);
      b = 1;
    }
    if (this.range < 0x1000000) {
      this.range = (this.range * 256) >>> 0;
      this.code = ((this.code << 8) | this.byte()) >>> 0;
    }
    return b;
  }
  direct(n: number): number {
    let v = 0;
    for (let k = 0; k < n; k++) {
      this.range >>>= 1;
      let b = 0;
      if (this.code >= this.range) {
        this.code -= this.range;
        b = 1;
      }
      v = v * 2 + b;
      if (this.range < 0x1000000) {
        this.range = (this.range * 256) >>> 0;
        this.code = ((this.code << 8) | this.byte()) >>> 0;
      }
    }
    return v;
  }
  tree(p: Uint16Array, base: number, bits: number): number {
    let m = 1;
    for (let k = 0; k < bits; k++) m = (m << 1) | this.bit(p, base + m);
    return m - (1 << bits);
  }
  reverse(p: Uint16Array, base: number, bits: number): number {
    let m = 1;
    let v = 0;
    for (let k = 0; k < bits; k++) {
      const b = this.bit(p, base + m);
      m = (m << 1) | b;
      v |= b << k;
    }
    return v;
  }
}

// Length decoder layout: choice(0), choice2(1), low 16x8 (2..), mid 16x8 (130..), high 256 (258..)
const LEN_SIZE = 2 + 128 + 128 + 256;

/** Decoder state that LZMA2 keeps across chunks (dictionary) and resets selectively (state, props). */
export class LzmaState {
  lc = 3;
  lp = 0;
  pb = 2;
  probs!: {
    isMatch: Uint16Array;
    isRep: Uint16Array;
    isRepG0: Uint16Array;
    isRepG1: Uint16Array;
    isRepG2: Uint16Array;
    isRep0Long: Uint16Array;
    literal: Uint16Array;
    posSlot: Uint16Array;
    posSpecial: Uint16Array;
    align: Uint16Array;
    len: Uint16Array;
    repLen: Uint16Array;
  };
  state = 0;
  reps = [0, 0, 0, 0];
  // dictionary
  win: Uint8Array;
  wpos = 0;
  full = false; // the window has wrapped at least once
  total = 0; // bytes produced since the last dictionary reset
  out = Buffer.allocUnsafe(OUT);
  opos = 0;

  constructor(readonly dictSize: number) {
    if (dictSize > MAX_DICT)
      throw new LzmaDataError(`dictionary of ${dictSize} bytes is above the ${MAX_DICT} limit`);
    this.win = new Uint8Array(Math.min(Math.max(dictSize, 4096), 1 << 20));
  }
  setProps(b: number): void {
    if (b >= 9 * 5 * 5) throw new LzmaDataError('bad lc/lp/pb');
    this.lc = b % 9;
    this.lp = Math.floor(b / 9) % 5;
    this.pb = Math.floor(b / 45);
    if (this.lc + this.lp > 12) throw new LzmaDataError('lc + lp too large');
  }
  resetState(): void {
    const f = (n: number) => new Uint16Array(n).fill(PROB_INIT);
    this.probs = {
      isMatch: f(12 << 4),
      isRep: f(12),
      isRepG0: f(12),
      isRepG1: f(12),
      isRepG2: f(12),
      isRep0Long: f(12 << 4),
      literal: f(0x300 << (this.lc + this.lp)),
      posSlot: f(4 << 6),
      posSpecial: f(115),
      align: f(16),
      len: f(LEN_SIZE),
      repLen: f(LEN_SIZE),
    };
    this.state = 0;
    this.reps = [0, 0, 0, 0];
  }
  resetDict(): void {
    this.wpos = 0;
    this.full = false;
    this.total = 0;
  }
  private put(b: number): void {
    if (this.wpos === this.win.length) {
      if (this.win.length < this.dictSize) {
        const bigger = new Uint8Array(Math.min(this.dictSize, this.win.length * 2));
        bigger.set(this.win);
        this.win = bigger;
      } else {
        this.wpos = 0;
        this.full = true;
      }
    }
    this.win[this.wpos++] = b;
    this.out[this.opos++] = b;
    this.total++;
  }
  back(dist: number): number {
    let i = this.wpos - dist - 1;
    if (i < 0) i += this.win.length;
    return this.win[i]!;
  }
  /** Appends uncompressed bytes (LZMA2 stored chunks). */
  putRaw(b: number): void {
    this.put(b);
  }
  takeOut(): Buffer | null {
    if (this.opos < OUT - 300) return null;
    const o = this.out.subarray(0, this.opos);
    this.out = Buffer.allocUnsafe(OUT);
    this.opos = 0;
    return o;
  }
  flushOut(): Buffer | null {
    if (this.opos === 0) return null;
    const o = this.out.subarray(0, this.opos);
    this.out = Buffer.allocUnsafe(OUT);
    this.opos = 0;
    return o;
  }

  private len(rc: RangeDecoder, p: Uint16Array, posState: number): number {
    if (!rc.bit(p, 0)) return rc.tree(p, 2 + (posState << 3), 3);
    if (!rc.bit(p, 1)) return 8 + rc.tree(p, 130 + (posState << 3), 3);
    return 16 + rc.tree(p, 258, 8);
  }

  /**
   * Decodes up to `limit` bytes (stops early at an end marker: returns true). At most 273 bytes past a
   * 64 KiB boundary are buffered in `out`; callers drain with takeOut() between calls.
   */
  *decode(
    rc: RangeDecoder,
    input: InputBuffer,
    limit: number,
    allowEnd: boolean,
  ): Generator<DecoderStep, boolean, void> {
    const p = this.probs;
    const pbMask = (1 << this.pb) - 1;
    const lpMask = (1 << this.lp) - 1;
    let produced = 0;
    while (produced < limit) {
      if (input.available < 32 && !input.eof) yield NEED_INPUT;
      const o = this.takeOut();
      if (o) yield o;
      const posState = this.total & pbMask;
      const st = this.state;
      if (!rc.bit(p.isMatch, (st << 4) + posState)) {
        const prev = this.total > 0 ? this.back(0) : 0;
        const base = 0x300 * (((this.total & lpMask) << this.lc) + (prev >> (8 - this.lc)));
        let sym = 1;
        if (st >= 7) {
          let match = this.back(this.reps[0]!);
          while (sym < 0x100) {
            const mb = (match >> 7) & 1;
            match <<= 1;
            const b = rc.bit(p.literal, base + ((1 + mb) << 8) + sym);
            sym = (sym << 1) | b;
            if (mb !== b) break;
          }
        }
        while (sym < 0x100) sym = (sym << 1) | rc.bit(p.literal, base + sym);
        this.put(sym & 0xff);
        produced++;
        this.state = st < 4 ? 0 : st < 10 ? st - 3 : st - 6;
        continue;
      }
      let len: number;
      const r = this.reps;
      if (rc.bit(p.isRep, st)) {
        if (this.total === 0) throw new LzmaDataError('repeat before any output');
        if (!rc.bit(p.isRepG0, st)) {
          if (!rc.bit(p.isRep0Long, (st << 4) + posState)) {
            this.state = st < 7 ? 9 : 11;
            this.put(this.back(r[0]!));
            produced++;
            continue;
          }
        } else {
          let d: number;
          if (!rc.bit(p.isRepG1, st)) d = r[1]!;
          else {
            if (!rc.bit(p.isRepG2, st)) d = r[2]!;
            else {
              d = r[3]!;
              r[3] = r[2]!;
            }
            r[2] = r[1]!;
          }
          r[1] = r[0]!;
          r[0] = d;
        }
        len = this.len(rc, p.repLen, posState);
        this.state = st < 7 ? 8 : 11;
      } else {
        r[3] = r[2]!;
        r[2] = r[1]!;
        r[1] = r[0]!;
        len = this.len(rc, p.len, posState);
        this.state = st < 7 ? 7 : 10;
        const slot = rc.tree(p.posSlot, Math.min(len, 3) << 6, 6);
        let dist: number;
        if (slot < 4) dist = slot;
        else {
          const nd = (slot >> 1) - 1;
          dist = (2 | (slot & 1)) * 2 ** nd;
          if (slot < 14) dist += rc.reverse(p.posSpecial, dist - slot, nd);
          else dist += rc.direct(nd - 4) * 16 + rc.reverse(p.align, 0, 4);
        }
        if (dist === 0xffffffff) {
          if (!allowEnd) throw new LzmaDataError('unexpected end marker');
          return true;
        }
        r[0] = dist;
      }
      len += 2;
      const d = r[0]!;
      if (d >= this.total || d >= this.dictSize)
        throw new LzmaDataError('match distance beyond the dictionary');
      for (let k = 0; k < len && produced < limit; k++) {
        this.put(this.back(d));
        produced++;
      }
    }
    return false;
  }
}

/** Dictionary size from the 5-byte LZMA coder properties (lc/lp/pb byte + u32 LE dictionary). */
export function* lzmaDecode(
  input: InputBuffer,
  props: Buffer,
  size: number,
): Generator<DecoderStep, void, void> {
  if (props.length < 5) throw new LzmaDataError('short LZMA properties');
  const dict = props.readUInt32LE(1);
  const s = new LzmaState(Math.max(4096, Math.min(dict, Math.max(size, 4096))));
  s.setProps(props[0]!);
  s.resetState();
  while (input.available < 5 && !input.eof) yield NEED_INPUT;
  const rc = new RangeDecoder(input);
  rc.init();
  yield* s.decode(rc, input, size, true);
  const o = s.flushOut();
  if (o) yield o;
}

export function lzma2DictSize(b: number): number {
  if (b > 40) throw new LzmaDataError('bad LZMA2 dictionary property');
  return b === 40 ? 0xffffffff : (2 | (b & 1)) * 2 ** (Math.floor(b / 2) + 11);
}

export function* lzma2Decode(
  input: InputBuffer,
  propByte: number,
  size: number,
): Generator<DecoderStep, void, void> {
  const s = new LzmaState(Math.max(4096, Math.min(lzma2DictSize(propByte), Math.max(size, 4096))));
  const rc = new RangeDecoder(input);
  let needProps = true;
  let needDictReset = true;
  for (;;) {
    while (input.available < 6 && !input.eof) yield NEED_INPUT;
    if (input.available < 1) throw new LzmaDataError('unexpected end of data');
    const c = input.buf[input.pos++]!;
    if (c === 0) break;
    if (input.available < 2) throw new LzmaDataError('unexpected end of data');
    if (c === 1 || c === 2) {
      if (c === 1) {
        s.resetDict();
        needDictReset = false;
      } else if (needDictReset) throw new LzmaDataError('missing dictionary reset');
      let n = input.buf.readUInt16BE(input.pos) + 1;
      input.pos += 2;
      while (n > 0) {
        if (input.available === 0) {
          if (input.eof) throw new LzmaDataError('unexpected end of data');
          yield NEED_INPUT;
          continue;
        }
        s.putRaw(input.buf[input.pos++]!);
        n--;
        const o = s.takeOut();
        if (o) yield o;
      }
      continue;
    }
    if (c < 0x80) throw new LzmaDataError(`bad LZMA2 control byte ${c}`);
    while (input.available < 5 && !input.eof) yield NEED_INPUT;
    if (input.available < 4) throw new LzmaDataError('unexpected end of data');
    const unpacked = (c & 0x1f) * 65536 + input.buf.readUInt16BE(input.pos) + 1;
    const packed = input.buf.readUInt16BE(input.pos + 2) + 1;
    input.pos += 4;
    const mode = (c >> 5) & 3;
    if (mode === 3) {
      s.resetDict();
      needDictReset = false;
    } else if (needDictReset) throw new LzmaDataError('missing dictionary reset');
    if (mode >= 2) {
      if (input.available < 1) throw new LzmaDataError('unexpected end of data');
      s.setProps(input.buf[input.pos++]!);
      needProps = false;
    } else if (needProps) throw new LzmaDataError('missing LZMA2 properties');
    if (mode >= 1) s.resetState();
    // The whole packed chunk (< 64 KiB) is made available so the range coder never runs dry mid-chunk.
    while (input.available < packed && !input.eof) yield NEED_INPUT;
    if (input.available < packed) throw new LzmaDataError('unexpected end of data');
    const end = input.pos + packed;
    const saved = input.buf;
    input.buf = saved.subarray(0, end);
    try {
      rc.init();
      const gen = s.decode(rc, input, unpacked, false);
      for (;;) {
        const r = gen.next();
        if (r.done) break;
        if (r.value === NEED_INPUT) continue; // the chunk is complete in memory: nothing more to wait for
        yield r.value;
      }
    } finally {
      input.buf = saved;
    }
    input.pos = end;
  }
  const o = s.flushOut();
  if (o) yield o;
}
