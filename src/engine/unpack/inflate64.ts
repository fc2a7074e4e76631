/**
 * Deflate64 ("enhanced deflate", zip method 9) decoder; node:zlib has none. It is RFC 1951 deflate with
 * a 64 KiB window, length code 285 meaning base 3 + 16 extra bits, and distance codes 30/31
 * (32769/49153 + 14 extra bits) — PKWARE APPNOTE 5.3.2 leaves it undocumented; these values match 7-Zip
 * and ClamAV's inflate64.c. Streaming: output leaves in chunks of at most 64 KiB.
 */
import { type DecoderStep, type InputBuffer, LsbBits, NEED_INPUT } from './bitreader.js';

const LBASE = [
  3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
  227, 3,
];
const LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 16];
const DBASE = [
  1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
  6145, 8193, 12289, 16385, 24577, 32769, 49153,
];
const DEXT = [
  0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14,
];
const CLORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
const WSIZE = 65536;
const OUT = 64 * 1024;

export class InflateDataError extends Error {}

/** A canonical Huffman table as a direct lookup on the next `max` bits (entry = symbol << 4 | length). */
interface Table {
  lut: Int32Array;
  max: number;
}

function buildTable(lengths: ArrayLike<number>, n: number): Table {
  const count = new Array<number>(16).fill(0);
  let max = 0;
  for (let i = 0; i < n; i++) {
    const l = lengths[i]!;
    count[l]!++;
    if (l > max) max = l;
  }
  if (max === 0) return { lut: new Int32Array(2), max: 1 }; // no codes: any lookup is an error
  let left = 1;
  for (let l = 1; l <= 15; l++) {
    left = left * 2 - count[l]!;
    if (left < 0) throw new InflateDataError('oversubscribed Huffman code');
  }
  const next = new Array<number>(16).fill(0);
  let code = 0;
  for (let l = 1; l <= 15; l++) {
    next[l] = code;
    code = (code + count[l]!) << 1;
  }
  const lut = new Int32Array(1 << max);
  for (let sym = 0; sym < n; sym++) {
    const l = lengths[sym]!;
    if (!l) continue;
    const c = next[l]!++;
    let rev = 0;
    for (let i = 0; i < l; i++) rev |= ((c >> i) & 1) << (l - 1 - i);
    for (let i = rev; i < 1 << max; i += 1 << l) lut[i] = (sym << 4) | l;
  }
  return { lut, max };
}

function decodeSym(br: LsbBits, t: Table): number {
  br.need(t.max);
  const e = t.lut[br.bitbuf & ((1 << t.max) - 1)]!;
  const l = e & 15;
  if (l === 0) throw new InflateDataError('invalid Huffman code');
  br.bitbuf >>>= l;
  br.bitcnt -= l;
  return e >> 4;
}

let fixedLit: Table | null = null;
let fixedDist: Table | null = null;
function fixedTables(): [Table, Table] {
  if (!fixedLit || !fixedDist) {
    const l = new Uint8Array(288);
    l.fill(8, 0, 144);
    l.fill(9, 144, 256);
    l.fill(7, 256, 280);
    l.fill(8, 280, 288);
    fixedLit = buildTable(l, 288);
    fixedDist = buildTable(new Uint8Array(32).fill(5), 32);
  }
  return [fixedLit, fixedDist];
}

/**
 * The decoder generator. Keeps at least 32 bytes of input (or end of input) before each symbol and
 * 2 KiB before each block header, so no read inside a step can run dry mid-way.
 */
