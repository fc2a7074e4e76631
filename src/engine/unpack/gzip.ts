/**
 * gzip (RFC 1952). One entry: the concatenation of all members, as gunzip(1) produces (node:zlib's
 * Gunzip continues across members). Name from the first member's FNAME field (2.3.1) when present.
 */
import { createGunzip } from 'node:zlib';
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { Counter, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';
import { throughZlib } from './zlibstream.js';

const FEXTRA = 4;
const FNAME = 8;

/** The FNAME of a member header, or '' (bounded: names longer than 4 KiB are ignored). */
export function gzipName(head: Buffer): string {
  if (head.length < 10) return '';
  const flags = head[3]!;
  if (!(flags & FNAME)) return '';
  let p = 10;
  if (flags & FEXTRA) {
    if (p + 2 > head.length) return '';
    p += 2 + head.readUInt16LE(p);
  }
  const end = head.indexOf(0, p);
  if (end < 0 || end - p > 4096) return '';
  return head.subarray(p, end).toString('latin1');
}

export const gzipUnpacker: Unpacker = {
  type: 'gzip',
  detect(head: Buffer): boolean {
    return head.length >= 10 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 8 && (head[3]! & 0xe0) === 0;
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const head = await src.read(0, 4096 + 64 * 1024);
    if (!gzipUnpacker.detect(head, src.size)) throw new UnpackError('gzip', 'ERR_GZIP_CORRUPT', 'bad gzip header');
    new EntryCounter('gzip', ctx).next();
    yield {
      name: gzipName(head),
      async *open() {
        const counter = new Counter();
        const z = createGunzip();
        yield* limitOutput(
          'gzip',
          throughZlib('gzip', 'ERR_GZIP_CORRUPT', counter.count(src.stream(0, src.size)), z),
          ctx,
          () => counter.bytes,
        );
      },
    };
  },
};
