/**
 * ARJ archives (Robert Jung's ARJ technical notes, arj/TECHNOTE.DOC; decoder as in arj's decode.c
 * and 7-Zip's ArjDecoder). Header: 0x60 0xEA, basic header size (0 = end), basic header, CRC-32,
 * extended headers. The first header is the archive's main header. Methods: 0 stored; 1-3 LZ77 +
 * static Huffman blocks (LHA -lh6- style, 26 KiB dictionary); 4 "fastest" (unary-prefixed lengths
 * and positions). Garbled (password) entries are yielded with `encrypted: true`.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { type DecoderStep, InputBuffer, MsbBits, NEED_INPUT, runDecoder } from './bitreader.js';
import { asUnpackError, Counter, checkAbort, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const aerr = (code: string, msg: string): UnpackError => new UnpackError('arj', code, msg);
const OUT = 64 * 1024;
const NC = 510;
const NT = 19;
const NP = 17;

/** Canonical Huffman decoder (codes assigned by length then symbol, as arj's make_table does). */
interface Huff {
  single: number; // >= 0: the only symbol, zero bits
  minLen: number;
  maxLen: number;
  limit: Int32Array;
  offset: Int32Array;
  perm: Uint16Array;
}

function buildHuff(lens: Uint8Array, n: number): Huff {
  const cnt = new Int32Array(18);
  let minLen = 17;
  let maxLen = 0;
  for (let s = 0; s < n; s++) {
    const l = lens[s]!;
    if (l > 16) throw new Error('code length above 16');
    if (!l) continue;
    cnt[l]!++;
    if (l < minLen) minLen = l;
    if (l > maxLen) maxLen = l;
  }
  const perm = new Uint16Array(n);
  let pp = 0;
  for (let l = 1; l <= 16; l++) for (let s = 0; s < n; s++) if (lens[s] === l) perm[pp++] = s;
  const limit = new Int32Array(18).fill(-1);
  const offset = new Int32Array(18);
  let code = 0;
  let idx = 0;
  for (let l = 1; l <= 16; l++) {
    limit[l] = code + cnt[l]! - 1;
    offset[l] = idx - code;
    idx += cnt[l]!;
    code = (code + cnt[l]!) << 1;
  }
  return { single: -1, minLen: maxLen ? minLen : 1, maxLen, limit, offset, perm: perm.subarray(0, pp) };
}

function decodeHuff(br: MsbBits, h: Huff): number {
  if (h.single >= 0) return h.single;
  if (h.maxLen === 0) throw new Error('empty Huffman table');
  let code = 0;
  for (let l = 1; l <= h.maxLen; l++) {
    code = (code << 1) | br.bit();
    if (l >= h.minLen && code <= h.limit[l]!) {
      const i = code + h.offset[l]!;
      if (i >= 0 && i < h.perm.length) return h.perm[i]!;
    }
  }
  throw new Error('invalid Huffman code');
}

function readPtLen(br: MsbBits, nn: number, nbit: number, special: number): Huff {
  const n = br.bits(nbit);
  if (n === 0) {
    const c = br.bits(nbit);
    if (c >= nn) throw new Error('bad single code');
    return { ...buildHuff(new Uint8Array(0), 0), single: c };
  }
  if (n > nn) throw new Error('too many code lengths');
  const lens = new Uint8Array(nn);
  let i = 0;
  while (i < n) {
    let c = br.bits(3);
    if (c === 7) {
      while (br.bit()) if (++c > 16) throw new Error('code length above 16');
    }
    lens[i++] = c;
    if (i === special) {
      let z = br.bits(2);
      while (z-- > 0 && i < nn) lens[i++] = 0;
    }
  }
  return buildHuff(lens, nn);
}

function readCLen(br: MsbBits, pt: Huff): Huff {
  const n = br.bits(9);
  if (n === 0) {
    const c = br.bits(9);
    if (c >= NC) throw new Error('bad single code');
    return { ...buildHuff(new Uint8Array(0), 0), single: c };
  }
  if (n > NC) throw new Error('too many code lengths');
  const lens = new Uint8Array(NC);
  let i = 0;
  while (i < n) {
    let c = decodeHuff(br, pt);
    if (c <= 2) {
      c = c === 0 ? 1 : c === 1 ? br.bits(4) + 3 : br.bits(9) + 20;
      while (c-- > 0 && i < NC) lens[i++] = 0;
    } else lens[i++] = c - 2;
  }
  return buildHuff(lens, NC);
}

