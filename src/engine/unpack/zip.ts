/**
 * ZIP (PKWARE APPNOTE 6.3.x). The central directory is authoritative when present (section 4.3.12);
 * without one (truncated download, streamed zip) local headers are walked from the front, finding the
 * end of data-descriptor entries by the descriptor whose size field matches the distance (4.3.9).
 * Methods: 0 stored, 6 implode, 8 deflate (node:zlib), 9 deflate64, 12 bzip2. Zip64 sizes/offsets (4.5.3).
 * Entries with the encryption flag (bit 0) are yielded with `encrypted: true`.
 */
import { createInflateRaw } from 'node:zlib';
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { InputBuffer, runDecoder } from './bitreader.js';
import { bunzip2 } from './bzip2dec.js';
import { explode } from './explode.js';
import { inflate64 } from './inflate64.js';
import { asUnpackError, Counter, checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';
import { throughZlib } from './zlibstream.js';

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOC64 = 0x07064b50;
const SIG_DD = 0x08074b50;

interface ZipRecord {
  name: string;
  method: number;
  flags: number;
  csize: number;
  usize: number;
  /** Offset of the local header (central directory) or of the data itself (local walk). */
  localOffset: number;
  dataOffset?: number;
}

function zerr(code: string, msg: string): UnpackError {
  return new UnpackError('zip', code, msg);
}

/** Zip64 extended information extra field (0x0001): only the fields whose 32-bit value is all-ones. */
function applyZip64(
  extra: Buffer,
  r: { usize: number; csize: number; localOffset: number },
  rawOffset: boolean,
) {
  for (let p = 0; p + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(p);
    const len = extra.readUInt16LE(p + 2);
    const body = extra.subarray(p + 4, p + 4 + len);
    p += 4 + len;
    if (id !== 1) continue;
    let q = 0;
    const take = (): number => {
      if (q + 8 > body.length) return -1;
      const v = Number(body.readBigUInt64LE(q));
      q += 8;
      return v;
    };
    if (r.usize === 0xffffffff) r.usize = take();
    if (r.csize === 0xffffffff) r.csize = take();
    if (rawOffset && r.localOffset === 0xffffffff) r.localOffset = take();
  }
}

async function findEocd(
  src: ObjectSource,
): Promise<{ cdOffset: number; cdSize: number; count: number; at: number } | null> {
  const tailLen = Math.min(src.size, 22 + 65535 + 20);
  const tailStart = src.size - tailLen;
  const tail = await src.read(tailStart, tailLen);
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) !== SIG_EOCD) continue;
    let count = tail.readUInt16LE(i + 10);
    let cdSize = tail.readUInt32LE(i + 12);
    let cdOffset = tail.readUInt32LE(i + 16);
    const at = tailStart + i;
    if (i >= 20 && tail.readUInt32LE(i - 20) === SIG_LOC64) {
      const off64 = Number(tail.readBigUInt64LE(i - 12));
      if (off64 + 56 <= src.size) {
        const rec = await src.read(off64, 56);
        if (rec.readUInt32LE(0) === SIG_EOCD64) {
          count = Number(rec.readBigUInt64LE(32));
          cdSize = Number(rec.readBigUInt64LE(40));
          cdOffset = Number(rec.readBigUInt64LE(48));
        }
      }
    }
    return { cdOffset, cdSize, count, at };
  }
  return null;
}

/** Reads central directory records; bounded by the directory size, never by the declared count alone. */
async function* centralRecords(
  src: ObjectSource,
  cdStart: number,
  cdEnd: number,
  ctx: UnpackContext,
): AsyncGenerator<ZipRecord> {
  let p = cdStart;
  while (p + 46 <= cdEnd) {
    checkAbort(ctx);
    const h = await src.read(p, 46);
    if (h.length < 46 || h.readUInt32LE(0) !== SIG_CENTRAL) return;
    const nameLen = h.readUInt16LE(28);
    const extraLen = h.readUInt16LE(30);
    const commentLen = h.readUInt16LE(32);
    const ve = await src.read(p + 46, nameLen + extraLen);
    const r = {
      name: ve.subarray(0, nameLen).toString(h.readUInt16LE(8) & 0x800 ? 'utf8' : 'latin1'),
      flags: h.readUInt16LE(8),
      method: h.readUInt16LE(10),
      csize: h.readUInt32LE(20),
      usize: h.readUInt32LE(24),
      localOffset: h.readUInt32LE(42),
    };
    applyZip64(ve.subarray(nameLen), r, true);
    yield r;
    p += 46 + nameLen + extraLen + commentLen;
  }
}

