/**
 * PDF stream filters (ISO 32000-1 §7.4), each a streaming transform over async byte chunks:
 * ASCIIHexDecode, ASCII85Decode, LZWDecode, RunLengthDecode, FlateDecode, and the PNG predictors
 * of §7.4.4.4 that FlateDecode/LZWDecode streams (object and xref streams above all) use.
 * The same filters ClamAV's pdfdecode.c applies; image codecs (DCT, JBIG2, CCITT) are left encoded.
 * Damage ends a filter's output early rather than failing the document: the raw stream was
 * matched already, and what decoded before the damage is still worth scanning.
 */
import { constants, createInflate } from 'node:zlib';
import { UnpackError } from '../../errors.js';
import { throughZlib } from './zlibstream.js';

type Chunks = AsyncIterable<Buffer>;

export async function* asciiHex(chunks: Chunks): AsyncGenerator<Buffer> {
  let half = '';
  for await (const c of chunks) {
    const hex = half + c.toString('latin1').replace(/[^0-9a-fA-F>]/g, '');
    const stop = hex.indexOf('>');
    const digits = stop >= 0 ? hex.slice(0, stop) : hex;
    const even = digits.length - (digits.length % 2);
    if (even) yield Buffer.from(digits.slice(0, even), 'hex');
    half = digits.slice(even);
    if (stop >= 0) {
      if (half) yield Buffer.from(`${half}0`, 'hex'); // §7.4.2: an odd final digit is followed by 0
      return;
    }
  }
}

export async function* ascii85(chunks: Chunks): AsyncGenerator<Buffer> {
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
        if (out.length) yield Buffer.concat(out);
        return;
      }
      if (ch === 0x7a && group.length === 0) out.push(Buffer.alloc(4));
      else if (ch >= 0x21 && ch <= 0x75) {
        group.push(ch - 0x21);
        if (group.length === 5) out.push(flush(4));
      }
    }
    if (out.length) yield Buffer.concat(out);
  }
  if (group.length > 1) yield flush(group.length - 1);
}

/** LZW with 9-12 bit codes, MSB first; `earlyChange` 1 (the default) widens codes one entry early (§7.4.4.3). */
export async function* lzw(chunks: Chunks, earlyChange = 1): AsyncGenerator<Buffer> {
  const prefix = new Int32Array(4096);
  const suffix = new Uint8Array(4096);
  const length = new Uint16Array(4096);
  for (let i = 0; i < 256; i++) {
    prefix[i] = -1;
    suffix[i] = i;
    length[i] = 1;
  }
  let next = 258;
  let width = 9;
  let prev = -1;
  let acc = 0;
  let bits = 0;
  const scratch = Buffer.alloc(4096);
  for await (const c of chunks) {
    const out: Buffer[] = [];
    for (const byte of c) {
      acc = ((acc << 8) | byte) & 0xffffff;
      bits += 8;
      while (bits >= width) {
        bits -= width;
        const code = (acc >> bits) & ((1 << width) - 1);
        if (code === 256) {
          next = 258;
          width = 9;
          prev = -1;
          continue;
        }
        if (code === 257) {
          if (out.length) yield Buffer.concat(out);
          return;
        }
        let entry = code;
        if (code > next || (code === next && prev < 0)) {
          if (out.length) yield Buffer.concat(out);
          return; // corrupt: a code that is not defined yet
        }
        if (code === next) entry = prev; // the KwKwK case: prev's string plus its own first byte
        // Write the entry's string back to front into the scratch buffer.
        let n = length[entry]!;
        let firstByte = 0;
        for (let e = entry, i = n - 1; e >= 0; e = prefix[e]!, i--) {
          scratch[i] = suffix[e]!;
          firstByte = suffix[e]!;
        }
        if (code === next) scratch[n++] = firstByte;
        out.push(Buffer.from(scratch.subarray(0, n)));
        if (prev >= 0 && next < 4096) {
          prefix[next] = prev;
          suffix[next] = firstByte;
          length[next] = length[prev]! + 1;
          next++;
        }
        prev = code;
        if (next + earlyChange >= 1 << width && width < 12) width++;
      }
    }
    if (out.length) yield Buffer.concat(out);
  }
}

