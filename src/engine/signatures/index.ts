/** ClamAV signature databases: parsers, the loader and CVD tooling. */

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
