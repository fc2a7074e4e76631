/** Pieces shared by the line parsers. */
import { HexSigError, UnsupportedSignature } from './hexsig.js';

/**
 * The functionality level scangate claims: that of the ClamAV we are tested against (clamconf of ClamAV
 * 1.4.6: "Engine flevel: 216"). Lines whose `min_flevel` is
 * above it, or whose `max_flevel` is below it, are what ClamAV itself would skip: we count them as
 * unsupported instead of silently dropping them.
 */
export const FLEVEL = 216;

const NUM = /^[0-9]{1,10}$/;

export function parseNumber(s: string, what: string): number {
  if (!NUM.test(s)) throw new HexSigError(`${what}: "${s}" is not a number`);
  return Number(s);
}

/** Checks optional `min_flevel[:max_flevel]` fields; returns the min (0 when absent). */
export function checkFlevel(min: string | undefined, max: string | undefined): number {
  const lo = min === undefined || min === '' ? 0 : parseNumber(min, 'min_flevel');
  const hi = max === undefined || max === '' ? Number.POSITIVE_INFINITY : parseNumber(max, 'max_flevel');
  if (lo > FLEVEL) throw new UnsupportedSignature(`requires functionality level ${lo} (we are ${FLEVEL})`);
  if (hi < FLEVEL) throw new UnsupportedSignature(`retired at functionality level ${hi}`);
  return lo;
}

export function checkName(name: string): string {
  if (name.length === 0) throw new HexSigError('empty signature name');
  if (/[\s\0]/.test(name) && name.trim() !== name) throw new HexSigError(`bad signature name "${name}"`);
  return name;
}