export function* inflate64(input: InputBuffer): Generator<DecoderStep, void, void> {
  const br = new LsbBits(input);
  const win = new Uint8Array(WSIZE);
  let wpos = 0;
  let out = Buffer.allocUnsafe(OUT);
  let opos = 0;
  const truncated = (): boolean => br.overrun > 0 && input.eof;

  for (;;) {
    while (input.available < 2048 && !input.eof) yield NEED_INPUT;
    const final = br.bits(1);
    const type = br.bits(2);
    if (type === 0) {
      br.alignByte();
      const len = br.bits(16);
      const nlen = br.bits(16);
      if ((len ^ 0xffff) !== nlen) throw new InflateDataError('stored block length mismatch');
      // Any bits still buffered are whole bytes of the stored data.
      let left = len;
      while (left > 0 && br.bitcnt >= 8) {
        const b = br.bits(8);
        win[wpos] = b;
        wpos = (wpos + 1) & (WSIZE - 1);
        out[opos++] = b;
        left--;
        if (opos === OUT) {
          yield out;
          out = Buffer.allocUnsafe(OUT);
          opos = 0;
        }
      }
      while (left > 0) {
        if (input.available === 0) {
          if (input.eof) throw new InflateDataError('unexpected end of data in stored block');
          yield NEED_INPUT;
          continue;
        }
        const b = input.buf[input.pos++]!;
        win[wpos] = b;
        wpos = (wpos + 1) & (WSIZE - 1);
        out[opos++] = b;
        left--;
        if (opos === OUT) {
          yield out;
          out = Buffer.allocUnsafe(OUT);
          opos = 0;
        }
      }
    } else if (type === 1 || type === 2) {
      let lit: Table;
      let dist: Table;
      if (type === 1) [lit, dist] = fixedTables();
      else {
        const hlit = br.bits(5) + 257;
        const hdist = br.bits(5) + 1;
        const hclen = br.bits(4) + 4;
        const cl = new Uint8Array(19);
        for (let i = 0; i < hclen; i++) cl[CLORDER[i]!] = br.bits(3);
        const clt = buildTable(cl, 19);
        const lens = new Uint8Array(hlit + hdist);
        for (let i = 0; i < hlit + hdist; ) {
          const s = decodeSym(br, clt);
          if (s < 16) lens[i++] = s;
          else {
            let rep: number;
            let val = 0;
            if (s === 16) {
              if (i === 0) throw new InflateDataError('repeat with no previous length');
              val = lens[i - 1]!;
              rep = 3 + br.bits(2);
            } else if (s === 17) rep = 3 + br.bits(3);
            else rep = 11 + br.bits(7);
            if (i + rep > hlit + hdist) throw new InflateDataError('code lengths overflow');
            lens.fill(val, i, i + rep);
            i += rep;
          }
          if (truncated()) throw new InflateDataError('unexpected end of data');
        }
        if (lens[256] === 0) throw new InflateDataError('no end-of-block code');
        lit = buildTable(lens.subarray(0, hlit), hlit);
        dist = buildTable(lens.subarray(hlit), hdist);
      }
      for (;;) {
        if (input.available < 32 && !input.eof) yield NEED_INPUT;
        const sym = decodeSym(br, lit);
        if (truncated()) throw new InflateDataError('unexpected end of data');
        if (sym < 256) {
          win[wpos] = sym;
          wpos = (wpos + 1) & (WSIZE - 1);
          out[opos++] = sym;
          if (opos === OUT) {
            yield out;
            out = Buffer.allocUnsafe(OUT);
            opos = 0;
          }
          continue;
        }
        if (sym === 256) break;
        const li = sym - 257;
        if (li >= 29) throw new InflateDataError('invalid length code');
        let len = LBASE[li]! + br.bits(LEXT[li]!);
        const ds = decodeSym(br, dist);
        if (ds >= 32) throw new InflateDataError('invalid distance code');
        const d = DBASE[ds]! + br.bits(DEXT[ds]!);
        if (truncated()) throw new InflateDataError('unexpected end of data');
        let from = (wpos - d + WSIZE) & (WSIZE - 1);
        // Distances reaching before the start of output read zeros (as zlib without a dictionary would reject;
        // ClamAV tolerates) — bounded either way since the window is fixed.
        while (len-- > 0) {
          const b = win[from]!;
          from = (from + 1) & (WSIZE - 1);
          win[wpos] = b;
          wpos = (wpos + 1) & (WSIZE - 1);
          out[opos++] = b;
          if (opos === OUT) {
            yield out;
            out = Buffer.allocUnsafe(OUT);
            opos = 0;
          }
        }
      }
    } else throw new InflateDataError('invalid block type 3');
    if (final) break;
    if (truncated()) throw new InflateDataError('unexpected end of data');
  }
  if (opos > 0) yield out.subarray(0, opos);
}
