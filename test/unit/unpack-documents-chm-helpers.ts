/**
 * A small LZX encoder and CHM writer for tests. The encoder uses fixed (but valid, complete)
 * Huffman codes sent through the pretree as deltas, greedy LZ77 matches with real and repeated
 * offsets, and cycles verbatim / aligned-offset / uncompressed blocks, so every decoder path is
 * exercised: multi-frame output with 16-bit realignment, blocks spanning frames, state resets at
 * the reset interval (with a reset table for seeking).
 */

const FRAME = 32768;

class BitWriter {
  readonly bytes: number[] = [];
  private word = 0;
  private n = 0;

  bits(v: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) {
      this.word = (this.word << 1) | ((v >>> i) & 1);
      if (++this.n === 16) this.flushWord();
    }
  }

  private flushWord(): void {
    this.bytes.push(this.word & 0xff, (this.word >> 8) & 0xff);
    this.word = 0;
    this.n = 0;
  }

  /** Pads the current 16-bit word (frame ends). */
  align(): void {
    if (this.n > 0) this.bits(0, 16 - this.n);
  }

  /** Before raw bytes: 1-16 bits of padding (a whole word when already aligned). */
  alignForRaw(): void {
    if (this.n > 0) this.bits(0, 16 - this.n);
    else this.bits(0, 16);
  }

  raw(b: ArrayLike<number>): void {
    for (let i = 0; i < b.length; i++) this.bytes.push(b[i]!);
  }
}

function canonical(lens: number[]): number[] {
  const codes = new Array<number>(lens.length).fill(0);
  let code = 0;
  for (let len = 1; len <= 16; len++) {
    for (let s = 0; s < lens.length; s++) if (lens[s] === len) codes[s] = code++;
    code <<= 1;
  }
  return codes;
}

const PRE_LENS = Array.from({ length: 20 }, (_, i) => (i < 12 ? 4 : 5));
const PRE_CODES = canonical(PRE_LENS);
const LEN_LENS = Array.from({ length: 249 }, (_, i) => (i < 7 ? 7 : 8));
const LEN_CODES = canonical(LEN_LENS);

const EXTRA = new Array<number>(52);
const BASE = new Array<number>(52);
for (let i = 0, j = 0; i < 52; i += 2) {
  EXTRA[i] = EXTRA[i + 1] = j;
  if (i !== 0 && j < 17) j++;
}
for (let i = 0, j = 0; i < 52; i++) {
  BASE[i] = j;
  j += 1 << EXTRA[i]!;
}

export interface LzxOptions {
  windowBits: number;
  resetInterval: number; // frames
  blockSize: number;
}

