/**
 * Compiles a SignatureDb into lookup structures for MatchSession.
 *
 * Body patterns (.ndb sigs and .ldb subsigs) are split into fixed-length parts (see hexsig.ts). Each
 * part gets one *anchor*: the best window of 3 (else 2) consecutive key-able elements (exact bytes, or
 * small sets such as nocase letters, expanded into every combination). A 2^24-bit table says whether
 * a 3-byte value starts any anchor — the per-byte inner loop is one shift and one table probe, which is
 * ClamAV's BM prefix-hash idea without the hash collisions. A hit looks up the anchor's parts and
 * queues them for verification around the anchor once their bytes have arrived.
 */
import type { BodySig, Gap, HashSig, LogicalSig, Offset, Part, SignatureDb, SubPattern } from '../signatures/index.js';
import { chooseAnchor } from '../signatures/anchor.js';
import { evalLogicalExpr } from '../signatures/lexpr.js';

export interface CPart extends Part {
  /** Position of the anchor inside the part, and its length (2 or 3). */
  keyOff: number;
  keyLen: number;
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

export interface CompiledDb {
  patterns: CPattern[];
  bodies: BodySig[];
  logicals: LogicalSig[];
  /** Logical sigs whose expression holds with no match at all (evaluated for every object). */
  zeroTrue: number[];
  bits3: Uint32Array;
  keys3: Map<number, KeyEntry[]>;
  bits2: Uint32Array;
  keys2: Map<number, KeyEntry[]>;
  has2: boolean;
  /** Longest part + 2 (fullword needs the bytes either side): the tail a session keeps. */
  window: number;
  hashes: HashIndex;
  allow: HashIndex;
  needHead: boolean;
  /** Signatures dropped here because a part has no anchor; reported by compileMatcher. */
  unanchored: Unanchored[];
}

/** (algo, size, hash) → name, plus which sizes/algos are worth hashing at all. */
export class HashIndex {
  readonly byKey = new Map<string, string>();
  readonly sizes = { md5: new Set<number>(), sha1: new Set<number>(), sha256: new Set<number>() };
  readonly anySize = { md5: false, sha1: false, sha256: false };
  count = 0;

  add(h: HashSig): void {
    const key = `${h.algo}:${h.size ?? '*'}:${h.hash}`;
    if (this.byKey.has(key)) return;
    this.byKey.set(key, h.name);
    this.count++;
    if (h.size === null) this.anySize[h.algo] = true;
    else this.sizes[h.algo].add(h.size);
  }

  wants(algo: HashSig['algo'], size: number): boolean {
    return this.anySize[algo] || this.sizes[algo].has(size);
  }

  lookup(algo: HashSig['algo'], size: number, hash: string): string | undefined {
    return this.byKey.get(`${algo}:${size}:${hash}`) ?? (this.anySize[algo] ? this.byKey.get(`${algo}:*:${hash}`) : undefined);
  }
}

export function compileDb(db: SignatureDb): CompiledDb {
  const c: CompiledDb = {
    patterns: [],
    bodies: [],
    logicals: [],
    zeroTrue: [],
    bits3: new Uint32Array(1 << 19),
    keys3: new Map(),
    bits2: new Uint32Array(1 << 11),
    keys2: new Map(),
    has2: false,
    window: 2,
    hashes: new HashIndex(),
    allow: new HashIndex(),
    needHead: false,
    unanchored: [],
  };
  for (const h of db.hashes) c.hashes.add(h);
  for (const h of db.allow) c.allow.add(h);

  /** Compiles one pattern; returns null (nothing added) if some part has no anchor. */
  const addPattern = (sp: SubPattern, owner: number, sub: number, target: number): CPattern | null => {
    const parts: CPart[] = [];
    const anchors: { off: number; len: number; keys: number[] }[] = [];
    for (const p of sp.pattern.parts) {
      const a = chooseAnchor(p);
      if (!a) return null;
      anchors.push(a);
      parts.push({ ...p, keyOff: a.off, keyLen: a.len });
    }
    const pat: CPattern = { parts, gaps: sp.pattern.gaps, offset: sp.offset, fullword: sp.fullword, owner, sub, target };
    const id = c.patterns.push(pat) - 1;
    anchors.forEach((a, part) => {
      const [bits, map] = a.len === 3 ? [c.bits3, c.keys3] : [c.bits2, c.keys2];
      if (a.len === 2) c.has2 = true;
      for (const k of a.keys) {
        bits[k >>> 5]! |= 1 << (k & 31);
        const list = map.get(k);
        if (list) list.push({ pat: id, part });
        else map.set(k, [{ pat: id, part }]);
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
  return c;
}
