/**
 * Zip method 6, "imploding" (PKWARE APPNOTE 6.3 section 5.3): sliding dictionary of 4 or 8 KiB
 * (general-purpose flag bit 1) and two or three Shannon-Fano trees (flag bit 2: a literal tree is
 * present). Each code is read bit by bit, most significant bit first, and matched against the codes
 * assigned by APPNOTE 5.3.5 (checked byte-exact against clam.impl.zip from clamav-testfiles).
 * The stream has no end marker: it ends when the declared uncompressed size has been produced.
 */
import { type DecoderStep, type InputBuffer, LsbBits, NEED_INPUT } from './bitreader.js';

export class ExplodeDataError extends Error {}

const OUT = 64 * 1024;

/** Code (length, value) -> symbol, keyed length * 65536 + value. */
type SfTree = Map<number, number>;

function readTree(br: LsbBits, n: number): SfTree {
  const bytes = br.bits(8) + 1;
  const lens: number[] = [];
  for (let i = 0; i < bytes; i++) {
    const b = br.bits(8);
    const count = (b >> 4) + 1;
    const len = (b & 15) + 1;
    for (let k = 0; k < count; k++) lens.push(len);
  }
  if (lens.length !== n) throw new ExplodeDataError(`tree has ${lens.length} lengths, expected ${n}`);
  // APPNOTE 5.3.5: sort by length (stable by symbol) and assign codes from the longest up.
  const order = lens.map((l, s) => ({ l, s })).sort((a, b) => a.l - b.l || a.s - b.s);
  const tree: SfTree = new Map();
  let code = 0;
  let inc = 0;
  let last = 0;
  for (let i = order.length - 1; i >= 0; i--) {
    code = (code + inc) & 0xffff;
    const { l, s } = order[i]!;
    if (l !== last) {
      last = l;
      inc = 1 << (16 - l);
    }
    tree.set(l * 65536 + (code >>> (16 - l)), s);
  }
  return tree;
}

function decode(br: LsbBits, t: SfTree): number {
  let v = 0;
  for (let l = 1; l <= 16; l++) {
    v = (v << 1) | br.bits(1);
    const s = t.get(l * 65536 + v);
    if (s !== undefined) return s;
  }
  throw new ExplodeDataError('invalid Shannon-Fano code');
}

export function* explode(
  input: InputBuffer,
  flags: number,
  size: number,
): Generator<DecoderStep, void, void> {
  const br = new LsbBits(input);
  const bigDict = (flags & 2) !== 0;
  const litTree = (flags & 4) !== 0;
  while (input.available < 1024 && !input.eof) yield NEED_INPUT;
  const lit = litTree ? readTree(br, 256) : null;
  const lenT = readTree(br, 64);
  const distT = readTree(br, 64);
  const dictBits = bigDict ? 7 : 6;
  const minMatch = litTree ? 3 : 2;
  const WSIZE = 8192;
  const win = new Uint8Array(WSIZE);
  let wpos = 0;
  let produced = 0;
  let out = Buffer.allocUnsafe(OUT);
  let opos = 0;
  while (produced < size) {
    if (input.available < 16 && !input.eof) yield NEED_INPUT;
    if (br.overrun > 2) throw new ExplodeDataError('unexpected end of data');
    let n = 1;
    let dist = 0;
    let litByte = 0;
    if (br.bits(1)) litByte = lit ? decode(br, lit) : br.bits(8);
    else {
      const low = br.bits(dictBits);
      dist = ((decode(br, distT) << dictBits) | low) + 1;
      n = decode(br, lenT);
      if (n === 63) n += br.bits(8);
      n += minMatch;
    }
    for (let k = 0; k < n && produced < size; k++) {
      // Distances before the start of output read as zeros (Info-ZIP does the same).
      const b = dist === 0 ? litByte : dist > produced ? 0 : win[(wpos - dist + WSIZE) & (WSIZE - 1)]!;
      win[wpos] = b;
      wpos = (wpos + 1) & (WSIZE - 1);
      out[opos++] = b;
      produced++;
      if (opos === OUT) {
        yield out;
        out = Buffer.allocUnsafe(OUT);
        opos = 0;
      }
    }
  }
  if (opos > 0) yield out.subarray(0, opos);
}
