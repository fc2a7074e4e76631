/**
 * gzip (RFC 1952). One entry: the concatenation of all members, as gunzip(1) produces. Members are
 * walked here rather than by node:zlib's Gunzip, which on trailing garbage fails the whole last write
 * and drops its output (a small file plus junk would then be unscannable); like gzip(1), bytes after
 * a member that do not start another member are ignored. Name from the first member's FNAME (2.3.1).
 */
import { crc32, createInflateRaw } from 'node:zlib';
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { Counter, checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';
import { throughZlib } from './zlibstream.js';

const FHCRC = 2;
const FEXTRA = 4;
const FNAME = 8;
const FCOMMENT = 16;
const MAX_HEADER = 1024 * 1024;

const gerr = (code: string, msg: string): UnpackError => new UnpackError('gzip', code, msg);

function isMember(b: Buffer): boolean {
  return b.length >= 10 && b[0] === 0x1f && b[1] === 0x8b && b[2] === 8 && (b[3]! & 0xe0) === 0;
}

/** Parses a member header at `p`: where the deflate data starts, and the FNAME. */
async function memberHeader(src: ObjectSource, p: number): Promise<{ body: number; name: string }> {
  let want = 4096;
  for (;;) {
    const h = await src.read(p, want);
    if (!isMember(h)) throw gerr('ERR_GZIP_CORRUPT', `bad member header at ${p}`);
    const flags = h[3]!;
    let q = 10;
    let name = '';
    let short = false;
    if (flags & FEXTRA) {
      if (q + 2 > h.length) short = true;
      else q += 2 + h.readUInt16LE(q);
    }
    for (const f of [FNAME, FCOMMENT]) {
      if (short || !(flags & f)) continue;
      const end = q <= h.length ? h.indexOf(0, q) : -1;
      if (end < 0) short = true;
      else {
        if (f === FNAME) name = h.subarray(q, end).toString('latin1');
        q = end + 1;
      }
    }
    if (!short && flags & FHCRC) q += 2;
    if (!short && q <= h.length) return { body: p + q, name };
    if (h.length < want) throw gerr('ERR_GZIP_TRUNCATED', 'member header cut short');
    if (want >= MAX_HEADER) throw gerr('ERR_GZIP_CORRUPT', 'member header too long');
    want *= 16;
  }
}

/** The FNAME of the first member, or ''. */
export async function gzipName(src: ObjectSource): Promise<string> {
  return (await memberHeader(src, 0)).name;
}

export const gzipUnpacker: Unpacker = {
  type: 'gzip',
  detect(head: Buffer): boolean {
    return isMember(head);
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const first = await memberHeader(src, 0);
    new EntryCounter('gzip', ctx).next();
    yield {
      name: first.name,
      async *open() {
        const counter = new Counter();
        const members = async function* (): AsyncGenerator<Buffer> {
          let p = 0;
          for (;;) {
            checkAbort(ctx);
            const { body } = await memberHeader(src, p);
            const z = createInflateRaw();
            let crc = 0;
            let isize = 0;
            for await (const chunk of throughZlib(
              'gzip',
              'ERR_GZIP_CORRUPT',
              counter.count(src.stream(body, src.size)),
              z,
            )) {
              crc = crc32(chunk, crc);
              isize = (isize + chunk.length) >>> 0;
              yield chunk;
            }
            // bytesWritten: deflate bytes the engine consumed; the 8-byte trailer (CRC32, ISIZE) follows.
            const trailer = await src.read(body + z.bytesWritten, 8);
            if (trailer.length < 8) throw gerr('ERR_GZIP_TRUNCATED', 'member trailer cut short');
            if (trailer.readUInt32LE(0) !== crc >>> 0 || trailer.readUInt32LE(4) !== isize) {
              throw gerr('ERR_GZIP_CORRUPT', 'member CRC or length mismatch');
            }
            p = body + z.bytesWritten + 8;
            if (!isMember(await src.read(p, 10))) return; // end, or trailing garbage (ignored as gzip(1) does)
          }
        };
        yield* limitOutput('gzip', members(), ctx, () => counter.bytes);
      },
    };
  },
};
