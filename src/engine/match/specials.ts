/**
 * The elements of a part that byte masks cannot express (sets, alternates, negated alternates),
 * checked at `start` once the masks matched. Reached only for parts that have them.
 */
import type { CPart } from './compile.js';

export function specialsMatch(part: CPart, start: number, bytes: { byteAt(p: number): number }): boolean {
  for (const { off: so, elem: e } of part.specials) {
    const p = start + so;
    if (e.t === 'set') {
      const b = bytes.byteAt(p);
      if (b < 0 || !e.set[b]) return false;
    } else if (e.t === 'alt') {
      let any = false;
      for (const o of e.opts) {
        let eq = true;
        for (let k = 0; k < e.len && eq; k++) {
          let b = bytes.byteAt(p + k);
          if (e.nocase && b >= 65 && b <= 90) b |= 0x20;
          if (b !== o[k]) eq = false;
        }
        if (eq) {
          any = true;
          break;
        }
      }
      if (any === e.neg) return false;
    }
  }
  return true;
}
