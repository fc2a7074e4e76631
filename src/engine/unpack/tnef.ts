/**
 * TNEF (winmail.dat, MS-OXTNEF §2.1.3): a signature and key, then attributes of level (1 byte),
 * id (4 LE), length (4 LE), data, checksum (2). Each attachment starts with attAttachRendData;
 * its bytes are in attAttachData and its name in attAttachTitle, which writers put before or after
 * the data, so a first pass indexes attributes (offsets only) and a second yields each attachment
 * streamed from the source. Damage part-way keeps the attachments found before it, then reports
 * the file corrupt.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const SIGNATURE = 0x223e9f78;
const ATT_ATTACH_REND_DATA = 0x00069002;
const ATT_ATTACH_DATA = 0x0006800f;
const ATT_ATTACH_TITLE = 0x00018010;

interface Attachment {
  title: string;
  start: number;
  end: number;
}

async function indexAttachments(
  source: ObjectSource,
  ctx: UnpackContext,
): Promise<{ found: Attachment[]; damage: UnpackError | null }> {
  const found: Attachment[] = [];
  const counter = new EntryCounter('tnef', ctx);
  let current: Attachment | null = null;
  const finish = () => {
    if (current && current.end > current.start) {
      counter.next();
      found.push(current);
    }
    current = null;
  };
  let pos = 6;
  let damage: UnpackError | null = null;
  while (pos + 9 <= source.size) {
    checkAbort(ctx);
    const h = await source.read(pos, 9);
    const level = h[0]!;
    if (level !== 1 && level !== 2) {
      damage = new UnpackError('tnef', 'ERR_TNEF_CORRUPT', `bad attribute level ${level} at ${pos}`);
      break;
    }
    const id = h.readUInt32LE(1);
    const length = h.readUInt32LE(5);
    const start = pos + 9;
    const end = Math.min(source.size, start + length);
    if (id === ATT_ATTACH_REND_DATA) {
      finish();
      current = { title: '', start: 0, end: 0 };
    } else if (id === ATT_ATTACH_TITLE || id === ATT_ATTACH_DATA) {
      current ??= { title: '', start: 0, end: 0 };
      if (id === ATT_ATTACH_TITLE) {
        const raw = await source.read(start, Math.min(end - start, 512));
        current.title = raw
          .toString('latin1')
          .replace(/\0.*$/s, '')
          .replace(/[\u0000-\u001f]/g, '');
      } else {
        current.start = start;
        current.end = end; // a truncated attachment keeps what is there
      }
    }
    if (start + length > source.size) {
      damage = new UnpackError('tnef', 'ERR_TNEF_TRUNCATED', `attribute at ${pos} runs past the end`);
      break;
    }
    pos = start + length + 2;
  }
  finish();
  return { found, damage };
}

export const tnefUnpacker: Unpacker = {
  type: 'tnef',
  detect: (head) => head.length >= 6 && head.readUInt32LE(0) === SIGNATURE,
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const { found, damage } = await indexAttachments(source, ctx);
    for (const [i, a] of found.entries()) {
      yield {
        name: a.title || `attachment-${i + 1}`,
        size: a.end - a.start,
        open: () => limitOutput('tnef', source.stream(a.start, a.end), ctx, a.end - a.start),
      };
    }
    if (damage) throw damage;
  },
};
