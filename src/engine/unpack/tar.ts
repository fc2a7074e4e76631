/**
 * tar: v7, ustar (POSIX.1-1988), GNU (long names 'L'/'K', base-256 sizes) and pax (POSIX.1-2001 'x'
 * extended headers: path, size). Every header's checksum is validated (unsigned, or signed as some
 * old tars computed it); tar without the "ustar" magic is recognised by a valid checksum, as ClamAV's
 * is_tar() does.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const BLOCK = 512;
const MAX_META = 1024 * 1024; // long-name and pax records larger than this are hostile

function terr(code: string, msg: string): UnpackError {
  return new UnpackError('tar', code, msg);
}

function cstr(b: Buffer, start: number, len: number): string {
  const f = b.subarray(start, start + len);
  const z = f.indexOf(0);
  return (z < 0 ? f : f.subarray(0, z)).toString('utf8');
}

function octal(b: Buffer, start: number, len: number): number {
  const f = b.subarray(start, start + len);
  if (f[0]! & 0x80) {
    // GNU base-256: big-endian two's complement, first byte's top bit is the marker
    let v = f[0]! & 0x3f;
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i]!;
    return v;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return Number.NaN;
  return Number.parseInt(s, 8);
}

/** True when the 512-byte block is a header with a correct checksum (and not all zeros). */
export function tarChecksumOk(h: Buffer): boolean {
  if (h.length < BLOCK) return false;
  const stored = octal(h, 148, 8);
  if (!Number.isFinite(stored)) return false;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (unsigned === 8 * 0x20) return false; // all-zero block
  return stored === unsigned || stored === signed;
}

function isZeroBlock(h: Buffer): boolean {
  for (let i = 0; i < h.length; i++) if (h[i] !== 0) return false;
  return true;
}

/** pax records "LEN key=value\n" (POSIX.1-2001 pax "Extended header" format). */
function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let p = 0;
  while (p < data.length) {
    const sp = data.indexOf(0x20, p);
    if (sp < 0) break;
    const len = Number.parseInt(data.subarray(p, sp).toString('latin1'), 10);
    if (!Number.isFinite(len) || len <= sp - p || p + len > data.length) break;
    const rec = data.subarray(sp + 1, p + len - 1).toString('utf8');
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    p += len;
  }
  return out;
}

export const tarUnpacker: Unpacker = {
  type: 'tar',
  detect(head: Buffer): boolean {
    if (head.length < BLOCK) return false;
    const magic = head.subarray(257, 262).toString('latin1');
    return (magic === 'ustar' && tarChecksumOk(head)) || tarChecksumOk(head);
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const counter = new EntryCounter('tar', ctx);
    let p = 0;
    let longName: string | null = null;
    let paxPath: string | null = null;
    let paxSize: number | null = null;
    let headers = 0;
    while (p + BLOCK <= src.size) {
      checkAbort(ctx);
      const h = await src.read(p, BLOCK);
      if (isZeroBlock(h)) return; // end-of-archive marker
      if (!tarChecksumOk(h)) {
        if (headers === 0) throw terr('ERR_TAR_CORRUPT', 'first header has a bad checksum');
        throw terr('ERR_TAR_CHECKSUM', `bad header checksum at offset ${p}`);
      }
      headers++;
      const type = String.fromCharCode(h[156]!);
      let size = octal(h, 124, 12);
      if (!Number.isFinite(size) || size < 0) throw terr('ERR_TAR_CORRUPT', `bad size field at offset ${p}`);
      if (paxSize !== null && type !== 'x' && type !== 'g' && type !== 'L' && type !== 'K') size = paxSize;
      const dataStart = p + BLOCK;
      const next = dataStart + Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'L' || type === 'K' || type === 'x' || type === 'g') {
        if (size > MAX_META) throw terr('ERR_TAR_CORRUPT', `metadata record of ${size} bytes`);
        const data = await src.read(dataStart, size);
        if (data.length < size) throw terr('ERR_TAR_TRUNCATED', 'metadata record cut short');
        if (type === 'L') longName = cstr(data, 0, data.length);
        else if (type === 'x') {
          const pax = parsePax(data);
          paxPath = pax.get('path') ?? paxPath;
          const s = pax.get('size');
          if (s !== undefined && /^[0-9]+$/.test(s)) paxSize = Number(s);
        }
        p = next;
        continue;
      }
      const prefix = h.subarray(257, 262).toString('latin1') === 'ustar' ? cstr(h, 345, 155) : '';
      const name = paxPath ?? longName ?? (prefix ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
      longName = paxPath = null;
      paxSize = null;
      p = next;
      // Regular files ('0', NUL, contiguous '7', GNU sparse 'S' read as stored); links, dirs, devices carry no data.
      if (!(type === '0' || type === '\0' || type === '7' || type === 'S') || size === 0) continue;
      counter.next();
      yield {
        name,
        size,
        async *open() {
          const end = Math.min(src.size, dataStart + size);
          yield* limitOutput('tar', src.stream(dataStart, end), ctx, Math.max(1, end - dataStart));
          if (dataStart + size > src.size) throw terr('ERR_TAR_TRUNCATED', `${name}: data cut short`);
        },
      };
    }
    if (p < src.size && headers === 0) throw terr('ERR_TAR_TRUNCATED', 'no complete header');
  },
};
