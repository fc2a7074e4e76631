/**
 * ClamAV body-signature hex syntax (BodySignatureFormat.md) → a pattern of fixed-length parts joined
 * by gaps. Sans-IO and pure: throws HexSigError for malformed text and UnsupportedSignature for valid
 * ClamAV syntax this engine does not implement (the caller turns those into SignatureError / a counted
 * unsupported entry).
 *
 * Forms: `aa` byte, `??` any, `a?`/`?a` nibble, `*`, `{n}`, `{-n}`, `{n-}`, `{n-m}`, `(aa|bb)` and
 * `!(aa|bb)` single-byte alternates, `(aaaa|bbbb)` / `!(aaaa|bbbb)` fixed-length multi-byte alternates.
 * A fixed `{n}` up to FIXED_GAP_INLINE is inlined as `??` runs (ClamAV does the same below 128), so it
 * stays inside one part; every other gap splits the pattern into parts matched and chained separately.
 */

/** One position (or, for `alt`, `len` positions) of a part. */
export type Elem =
  | { t: 'byte'; v: number }
  | { t: 'mask'; v: number; m: number }
  | { t: 'set'; set: Uint8Array }
  | { t: 'alt'; len: number; opts: Buffer[]; neg: boolean; nocase?: boolean };

export interface Part {
  elems: Elem[];
  /** Length in bytes (an `alt` element spans `len` bytes). */
  len: number;
}

/** Distance between the end of one part and the start of the next: min..max bytes (max may be Infinity). */
export interface Gap {
  min: number;
  max: number;
}

export interface BodyPattern {
  parts: Part[];
  gaps: Gap[];
}

export class HexSigError extends Error {}
/** Valid ClamAV syntax that scangate does not implement; counted and reported, never fatal. */
export class UnsupportedSignature extends Error {}

const FIXED_GAP_INLINE = 128;
const MAX_GAP = 1 << 30;

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

function parseHexBytes(s: string, what: string): Buffer {
  if (s.length === 0 || s.length % 2) throw new HexSigError(`${what}: odd or empty hex "${s}"`);
  const out = Buffer.alloc(s.length / 2);
  for (let i = 0; i < s.length; i += 2) {
    const hi = hexVal(s.charCodeAt(i));
    const lo = hexVal(s.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) {
      if (s[i] === '?' || s[i + 1] === '?') throw new UnsupportedSignature('wildcards inside alternates');
      throw new HexSigError(`${what}: bad hex "${s.slice(i, i + 2)}"`);
    }
    out[i / 2] = (hi << 4) | lo;
  }
  return out;
}

function parseUint(s: string, what: string): number {
  if (!/^[0-9]{1,10}$/.test(s)) throw new HexSigError(`${what}: bad number "${s}"`);
  const n = Number(s);
  if (n > MAX_GAP) throw new HexSigError(`${what}: ${n} too large`);
  return n;
}

function parseRange(body: string): Gap {
  const dash = body.indexOf('-');
  if (dash < 0) {
    const n = parseUint(body, 'gap');
    return n === 0 ? { min: 0, max: Number.POSITIVE_INFINITY } : { min: n, max: n };
  }
  const a = body.slice(0, dash);
  const b = body.slice(dash + 1);
  if (a === '' && b === '') throw new HexSigError('gap "{-}" needs a bound');
  const min = a === '' ? 0 : parseUint(a, 'gap');
  // ClamAV 1.4 reads an upper bound of 0 (`{0}`, `{-0}`, `{0-0}`) as "no upper bound", i.e. `*`
  // (measured with clamscan by the differential test); we do the same so verdicts agree.
  let max = b === '' ? Number.POSITIVE_INFINITY : parseUint(b, 'gap');
  if (max === 0) max = Number.POSITIVE_INFINITY;
  if (max < min) throw new HexSigError(`gap {${body}}: upper bound below lower bound`);
  return { min, max };
}

function parseAlternates(inner: string, neg: boolean): Elem {
  if (inner === 'B' || inner === 'L' || inner === 'W')
    throw new UnsupportedSignature(`character class (${inner})`);
  const opts = inner.split('|').map((o) => parseHexBytes(o, 'alternate'));
  if (opts.length < 2) throw new HexSigError('alternates need at least two options');
  const len = opts[0]!.length;
  if (opts.some((o) => o.length !== len)) {
    if (neg) throw new HexSigError('negated alternates must have a fixed length');
    throw new UnsupportedSignature('variable-length alternates');
  }
  if (len === 1) {
    const set = new Uint8Array(256);
    for (const o of opts) set[o[0]!] = 1;
    if (neg) for (let i = 0; i < 256; i++) set[i] = set[i] ? 0 : 1;
    return { t: 'set', set };
  }
  return { t: 'alt', len, opts, neg };
}

