/**
 * Seeded generators of ClamAV signatures together with bytes that match them (and near misses), for
 * property tests and the clamscan differential test. Every signature is valid for ClamAV 1.4: each
 * part starts with at least 2 static bytes.
 */

/** mulberry32: small, fast, deterministic. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (a) => a[Math.floor(next() * a.length)]!,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256);
      return b;
    },
  };
}

export interface Rng {
  next(): number;
  int(lo: number, hi: number): number;
  pick<T>(a: readonly T[]): T;
  bytes(n: number): Buffer;
}

const hex = (b: Buffer | number[]) => Buffer.from(b).toString('hex');

/** One element of a generated pattern: its hex text and how to produce matching / breaking bytes. */
interface GenElem {
  text: string;
  make(r: Rng): Buffer;
  /** Bytes that make this element fail, if it can fail. */
  breakIt?(r: Rng): Buffer;
}

export type GapKind = '*' | '{n}' | '{-n}' | '{n-}' | '{n-m}';
export type ElemKind = 'byte' | '??' | 'a?' | '?a' | '(a|b)' | '!(a|b)' | '(aa|bb)' | '!(aa|bb)';
export const ELEM_KINDS: ElemKind[] = ['byte', '??', 'a?', '?a', '(a|b)', '!(a|b)', '(aa|bb)', '!(aa|bb)'];
export const GAP_KINDS: GapKind[] = ['*', '{n}', '{-n}', '{n-}', '{n-m}'];

function staticElem(r: Rng): GenElem {
  const v = r.int(0, 255);
  return { text: hex([v]), make: () => Buffer.from([v]), breakIt: () => Buffer.from([v ^ r.int(1, 255)]) };
}

function distinctBytes(r: Rng, n: number, len: number): Buffer[] {
  const out: Buffer[] = [];
  while (out.length < n) {
    const b = r.bytes(len);
    if (!out.some((o) => o.equals(b))) out.push(b);
  }
  return out.sort(Buffer.compare);
}

function specialElem(r: Rng, kind: ElemKind): GenElem {
  switch (kind) {
    case 'byte':
      return staticElem(r);
    case '??':
      return { text: '??', make: (q) => q.bytes(1) };
    case 'a?': {
      const hi = r.int(0, 15);
      return {
        text: `${hi.toString(16)}?`,
        make: (q) => Buffer.from([(hi << 4) | q.int(0, 15)]),
        breakIt: (q) => Buffer.from([(((hi + q.int(1, 15)) & 15) << 4) | q.int(0, 15)]),
      };
    }
    case '?a': {
      const lo = r.int(0, 15);
      return {
        text: `?${lo.toString(16)}`,
        make: (q) => Buffer.from([(q.int(0, 15) << 4) | lo]),
        breakIt: (q) => Buffer.from([(q.int(0, 15) << 4) | ((lo + q.int(1, 15)) & 15)]),
      };
    }
    case '(a|b)':
    case '!(a|b)':
    case '(aa|bb)':
    case '!(aa|bb)': {
      const neg = kind.startsWith('!');
      const len = kind.includes('aa') ? r.int(2, 3) : 1;
      const opts = distinctBytes(r, r.int(2, 4), len);
      const inSet = (b: Buffer) => opts.some((o) => o.equals(b));
      const outside = (q: Rng) => {
        for (;;) {
          const b = q.bytes(len);
          if (!inSet(b)) return b;
        }
      };
      const inside = (q: Rng) => Buffer.from(q.pick(opts));
      return {
        text: `${neg ? '!' : ''}(${opts.map(hex).join('|')})`,
        make: neg ? outside : inside,
        breakIt: neg ? inside : outside,
      };
    }
  }
}

export interface GenPart {
  elems: GenElem[];
}

export interface GenGap {
  kind: GapKind;
  text: string;
  min: number;
  max: number;
}

export interface GenPattern {
  hex: string;
  parts: GenPart[];
  gaps: GenGap[];
}

/** A part: 2-4 static bytes, then 0-3 (special, 1-2 static) groups; so every part has an anchor. */
function genPart(r: Rng, kinds: readonly ElemKind[], lead: [number, number] = [2, 4]): GenPart {
  const elems: GenElem[] = [];
  for (let i = r.int(lead[0], lead[1]); i > 0; i--) elems.push(staticElem(r));
  for (let g = r.int(0, 3); g > 0; g--) {
    elems.push(specialElem(r, r.pick(kinds)));
    for (let i = r.int(1, 2); i > 0; i--) elems.push(staticElem(r));
  }
  return { elems };
}

