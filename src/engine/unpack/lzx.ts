/**
 * LZX decompression as used by CHM (and CAB): LZ77 over a 32 KiB-2 MiB sliding window with three
 * repeated offsets, canonical Huffman trees sent as deltas through a 20-symbol pretree, verbatim /
 * aligned-offset / uncompressed blocks, output in 32 KiB frames, and the optional Intel E8 call
 * translation. Bit-for-bit the behaviour of the reference decoder (libmspack's lzxd.c, and MS-PATCH
 * "LZX DELTA" §2 for the format): 16-bit little-endian input words read MSB first, realignment to
 * 16 bits after every frame, state reset every `resetInterval` frames (CHM random access).
 *
 * Sans-IO: the caller feeds input and asks for one frame at a time. A frame needs at most a bounded
 * amount of input (see LOOKAHEAD); the caller keeps that much buffered, so decoding is synchronous.
 */
import { UnpackError } from '../../errors.js';

export const FRAME = 32768;
/** Input a caller keeps buffered before asking for a frame; a valid frame needs far less (~110 KiB). */
export const LOOKAHEAD = 512 * 1024;

const BLOCK_VERBATIM = 1;
const BLOCK_ALIGNED = 2;
const BLOCK_UNCOMPRESSED = 3;
const PRETREE_SYMBOLS = 20;
const ALIGNED_SYMBOLS = 8;
const LENGTH_SYMBOLS = 249;
const SAFETY = 64; // runs in READ_LENGTHS may write a little past the last symbol

const EXTRA_BITS = new Uint8Array(52);
const POSITION_BASE = new Uint32Array(52);
// Extra bits per position slot: 0,0,0,0,1,1,2,2,…,16,16 then 17; bases accumulate 2^extra.
for (let i = 0, j = 0; i < 52; i += 2) {
  EXTRA_BITS[i] = j;
  EXTRA_BITS[i + 1] = j;
  if (i !== 0 && j < 17) j++;
}
for (let i = 0, j = 0; i < 52; i++) {
  POSITION_BASE[i] = j;
  j += 1 << EXTRA_BITS[i]!;
}

function fail(msg: string): UnpackError {
  return new UnpackError('lzx', 'ERR_LZX_CORRUPT', msg);
}

/** A canonical Huffman code: an 8-bit fast table, then the counting decoder (as zlib's puff). */
class Huffman {
  private readonly fast = new Int32Array(256);
  private readonly count = new Uint16Array(17);
  private readonly symbols: Uint16Array;
  empty = true;

  constructor(size: number) {
    this.symbols = new Uint16Array(size);
  }

  /** Builds from code lengths; over-subscribed codes are corrupt, incomplete ones are decoded as far as they go. */
  build(lens: Uint8Array, n: number, allowEmpty = false): void {
    this.count.fill(0);
    for (let s = 0; s < n; s++) this.count[lens[s]!]!++;
    this.count[0] = 0;
    let left = 1;
    for (let len = 1; len <= 16; len++) {
      left = left * 2 - this.count[len]!;
      if (left < 0) throw fail('over-subscribed Huffman code');
    }
    this.empty = left === 1 << 16;
    if (this.empty && !allowEmpty) throw fail('empty Huffman code');
    const offs = new Uint16Array(18);
    for (let len = 1; len <= 16; len++) offs[len + 1] = offs[len]! + this.count[len]!;
    for (let s = 0; s < n; s++) if (lens[s]) this.symbols[offs[lens[s]!]!++] = s;
    // Fast table: codes of at most 8 bits, as (symbol << 5) | length.
    this.fast.fill(-1);
    let code = 0;
    let index = 0;
    for (let len = 1; len <= 8; len++) {
      for (let k = 0; k < this.count[len]!; k++) {
        const entry = (this.symbols[index + k]! << 5) | len;
        const lo = (code + k) << (8 - len);
        this.fast.fill(entry, lo, lo + (1 << (8 - len)));
      }
      index += this.count[len]!;
      code = (code + this.count[len]!) << 1;
    }
  }

  /** Decodes one symbol from the top 16 bits of `peek`; returns (symbol << 5) | length, or -1. */
  decode(peek: number): number {
    const f = this.fast[peek >>> 8]!;
    if (f >= 0) return f;
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len <= 16; len++) {
      code |= (peek >>> (16 - len)) & 1;
      const c = this.count[len]!;
      if (code - first < c) return (this.symbols[index + code - first]! << 5) | len;
      index += c;
      first = (first + c) << 1;
      code <<= 1;
    }
    return -1;
  }
}

