/** The parsed, matcher-independent form of a ClamAV signature database. */
import type { BodyPattern } from './hexsig.js';
import type { Offset } from './offset.js';

export type HashAlgo = 'md5' | 'sha1' | 'sha256';

export interface HashSig {
  name: string;
  algo: HashAlgo;
  /** Lowercase hex. */
  hash: string;
  /** Object size in bytes, or null for `*`. */
  size: number | null;
}

/**
 * ClamAV target types (ExtendedSignatures.md). 0 = any. 1 PE, 6 ELF, 9 Mach-O and 10 PDF are gated by
 * the object's magic bytes; the others need ClamAV's normalizers or parsers and are unsupported.
 */
export const GATED_TARGETS: ReadonlySet<number> = new Set([0, 1, 6, 9, 10]);

export interface SubPattern {
  pattern: BodyPattern;
  offset: Offset;
  /** `::f`: the whole match is delimited by non-alphanumeric bytes or the object's ends. */
  fullword: boolean;
}

export interface BodySig extends SubPattern {
  name: string;
  target: number;
}

export type LogicalExpr =
  | { t: 'sub'; index: number; mod?: LogicalMod }
  | { t: 'op'; op: '&' | '|'; left: LogicalExpr; right: LogicalExpr; mod?: LogicalMod };

/** `=X`, `>X`, `<X`, optionally `,Y` (Y distinct subsignatures, groups only; LogicalSignatures.md). */
export interface LogicalMod {
  op: '=' | '>' | '<';
  x: number;
  y: number;
}

export interface LogicalSig {
  name: string;
  target: number;
  fileSize: [number, number] | null;
  expr: LogicalExpr;
  /** Each subsignature is one or more patterns (`::wa` gives two) whose matches count together. */
  subsigs: SubPattern[][];
}

export interface UnsupportedEntry {
  file: string;
  line: number;
  reason: string;
}

export interface SignatureCounts {
  hdb: number;
  hsb: number;
  ndb: number;
  ldb: number;
  fp: number;
  ign: number;
}

export interface SignatureDb {
  readonly counts: SignatureCounts;
  /** Detection signatures usable by the matcher (hash + body + logical). */
  readonly total: number;
  readonly unsupported: UnsupportedEntry[];
  /** Highest CVD/CLD version if one was loaded, else `local-` + short sha256 of all loaded content. */
  readonly version: string;
  readonly versionNumber?: number;
  readonly buildTime?: string;
  /**
   * SHA-256 (hex) of everything loaded: files, CVD members, the built-in set. Unlike `version`, which
   * names the newest CVD for people, it changes with a local .ndb/.hdb added beside that CVD, so
   * verdicts cached under it (shared Redis included) are never those of another database.
   */
  readonly digest: string;
  readonly hashes: HashSig[];
  readonly bodies: BodySig[];
  readonly logicals: LogicalSig[];
  /** `.fp` / `.sfp`: an object with one of these hashes (and size) is clean whatever matched. */
  readonly allow: HashSig[];
}
