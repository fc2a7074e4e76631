/** `.ndb` extended signatures: `Name:TargetType:Offset:HexSig[:min_flevel[:max_flevel]]` (ExtendedSignatures.md). */
import { requireAnchors } from './anchor.js';
import { checkFlevel, checkName, parseNumber } from './common.js';
import { HexSigError, parseHexSig, UnsupportedSignature } from './hexsig.js';
import { parseOffset } from './offset.js';
import { type BodySig, GATED_TARGETS } from './types.js';

export function checkTarget(raw: string): number {
  const t = parseNumber(raw, 'target type');
  if (t > 14) throw new HexSigError(`unknown target type ${t}`);
  if (!GATED_TARGETS.has(t)) throw new UnsupportedSignature(`target type ${t} needs a normalizer/parser`);
  return t;
}

export function parseNdbLine(line: string): BodySig {
  const f = line.split(':');
  if (f.length < 4 || f.length > 6)
    throw new HexSigError(`expected Name:Target:Offset:HexSig[:flevel[:flevel]], got ${f.length} fields`);
  const [name, target, offset, hex, min, max] = f as [string, string, string, string, string?, string?];
  checkName(name);
  // Validate every field before deciding "unsupported", so malformed lines are always errors.
  const pattern = parseHexSig(hex);
  const off = parseOffset(offset);
  checkFlevel(min, max);
  requireAnchors(pattern.parts);
  const only = pattern.parts[0]!;
  if (pattern.parts.length === 1 && only.len < 3 && only.elems.every((e) => e.t === 'byte')) {
    // An all-static .ndb body goes to ClamAV's Boyer-Moore matcher, whose minimum is 3 bytes.
    throw new HexSigError('a static signature needs at least 3 bytes (ClamAV: "too short")');
  }
  return { name, target: checkTarget(target), offset: off, pattern, fullword: false };
}