export class LzxDecoder {
  private readonly window: Uint8Array;
  private readonly windowSize: number;
  private readonly mainSymbols: number;
  private posn = 0;
  private frame: number;
  private intelCurpos: number;
  private intelFilesize = 0;
  private intelStarted = false;
  private headerRead = false;
  private blockType = 0;
  private blockLength = 0;
  private blockRemaining = 0;
  private r0 = 1;
  private r1 = 1;
  private r2 = 1;
  private readonly mainLens: Uint8Array;
  private readonly lengthLens = new Uint8Array(LENGTH_SYMBOLS + SAFETY);
  private readonly preLens = new Uint8Array(PRETREE_SYMBOLS);
  private readonly alignedLens = new Uint8Array(ALIGNED_SYMBOLS);
  private readonly mainTree: Huffman;
  private readonly lengthTree = new Huffman(LENGTH_SYMBOLS);
  private readonly preTree = new Huffman(PRETREE_SYMBOLS);
  private readonly alignedTree = new Huffman(ALIGNED_SYMBOLS);

  // Input: a buffer of unconsumed bytes, MSB-first bit buffer filled 16 bits at a time.
  private input: Buffer = Buffer.alloc(0);
  private ip = 0;
  private inputEnded = false;
  private padWords = 0;
  private bitBuf = 0;
  private bitsLeft = 0;
  private produced = 0;

  /**
   * @param windowBits     15..21
   * @param resetInterval  frames between state resets (0: never)
   * @param length         total output length (the last frame may be short)
   * @param startFrame     frame number decoding starts at (a reset point when seeking)
   */
  constructor(
    windowBits: number,
    private readonly resetInterval: number,
    private readonly length: number,
    startFrame = 0,
  ) {
    if (windowBits < 15 || windowBits > 21) throw fail(`window bits ${windowBits}`);
    this.windowSize = 1 << windowBits;
    this.window = new Uint8Array(this.windowSize);
    const slots = windowBits === 21 ? 50 : windowBits === 20 ? 42 : windowBits << 1;
    this.mainSymbols = 256 + slots * 8;
    this.mainLens = new Uint8Array(this.mainSymbols + SAFETY);
    this.mainTree = new Huffman(this.mainSymbols);
    this.frame = startFrame;
    this.produced = startFrame * FRAME;
    this.posn = this.produced % this.windowSize;
    this.intelCurpos = this.produced;
  }

  /** Unconsumed input bytes held. */
  get buffered(): number {
    return this.input.length - this.ip;
  }

  get done(): boolean {
    return this.produced >= this.length;
  }

  feed(chunk: Buffer): void {
    const rest = this.input.subarray(this.ip);
    this.input = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    this.ip = 0;
  }

  endInput(): void {
    this.inputEnded = true;
  }

  private readWord(): number {
    if (this.ip + 2 <= this.input.length) {
      const w = this.input[this.ip]! | (this.input[this.ip + 1]! << 8);
      this.ip += 2;
      return w;
    }
    if (!this.inputEnded) throw fail('frame needs more input than the lookahead');
    // The reference decoder pads the end with zeros once, which a valid last frame may need.
    if (this.padWords++ > 2) throw fail('input ends inside a frame');
    this.ip = this.input.length;
    return 0;
  }

  private ensure(n: number): void {
    while (this.bitsLeft < n) {
      this.bitBuf = (this.bitBuf | (this.readWord() << (16 - this.bitsLeft))) >>> 0;
      this.bitsLeft += 16;
    }
  }

  private bits(n: number): number {
    if (n === 0) return 0;
    this.ensure(n);
    const v = this.bitBuf >>> (32 - n);
    this.bitBuf = (this.bitBuf << n) >>> 0;
    this.bitsLeft -= n;
    return v;
  }

  private symbol(tree: Huffman): number {
    if (tree.empty) throw fail('symbol from an empty Huffman code');
    this.ensure(16);
    const d = tree.decode(this.bitBuf >>> 16);
    if (d < 0) throw fail('invalid Huffman code');
    const len = d & 31;
    this.bitBuf = (this.bitBuf << len) >>> 0;
    this.bitsLeft -= len;
    return d >>> 5;
  }

