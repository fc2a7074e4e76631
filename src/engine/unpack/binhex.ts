/**
 * BinHex 4.0 (RFC 1741): 6-bit text encoding, then run-length encoding with 0x90 as the marker,
 * then a header (name, type, creator, flags, fork lengths, CRC), the data fork and its CRC, the
 * resource fork and its CRC. Both forks are yielded (Mac droppers hide code in either).
 *
 * Streaming: detection decodes only the header; each fork is decoded again from the start when
 * opened, so memory stays at one decoded chunk whatever the fork sizes. CRCs are not checked:
 * a damaged file is still worth scanning.
 */
import { UnpackError } from '../../errors.js';
import type { ObjectSource } from '../source.js';
import { Counter, EntryCounter, limitOutput } from './limits.js';
import type { Entry, UnpackContext, Unpacker } from './types.js';

const ALPHABET = '!"#$%&\'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr';
const VALUE = new Int8Array(256).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;
const BANNER = '(This file must be converted with BinHex';
/** Input is fed in pieces this small so one step's run-length output stays bounded (≤ ~1 MiB). */
const STEP = 4096;

/** Undoes the 6-bit encoding and the 0x90 run-length encoding; state carries across chunks. */
export class BinHexDecoder {
  private acc = 0;
  private bits = 0;
  private last = 0;
  private marker = false;
  ended = false;

  feed(chunk: Buffer): Buffer {
    const out: number[] = [];
    for (const c of chunk) {
      if (this.ended) break;
      if (c === 0x3a) {
        this.ended = true; // the closing ':'
        break;
      }
      const v = VALUE[c]!;
      if (v < 0) continue; // line breaks and spaces
      this.acc = ((this.acc << 6) | v) & 0xffffff;
      this.bits += 6;
      if (this.bits >= 8) {
        this.bits -= 8;
        this.rle((this.acc >> this.bits) & 0xff, out);
      }
    }
    return Buffer.from(out);
  }

  private rle(b: number, out: number[]): void {
    if (this.marker) {
      this.marker = false;
      // 0x90 0x00 is a literal 0x90; 0x90 n repeats the previous byte to a run of n in all.
      if (b === 0) {
        this.last = 0x90;
        out.push(0x90);
      } else for (let i = 1; i < b; i++) out.push(this.last);
      return;
    }
    if (b === 0x90) this.marker = true;
    else {
      this.last = b;
      out.push(b);
    }
  }
}

interface Header {
  name: string;
  headerLength: number;
  dataLength: number;
  rsrcLength: number;
}

/** Decoded bytes [from, to) of the stream that starts after the first ':' at `colon`. */
async function* decodedRange(
  source: ObjectSource,
  colon: number,
  from: number,
  to: number,
  input: Counter,
): AsyncGenerator<Buffer> {
  const d = new BinHexDecoder();
  let pos = 0;
  for await (const raw of input.count(source.stream(colon + 1, source.size, STEP))) {
    const out = d.feed(raw);
    const lo = Math.max(from, pos);
    const hi = Math.min(to, pos + out.length);
    if (hi > lo) yield out.subarray(lo - pos, hi - pos);
    pos += out.length;
    if (pos >= to || d.ended) return;
  }
}

async function readHeader(source: ObjectSource, colon: number): Promise<Header> {
  // The header is at most 255 + 22 decoded bytes.
  const parts: Buffer[] = [];
  for await (const c of decodedRange(source, colon, 0, 277, new Counter())) parts.push(c);
  const h = Buffer.concat(parts);
  const n = h[0] ?? 0;
  if (h.length < n + 22) throw new UnpackError('binhex', 'ERR_BINHEX_TRUNCATED', 'header incomplete');
  return {
    name: h.subarray(1, 1 + n).toString('latin1'),
    headerLength: n + 22,
    dataLength: h.readUInt32BE(n + 12),
    rsrcLength: h.readUInt32BE(n + 16),
  };
}

async function findColon(source: ObjectSource): Promise<number> {
  const head = (await source.read(0, Math.min(source.size, 8192))).toString('latin1');
  const banner = head.indexOf(BANNER);
  const colon = head.indexOf(':', banner < 0 ? 0 : banner);
  if (banner < 0 || colon < 0)
    throw new UnpackError('binhex', 'ERR_BINHEX_CORRUPT', 'no data after the BinHex banner');
  return colon;
}

export const binhexUnpacker: Unpacker = {
  type: 'binhex',
  detect: (head) => head.toString('latin1').includes(BANNER),
  async *entries(source: ObjectSource, ctx: UnpackContext): AsyncIterable<Entry> {
    const colon = await findColon(source);
    const h = await readHeader(source, colon);
    const counter = new EntryCounter('binhex', ctx);
    const dataStart = h.headerLength;
    const rsrcStart = dataStart + h.dataLength + 2; // the data fork's CRC sits between the forks
    const forks = [
      { name: h.name, start: dataStart, length: h.dataLength },
      { name: `${h.name}.rsrc`, start: rsrcStart, length: h.rsrcLength },
    ];
    for (const f of forks) {
      if (f.length === 0) continue;
      counter.next();
      yield {
        name: f.name,
        size: f.length,
        open: () => {
          const input = new Counter();
          return limitOutput(
            'binhex',
            decodedRange(source, colon, f.start, f.start + f.length, input),
            ctx,
            () => input.bytes,
          );
        },
      };
    }
  },
};
