/**
 * Body-signature offsets (ExtendedSignatures.md): `*`, `n`, `n,maxshift`, `EOF-n`, `EOF-n,maxshift`.
 * PE/ELF/Mach-O relative forms (`EP±n`, `Sx+n`, `SEx`, `SL+n`) need executable parsing and are reported
 * as unsupported.
 */
import { HexSigError, UnsupportedSignature } from './hexsig.js';

export type Offset =
  | { kind: 'any' }
  /** The pattern's first byte lies in [n, n+shift] counted from the start (`eof`: from size-n). */
  | { kind: 'abs' | 'eof'; n: number; shift: number };

const NUM = /^[0-9]{1,10}$/;

export function parseOffset(s: string): Offset {
  if (s === '*') return { kind: 'any' };
  let base = s;
  let shift = 0;
  const comma = s.indexOf(',');
  if (comma >= 0) {
    base = s.slice(0, comma);
    const sh = s.slice(comma + 1);
    if (!NUM.test(sh)) throw new HexSigError(`bad maxshift in offset "${s}"`);
    shift = Number(sh);
  }
  if (NUM.test(base)) return { kind: 'abs', n: Number(base), shift };
  if (base.startsWith('EOF-')) {
    const n = base.slice(4);
    if (!NUM.test(n)) throw new HexSigError(`bad offset "${s}"`);
    return { kind: 'eof', n: Number(n), shift };
  }
  if (/^(EP[+-][0-9]+|S[0-9]+\+[0-9]+|SE[0-9]+|SL\+[0-9]+|VI|EOF\+[0-9]+)$/.test(base)) {
    throw new UnsupportedSignature(`offset "${base}" needs executable parsing`);
  }
  throw new HexSigError(`bad offset "${s}"`);
}

/** The window [lo, hi] in which a pattern may start in an object of `size` bytes, or null if none. */
export function startWindow(o: Offset, size: number): [number, number] | null {
  if (o.kind === 'any') return [0, Number.POSITIVE_INFINITY];
  const lo = o.kind === 'abs' ? o.n : size - o.n;
  if (lo < 0) return null;
  return [lo, lo + o.shift];
}