  /** Code lengths for lens[first..last) as deltas through the pretree (lzxd_read_lens). */
  private readLengths(lens: Uint8Array, first: number, last: number): void {
    for (let i = 0; i < PRETREE_SYMBOLS; i++) this.preLens[i] = this.bits(4);
    this.preTree.build(this.preLens, PRETREE_SYMBOLS);
    for (let x = first; x < last; ) {
      let z = this.symbol(this.preTree);
      if (z === 17 || z === 18) {
        let run = z === 17 ? this.bits(4) + 4 : this.bits(5) + 20;
        while (run-- > 0 && x < lens.length) lens[x++] = 0;
      } else if (z === 19) {
        let run = this.bits(1) + 4;
        z = this.symbol(this.preTree);
        let v = lens[x]! - z;
        if (v < 0) v += 17;
        while (run-- > 0 && x < lens.length) lens[x++] = v;
      } else {
        let v = lens[x]! - z;
        if (v < 0) v += 17;
        lens[x++] = v;
      }
    }
  }

  private resetState(): void {
    this.r0 = this.r1 = this.r2 = 1;
    this.headerRead = false;
    this.blockRemaining = 0;
    this.blockType = 0;
    this.mainLens.fill(0);
    this.lengthLens.fill(0);
  }

  private readBlockHeader(): void {
    if (this.blockType === BLOCK_UNCOMPRESSED && this.blockLength & 1) this.rawByte(); // pad byte
    this.blockType = this.bits(3);
    this.blockLength = this.blockRemaining = (this.bits(16) << 8) | this.bits(8);
    if (this.blockType === BLOCK_ALIGNED) {
      for (let i = 0; i < ALIGNED_SYMBOLS; i++) this.alignedLens[i] = this.bits(3);
      this.alignedTree.build(this.alignedLens, ALIGNED_SYMBOLS);
    }
    if (this.blockType === BLOCK_ALIGNED || this.blockType === BLOCK_VERBATIM) {
      // The rest of an aligned block's header is a verbatim block's.
      this.readLengths(this.mainLens, 0, 256);
      this.readLengths(this.mainLens, 256, this.mainSymbols);
      this.mainTree.build(this.mainLens, this.mainSymbols);
      if (this.mainLens[0xe8] !== 0) this.intelStarted = true;
      this.readLengths(this.lengthLens, 0, LENGTH_SYMBOLS);
      this.lengthTree.build(this.lengthLens, LENGTH_SYMBOLS, true);
    } else if (this.blockType === BLOCK_UNCOMPRESSED) {
      this.intelStarted = true;
      // Align to 16 bits: 1-16 bits of padding, then raw bytes.
      if (this.bitsLeft === 0) this.ensure(16);
      this.bitsLeft = 0;
      this.bitBuf = 0;
      const r = Buffer.alloc(12);
      for (let i = 0; i < 12; i++) r[i] = this.rawByte();
      this.r0 = r.readUInt32LE(0);
      this.r1 = r.readUInt32LE(4);
      this.r2 = r.readUInt32LE(8);
    } else throw fail(`bad block type ${this.blockType}`);
  }

  private rawByte(): number {
    if (this.ip < this.input.length) return this.input[this.ip++]!;
    if (!this.inputEnded) throw fail('frame needs more input than the lookahead');
    throw fail('input ends inside an uncompressed block');
  }

  private copyMatch(offset: number, length: number): void {
    if (offset > this.windowSize || offset <= 0) throw fail(`match offset ${offset}`);
    if (this.posn + length > this.windowSize) throw fail('match runs over the window end');
    const w = this.window;
    let src = this.posn - offset;
    if (src < 0) src += this.windowSize; // before the first byte: the (zeroed) end of the window
    for (let i = 0; i < length; i++) {
      w[this.posn++] = w[src++]!;
      if (src === this.windowSize) src = 0;
    }
  }

