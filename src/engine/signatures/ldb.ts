/**
 * `.ldb` logical signatures (LogicalSignatures.md):
 * `Name;TargetDescriptionBlock;LogicalExpression;Subsig0;Subsig1;…` (at most 64 subsignatures).
 * TDB keys Engine, Target and FileSize are honoured; any other key makes the line unsupported.
 * A subsignature is `[Offset:]HexSig[::modifiers]` with modifiers i (nocase), w (wide), a (ascii, with
 * w gives both), f (fullword). PCRE (`/`), byte-compare (`#`) and macro (`${`) subsigs are unsupported.
 */
import { requireAnchors } from './anchor.js';
import { checkName, FLEVEL, parseNumber } from './common.js';
import { applyNocase, applyWide, HexSigError, parseHexSig, UnsupportedSignature } from './hexsig.js';
import { parseLogicalExpr } from './lexpr.js';
import { checkTarget } from './ndb.js';
import { type Offset, parseOffset } from './offset.js';
import type { LogicalSig, SubPattern } from './types.js';

const MAX_SUBSIGS = 64;

function parseRange(v: string, what: string): [number, number] {
  const m = /^([0-9]{1,12})(?:-([0-9]{0,12}))?$/.exec(v);
  if (!m) throw new HexSigError(`${what}: bad range "${v}"`);
  const lo = Number(m[1]);
  const hi = m[2] === undefined ? lo : m[2] === '' ? Number.POSITIVE_INFINITY : Number(m[2]);
  if (hi < lo) throw new HexSigError(`${what}: range "${v}" is empty`);
  return [lo, hi];
}

export function parseSubsig(raw: string): SubPattern[] {
  if (raw.length === 0) throw new HexSigError('empty subsignature');
  if (raw.includes('${')) throw new UnsupportedSignature('macro subsignature');
  if (raw.includes('/')) throw new UnsupportedSignature('PCRE subsignature');
  if (raw.includes('#')) throw new UnsupportedSignature('byte-compare subsignature');
  let body = raw;
  let mods = '';
  const dm = raw.indexOf('::');
  if (dm >= 0) {
    body = raw.slice(0, dm);
    mods = raw.slice(dm + 2);
    if (!/^[iwaf]+$/.test(mods)) throw new HexSigError(`unknown subsignature modifier "${mods}"`);
  }
  let offset: Offset = { kind: 'any' };
  const colon = body.lastIndexOf(':');
  if (colon >= 0) {
    offset = parseOffset(body.slice(0, colon));
    body = body.slice(colon + 1);
  }
  let pattern = parseHexSig(body);
  requireAnchors(pattern.parts);
  if (mods.includes('i')) pattern = applyNocase(pattern);
  const fullword = mods.includes('f');
  const out: SubPattern[] = [];
  const wide = mods.includes('w');
  if (!wide || mods.includes('a')) out.push({ pattern, offset, fullword });
  if (wide) out.push({ pattern: applyWide(pattern), offset, fullword });
  return out;
}

export function parseLdbLine(line: string): LogicalSig {
  const f = line.split(';');
  if (f.length < 4) throw new HexSigError(`expected Name;TDB;Expression;Subsig0;…, got ${f.length} fields`);
  const [name, tdb, exprSrc] = f as [string, string, string];
  checkName(name);
  const subsRaw = f.slice(3);
  if (subsRaw.length > MAX_SUBSIGS)
    throw new HexSigError(`${subsRaw.length} subsignatures (at most ${MAX_SUBSIGS})`);
  const expr = parseLogicalExpr(exprSrc, subsRaw.length);
  let target = 0;
  let fileSize: [number, number] | null = null;
  let unsupported: string | null = null;
  for (const kv of tdb.split(',')) {
    const c = kv.indexOf(':');
    if (c <= 0) throw new HexSigError(`target description "${kv}" is not Key:Value`);
    const k = kv.slice(0, c);
    const v = kv.slice(c + 1);
    if (k === 'Engine') {
      const [lo, hi] = parseRange(v, 'Engine');
      if (lo > FLEVEL) unsupported ??= `requires functionality level ${lo} (we are ${FLEVEL})`;
      else if (hi < FLEVEL) unsupported ??= `retired at functionality level ${hi}`;
    } else if (k === 'Target') target = parseNumber(v, 'Target');
    else if (k === 'FileSize') fileSize = parseRange(v, 'FileSize');
    else if (
      /^(EntryPoint|NumberOfSections|Container|Intermediates|IconGroup1|IconGroup2|HandlerType)$/.test(k)
    ) {
      unsupported ??= `target description key ${k}`;
    } else throw new HexSigError(`unknown target description key "${k}"`);
  }
  // Parse every subsig first so a malformed one is an error even when the line is also unsupported.
  const subsigs: SubPattern[][] = [];
  for (const s of subsRaw) {
    try {
      subsigs.push(parseSubsig(s));
    } catch (e) {
      if (e instanceof UnsupportedSignature) {
        unsupported ??= e.message;
        subsigs.push([]);
      } else throw e;
    }
  }
  if (unsupported) throw new UnsupportedSignature(unsupported);
  return { name, target: checkTarget(String(target)), fileSize, expr, subsigs };
}