/** Parses a body signature. Throws HexSigError (malformed) or UnsupportedSignature. */
export function parseHexSig(sig: string): BodyPattern {
  if (sig.length === 0) throw new HexSigError('empty signature');
  if (sig.includes('[')) throw new UnsupportedSignature('[x-y] anchored byte ranges');
  const parts: Part[] = [];
  const gaps: Gap[] = [];
  let cur: Elem[] = [];
  let curLen = 0;
  let pendingGap: Gap | null = null;
  const closePart = (gap: Gap) => {
    if (cur.length === 0) throw new HexSigError('a gap must follow bytes (no leading or doubled gaps)');
    if (pendingGap) gaps.push(pendingGap);
    parts.push({ elems: cur, len: curLen });
    cur = [];
    curLen = 0;
    pendingGap = gap;
  };
  const push = (e: Elem, len = 1) => {
    cur.push(e);
    curLen += len;
  };
  let i = 0;
  while (i < sig.length) {
    const c = sig[i]!;
    if (c === '*') {
      closePart({ min: 0, max: Number.POSITIVE_INFINITY });
      i++;
    } else if (c === '{') {
      const close = sig.indexOf('}', i);
      if (close < 0) throw new HexSigError('unterminated "{"');
      const g = parseRange(sig.slice(i + 1, close));
      i = close + 1;
      if (g.min === g.max && g.min <= FIXED_GAP_INLINE && cur.length > 0 && i < sig.length) {
        for (let k = 0; k < g.min; k++) push({ t: 'mask', v: 0, m: 0 });
      } else closePart(g);
    } else if (c === '(' || (c === '!' && sig[i + 1] === '(')) {
      const neg = c === '!';
      const open = neg ? i + 1 : i;
      const close = sig.indexOf(')', open);
      if (close < 0) throw new HexSigError('unterminated "("');
      const e = parseAlternates(sig.slice(open + 1, close), neg);
      push(e, e.t === 'alt' ? e.len : 1);
      i = close + 1;
    } else {
      if (i + 1 >= sig.length) throw new HexSigError(`odd number of hex digits`);
      const a = sig[i]!;
      const b = sig[i + 1]!;
      const ha = hexVal(a.charCodeAt(0));
      const hb = hexVal(b.charCodeAt(0));
      if (a === '?' && b === '?') push({ t: 'mask', v: 0, m: 0 });
      else if (a === '?' && hb >= 0) push({ t: 'mask', v: hb, m: 0x0f });
      else if (ha >= 0 && b === '?') push({ t: 'mask', v: ha << 4, m: 0xf0 });
      else if (ha >= 0 && hb >= 0) push({ t: 'byte', v: (ha << 4) | hb });
      else throw new HexSigError(`bad hex "${a}${b}" at column ${i + 1}`);
      i += 2;
    }
  }
  if (cur.length === 0) throw new HexSigError('signature must not end with a gap');
  if (pendingGap) gaps.push(pendingGap);
  parts.push({ elems: cur, len: curLen });
  return { parts, gaps };
}

const isAlpha = (b: number) => (b >= 65 && b <= 90) || (b >= 97 && b <= 122);

/** `::i` — letters match either case (ClamAV nocase applies to static bytes). */
export function applyNocase(p: BodyPattern): BodyPattern {
  const fold = (e: Elem): Elem => {
    if (e.t === 'byte' && isAlpha(e.v)) {
      const set = new Uint8Array(256);
      set[e.v | 0x20] = 1;
      set[e.v & ~0x20] = 1;
      return { t: 'set', set };
    }
    if (e.t === 'set') {
      const set = new Uint8Array(e.set);
      for (let b = 0; b < 256; b++) if (e.set[b] && isAlpha(b)) set[b | 0x20] = set[b & ~0x20] = 1;
      return { t: 'set', set };
    }
    if (e.t === 'alt') {
      // Expanding every option into its case variants could explode; compare case-folded instead.
      const opts = e.opts.map((o) => Buffer.from(o.toString('latin1').toLowerCase(), 'latin1'));
      return { t: 'alt', len: e.len, opts, neg: e.neg, nocase: true };
    }
    return e;
  };
  return { parts: p.parts.map((pt) => ({ elems: pt.elems.map(fold), len: pt.len })), gaps: p.gaps };
}

/** `::w` — UTF-16LE: every byte followed by 00, gaps doubled. */
export function applyWide(p: BodyPattern): BodyPattern {
  const zero: Elem = { t: 'byte', v: 0 };
  const widen = (e: Elem): Elem[] => {
    if (e.t === 'alt') {
      const opts = e.opts.map((o) => {
        const w = Buffer.alloc(o.length * 2);
        for (let k = 0; k < o.length; k++) w[k * 2] = o[k]!;
        return w;
      });
      return [{ ...e, len: e.len * 2, opts }];
    }
    return [e, zero];
  };
  return {
    parts: p.parts.map((pt) => ({ elems: pt.elems.flatMap(widen), len: pt.len * 2 })),
    gaps: p.gaps.map((g) => ({ min: g.min * 2, max: g.max * 2 })),
  };
}