  /** Decodes `run` bytes (or a little more: the last match may overrun) of a verbatim/aligned block. */
  private decodeCompressed(run: number, aligned: boolean): number {
    const w = this.window;
    while (run > 0) {
      const main = this.symbol(this.mainTree);
      if (main < 256) {
        w[this.posn++] = main;
        run--;
        continue;
      }
      const m = main - 256;
      let length = m & 7;
      if (length === 7) length += this.symbol(this.lengthTree);
      length += 2;
      const slot = m >>> 3;
      let offset: number;
      if (slot > 2) {
        const extra = slot >= 36 ? 17 : EXTRA_BITS[slot]!;
        if (!aligned) {
          offset = slot === 3 ? 1 : POSITION_BASE[slot]! - 2 + this.bits(extra);
        } else {
          offset = POSITION_BASE[slot]! - 2;
          if (extra > 3) {
            offset += this.bits(extra - 3) << 3;
            offset += this.symbol(this.alignedTree);
          } else if (extra === 3) offset += this.symbol(this.alignedTree);
          else if (extra > 0) offset += this.bits(extra);
          else offset = 1;
        }
        this.r2 = this.r1;
        this.r1 = this.r0;
        this.r0 = offset;
      } else if (slot === 0) offset = this.r0;
      else if (slot === 1) {
        offset = this.r1;
        this.r1 = this.r0;
        this.r0 = offset;
      } else {
        offset = this.r2;
        this.r2 = this.r0;
        this.r0 = offset;
      }
      this.copyMatch(offset, length);
      run -= length;
    }
    return run; // ≤ 0: minus the overrun
  }

  /** Decodes and returns the next output frame (a fresh buffer). */
  decodeFrame(): Buffer {
    if (this.done) throw fail('no more frames');
    if (this.resetInterval && this.frame % this.resetInterval === 0) {
      if (this.blockRemaining) throw fail('block runs over a reset point');
      this.resetState();
    }
    if (!this.headerRead) {
      let size = 0;
      if (this.bits(1)) size = (this.bits(16) << 16) | this.bits(16);
      this.intelFilesize = size | 0;
      this.headerRead = true;
    }
    const frameSize = Math.min(FRAME, this.length - this.produced);
    const frameStart = this.posn;
    if (frameStart + frameSize > this.windowSize) throw fail('frame runs over the window end');
    let todo = frameSize;
    while (todo > 0) {
      if (this.blockRemaining === 0) {
        this.readBlockHeader();
        continue; // a zero-length block just reads the next header
      }
      let run = Math.min(this.blockRemaining, todo);
      todo -= run;
      this.blockRemaining -= run;
      if (this.blockType === BLOCK_UNCOMPRESSED) {
        while (run > 0) {
          const avail = Math.min(run, this.input.length - this.ip);
          if (avail <= 0) this.rawByte(); // throws: the block's bytes are not there
          this.window.set(this.input.subarray(this.ip, this.ip + avail), this.posn);
          this.ip += avail;
          this.posn += avail;
          run -= avail;
        }
      } else {
        run = this.decodeCompressed(run, this.blockType === BLOCK_ALIGNED);
        if (run < 0) {
          if (-run > this.blockRemaining) throw fail('match overruns its block');
          this.blockRemaining += run;
          todo += run;
        }
      }
    }
    if (this.posn - frameStart !== frameSize) throw fail('match crosses a frame boundary');
    // Realign the input to 16 bits, as the encoder does after every frame.
    if (this.bitsLeft > 0) this.ensure(16);
    if (this.bitsLeft & 15) this.bits(this.bitsLeft & 15);

    const out = Buffer.from(this.window.subarray(frameStart, frameStart + frameSize));
    if (this.intelStarted && this.intelFilesize && this.frame <= 32768 && frameSize > 10) this.e8(out);
    else if (this.intelFilesize) this.intelCurpos += frameSize;
    this.produced += frameSize;
    this.frame++;
    if (this.posn === this.windowSize) this.posn = 0;
    return out;
  }

  /** Undoes the Intel E8 (CALL) translation on one frame. */
  private e8(data: Buffer): void {
    let curpos = this.intelCurpos;
    const filesize = this.intelFilesize;
    for (let i = 0; i < data.length - 10; ) {
      if (data[i++] !== 0xe8) {
        curpos++;
        continue;
      }
      const abs = data.readInt32LE(i);
      if (abs >= -curpos && abs < filesize) data.writeInt32LE(abs >= 0 ? abs - curpos : abs + filesize, i);
      i += 4;
      curpos += 5;
    }
    this.intelCurpos += data.length;
  }
}
