/** ClamAV signature databases: parsers, the loader and CVD tooling. */
export { loadSignatures, type LoadOptions } from './loader.js';
export { SignatureDbBuilder, KNOWN_EXTENSIONS, extensionOf } from './builder.js';
export { buildCvd, buildTar, readTar, unpackCvd, parseCvdHeader, type BuildCvdOptions, type CvdHeader, type DbFile } from './cvd.js';
export { builtinSignatures, EICAR_NAME } from './builtin.js';
export { parseHexSig, applyNocase, applyWide, HexSigError, UnsupportedSignature } from './hexsig.js';
export type { BodyPattern, Elem, Gap, Part } from './hexsig.js';
export { parseOffset, startWindow, type Offset } from './offset.js';
export { parseHashLine } from './hash.js';
export { parseNdbLine } from './ndb.js';
export { parseLdbLine, parseSubsig } from './ldb.js';
export { parseLogicalExpr, evalLogicalExpr } from './lexpr.js';
export { parseIgnLine } from './ign.js';
export { FLEVEL } from './common.js';
export type * from './types.js';
