/**
 * cpio in its four formats (cpio(5) of libarchive / GNU cpio "Archive formats"):
 *  - old binary, 26-byte header of 16-bit words in either byte order (magic 070707 octal = 0x71c7),
 *    32-bit mtime/filesize stored as two words most significant first; name and data padded to 2;
 *  - odc "070707": 76-byte header of octal text fields, no padding;
 *  - newc "070701" and crc "070702": 110-byte header of 8-digit hex fields; name and data padded to 4.
 * Only regular files are yielded; the "TRAILER!!!" entry ends the archive.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

type Kind = 'bin-le' | 'bin-be' | 'odc' | 'newc';
const MAX_NAME = 64 * 1024;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

function cerr(code: string, msg: string): UnpackError {
  return new UnpackError('cpio', code, msg);
}

function kindOf(h: Buffer): Kind | null {
  if (h.length < 6) return null;
  if (h[0] === 0xc7 && h[1] === 0x71) return 'bin-le';
  if (h[0] === 0x71 && h[1] === 0xc7) return 'bin-be';
  const m = h.subarray(0, 6).toString('latin1');
  if (m === '070707') return 'odc';
  if (m === '070701' || m === '070702') return 'newc';
  return null;
}

function num(h: Buffer, start: number, len: number, radix: 8 | 16): number {
  const s = h.subarray(start, start + len).toString('latin1');
  const re = radix === 8 ? /^[0-7]+$/ : /^[0-9a-fA-F]+$/;
  if (!re.test(s)) throw cerr('ERR_CPIO_CORRUPT', `bad header field "${s}"`);
  return Number.parseInt(s, radix);
}

interface Header {
  headerLen: number;
  mode: number;
  nameSize: number;
  fileSize: number;
  align: number;
}

function parseHeader(kind: Kind, h: Buffer): Header {
  switch (kind) {
    case 'bin-le':
    case 'bin-be': {
      const w = (i: number): number => (kind === 'bin-le' ? h.readUInt16LE(i * 2) : h.readUInt16BE(i * 2));
      return { headerLen: 26, mode: w(3), nameSize: w(10), fileSize: w(11) * 65536 + w(12), align: 2 };
    }
    case 'odc':
      return {
        headerLen: 76,
        mode: num(h, 18, 6, 8),
        nameSize: num(h, 59, 6, 8),
        fileSize: num(h, 65, 11, 8),
        align: 1,
      };
    case 'newc':
      return {
        headerLen: 110,
        mode: num(h, 14, 8, 16),
        fileSize: num(h, 54, 8, 16),
        nameSize: num(h, 94, 8, 16),
        align: 4,
      };
  }
}

const pad = (n: number, a: number): number => Math.ceil(n / a) * a;

export const cpioUnpacker: Unpacker = {
  type: 'cpio',
  detect(head: Buffer): boolean {
    return head.length >= 26 && kindOf(head) !== null;
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const counter = new EntryCounter('cpio', ctx);
    let p = 0;
    while (p < src.size) {
      checkAbort(ctx);
      const probe = await src.read(p, 110);
      const kind = kindOf(probe);
      if (!kind) {
        if (p === 0) throw cerr('ERR_CPIO_CORRUPT', 'no cpio magic');
        throw cerr('ERR_CPIO_CORRUPT', `no header at offset ${p} (missing trailer)`);
      }
      const hl = kind === 'newc' ? 110 : kind === 'odc' ? 76 : 26;
      if (probe.length < hl) throw cerr('ERR_CPIO_TRUNCATED', 'header cut short');
      const h = parseHeader(kind, probe);
      if (h.nameSize > MAX_NAME) throw cerr('ERR_CPIO_CORRUPT', `name of ${h.nameSize} bytes`);
      const nameRaw = await src.read(p + h.headerLen, h.nameSize);
      if (nameRaw.length < h.nameSize) throw cerr('ERR_CPIO_TRUNCATED', 'name cut short');
      const z = nameRaw.indexOf(0);
      const name = (z < 0 ? nameRaw : nameRaw.subarray(0, z)).toString('utf8');
      const dataStart = pad(p + h.headerLen + h.nameSize, h.align);
      const next = pad(dataStart + h.fileSize, h.align);
      if (name === 'TRAILER!!!') return;
      p = next;
      if ((h.mode & S_IFMT) !== S_IFREG || h.fileSize === 0) continue;
      counter.next();
      const size = h.fileSize;
      yield {
        name,
        size,
        async *open() {
          const end = Math.min(src.size, dataStart + size);
          yield* limitOutput('cpio', src.stream(dataStart, end), ctx, Math.max(1, end - dataStart));
          if (dataStart + size > src.size) throw cerr('ERR_CPIO_TRUNCATED', `${name}: data cut short`);
        },
      };
    }
    throw cerr('ERR_CPIO_TRUNCATED', 'archive ends without a trailer');
  },
};