/** Finds where a data-descriptor entry's data ends: a descriptor whose compressed size equals the distance. */
async function findDescriptor(
  src: ObjectSource,
  dataStart: number,
): Promise<{ csize: number; usize: number; next: number } | null> {
  let carry = Buffer.alloc(0);
  let base = dataStart;
  for await (const chunk of src.stream(dataStart, src.size)) {
    const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    for (let i = 0; i + 16 <= buf.length; i++) {
      if (buf[i] !== 0x50 || buf.readUInt32LE(i) !== SIG_DD) continue;
      const at = base + i;
      if (buf.readUInt32LE(i + 8) === at - dataStart) {
        return { csize: at - dataStart, usize: buf.readUInt32LE(i + 12), next: at + 16 };
      }
      // zip64 descriptor: 8-byte sizes
      if (i + 24 <= buf.length && Number(buf.readBigUInt64LE(i + 8)) === at - dataStart) {
        return { csize: at - dataStart, usize: Number(buf.readBigUInt64LE(i + 16)), next: at + 24 };
      }
    }
    const keep = Math.min(buf.length, 23);
    base += buf.length - keep;
    carry = Buffer.from(buf.subarray(buf.length - keep));
  }
  return null;
}

/** Walks local headers from the front (no central directory). */
async function* localRecords(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<ZipRecord> {
  let p = 0;
  const first = await src.read(0, 4);
  if (first.length === 4 && first.readUInt32LE(0) === 0x30304b50) p = 4; // "PK00" spanning marker
  while (p + 30 <= src.size) {
    checkAbort(ctx);
    const h = await src.read(p, 30);
    if (h.readUInt32LE(0) !== SIG_LOCAL) return;
    const flags = h.readUInt16LE(6);
    const nameLen = h.readUInt16LE(26);
    const extraLen = h.readUInt16LE(28);
    const ve = await src.read(p + 30, nameLen + extraLen);
    const r: ZipRecord = {
      name: ve.subarray(0, nameLen).toString(flags & 0x800 ? 'utf8' : 'latin1'),
      flags,
      method: h.readUInt16LE(8),
      csize: h.readUInt32LE(18),
      usize: h.readUInt32LE(22),
      localOffset: p,
      dataOffset: p + 30 + nameLen + extraLen,
    };
    applyZip64(ve.subarray(nameLen), r, false);
    let next = r.dataOffset! + r.csize;
    if (flags & 0x8 && r.csize === 0) {
      const dd = await findDescriptor(src, r.dataOffset!);
      if (!dd) {
        // Truncated streamed entry: hand out what exists, then stop.
        r.csize = src.size - r.dataOffset!;
        yield r;
        return;
      }
      r.csize = dd.csize;
      r.usize = dd.usize;
      next = dd.next;
    } else if (flags & 0x8) {
      const d = await src.read(next, 4);
      next += d.length === 4 && d.readUInt32LE(0) === SIG_DD ? 16 : 12;
    }
    yield r;
    if (next <= p) return; // cannot move backwards (hostile sizes)
    p = next;
  }
}

function methodStream(r: ZipRecord, raw: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  switch (r.method) {
    case 0:
      return raw;
    case 8:
      return throughZlib('zip', 'ERR_ZIP_CORRUPT', raw, createInflateRaw());
    case 9: {
      const inbuf = new InputBuffer();
      return runDecoder(inflate64(inbuf), inbuf, raw);
    }
    case 6: {
      const inbuf = new InputBuffer();
      return runDecoder(explode(inbuf, r.flags, r.usize), inbuf, raw);
    }
    case 12: {
      const inbuf = new InputBuffer();
      return runDecoder(bunzip2(inbuf), inbuf, raw);
    }
    default:
      throw zerr('ERR_ZIP_METHOD', `${r.name}: compression method ${r.method} not supported`);
  }
}

function makeEntry(r: ZipRecord, src: ObjectSource, ctx: UnpackContext): Entry {
  const encrypted = (r.flags & 1) !== 0;
  return {
    name: r.name,
    size: r.usize,
    encrypted,
    async *open() {
      if (encrypted) throw zerr('ERR_ENCRYPTED', `${r.name}: entry is encrypted`);
      let start = r.dataOffset;
      if (start === undefined) {
        const h = await src.read(r.localOffset, 30);
        if (h.length < 30 || h.readUInt32LE(0) !== SIG_LOCAL) {
          throw zerr(
            h.length < 30 ? 'ERR_ZIP_TRUNCATED' : 'ERR_ZIP_CORRUPT',
            `${r.name}: no local header at ${r.localOffset}`,
          );
        }
        start = r.localOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
      }
      const end = Math.min(src.size, start + r.csize);
      try {
        // Ratio against the compressed bytes read so far, not the declared total: a 10 GB bomb in 10 MB
        // is caught after a few MB of output instead of after ratio x 10 MB.
        const counter = new Counter();
        yield* limitOutput(
          'zip',
          methodStream(r, counter.count(src.stream(start, end))),
          ctx,
          () => counter.bytes,
        );
      } catch (e) {
        throw asUnpackError('zip', 'ERR_ZIP_CORRUPT', e);
      }
      if (start + r.csize > src.size)
        throw zerr('ERR_ZIP_TRUNCATED', `${r.name}: data runs past the end of the archive`);
    },
  };
}

export const zipUnpacker: Unpacker = {
  type: 'zip',
  detect(head: Buffer): boolean {
    if (head.length < 4) return false;
    const sig = head.readUInt32LE(0);
    return (
      sig === SIG_LOCAL ||
      sig === SIG_EOCD ||
      (sig === 0x30304b50 && head.length >= 8 && head.readUInt32LE(4) === SIG_LOCAL)
    );
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const counter = new EntryCounter('zip', ctx);
    const eocd = await findEocd(src);
    let records: AsyncIterable<ZipRecord> | null = null;
    if (eocd) {
      // Self-extractors and prepended data shift every offset by the same amount (APPNOTE 4.3.16 note).
      const shift = Math.max(0, eocd.at - (eocd.cdOffset + eocd.cdSize));
      const cdStart = eocd.cdOffset + shift;
      const first = cdStart + 4 <= src.size ? await src.read(cdStart, 4) : Buffer.alloc(0);
      if (first.length === 4 && first.readUInt32LE(0) === SIG_CENTRAL) {
        records = (async function* () {
          for await (const r of centralRecords(src, cdStart, Math.min(eocd.at, cdStart + eocd.cdSize), ctx)) {
            yield { ...r, localOffset: r.localOffset + shift };
          }
        })();
      }
    }
    if (!records) {
      const head = await src.read(0, 4);
      if (head.length < 4 || (head.readUInt32LE(0) !== SIG_LOCAL && head.readUInt32LE(0) !== 0x30304b50)) {
        if (eocd) return; // an empty archive is just an end record
        throw zerr('ERR_ZIP_CORRUPT', 'no central directory and no local header');
      }
      records = localRecords(src, ctx);
    }
    let yielded = 0;
    for await (const r of records) {
      if (r.name.endsWith('/') && r.csize === 0) continue; // directory
      counter.next();
      yielded++;
      yield makeEntry(r, src, ctx);
    }
    if (yielded === 0 && !eocd) throw zerr('ERR_ZIP_TRUNCATED', 'no complete entry');
  },
};