function* arjDecode(input: InputBuffer, method: number, size: number): Generator<DecoderStep, void, void> {
  const br = new MsbBits(input);
  const WS = 65536;
  const win = new Uint8Array(WS);
  let wpos = 0;
  let produced = 0;
  let out = Buffer.allocUnsafe(OUT);
  let opos = 0;
  let blockLeft = 0;
  let pt: Huff | null = null;
  let c: Huff | null = null;
  let p: Huff | null = null;
  while (produced < size) {
    if (opos > OUT - 300) {
      yield out.subarray(0, opos);
      out = Buffer.allocUnsafe(OUT);
      opos = 0;
    }
    if (input.available < (blockLeft === 0 ? 1024 : 16) && !input.eof) {
      yield NEED_INPUT;
      continue;
    }
    if (br.overrun > 4) throw new Error('unexpected end of data');
    let len: number;
    let dist = 0;
    let lit = -1;
    if (method === 4) {
      let plus = 0;
      let pwr = 1;
      let width = 0;
      for (; width < 7; width++) {
        if (!br.bit()) break;
        plus += pwr;
        pwr <<= 1;
      }
      const v = (width ? br.bits(width) : 0) + plus;
      if (v === 0) {
        lit = br.bits(8);
        len = 1;
      } else {
        len = v - 1 + 3;
        let pplus = 0;
        let ppwr = 1 << 9;
        let pw = 9;
        for (; pw < 13; pw++) {
          if (!br.bit()) break;
          pplus += ppwr;
          ppwr <<= 1;
        }
        dist = br.bits(pw) + pplus;
      }
    } else {
      if (blockLeft === 0) {
        blockLeft = br.bits(16);
        if (blockLeft === 0) throw new Error('empty block');
        pt = readPtLen(br, NT, 5, 3);
        c = readCLen(br, pt);
        p = readPtLen(br, NP, 5, -1);
      }
      blockLeft--;
      const sym = decodeHuff(br, c!);
      if (sym <= 255) {
        lit = sym;
        len = 1;
      } else {
        len = sym - 253;
        const j = decodeHuff(br, p!);
        dist = j === 0 ? 0 : (1 << (j - 1)) + br.bits(j - 1);
      }
    }
    if (lit >= 0) {
      win[wpos] = lit;
      wpos = (wpos + 1) & (WS - 1);
      out[opos++] = lit;
      produced++;
      continue;
    }
    if (dist >= produced) throw new Error('match distance before the start of data');
    let from = (wpos - dist - 1 + WS) & (WS - 1);
    for (let k = 0; k < len && produced < size; k++) {
      const b = win[from]!;
      from = (from + 1) & (WS - 1);
      win[wpos] = b;
      wpos = (wpos + 1) & (WS - 1);
      out[opos++] = b;
      produced++;
    }
  }
  if (opos > 0) yield out.subarray(0, opos);
}

interface ArjHeader {
  next: number; // offset after the header (and its extended headers)
  end: boolean;
  flags: number;
  method: number;
  fileType: number;
  csize: number;
  usize: number;
  name: string;
}

async function readHeader(src: ObjectSource, p: number): Promise<ArjHeader> {
  const h = await src.read(p, 4);
  if (h.length < 4) throw aerr('ERR_ARJ_TRUNCATED', 'header cut short');
  if (h[0] !== 0x60 || h[1] !== 0xea) throw aerr('ERR_ARJ_CORRUPT', `no header at offset ${p}`);
  const size = h.readUInt16LE(2);
  if (size === 0)
    return { next: p + 4, end: true, flags: 0, method: 0, fileType: 0, csize: 0, usize: 0, name: '' };
  if (size > 2600 || size < 30) throw aerr('ERR_ARJ_CORRUPT', `basic header of ${size} bytes`);
  const b = await src.read(p + 4, size);
  if (b.length < size) throw aerr('ERR_ARJ_TRUNCATED', 'header cut short');
  const first = b[0]!;
  if (first < 30 || first > size) throw aerr('ERR_ARJ_CORRUPT', 'bad first header size');
  const z = b.indexOf(0, first);
  const name = b.subarray(first, z < 0 ? size : z).toString('latin1');
  let q = p + 4 + size + 4; // + CRC
  for (let k = 0; ; k++) {
    const e = await src.read(q, 2);
    if (e.length < 2) throw aerr('ERR_ARJ_TRUNCATED', 'extended header cut short');
    const n = e.readUInt16LE(0);
    q += 2;
    if (n === 0) break;
    if (k > 64) throw aerr('ERR_ARJ_CORRUPT', 'too many extended headers');
    q += n + 4;
  }
  return {
    next: q,
    end: false,
    flags: b[4]!,
    method: b[5]!,
    fileType: b[6]!,
    csize: b.readUInt32LE(12),
    usize: b.readUInt32LE(16),
    name,
  };
}

export const arjUnpacker: Unpacker = {
  type: 'arj',
  detect(head: Buffer): boolean {
    if (head.length < 40 || head[0] !== 0x60 || head[1] !== 0xea) return false;
    const size = head.readUInt16LE(2);
    return size >= 30 && size <= 2600 && head[4 + 6] === 2; // the main header's file type is 2
  },
  async *entries(src: ObjectSource, ctx: UnpackContext): AsyncGenerator<Entry> {
    const main = await readHeader(src, 0);
    if (main.end || main.fileType !== 2) throw aerr('ERR_ARJ_CORRUPT', 'no main header');
    const counter = new EntryCounter('arj', ctx);
    let p = main.next;
    for (;;) {
      checkAbort(ctx);
      if (p >= src.size) throw aerr('ERR_ARJ_TRUNCATED', 'archive ends without an end header');
      const h = await readHeader(src, p);
      if (h.end) return;
      const dataStart = h.next;
      p = dataStart + h.csize;
      if (h.fileType !== 0 && h.fileType !== 1) continue; // directories, labels, comments
      counter.next();
      const encrypted = (h.flags & 1) !== 0;
      yield {
        name: h.name,
        size: h.usize,
        encrypted,
        async *open() {
          if (encrypted) throw aerr('ERR_ENCRYPTED', `${h.name}: entry is garbled (password)`);
          if (h.method > 4) throw aerr('ERR_ARJ_METHOD', `${h.name}: method ${h.method} not supported`);
          const end = Math.min(src.size, dataStart + h.csize);
          const c = new Counter();
          const raw = c.count(src.stream(dataStart, end));
          let data: AsyncIterable<Buffer> = raw;
          if (h.method !== 0) {
            const inbuf = new InputBuffer();
            data = runDecoder(arjDecode(inbuf, h.method, h.usize), inbuf, raw);
          }
          try {
            yield* limitOutput('arj', data, ctx, () => c.bytes);
          } catch (e) {
            throw asUnpackError('arj', 'ERR_ARJ_CORRUPT', e);
          }
          if (dataStart + h.csize > src.size) throw aerr('ERR_ARJ_TRUNCATED', `${h.name}: data cut short`);
        },
      };
    }
  },
};
