/**
 * TNEF (winmail.dat, MS-OXTNEF): a signature and key, then attributes of level (1 byte),
 * id (4 LE), length (4 LE), data, checksum (2). Attachment data (attAttachData, 0x0006800F) is
 * yielded under the name from the preceding attAttachTitle (0x00018010). Attributes are walked
 * by offset, so nothing but the current header is held.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const SIGNATURE = 0x223e9f78;
const ATT_ATTACH_DATA = 0x0006800f;
const ATT_ATTACH_TITLE = 0x00018010;

export const tnefUnpacker: Unpacker = {
  type: 'tnef',
  detect: (head) => head.length >= 6 && head.readUInt32LE(0) === SIGNATURE,
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    let pos = 6;
    let title = '';
    let count = 0;
    while (pos + 9 <= source.size) {
      if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
      const h = await source.read(pos, 9);
      const level = h[0]!;
      if (level !== 1 && level !== 2)
        throw new UnpackError('tnef', 'ERR_TNEF_CORRUPT', `bad attribute level ${level} at ${pos}`);
      const id = h.readUInt32LE(1);
      const length = h.readUInt32LE(5);
      const start = pos + 9;
      if (start + length > source.size)
        throw new UnpackError('tnef', 'ERR_TNEF_TRUNCATED', `attribute at ${pos} runs past the end`);
      if (id === ATT_ATTACH_TITLE) {
        title = (await source.read(start, Math.min(length, 512))).toString('latin1').replace(/\0.*$/s, '');
      } else if (id === ATT_ATTACH_DATA) {
        if (++count > ctx.maxFiles)
          throw new UnpackLimitError('MaxFiles', `tnef: more than ${ctx.maxFiles} attachments`);
        if (length > ctx.maxFileSize)
          throw new UnpackLimitError('MaxFileSize', `tnef: attachment of ${length} bytes`);
        yield {
          name: title || `attachment-${count}`,
          size: length,
          open: () => source.stream(start, start + length),
        };
        title = '';
      }
      pos = start + length + 2;
    }
  },
};
