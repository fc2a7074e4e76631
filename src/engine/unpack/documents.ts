/** Mail and document containers, tried after the archive formats (their detection reads text). */
import { binhexUnpacker } from './binhex.js';
import { chmUnpacker } from './chm.js';
import { dataUriUnpacker } from './datauri.js';
import { mimeUnpacker } from './mime.js';
import { ole1Unpacker } from './ole1.js';
import { ole2Unpacker } from './ole2.js';
import { pdfUnpacker } from './pdf.js';
import { rtfUnpacker } from './rtf.js';
import { tnefUnpacker } from './tnef.js';
import type { Unpacker } from './types.js';
import { uuencodeUnpacker } from './uuencode.js';

export const documentUnpackers: Unpacker[] = [
  ole2Unpacker,
  chmUnpacker,
  tnefUnpacker,
  ole1Unpacker,
  rtfUnpacker,
  pdfUnpacker,
  binhexUnpacker,
  mimeUnpacker,
  uuencodeUnpacker,
  dataUriUnpacker,
];
