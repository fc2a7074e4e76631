/**
 * ClamAV signature databases: parsers, the loader and CVD tooling.
 *
 * Supported: .hdb/.hsb (MD5/SHA1/SHA256, size or `*`), .ndb (every body form: hex, `??`, nibbles, `*`,
 * `{n}`, `{-n}`, `{n-}`, `{n-m}`, single- and fixed-length multi-byte alternates, negated; offsets `*`,
 * `n`, `n,shift`, `EOF-n[,shift]`; target types 0, 1 (MZ), 6 (ELF), 9 (Mach-O), 10 (PDF)), .ldb
 * (Engine/Target/FileSize, `& | ()`, `=n >n <n` with `,m`, subsig offsets, `::i ::w ::a ::f`),
 * .fp/.sfp allow lists, .ign/.ign2, .cvd/.cld/.cud containers (MD5 and .info checked, RSA signature not).
 *
 * Counted as unsupported (file, line, reason), never fatal: EP/section offsets, target types needing
 * normalisation or parsers (2-5, 7, 11, 12…), `(B)`/`(L)`/`(W)` classes, `[x-y]` anchors,
 * variable-length alternates, PCRE / byte-compare / macro subsigs, other TDB keys, lines outside our
 * functionality level, and whole files: .cbc .mdb .msb .imp .cdb .idb .pdb .gdb .wdb .ftm .crb .yar,
 * PUA (.?du) databases.
 *
 * Like ClamAV we refuse (SignatureError) a subsignature without 2 consecutive static bytes, an
 * all-static .ndb body under 3 bytes, and a .ldb whose subsig count is not the highest index + 1.
 */

export { extensionOf, KNOWN_EXTENSIONS, SignatureDbBuilder } from './builder.js';
export { builtinSignatures, EICAR_NAME } from './builtin.js';
export { FLEVEL } from './common.js';
export {
  type BuildCvdOptions,
  buildCvd,
  buildTar,
  type CvdHeader,
  type DbFile,
  parseCvdHeader,
  readTar,
  unpackCvd,
} from './cvd.js';
export { parseHashLine } from './hash.js';
export type { BodyPattern, Elem, Gap, Part } from './hexsig.js';
export { applyNocase, applyWide, HexSigError, parseHexSig, UnsupportedSignature } from './hexsig.js';
export { parseIgnLine } from './ign.js';
export { parseLdbLine, parseSubsig } from './ldb.js';
export { evalLogicalExpr, parseLogicalExpr } from './lexpr.js';
export { type LoadOptions, loadSignatures } from './loader.js';
export { parseNdbLine } from './ndb.js';
export { type Offset, parseOffset, startWindow } from './offset.js';
export type * from './types.js';
