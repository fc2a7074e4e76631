/**
 * Hash signature lines (HashSignatures.md, AllowLists.md): `.hdb`/`.fp` MD5 and `.hsb`/`.sfp`
 * SHA1/SHA256 (by hex length): `Hash:Size:Name[:min_flevel[:max_flevel]]`, Size may be `*`.
 */
import { checkFlevel, checkName, parseNumber } from './common.js';
import { HexSigError } from './hexsig.js';
import type { HashAlgo, HashSig } from './types.js';

const ALGO_BY_LEN: Record<number, HashAlgo> = { 32: 'md5', 40: 'sha1', 64: 'sha256' };

/** `md5Only`: .hdb/.fp accept MD5 only; .hsb/.sfp accept SHA1/SHA256 (and MD5, as ClamAV does). */
export function parseHashLine(line: string, md5Only: boolean): HashSig {
  const f = line.split(':');
  if (f.length < 3 || f.length > 5)
    throw new HexSigError(`expected Hash:Size:Name[:flevel[:flevel]], got ${f.length} fields`);
  const [hashRaw, sizeRaw, nameRaw, min, max] = f as [string, string, string, string?, string?];
  const hash = hashRaw.toLowerCase();
  if (!/^[0-9a-f]+$/.test(hash)) throw new HexSigError(`hash "${hashRaw}" is not hex`);
  const algo = ALGO_BY_LEN[hash.length];
  if (!algo) throw new HexSigError(`hash length ${hash.length} is not MD5, SHA1 or SHA256`);
  if (md5Only && algo !== 'md5') throw new HexSigError(`a ${algo} hash in an MD5 database`);
  checkFlevel(min, max);
  let size: number | null;
  if (sizeRaw === '*') {
    // ClamAV only accepts unknown sizes with FLEVEL >= 73; we accept the line either way.
    size = null;
  } else size = parseNumber(sizeRaw, 'size');
  return { name: checkName(nameRaw), algo, hash, size };
}
