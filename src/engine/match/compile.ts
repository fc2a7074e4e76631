/**
 * Compiles a SignatureDb into lookup structures for MatchSession.
 *
 * Body patterns (.ndb sigs and .ldb subsigs) are split into fixed-length parts (see hexsig.ts). Each
 * part gets one *anchor*: the best window of 4 (else 3, else 2) consecutive key-able elements (exact
 * bytes, or small sets such as nocase letters, expanded into every combination), see anchors.ts for
 * the per-byte filter. This is ClamAV's BM prefix-hash idea (matcher-bm.c) with longer keys. A hit
 * looks up the anchor's parts and verifies them around the anchor once their bytes have arrived.
 */

import { chooseAnchor } from '../signatures/anchor.js';
import type {
  BodySig,
  Elem,
  Gap,
  LogicalSig,
  Offset,
  Part,
  SignatureDb,
  SubPattern,
} from '../signatures/index.js';
import { evalLogicalExpr } from '../signatures/lexpr.js';
import { AnchorTable } from './anchors.js';
import { HashIndex } from './hashindex.js';

export interface CPart extends Part {
  /** Position of the anchor inside the part, and its length (2 or 3). */
  keyOff: number;
  keyLen: number;
  /** Per byte: (b & mask[i]) === value[i] must hold (mask 0 where a set/alternate decides). */
  mask: Uint8Array;
  value: Uint8Array;
  /** Elements the byte masks cannot express (sets, alternates), with their byte offset. */
  specials: { off: number; elem: Elem }[];
}

/** Flattens a part's elements into per-byte masks, leaving sets/alternates to a second pass. */
function flatten(p: Part): Pick<CPart, 'mask' | 'value' | 'specials'> {
  const mask = new Uint8Array(p.len);
  const value = new Uint8Array(p.len);
  const specials: { off: number; elem: Elem }[] = [];
  let o = 0;
  for (const e of p.elems) {
    if (e.t === 'byte') {
      mask[o] = 0xff;
      value[o] = e.v;
    } else if (e.t === 'mask') {
      mask[o] = e.m;
      value[o] = e.v;
    } else specials.push({ off: o, elem: e });
    o += e.t === 'alt' ? e.len : 1;
  }
  return { mask, value, specials };
}

export interface CPattern {
  parts: CPart[];
  gaps: Gap[];
  offset: Offset;
  fullword: boolean;
  /** .ndb: index into bodies; .ldb: index into logicals. */
  owner: number;
  /** -1 for a .ndb signature, else the .ldb subsignature index. */
  sub: number;
  target: number;
}

export interface KeyEntry {
  pat: number;
  part: number;
}

export interface Unanchored {
  name: string;
  reason: string;
}

/** The anchor tables one pass of a session probes, by key length (a length with no anchors: size 0). */
export interface AnchorTables {
  anchors4: AnchorTable;
  anchors3: AnchorTable;
  anchors2: AnchorTable;
}

const newTables = (): AnchorTables => ({
  anchors4: new AnchorTable(4),
  anchors3: new AnchorTable(3),
  anchors2: new AnchorTable(2),
});

const sealTables = (t: AnchorTables) => {
  t.anchors4.seal();
  t.anchors3.seal();
  t.anchors2.seal();
};

const tableFor = (t: AnchorTables, len: number) =>
  len === 4 ? t.anchors4 : len === 3 ? t.anchors3 : t.anchors2;

