/** Mail and document containers, tried after the archive formats (their detection reads text). */
import { dataUriUnpacker } from './datauri.js';
import { mimeUnpacker } from './mime.js';
import type { Unpacker } from './types.js';

export const documentUnpackers: Unpacker[] = [mimeUnpacker, dataUriUnpacker];
