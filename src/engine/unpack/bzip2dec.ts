/**
 * Streaming bzip2 decoder (zip method 12, .bz2 files). Node has none built in.
 *
 * Choice: `seek-bzip` decodes a whole input into one Buffer (no streaming: a 1 GB member would need
 * 1 GB), and `unbzip2-stream` pulls in a through-stream dependency chain for the same kind of decoder.
 * Neither was installed; this hand-written decoder (~250 lines) streams output in 64 KiB chunks and
 * bounds memory at one block: the 900k-entry BWT vector (3.6 MB) plus at most one compressed block of
 * input (< 2.5 MB at level 9). Throughput is measured in test/unit/unpack-archives.test.ts (logged).
 *
 * Format: Seward's bzip2 1.0 (no formal spec; see "bzip2 format" notes by Joe Tsai, 2016):
 * stream "BZh1".."BZh9", blocks (magic 0x314159265359) = CRC, origPtr, symbol map, Huffman groups,
 * MTF/RLE2 symbols, inverse BWT, then RLE1; end marker 0x177245385090 + combined CRC.
 * Concatenated streams (pbzip2, `cat a.bz2 b.bz2`) are decoded in sequence.
 */
import { type DecoderStep, type InputBuffer, MsbBits, NEED_INPUT } from './bitreader.js';

export class Bzip2DataError extends Error {}

const OUT = 64 * 1024;
const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    t[i] = c;
  }
  return t;
})();

interface Group {
  minLen: number;
  maxLen: number;
  limit: Int32Array;
  offset: Int32Array;
  perm: Uint16Array;
}

function buildGroup(lens: Uint8Array, alphaSize: number): Group {
  let minLen = 32;
  let maxLen = 0;
  const cnt = new Int32Array(22);
  for (let s = 0; s < alphaSize; s++) {
    const l = lens[s]!;
    cnt[l]!++;
    if (l < minLen) minLen = l;
    if (l > maxLen) maxLen = l;
  }
  const perm = new Uint16Array(alphaSize);
  let pp = 0;
  for (let l = minLen; l <= maxLen; l++)
    for (let s = 0; s < alphaSize; s++) if (lens[s] === l) perm[pp++] = s;
  const limit = new Int32Array(22);
  const offset = new Int32Array(22);
  let code = 0;
  let idx = 0;
  for (let l = minLen; l <= maxLen; l++) {
    limit[l] = code + cnt[l]! - 1;
    offset[l] = idx - code;
    idx += cnt[l]!;
    code = (code + cnt[l]!) << 1;
  }
  return { minLen, maxLen, limit, offset, perm };
}

function decodeSym(br: MsbBits, g: Group): number {
  let l = g.minLen;
  let code = br.bits(l);
  for (;;) {
    if (code <= g.limit[l]!) {
      const i = code + g.offset[l]!;
      if (i < 0 || i >= g.perm.length) throw new Bzip2DataError('invalid Huffman code');
      return g.perm[i]!;
    }
    if (++l > g.maxLen) throw new Bzip2DataError('invalid Huffman code');
    code = (code << 1) | br.bit();
  }
}