/** Returns the compressed stream and the compressed offset of every reset point. */
export function lzxEncode(data: Buffer, o: LzxOptions): { stream: Buffer; resetOffsets: number[] } {
  const slots = o.windowBits === 21 ? 50 : o.windowBits === 20 ? 42 : o.windowBits * 2;
  const mainCount = 256 + slots * 8;
  // A complete code: 2^k symbols of length k, or for other counts a mix of two lengths.
  const k = Math.ceil(Math.log2(mainCount));
  const short = 2 ** k - mainCount; // this many symbols one bit shorter keeps Kraft's sum at 1
  const mainLens = Array.from({ length: mainCount }, (_, i) => (i < short ? k - 1 : k));
  const mainCodes = canonical(mainLens);
  const w = new BitWriter();
  const resetOffsets: number[] = [];
  let prevMain = new Array<number>(mainCount).fill(0);
  let prevLen = new Array<number>(249).fill(0);
  let r = [1, 1, 1];
  let blockIndex = 0;
  const window = 1 << o.windowBits;

  const sendLengths = (prev: number[], lens: number[], from: number, to: number) => {
    for (let i = 0; i < 20; i++) w.bits(PRE_LENS[i]!, 4);
    for (let i = from; i < to; i++) {
      const z = (prev[i]! - lens[i]! + 17) % 17;
      w.bits(PRE_CODES[z]!, PRE_LENS[z]!);
    }
  };

  // One iteration per reset interval: the decoder resets its state there, so we do too.
  for (let pos = 0; pos < data.length; ) {
    const intervalStart = pos;
    resetOffsets.push(w.bytes.length);
    prevMain = new Array<number>(mainCount).fill(0);
    prevLen = new Array<number>(249).fill(0);
    r = [1, 1, 1];
    w.bits(0, 1); // no E8 translation
    const intervalEnd = Math.min(data.length, pos + o.resetInterval * FRAME);
    // Blocks inside this reset interval; frames end every 32 KiB (realign there).
    let nextFrameEnd = pos + FRAME;
    while (pos < intervalEnd) {
      const type = [1, 2, 3][blockIndex++ % 3]!;
      const blockEnd = Math.min(intervalEnd, pos + o.blockSize);
      w.bits(type, 3);
      w.bits(blockEnd - pos, 24);
      if (type === 3) {
        w.alignForRaw();
        const rb = Buffer.alloc(12);
        rb.writeUInt32LE(r[0]!, 0);
        rb.writeUInt32LE(r[1]!, 4);
        rb.writeUInt32LE(r[2]!, 8);
        w.raw(rb);
        // Raw bytes; frame ends inside need no realignment (the bit buffer is empty).
        w.raw(data.subarray(pos, blockEnd));
        if ((blockEnd - pos) & 1) w.raw([0]);
        pos = blockEnd;
        while (pos >= nextFrameEnd) nextFrameEnd += FRAME;
        continue;
      }
      if (type === 2) for (let i = 0; i < 8; i++) w.bits(3, 3);
      sendLengths(prevMain, mainLens, 0, 256);
      sendLengths(prevMain, mainLens, 256, mainCount);
      prevMain = mainLens.slice();
      sendLengths(prevLen, LEN_LENS, 0, 249);
      prevLen = LEN_LENS.slice();
      while (pos < blockEnd) {
        const limit = Math.min(blockEnd, nextFrameEnd, pos + 257);
        // Greedy match search over a short history, never before this reset interval's start.
        let bestLen = 0;
        let bestOff = 0;
        for (const off of [r[0]!, 1, 2, 3, 4, 7, 16, 100, 1000, 5000, 20000]) {
          if (off > pos - intervalStart || off >= window) continue;
          let l = 0;
          while (pos + l < limit && data[pos + l] === data[pos + l - off]) l++;
          if (l > bestLen) {
            bestLen = l;
            bestOff = off;
          }
        }
        if (bestLen < 3) {
          w.bits(mainCodes[data[pos]!]!, mainLens[data[pos]!]!);
          pos++;
        } else {
          let slot: number;
          let formatted = 0;
          if (bestOff === r[0]) slot = 0;
          else {
            formatted = bestOff + 2;
            slot = 3;
            while (slot + 1 < slots && BASE[slot + 1]! <= formatted) slot++;
            r = [bestOff, r[0]!, r[1]!];
          }
          const lenHeader = Math.min(bestLen - 2, 7);
          const sym = 256 + slot * 8 + lenHeader;
          w.bits(mainCodes[sym]!, mainLens[sym]!);
          if (lenHeader === 7) w.bits(LEN_CODES[bestLen - 9]!, LEN_LENS[bestLen - 9]!);
          if (slot >= 3) {
            const extra = slot >= 36 ? 17 : EXTRA[slot]!;
            const v = formatted - BASE[slot]!;
            if (type === 1 || extra < 3) {
              if (slot !== 3) w.bits(v, extra);
            } else {
              if (extra > 3) w.bits(v >>> 3, extra - 3);
              w.bits(v & 7, 3); // aligned tree: all lengths 3, code = symbol
            }
          }
          pos += bestLen;
        }
        if (pos === nextFrameEnd) {
          w.align();
          nextFrameEnd += FRAME;
        }
      }
    }
    w.align();
  }
  return { stream: Buffer.from(w.bytes), resetOffsets };
}

