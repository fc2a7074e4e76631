/**
 * What a finished session reports: the allow list first (an allow-listed object is clean whatever
 * matched), then hash signatures, body signatures in the order found (a type-gated one only if the
 * head has its type), then logical signatures whose expression holds.
 */
import type { HashAlgo } from '../signatures/index.js';
import { evalLogicalExpr } from '../signatures/lexpr.js';
import type { CompiledDb } from './compile.js';
import { targetMatches } from './filetype.js';

const ALGOS = ['md5', 'sha1', 'sha256'] as const;

export interface SessionFindings {
  size: number;
  digests: Partial<Record<HashAlgo, string>>;
  /** Up to the first 4 KiB of the object (file-type checks). */
  head: Buffer;
  /** Body signatures that matched, in the order found; `found` holds their names in that order. */
  bodyHit: Set<number>;
  found: string[];
  /** Per logical signature with a subsignature match: the count of each subsignature. */
  lsigCounts: Map<number, Uint32Array>;
  mayAllow: boolean;
}

/** Matched signature names, each once, the first the primary; [] means clean. */
export function sessionNames(db: CompiledDb, f: SessionFindings): string[] {
  const { size, digests, head } = f;
  if (f.mayAllow) {
    for (const a of ALGOS) {
      const d = digests[a];
      if (d && db.allow.lookup(a, size, d) !== undefined) return [];
    }
  }
  const names: string[] = [];
  const seen = new Set<string>();
  const add = (n: string) => {
    if (!seen.has(n)) {
      seen.add(n);
      names.push(n);
    }
  };
  for (const a of ALGOS) {
    const d = digests[a];
    const n = d === undefined ? undefined : db.hashes.lookup(a, size, d);
    if (n !== undefined) add(n);
  }
  let bi = 0;
  for (const owner of f.bodyHit) {
    const b = db.bodies[owner]!;
    if (b.target === 0 || targetMatches(b.target, head)) add(f.found[bi]!);
    bi++;
  }
  const evalL = (idx: number, counts: ArrayLike<number>) => {
    const l = db.logicals[idx]!;
    if (l.fileSize && (size < l.fileSize[0] || size > l.fileSize[1])) return;
    if (l.target !== 0 && !targetMatches(l.target, head)) return;
    if (evalLogicalExpr(l.expr, counts)) add(l.name);
  };
  for (const [idx, counts] of f.lsigCounts) evalL(idx, counts);
  for (const idx of db.zeroTrue)
    if (!f.lsigCounts.has(idx)) evalL(idx, new Uint32Array(db.logicals[idx]!.subsigs.length));
  return names;
}
