/**
 * Archive and compression unpackers, in detection order: formats with strong magic first, tar (which
 * may be recognised by header checksum alone) last.
 */
import { arjUnpacker } from './arj.js';
import { bzip2Unpacker } from './bzip2.js';
import { cabUnpacker } from './cab.js';
import { cpioUnpacker } from './cpio.js';
import { gzipUnpacker } from './gzip.js';
import { sevenZipUnpacker } from './sevenzip.js';
import { szddUnpacker } from './szdd.js';
import { tarUnpacker } from './tar.js';
import type { Unpacker } from './types.js';
import { zipUnpacker } from './zip.js';

export const archiveUnpackers: Unpacker[] = [
  zipUnpacker,
  gzipUnpacker,
  bzip2Unpacker,
  cpioUnpacker,
  sevenZipUnpacker,
  cabUnpacker,
  arjUnpacker,
  szddUnpacker,
  tarUnpacker,
];
export {
  arjUnpacker,
  bzip2Unpacker,
  cabUnpacker,
  cpioUnpacker,
  gzipUnpacker,
  sevenZipUnpacker,
  szddUnpacker,
  tarUnpacker,
  zipUnpacker,
};