export interface CompiledDb extends AnchorTables {
  patterns: CPattern[];
  bodies: BodySig[];
  logicals: LogicalSig[];
  /** Logical sigs whose expression holds with no match at all (evaluated for every object). */
  zeroTrue: number[];
  /**
   * The anchors of the patterns placed relative to the end (EOF-n) again, alone: a session started
   * without the size matches every other pattern as the bytes stream in, and these once the size is
   * known, over the last `eofBack` bytes only. Null when there are none (`sizeFree`).
   */
  eof: (AnchorTables & { eofBack: number }) | null;
  /** Longest part + 2 (fullword needs the bytes either side): the tail a session keeps. */
  window: number;
  hashes: HashIndex;
  allow: HashIndex;
  needHead: boolean;
  /** No pattern is placed relative to the end (EOF-n): a session may start without the size. */
  sizeFree: boolean;
  /** Signatures dropped here because a part has no anchor; reported by compileMatcher. */
  unanchored: Unanchored[];
}

export function compileDb(db: SignatureDb): CompiledDb {
  const c: CompiledDb = {
    patterns: [],
    bodies: [],
    logicals: [],
    zeroTrue: [],
    ...newTables(),
    eof: null,
    window: 2,
    hashes: new HashIndex(),
    allow: new HashIndex(),
    needHead: false,
    sizeFree: true,
    unanchored: [],
  };
  for (const h of db.hashes) c.hashes.add(h);
  for (const h of db.allow) c.allow.add(h);
  c.hashes.seal();
  c.allow.seal();

  /** Compiles one pattern; returns null (nothing added) if some part has no anchor. */
  const addPattern = (sp: SubPattern, owner: number, sub: number, target: number): CPattern | null => {
    const parts: CPart[] = [];
    const anchors: { off: number; len: number; keys: number[] }[] = [];
    for (const p of sp.pattern.parts) {
      const a = chooseAnchor(p);
      if (!a) return null;
      anchors.push(a);
      parts.push({ ...p, keyOff: a.off, keyLen: a.len, ...flatten(p) });
    }
    const pat: CPattern = {
      parts,
      gaps: sp.pattern.gaps,
      offset: sp.offset,
      fullword: sp.fullword,
      owner,
      sub,
      target,
    };
    const id = c.patterns.push(pat) - 1;
    const o = sp.offset;
    // Every byte of such a pattern lies in the last `n` (its first part starts at size-n at the earliest).
    if (o.kind === 'eof') {
      c.eof ??= { ...newTables(), eofBack: 0 };
      c.eof.eofBack = Math.max(c.eof.eofBack, o.n);
      c.sizeFree = false;
    }
    anchors.forEach((a, part) => {
      const table = tableFor(c, a.len);
      const eofTable = c.eof && o.kind === 'eof' ? tableFor(c.eof, a.len) : null;
      for (const k of a.keys) {
        table.add(k, { pat: id, part });
        eofTable?.add(k, { pat: id, part });
      }
      c.window = Math.max(c.window, parts[part]!.len + 2);
    });
    if (target !== 0) c.needHead = true;
    return pat;
  };

  for (const b of db.bodies) {
    const idx = c.bodies.length;
    c.bodies.push(b);
    if (!addPattern(b, idx, -1, b.target)) {
      c.bodies.pop();
      c.unanchored.push({ name: b.name, reason: 'a subsignature has fewer than 2 consecutive static bytes' });
    }
  }
  for (const l of db.logicals) {
    const idx = c.logicals.length;
    const before = c.patterns.length;
    let ok = true;
    l.subsigs.forEach((alts, sub) => {
      for (const sp of alts) if (ok && !addPattern(sp, idx, sub, l.target)) ok = false;
    });
    if (!ok) {
      // Roll back this lsig's patterns: they are still in the key tables, so mark them dead instead.
      for (let i = before; i < c.patterns.length; i++) c.patterns[i]!.owner = -1;
      c.unanchored.push({ name: l.name, reason: 'a subsignature has fewer than 2 consecutive static bytes' });
      continue;
    }
    c.logicals.push(l);
    if (evalLogicalExpr(l.expr, new Uint32Array(l.subsigs.length))) c.zeroTrue.push(idx);
    if (l.target !== 0) c.needHead = true;
  }
  sealTables(c);
  if (c.eof) sealTables(c.eof);
  return c;
}