function genGap(r: Rng, kind: GapKind): GenGap {
  switch (kind) {
    case '*':
      return { kind, text: '*', min: 0, max: Number.POSITIVE_INFINITY };
    case '{n}': {
      // Above 128 so the gap really splits the pattern (below, ClamAV and we inline it as ??).
      const n = r.pick([r.int(0, 20), r.int(129, 400)]);
      return { kind, text: `{${n}}`, min: n, max: n };
    }
    case '{-n}': {
      const n = r.int(1, 300);
      return { kind, text: `{-${n}}`, min: 0, max: n };
    }
    case '{n-}': {
      const n = r.int(1, 300);
      return { kind, text: `{${n}-}`, min: n, max: Number.POSITIVE_INFINITY };
    }
    case '{n-m}': {
      const n = r.int(0, 200);
      const m = n + r.int(1, 200);
      return { kind, text: `{${n}-${m}}`, min: n, max: m };
    }
  }
}

export interface GenPatternOptions {
  parts?: number;
  elemKinds?: readonly ElemKind[];
  gapKinds?: readonly GapKind[];
  /** Static bytes each part starts with (default 2-4; real databases have longer runs). */
  lead?: [number, number];
}

export function genPattern(r: Rng, opts: GenPatternOptions = {}): GenPattern {
  const n = opts.parts ?? r.int(1, 3);
  const kinds = opts.elemKinds ?? ELEM_KINDS;
  const parts: GenPart[] = [];
  const gaps: GenGap[] = [];
  let hexText = '';
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      const g = genGap(r, r.pick(opts.gapKinds ?? GAP_KINDS));
      gaps.push(g);
      hexText += g.text;
    }
    const p = genPart(r, kinds, opts.lead);
    // ClamAV's Boyer-Moore matcher takes all-static one-part signatures and wants >= 3 bytes.
    if (n === 1 && p.elems.length < 3) p.elems.push(staticElem(r));
    parts.push(p);
    hexText += p.elems.map((e) => e.text).join('');
  }
  return { hex: hexText, parts, gaps };
}

export interface Instance {
  bytes: Buffer;
}

/**
 * Bytes matching `p`. `gapChoice` picks each gap length; `breakAt` = [part, elem] makes that element
 * fail (for near misses); `badGap` = index of a gap filled just outside its range.
 */
export function instantiate(
  r: Rng,
  p: GenPattern,
  o: { breakAt?: [number, number]; badGap?: number; maxStar?: number } = {},
): Buffer {
  const out: Buffer[] = [];
  p.parts.forEach((part, pi) => {
    if (pi > 0) {
      const g = p.gaps[pi - 1]!;
      let len: number;
      if (o.badGap === pi - 1) len = g.max !== Number.POSITIVE_INFINITY ? g.max + 1 : Math.max(0, g.min - 1);
      else {
        const hi = g.max === Number.POSITIVE_INFINITY ? g.min + (o.maxStar ?? 300) : g.max;
        len = r.int(g.min, hi);
      }
      out.push(r.bytes(len));
    }
    part.elems.forEach((e, ei) => {
      if (o.breakAt && o.breakAt[0] === pi && o.breakAt[1] === ei && e.breakIt) out.push(e.breakIt(r));
      else out.push(e.make(r));
    });
  });
  return Buffer.concat(out);
}

/** Elements that can be broken (static bytes, nibbles, alternates), as [part, elem] pairs. */
export function breakable(p: GenPattern): [number, number][] {
  const out: [number, number][] = [];
  p.parts.forEach((part, pi) => {
    part.elems.forEach((e, ei) => {
      if (e.breakIt) out.push([pi, ei]);
    });
  });
  return out;
}

/** A gap whose bad length is distinguishable (bounded max, or a min above 0). */
export function breakableGaps(p: GenPattern): number[] {
  return p.gaps
    .map((g, i) => [g, i] as const)
    .filter(([g]) => g.max !== Number.POSITIVE_INFINITY || g.min > 0)
    .map(([, i]) => i);
}