function encint(v: number): Buffer {
  const out = [v & 0x7f];
  for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) out.unshift((v & 0x7f) | 0x80);
  return Buffer.from(out);
}

/** A version-3 CHM with `stored` files in section 0 and `files` compressed into section 1. */
export function buildChm(
  files: { name: string; data: Buffer }[],
  stored: { name: string; data: Buffer }[],
  o: LzxOptions,
): Buffer {
  const plain = Buffer.concat(files.map((f) => f.data));
  const { stream, resetOffsets } = lzxEncode(plain, o);
  const control = Buffer.alloc(28);
  control.writeUInt32LE(6, 0);
  control.write('LZXC', 4, 'latin1');
  control.writeUInt32LE(2, 8);
  control.writeUInt32LE(o.resetInterval, 12); // version 2: in 32 KiB units
  control.writeUInt32LE((1 << o.windowBits) / FRAME, 16);
  control.writeUInt32LE(1, 20);
  const rt = Buffer.alloc(0x28 + 8 * resetOffsets.length);
  rt.writeUInt32LE(2, 0);
  rt.writeUInt32LE(resetOffsets.length, 4);
  rt.writeUInt32LE(8, 8);
  rt.writeUInt32LE(0x28, 12);
  rt.writeBigUInt64LE(BigInt(plain.length), 0x10);
  rt.writeBigUInt64LE(BigInt(stream.length), 0x18);
  rt.writeBigUInt64LE(BigInt(FRAME), 0x20);
  for (const [i, off] of resetOffsets.entries()) rt.writeBigUInt64LE(BigInt(off), 0x28 + 8 * i);

  const section0 = [
    { name: '::DataSpace/Storage/MSCompressed/ControlData', data: control },
    {
      name: '::DataSpace/Storage/MSCompressed/Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable',
      data: rt,
    },
    { name: '::DataSpace/Storage/MSCompressed/Content', data: stream },
    ...stored,
  ];
  const entries: Buffer[] = [];
  let off0 = 0;
  for (const f of section0) {
    const n = Buffer.from(f.name);
    entries.push(encint(n.length), n, encint(0), encint(off0), encint(f.data.length));
    off0 += f.data.length;
  }
  let off1 = 0;
  for (const f of files) {
    const n = Buffer.from(f.name);
    entries.push(encint(n.length), n, encint(1), encint(off1), encint(f.data.length));
    off1 += f.data.length;
  }
  const body = Buffer.concat(entries);
  const chunkSize = 4096 * Math.ceil((body.length + 0x14) / 4096);
  const chunk = Buffer.alloc(chunkSize);
  chunk.write('PMGL', 0, 'latin1');
  chunk.writeUInt32LE(chunkSize - 0x14 - body.length, 4);
  chunk.writeInt32LE(-1, 12);
  chunk.writeInt32LE(-1, 16);
  body.copy(chunk, 0x14);
  const itsp = Buffer.alloc(0x54);
  itsp.write('ITSP', 0, 'latin1');
  itsp.writeUInt32LE(1, 4);
  itsp.writeUInt32LE(0x54, 8);
  itsp.writeUInt32LE(chunkSize, 0x10);
  itsp.writeUInt32LE(1, 0x18);
  itsp.writeInt32LE(-1, 0x1c);
  itsp.writeUInt32LE(1, 0x2c);
  const dirOffset = 0x60;
  const dirLength = itsp.length + chunk.length;
  const header = Buffer.alloc(0x60);
  header.write('ITSF', 0, 'latin1');
  header.writeUInt32LE(3, 4);
  header.writeUInt32LE(0x60, 8);
  header.writeBigUInt64LE(BigInt(dirOffset), 0x48);
  header.writeBigUInt64LE(BigInt(dirLength), 0x50);
  header.writeBigUInt64LE(BigInt(dirOffset + dirLength), 0x58);
  return Buffer.concat([header, itsp, chunk, ...section0.map((f) => f.data)]);
}
