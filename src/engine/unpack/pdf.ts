/**
 * PDF streams (ISO 32000-1 §7.3.8): each `stream … endstream` body is yielded, inflated when its
 * dictionary names FlateDecode (ASCIIHex and ASCII85 decoded too), as raw bytes otherwise.
 * The body ends at `endstream` rather than trusting /Length, which is often an indirect
 * reference or wrong in hostile files. One streaming pass records the offsets.
 */
import { constants, createInflate } from 'node:zlib';
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';
import { throughZlib } from './zlibstream.js';

interface PdfStream {
  start: number;
  end: number;
  filters: string[];
}

const CARRY = 2048;

async function findStreams(source: ObjectSource, ctx: UnpackContext): Promise<PdfStream[]> {
  const found: PdfStream[] = [];
  let text = '';
  let base = 0;
  let open: { start: number; filters: string[] } | null = null;
  for await (const chunk of source.stream()) {
    if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
    text += chunk.toString('latin1');
    let cursor = 0;
    for (;;) {
      if (open) {
        const e = text.indexOf('endstream', Math.max(cursor, open.start - base));
        if (e < 0) break;
        let end = base + e;
        if (text[e - 1] === '\n') end--;
        if (text[e - 2] === '\r' && text[e - 1] === '\n') end--;
        found.push({ start: open.start, end: Math.max(open.start, end), filters: open.filters });
        if (found.length > ctx.maxFiles)
          throw new UnpackLimitError('MaxFiles', `pdf: more than ${ctx.maxFiles} streams`);
        open = null;
        cursor = e + 9;
        continue;
      }
      const s = text.indexOf('stream', cursor);
      if (s < 0 || s + 8 > text.length) break;
      if (text.startsWith('endstream', s - 3)) {
        cursor = s + 6;
        continue;
      }
      let bodyAt = s + 6;
      if (text[bodyAt] === '\r') bodyAt++;
      if (text[bodyAt] === '\n') bodyAt++;
      const dict = text.slice(Math.max(0, s - 1024), s);
      const lastDict = dict.slice(dict.lastIndexOf('<<'));
      const filters = [
        ...lastDict.matchAll(/\/(FlateDecode|Fl|ASCIIHexDecode|AHx|ASCII85Decode|A85)\b/g),
      ].map((m) => m[1]!);
      open = { start: base + bodyAt, filters };
      cursor = bodyAt;
    }
    // Keep only what a keyword or dictionary may still need.
    const keep = open ? Math.max(open.start - base, text.length - CARRY) : text.length - CARRY;
    const cut = Math.max(0, Math.min(keep, text.length - 16));
    text = text.slice(cut);
    base += cut;
  }
  if (open) found.push({ start: open.start, end: source.size, filters: open.filters });
  return found;
}

async function* asciiHex(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let half = '';
  for await (const c of chunks) {
    const hex = half + c.toString('latin1').replace(/[^0-9a-fA-F>]/g, '');
    const stop = hex.indexOf('>');
    const digits = stop >= 0 ? hex.slice(0, stop) : hex;
    const even = digits.length - (digits.length % 2);
    yield Buffer.from(digits.slice(0, even), 'hex');
    half = digits.slice(even);
    if (stop >= 0) return;
  }
}

async function* ascii85(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let group: number[] = [];
  const flush = (n: number) => {
    let v = 0;
    for (let i = 0; i < 5; i++) v = v * 85 + (group[i] ?? 84);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    group = [];
    return b.subarray(0, n);
  };
  for await (const c of chunks) {
    const out: Buffer[] = [];
    for (const ch of c) {
      if (ch === 0x7e) {
        if (group.length > 1) out.push(flush(group.length - 1));
        yield Buffer.concat(out);
        return;
      }
      if (ch === 0x7a && group.length === 0) out.push(Buffer.alloc(4));
      else if (ch >= 0x21 && ch <= 0x75) {
        group.push(ch - 0x21);
        if (group.length === 5) out.push(flush(4));
      }
    }
    yield Buffer.concat(out);
  }
}

function decode(source: ObjectSource, s: PdfStream, ctx: UnpackContext): AsyncIterable<Buffer> {
  // Small input chunks bound what one inflate step can produce before the limits see it (16 KiB × ratio).
  let data: AsyncIterable<Buffer> = source.stream(s.start, s.end, 16 * 1024);
  for (const f of s.filters) {
    if (f === 'ASCIIHexDecode' || f === 'AHx') data = asciiHex(data);
    else if (f === 'ASCII85Decode' || f === 'A85') data = ascii85(data);
    else data = inflate(data);
  }
  return limitOutput('pdf', data, ctx, s.end - s.start);
}

/**
 * zlib inflate that tolerates a missing trailer or trailing garbage (common in PDFs): Z_SYNC_FLUSH
 * keeps what was produced before the damage, and a zlib error ends the stream without failing the
 * rest of the document (its raw bytes were matched already).
 */
async function* inflate(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    yield* throughZlib(
      'pdf',
      'ERR_PDF_FLATE',
      chunks,
      createInflate({ finishFlush: constants.Z_SYNC_FLUSH }),
    );
  } catch (e) {
    if (!(e instanceof UnpackError)) throw e;
  }
}

export const pdfUnpacker: Unpacker = {
  type: 'pdf',
  detect: (head) => head.subarray(0, 1024).toString('latin1').includes('%PDF-'),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const streams = await findStreams(source, ctx);
    let n = 0;
    for (const s of streams) {
      n++;
      yield { name: `stream-${n}`, open: () => decode(source, s, ctx) };
    }
  },
};