export async function* runLength(chunks: Chunks): AsyncGenerator<Buffer> {
  let literal = 0; // literal bytes still to copy
  let repeat = 0; // a run length waiting for its byte (0: none)
  let header = true;
  for await (const c of chunks) {
    const out: Buffer[] = [];
    let i = 0;
    while (i < c.length) {
      if (literal > 0) {
        const take = Math.min(literal, c.length - i);
        out.push(c.subarray(i, i + take));
        literal -= take;
        i += take;
        if (literal === 0) header = true;
      } else if (repeat > 0) {
        out.push(Buffer.alloc(repeat, c[i++]!));
        repeat = 0;
        header = true;
      } else if (header) {
        const l = c[i++]!;
        if (l === 128) {
          if (out.length) yield Buffer.concat(out);
          return;
        }
        if (l < 128) literal = l + 1;
        else repeat = 257 - l;
        header = false;
      }
    }
    if (out.length) yield Buffer.concat(out);
  }
}

/**
 * zlib inflate that tolerates a missing trailer or trailing garbage (common in PDFs): Z_SYNC_FLUSH
 * keeps what was produced before the damage, and a zlib error ends the output.
 */
export async function* inflate(chunks: Chunks): AsyncGenerator<Buffer> {
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

export interface PredictorParams {
  predictor: number;
  colors: number;
  bitsPerComponent: number;
  columns: number;
}

/** Largest predictor row accepted; a hostile /Columns cannot make us allocate more. */
const MAX_ROW = 1024 * 1024;

/** PNG predictors (§7.4.4.4, predictor ≥ 10): each row starts with its PNG filter type (RFC 2083 §6). */
export async function* pngPredictor(chunks: Chunks, p: PredictorParams): AsyncGenerator<Buffer> {
  const bpp = Math.max(1, Math.ceil((p.colors * p.bitsPerComponent) / 8));
  const rowLen = Math.ceil((p.columns * p.colors * p.bitsPerComponent) / 8);
  if (rowLen <= 0 || rowLen > MAX_ROW) {
    yield* chunks; // nonsense parameters: pass the data through undecoded
    return;
  }
  let prev: Buffer = Buffer.alloc(rowLen);
  let row: Buffer = Buffer.alloc(rowLen + 1);
  let fill = 0;
  for await (const c of chunks) {
    const out: Buffer[] = [];
    let i = 0;
    while (i < c.length) {
      const take = Math.min(rowLen + 1 - fill, c.length - i);
      c.copy(row, fill, i, i + take);
      fill += take;
      i += take;
      if (fill < rowLen + 1) break;
      const cur = unfilterRow(row, prev, bpp);
      out.push(Buffer.from(cur));
      prev = cur;
      row = Buffer.alloc(rowLen + 1);
      fill = 0;
    }
    if (out.length) yield Buffer.concat(out);
  }
}

function unfilterRow(row: Buffer, prev: Buffer, bpp: number): Buffer {
  const type = row[0]!;
  const cur = row.subarray(1);
  for (let x = 0; x < cur.length; x++) {
    const a = x >= bpp ? cur[x - bpp]! : 0;
    const b = prev[x]!;
    const c = x >= bpp ? prev[x - bpp]! : 0;
    let add = 0;
    if (type === 1) add = a;
    else if (type === 2) add = b;
    else if (type === 3) add = (a + b) >> 1;
    else if (type === 4) {
      const pa = Math.abs(b - c);
      const pb = Math.abs(a - c);
      const pc = Math.abs(a + b - 2 * c);
      add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    cur[x] = (cur[x]! + add) & 0xff;
  }
  return cur;
}