export function* bunzip2(input: InputBuffer): Generator<DecoderStep, void, void> {
  const br = new MsbBits(input);
  let out = Buffer.allocUnsafe(OUT);
  let opos = 0;
  let streams = 0;
  let tt: Uint32Array | null = null;
  const truncated = (): boolean => br.overrun > 0 && input.eof;

  for (;;) {
    while (input.available < 4 && !input.eof) yield NEED_INPUT;
    if (streams > 0 && input.available === 0 && br.bitcnt < 8) break;
    const b0 = br.bits(8);
    const b1 = br.bits(8);
    const b2 = br.bits(8);
    const level = br.bits(8) - 0x30;
    if (b0 !== 0x42 || b1 !== 0x5a || b2 !== 0x68 || level < 1 || level > 9) {
      if (streams > 0) break; // trailing garbage after a complete stream is ignored, as bzip2(1) does
      throw new Bzip2DataError('not a bzip2 stream');
    }
    const blockMax = level * 100000;
    if (!tt || tt.length < blockMax) tt = new Uint32Array(blockMax);
    const maxBlockBytes = level * 250000 + 65536;
    let combined = 0;
    for (;;) {
      while (input.available < maxBlockBytes && !input.eof) yield NEED_INPUT;
      const m1 = br.bits(24);
      const m2 = br.bits(24);
      if (m1 === 0x177245 && m2 === 0x385090) {
        const stored = ((br.bits(16) << 16) | br.bits(16)) >>> 0;
        if (truncated()) throw new Bzip2DataError('unexpected end of data');
        if (stored !== combined >>> 0) throw new Bzip2DataError('stream CRC mismatch');
        br.alignByte();
        break;
      }
      if (m1 !== 0x314159 || m2 !== 0x265359) throw new Bzip2DataError('bad block magic');
      const blockCrc = ((br.bits(16) << 16) | br.bits(16)) >>> 0;
      if (br.bit()) throw new Bzip2DataError('randomised blocks are not supported');
      const origPtr = br.bits(24);
      const used = br.bits(16);
      const seq: number[] = [];
      for (let i = 0; i < 16; i++) {
        if (!(used & (0x8000 >> i))) continue;
        const m = br.bits(16);
        for (let j = 0; j < 16; j++) if (m & (0x8000 >> j)) seq.push(i * 16 + j);
      }
      if (seq.length === 0) throw new Bzip2DataError('empty symbol map');
      const alphaSize = seq.length + 2;
      const nGroups = br.bits(3);
      if (nGroups < 2 || nGroups > 6) throw new Bzip2DataError('bad Huffman group count');
      const nSelectors = br.bits(15);
      if (nSelectors < 1) throw new Bzip2DataError('no selectors');
      const selMtf = [0, 1, 2, 3, 4, 5];
      const selectors = new Uint8Array(nSelectors);
      for (let i = 0; i < nSelectors; i++) {
        let j = 0;
        while (br.bit()) if (++j >= nGroups) throw new Bzip2DataError('bad selector');
        const v = selMtf[j]!;
        for (let k = j; k > 0; k--) selMtf[k] = selMtf[k - 1]!;
        selMtf[0] = v;
        selectors[i] = v;
        if (truncated()) throw new Bzip2DataError('unexpected end of data');
      }
      const groups: Group[] = [];
      const lens = new Uint8Array(alphaSize);
      for (let g = 0; g < nGroups; g++) {
        let len = br.bits(5);
        for (let s = 0; s < alphaSize; s++) {
          for (;;) {
            if (len < 1 || len > 20) throw new Bzip2DataError('bad code length');
            if (!br.bit()) break;
            len += br.bit() ? -1 : 1;
          }
          lens[s] = len;
        }
        groups.push(buildGroup(lens, alphaSize));
      }
      if (truncated()) throw new Bzip2DataError('unexpected end of data');

      // MTF + RLE2 symbols -> tt (low byte of each entry is the BWT'd byte).
      const mtf = new Uint8Array(256);
      for (let i = 0; i < 256; i++) mtf[i] = i;
      const counts = new Int32Array(256);
      const eob = alphaSize - 1;
      let count = 0;
      let runLen = 0;
      let runBit = 1;
      let sel = 0;
      let groupLeft = 0;
      let g = groups[0]!;
      for (;;) {
        if (groupLeft === 0) {
          if (sel >= nSelectors) throw new Bzip2DataError('ran out of selectors');
          if (truncated()) throw new Bzip2DataError('unexpected end of data');
          g = groups[selectors[sel++]!]!;
          groupLeft = 50;
        }
        groupLeft--;
        const sym = decodeSym(br, g);
        if (sym <= 1) {
          runLen += (sym + 1) * runBit;
          runBit *= 2;
          if (runLen > blockMax) throw new Bzip2DataError('run exceeds block size');
          continue;
        }
        if (runLen > 0) {
          if (count + runLen > blockMax) throw new Bzip2DataError('block overflow');
          const b = seq[mtf[0]!]!;
          counts[b]! += runLen;
          tt.fill(b, count, count + runLen);
          count += runLen;
          runLen = 0;
          runBit = 1;
        }
        if (sym === eob) break;
        if (count >= blockMax) throw new Bzip2DataError('block overflow');
        const idx = sym - 1;
        if (idx >= seq.length) throw new Bzip2DataError('bad MTF index');
        const v = mtf[idx]!;
        mtf.copyWithin(1, 0, idx);
        mtf[0] = v;
        const b = seq[v]!;
        counts[b]!++;
        tt[count++] = b;
      }
      if (truncated()) throw new Bzip2DataError('unexpected end of data');
      if (origPtr >= count) throw new Bzip2DataError('origPtr out of range');

      // Inverse BWT: link each position to its successor in the upper 24 bits.
      const cf = new Int32Array(256);
      for (let i = 0, sum = 0; i < 256; i++) {
        cf[i] = sum;
        sum += counts[i]!;
      }
      for (let i = 0; i < count; i++) {
        const b = tt[i]! & 0xff;
        tt[cf[b]!]! |= i << 8;
        cf[b]!++;
      }
      // Walk the chain, undoing RLE1 (4 equal bytes then a repeat count), with the block CRC.
      let pos = tt[origPtr]! >>> 8;
      let crc = -1;
      let last = -1;
      let rep = 0;
      for (let k = 0; k < count; k++) {
        const e = tt[pos]!;
        const b = e & 0xff;
        pos = e >>> 8;
        let n = 1;
        let v = b;
        if (rep === 4) {
          n = b;
          v = last;
          rep = 0;
        } else if (b === last) rep++;
        else {
          rep = 1;
          last = b;
        }
        for (let r = 0; r < n; r++) {
          crc = (crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ v) & 0xff]!;
          out[opos++] = v;
          if (opos === OUT) {
            yield out;
            out = Buffer.allocUnsafe(OUT);
            opos = 0;
          }
        }
      }
      if (~crc >>> 0 !== blockCrc) throw new Bzip2DataError('block CRC mismatch');
      combined = (((combined << 1) | (combined >>> 31)) ^ blockCrc) >>> 0;
    }
    streams++;
  }
  if (opos > 0) yield out.subarray(0, opos);
}
