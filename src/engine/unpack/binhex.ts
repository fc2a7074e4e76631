/**
 * BinHex 4.0 (RFC 1741): 6-bit text encoding, then run-length encoding with 0x90 as the marker,
 * then a header (name, type, creator, fork lengths) and the data fork, which is what we yield.
 * Decoding stops once the data fork is complete, so the work is bounded by its declared length.
 */
import { UnpackError, UnpackLimitError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const ALPHABET = '!"#$%&\'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr';
const VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;
const BANNER = '(This file must be converted with BinHex';

/** Undoes the 6-bit encoding and the 0x90 run-length encoding, in one pass, into `out` up to `limit` bytes. */
class BinHexDecoder {
  private acc = 0;
  private bits = 0;
  private last = -1;
  private marker = false;
  readonly out: number[] = [];
  ended = false;

  constructor(private readonly limit: number) {}

  feed(chunk: Buffer): void {
    for (const c of chunk) {
      if (this.ended || this.out.length >= this.limit) return;
      if (c === 0x3a) {
        this.ended = true; // the closing ':'
        return;
      }
      const v = VALUE[c]!;
      if (v < 0) continue; // line breaks and spaces
      this.acc = ((this.acc << 6) | v) & 0xffffff;
      this.bits += 6;
      if (this.bits >= 8) {
        this.bits -= 8;
        this.rle((this.acc >> this.bits) & 0xff);
      }
    }
  }

  private rle(b: number): void {
    if (this.marker) {
      this.marker = false;
      if (b === 0) this.emit(0x90);
      else for (let i = 1; i < b && this.out.length < this.limit; i++) this.emit(this.last);
      return;
    }
    if (b === 0x90) this.marker = true;
    else this.emit(b);
  }

  private emit(b: number): void {
    this.out.push(b);
    this.last = b;
  }
}

export const binhexUnpacker: Unpacker = {
  type: 'binhex',
  detect: (head) => head.toString('latin1').includes(BANNER),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const head = (await source.read(0, Math.min(source.size, 8192))).toString('latin1');
    const colon = head.indexOf(':', head.indexOf(BANNER));
    if (colon < 0) throw new UnpackError('binhex', 'ERR_BINHEX_CORRUPT', 'no data after the BinHex banner');
    // Header: name length, name, version, type(4), creator(4), flags(2), data length(4), rsrc length(4), crc(2).
    const decoder = new BinHexDecoder(ctx.maxFileSize + 300);
    let dataLength = -1;
    let headerLength = 0;
    for await (const chunk of source.stream(colon + 1)) {
      if (ctx.signal.aborted) throw new UnpackLimitError('MaxScanTime', 'scan aborted');
      decoder.feed(chunk);
      const o = decoder.out;
      if (dataLength < 0 && o.length > 0 && o.length >= o[0]! + 22) {
        const n = o[0]!;
        headerLength = n + 22;
        dataLength = ((o[n + 12]! << 24) | (o[n + 13]! << 16) | (o[n + 14]! << 8) | o[n + 15]!) >>> 0;
        if (dataLength > ctx.maxFileSize)
          throw new UnpackLimitError('MaxFileSize', `binhex: data fork of ${dataLength} bytes`);
      }
      if (decoder.ended || (dataLength >= 0 && o.length >= headerLength + dataLength)) break;
    }
    if (dataLength < 0) throw new UnpackError('binhex', 'ERR_BINHEX_TRUNCATED', 'header incomplete');
    const o = decoder.out;
    const name = Buffer.from(o.slice(1, 1 + o[0]!)).toString('latin1');
    const data = Buffer.from(o.slice(headerLength, headerLength + dataLength));
    if (data.length < dataLength)
      throw new UnpackError(
        'binhex',
        'ERR_BINHEX_TRUNCATED',
        `data fork cut at ${data.length} of ${dataLength} bytes`,
      );
    yield {
      name,
      size: dataLength,
      async *open() {
        yield data;
      },
    };
  },
};
