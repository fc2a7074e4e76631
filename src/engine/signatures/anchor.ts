/**
 * Anchor choice for a fixed-length part: the best window of 4 (else 3, else 2) consecutive key-able elements
 * (exact bytes, or sets of at most 4 bytes such as nocase letters), expanded into every combination;
 * 4 bytes when there is room (a 4-byte key meets random data 256 times less often than a 3-byte one).
 * The parsers reject parts without one (ClamAV refuses them too: "too short");
 * the matcher indexes the keys.
 */
import { type Elem, HexSigError, type Part } from './hexsig.js';

const COMMON = new Set([0x00, 0xff, 0x20]);

function keyValues(e: Elem): number[] | null {
  if (e.t === 'byte') return [e.v];
  if (e.t === 'set') {
    const v: number[] = [];
    for (let b = 0; b < 256 && v.length <= 4; b++) if (e.set[b]) v.push(b);
    return v.length <= 4 ? v : null;
  }
  return null;
}

function elemScore(vals: number[]): number {
  if (vals.length === 1) return COMMON.has(vals[0]!) ? 5 : 8;
  return 8 - Math.log2(vals.length);
}

/** Element start offsets within a part (an `alt` spans several bytes). */
function elemOffsets(p: Part): number[] {
  const out: number[] = [];
  let o = 0;
  for (const e of p.elems) {
    out.push(o);
    o += e.t === 'alt' ? e.len : 1;
  }
  return out;
}

export function chooseAnchor(p: Part): { off: number; len: number; keys: number[] } | null {
  const offs = elemOffsets(p);
  const vals = p.elems.map(keyValues);
  for (const len of [4, 3, 2]) {
    let best = -1;
    let bestScore = -1;
    for (let i = 0; i + len <= p.elems.length; i++) {
      let score = 0;
      let combos = 1;
      for (let k = 0; k < len; k++) {
        const v = vals[i + k];
        if (!v) {
          score = -1;
          break;
        }
        combos *= v.length;
        score += elemScore(v);
      }
      if (score > bestScore && combos <= 16) {
        bestScore = score;
        best = i;
      }
    }
    if (best >= 0) {
      let keys = [0];
      for (let k = 0; k < len; k++) keys = keys.flatMap((acc) => vals[best + k]!.map((b) => (acc << 8) | b));
      return { off: offs[best]!, len, keys };
    }
  }
  return null;
}

/** Throws HexSigError (ClamAV refuses such lines too) naming the problem when a pattern part has no anchor. */
export function requireAnchors(parts: Part[]): void {
  for (const p of parts)
    if (!hasStaticPair(p))
      throw new HexSigError('a subsignature needs 2 consecutive static bytes (ClamAV: "too short")');
}

/** ClamAV's load rule: two consecutive exact bytes (alternates do not count). */
function hasStaticPair(p: Part): boolean {
  for (let i = 0; i + 1 < p.elems.length; i++)
    if (p.elems[i]!.t === 'byte' && p.elems[i + 1]!.t === 'byte') return true;
  return false;
}
